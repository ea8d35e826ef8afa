"""``enginescope report create | list | export`` (typer's CliRunner on the real app): create prints
{report_id, url, html, pdf, csv} and writes the files; bad input exits 2 naming the flag and stores nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.dashboard.conftest import make_mlp_onnx
from tests.unit.test_report_db import Repeats, seed_repeats


@pytest.fixture
def repeats(es_env: str, tmp_path: Path) -> Repeats:
    from db.store import add_model

    model = add_model([make_mlp_onnx(tmp_path / "mlp.onnx")], "mlp.onnx", url=es_env)
    return seed_repeats(es_env, int(model.id))


def _invoke(*args: str) -> object:
    from engine_runner.cli import app

    return CliRunner().invoke(app, list(args))


def test_create_prints_json_and_writes_files(repeats: Repeats, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from db import reports

    monkeypatch.setenv("ENGINESCOPE_DASHBOARD_URL", "http://dash.example:8501/")
    ids = repeats.run_ids
    html, csv = tmp_path / "r.html", tmp_path / "r.csv"
    r = _invoke("report", "create", "--run", str(ids["fp32"]), "--run", str(ids["fp16"]), "--baseline", str(ids["fp32"]),
                "--title", "fp16 vs fp32", "--author", "Ada", "--notes", "n", "--chart", "latency_p50",
                "--html", str(html), "--csv", str(csv), "--json")
    assert r.exit_code == 0, r.output  # type: ignore[attr-defined]
    doc = json.loads(r.stdout)  # type: ignore[attr-defined]
    rid = doc["report_id"]
    assert doc == {"report_id": rid, "url": f"http://dash.example:8501/reports?report={rid}", "html": str(html.resolve()),
                   "pdf": None, "csv": str(csv.resolve())}
    assert html.read_text().startswith("<!DOCTYPE html>") and "fp16 vs fp32" in html.read_text()
    assert csv.read_text().splitlines()[0].startswith("report,run,")
    rep = reports.get_report(rid, repeats.url)
    assert rep is not None and rep["run_ids"] == [ids["fp32"], ids["fp16"]] and rep["charts"] == ["latency_p50"]

    listed = _invoke("report", "list", "--precision", "fp16", "--author", "ada", "--json")
    assert listed.exit_code == 0  # type: ignore[attr-defined]
    rows = json.loads(listed.stdout)  # type: ignore[attr-defined]
    assert [x["id"] for x in rows] == [rid] and rows[0]["url"].endswith(f"/reports?report={rid}")
    none = _invoke("report", "list", "--precision", "int8-qdq", "--json")
    assert json.loads(none.stdout) == []  # type: ignore[attr-defined]

    out = tmp_path / "r.json"
    ex = _invoke("report", "export", str(rid), "--json-file", str(out))
    assert ex.exit_code == 0, ex.output  # type: ignore[attr-defined]
    assert json.loads(ex.stdout)["json"] == str(out.resolve())  # type: ignore[attr-defined]
    assert json.loads(out.read_text())["verdict_rows"][0]["run"] == ids["fp16"]


@pytest.mark.parametrize(("args", "flag"), [
    (["--baseline", "{int8-qdq}"], "--baseline"),
    (["--baseline", "{fp32}", "--metric", "ttft_p99"], "--metric"),
    (["--baseline", "{fp32}", "--chart", "pie"], "--chart"),
    (["--baseline", "{fp32}", "--html", "/no/such/folder/r.html"], "--html"),
    (["--baseline", "{fp32}", "--title", " "], "--title"),
])
def test_create_bad_input_exits_2_and_stores_nothing(repeats: Repeats, args: list[str], flag: str) -> None:
    from db import reports

    ids = repeats.run_ids
    filled = [str(ids[a[1:-1]]) if a.startswith("{") else a for a in args]
    base = ["report", "create", "--run", str(ids["fp32"]), "--run", str(ids["fp16"]), "--title", "t"]
    r = _invoke(*base, *filled)
    assert r.exit_code == 2, r.output  # type: ignore[attr-defined]
    assert r.stdout == ""  # type: ignore[attr-defined]
    assert flag in r.stderr  # type: ignore[attr-defined]
    assert reports.list_reports(repeats.url) == []


def test_pdf_without_chromium_stores_nothing(repeats: Repeats, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dashboard import report_export
    from db import reports

    monkeypatch.setattr(report_export, "chromium_path", lambda: None)
    ids = repeats.run_ids
    r = _invoke("report", "create", "--run", str(ids["fp32"]), "--run", str(ids["fp16"]), "--baseline", str(ids["fp32"]),
                "--title", "t", "--pdf", str(tmp_path / "r.pdf"))
    assert r.exit_code == 2 and "--pdf" in r.stderr and "apt-get install -y chromium" in r.stderr  # type: ignore[attr-defined]
    assert reports.list_reports(repeats.url) == [] and not (tmp_path / "r.pdf").exists()


def test_list_and_export_bad_input(repeats: Repeats) -> None:
    r = _invoke("report", "list", "--since", "yesterday")
    assert r.exit_code == 2 and "--since" in r.stderr  # type: ignore[attr-defined]
    r = _invoke("report", "export", "999", "--html", "x.html")
    assert r.exit_code == 2 and "REPORT_ID: report 999 does not exist" in r.stderr  # type: ignore[attr-defined]
