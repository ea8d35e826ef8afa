"""AppTests of the Reports page (list, search, open by ``?report=ID``, a bad id) and of the Compare page's
verdict table and "Save as report" form, on runs measured in 3 repeats (tests.unit.test_report_db.seed_repeats)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.conftest import make_mlp_onnx, page
from tests.unit.test_report_db import Repeats, seed_repeats


def _texts(at: Any) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "error", "success", "title", "subheader",
                                  "text") for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def _frame(at: Any, key: str) -> Any:
    for e in at.dataframe:
        if getattr(e, "key", None) == key or e.proto.id.endswith(key):
            return e.value
    raise AssertionError(f"no dataframe {key}")


def _frame_with(at: Any, *cols: str) -> Any:
    for e in at.dataframe:
        if all(c in e.value.columns for c in cols):
            return e.value
    raise AssertionError(f"no dataframe with {cols}: {[list(e.value.columns) for e in at.dataframe]}")


@pytest.fixture
def two(es_env: str, tmp_path: Path) -> tuple[Repeats, Repeats]:
    from db.store import add_model

    m1 = add_model([make_mlp_onnx(tmp_path / "a.onnx")], "mlp.onnx", url=es_env)
    m2 = add_model([make_mlp_onnx(tmp_path / "b.onnx", hidden=8)], "resnet-ish.onnx", url=es_env)
    return (seed_repeats(es_env, int(m1.id)),
            seed_repeats(es_env, int(m2.id), medians_ns={"fp32": 100_000, "fp16": 90_000}))


def _save_two(a: Repeats, b: Repeats) -> tuple[int, int]:
    from db import reports
    from db.models import Report
    from db.session import session_scope

    ra = reports.create_report([a.run_ids["fp32"], a.run_ids["fp16"], a.run_ids["int8-qdq"]], a.run_ids["fp32"],
                               "MLP int8 review", author="Ada", notes="ship fp16?", url=a.url)
    rb = reports.create_report([b.run_ids["fp32"], b.run_ids["fp16"]], b.run_ids["fp32"], "ResNet fp16",
                               author="Grace", url=a.url)
    with session_scope(a.url) as s:
        rep = s.get(Report, ra)
        assert rep is not None
        rep.created_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=20)
    return ra, rb


def test_reports_page_empty(es_env: str) -> None:
    at = page("reports").run()
    assert not at.exception
    assert "No saved reports yet" in _texts(at)


def test_reports_list_and_search(two: tuple[Repeats, Repeats]) -> None:
    a, b = two
    ra, rb = _save_two(a, b)
    at = page("reports").run()
    assert not at.exception
    lst = _frame_with(at, "id", "title", "author")
    assert list(lst["id"]) == [rb, ra] and list(lst["open"]) == [f"?report={rb}", f"?report={ra}"]
    at.text_input(key="reports_q_model").set_value("resnet").run()
    assert list(_frame_with(at, "id", "title")["id"]) == [rb]
    at.text_input(key="reports_q_model").set_value("").run()
    at.selectbox(key="reports_q_precision").set_value("int8-qdq").run()
    assert list(_frame_with(at, "id", "title")["id"]) == [ra]
    at.selectbox(key="reports_q_precision").set_value("(any)").run()
    at.text_input(key="reports_q_author").set_value("grace").run()
    assert list(_frame_with(at, "id", "title")["id"]) == [rb]
    at.text_input(key="reports_q_author").set_value("").run()
    today = dt.datetime.now(dt.timezone.utc).date()
    at.date_input(key="reports_q_dates").set_value((today - dt.timedelta(days=30), today - dt.timedelta(days=10))).run()
    assert list(_frame_with(at, "id", "title")["id"]) == [ra]
    at.text_input(key="reports_q_author").set_value("nobody").run()
    assert not at.exception and "No report matches" in _texts(at)
    # open from the list: the page puts the id in the address
    at.text_input(key="reports_q_author").set_value("").run()
    at.date_input(key="reports_q_dates").set_value(()).run()
    at.selectbox(key="reports_pick").set_value(ra).run()
    at.button(key="reports_open").click().run()
    assert not at.exception
    assert at.query_params.get("report") in ([str(ra)], str(ra))
    assert at.title[0].value == "MLP int8 review"


def test_report_opens_by_query_param_in_order(two: tuple[Repeats, Repeats]) -> None:
    a, b = two
    ra, _ = _save_two(a, b)
    at = page("reports")
    at.query_params["report"] = str(ra)
    at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == "MLP int8 review"
    text = _texts(at)
    assert "Author: Ada" in text and "ship fp16?" in text and "Baseline: run " in text
    assert f"/reports?report={ra}" in text
    verdicts = _frame_with(at, "verdict", "95% interval", "within-run only")
    assert list(verdicts["verdict"]) == ["faster", "faster"]
    assert list(verdicts["repeats"]) == ["3 vs 3", "3 vs 3"] and set(verdicts["within-run only"]) == {"no"}
    assert set(verdicts["accuracy valid"]) == {"yes"}
    comp = _frame_with(at, "field", "blocking")
    assert list(comp["field"]) == ["precision", "precision"] and set(comp["blocking"]) == {"no"}
    # the verdicts and the comparability list come before the first chart
    order = [str(getattr(e, "type", type(e).__name__)) for e in at.main]
    kinds = []
    for e in at.main:
        t = getattr(e, "type", "")
        if t == "arrow_data_frame" or type(e).__name__ == "Dataframe":
            kinds.append("table")
        elif t == "plotly_chart":
            kinds.append("chart")
    assert kinds[:2] == ["table", "table"] and "chart" in kinds, order
    assert len(at.get("plotly_chart")) == 3
    assert {b.proto.label for b in at.get("download_button")} >= {"HTML (self-contained)", "CSV", "JSON"}


@pytest.mark.parametrize("raw", ["abc", "999"])
def test_bad_report_id_is_a_clear_error(two: tuple[Repeats, Repeats], raw: str) -> None:
    at = page("reports")
    at.query_params["report"] = raw
    at.run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert (f"`?report={raw}` is not a report id" if raw == "abc" else f"Report {raw} does not exist") in errors
    at.button(key="reports_back").click().run()
    assert not at.exception and at.title[0].value == "Reports"


def test_compare_shows_verdicts_and_saves_a_report(es_env: str, tmp_path: Path) -> None:
    from db import reports
    from db.store import add_model

    model = add_model([make_mlp_onnx(tmp_path / "mlp.onnx")], "mlp.onnx", url=es_env)
    r = seed_repeats(es_env, int(model.id))
    at = page("compare").run()
    assert not at.exception
    v = _frame_with(at, "verdict", "95% low", "95% high")
    assert list(v["verdict"]) == ["faster", "faster"] and list(v["repeats"]) == ["3 vs 3", "3 vs 3"]
    assert at.selectbox(key="compare_baseline").value == r.run_ids["fp32"]
    assert list(_frame_with(at, "field", "blocking")["field"]) == ["precision", "precision"]
    # the form refuses an empty title, naming the field; nothing is stored
    at.button(key="FormSubmitter:compare_save_report-Save report").click().run()
    assert not at.exception
    assert any("Title" in e.value for e in at.error) and reports.list_reports(es_env) == []
    at.text_input(key="compare_save_title").set_value("fp16 on CPU")
    at.text_input(key="compare_save_author").set_value("Ada")
    at.text_area(key="compare_save_notes").set_value("for Monday")
    at.multiselect(key="compare_save_runs").set_value([r.run_ids["fp32"], r.run_ids["fp16"]])
    at.multiselect(key="compare_save_charts").set_value(["latency_p50"])
    at.button(key="FormSubmitter:compare_save_report-Save report").click().run()
    assert not at.exception
    saved = reports.list_reports(es_env)
    assert len(saved) == 1
    rep = saved[0]
    assert (rep["title"], rep["author"], rep["notes"]) == ("fp16 on CPU", "Ada", "for Monday")
    assert rep["run_ids"] == [r.run_ids["fp32"], r.run_ids["fp16"]] and rep["baseline_run_id"] == r.run_ids["fp32"]
    assert rep["charts"] == ["latency_p50"] and rep["metric"] == "latency_p50"
    assert any(f"/reports?report={rep['id']}" in s.value for s in at.success)


def test_compare_baseline_not_among_runs_is_refused(es_env: str, tmp_path: Path) -> None:
    from db import reports
    from db.store import add_model

    model = add_model([make_mlp_onnx(tmp_path / "mlp.onnx")], "mlp.onnx", url=es_env)
    r = seed_repeats(es_env, int(model.id))
    at = page("compare").run()
    at.text_input(key="compare_save_title").set_value("t")
    at.multiselect(key="compare_save_runs").set_value([r.run_ids["fp16"], r.run_ids["int8-qdq"]])
    at.button(key="FormSubmitter:compare_save_report-Save report").click().run()
    assert not at.exception
    assert any("Baseline: run" in e.value for e in at.error) and reports.list_reports(es_env) == []
