"""dashboard.report_export: the HTML is self-contained (no external src/href/@import in its markup, plotly.js
inline exactly once, verdicts and comparability list before the first chart), the CSV and JSON carry the
numbers stored in the DB, and the PDF is a real PDF with one page per table/chart (kaleido driving Debian's
Chromium; skipped with that reason where no Chromium is installed)."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from tests.dashboard.conftest import make_mlp_onnx
from tests.unit.test_report_db import Repeats, seed_repeats

N_BOOT = 200


@pytest.fixture
def repeats(es_env: str, tmp_path: Path) -> Repeats:
    from db.store import add_model

    model = add_model([make_mlp_onnx(tmp_path / "mlp.onnx")], "mlp.onnx", url=es_env)
    return seed_repeats(es_env, int(model.id))


def _report(r: Repeats, **kw: object) -> int:
    from db import reports

    ids = r.run_ids
    return reports.create_report([ids["fp32"], ids["fp16"], ids["int8-qdq"]], ids["fp32"], "fp16 & int8 <vs> fp32",
                                 author="Ada", notes="weekly review\nsecond line", url=r.url, **kw)  # type: ignore[arg-type]


def _markup(doc: str) -> str:
    """The HTML with the bodies of inline <script> elements removed (plotly.js's source holds URL strings
    of map attributions it never fetches; what the browser loads is named by the markup)."""
    return re.sub(r"(<script\b[^>]*>).*?(</script>)", r"\1\2", doc, flags=re.S | re.I)


def test_html_is_self_contained_and_ordered(repeats: Repeats) -> None:
    from dashboard import report_export as rx

    d = rx.collect(_report(repeats), repeats.url, n_boot=N_BOOT)
    doc = rx.build_html(d)
    markup = _markup(doc)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", markup, re.I), \
        re.findall(r"""(?:src|href)\s*=\s*\S{0,80}""", markup)
    assert "@import" not in doc and "url(http" not in doc.replace(" ", "")
    assert not re.search(r"<script[^>]+src=", doc, re.I) and "<link" not in doc.lower()
    # plotly.js inline exactly once (its banner comment), three plotly charts drawn with it
    assert len(re.findall(r"plotly\.js v\d+\.\d+\.\d+", doc)) == 1
    assert doc.count("Plotly.newPlot(") == 3
    # title escaped; header, then verdicts, comparability, the charts
    assert "fp16 &amp; int8 &lt;vs&gt; fp32" in doc and "<vs>" not in markup
    pos = [doc.index(x) for x in ("Author: Ada", "weekly review", "id='verdicts'", "id='comparability'",
                                  'id="chart-latency_p50"', 'id="chart-latency_distribution"', 'id="chart-throughput"',
                                  "id='table-accuracy'")]
    assert pos == sorted(pos), pos
    script = doc.index("<script")
    assert doc.index("id='comparability'") < script
    # every candidate and its word are in the verdict table, the precision difference in the comparability list
    table = doc[doc.index("id='verdicts'"):doc.index("id='comparability'")]
    assert table.count("<td>faster</td>") == 2 and "run 2: onnxruntime / fp16 b1" in table
    comp = doc[doc.index("id='comparability'"):doc.index("id='charts'")]
    assert comp.count("<td>precision</td>") == 2 and "different precision" in comp and "BLOCKING" not in comp


def test_html_marks_blocking_difference_and_invalid(es_env: str, tmp_path: Path) -> None:
    from dashboard import report_export as rx
    from db import reports
    from db.models import Run
    from db.session import session_scope
    from db.store import add_model

    model = add_model([make_mlp_onnx(tmp_path / "mlp.onnx")], "mlp.onnx", url=es_env)
    r = seed_repeats(es_env, int(model.id), invalid_int8=True)
    with session_scope(es_env) as s:  # the fp16 run "ran" on another CPU
        run = s.get(Run, r.run_ids["fp16"])
        assert run is not None
        run.environment = {**run.environment, "cpu": {"model": "Other CPU", "cores_logical": 2}}
    rid = reports.create_report(list(r.run_ids.values()), r.run_ids["fp32"], "t", url=es_env)
    d = rx.collect(rid, es_env, n_boot=N_BOOT)
    doc = rx.build_html(d)
    comp = doc[doc.index("id='comparability'"):doc.index("id='charts'")]
    assert "<td class='blocking'>BLOCKING</td>" in comp and "Other CPU" in comp
    words = {row["run"]: row["verdict"] for row in d.verdict_rows}
    assert words == {r.run_ids["fp16"]: "not comparable",
                     r.run_ids["int8-qdq"]: "faster, but numerically invalid (not a win)"}
    assert "NO (invalid)" in doc


def test_csv_and_json_numbers_equal_db(repeats: Repeats) -> None:
    from dashboard import report_export as rx
    from db import reports
    from db.models import LatencySample
    from db.session import session_scope
    from sqlalchemy import select

    rid = _report(repeats)
    d = rx.collect(rid, repeats.url, n_boot=N_BOOT)
    rows = list(csv.DictReader(io.StringIO(rx.build_csv(d))))
    doc = json.loads(rx.build_json(d))
    rep = reports.get_report(rid, repeats.url)
    assert rep is not None
    verdicts = {v.candidate: v for v in reports.report_verdicts(rep, repeats.url, n_boot=N_BOOT)}
    assert [int(r["run"]) for r in rows] == rep["run_ids"] == doc["report"]["run_ids"]
    with session_scope(repeats.url) as s:
        for row, jrun in zip(rows, doc["runs"]):
            rid_ = int(row["run"])
            ns = np.array(s.execute(select(LatencySample.latency_ns).where(LatencySample.run_id == rid_)).scalars().all())
            p50 = float(np.percentile(ns, 50)) / 1e6
            assert int(row["n"]) == jrun["n"] == ns.size == 450
            assert float(row["p50_ms"]) == pytest.approx(p50, rel=1e-9) and jrun["p50_ms"] == pytest.approx(p50, rel=1e-9)
            if rid_ == rep["baseline_run_id"]:
                assert row["role"] == "baseline" and row["verdict_ratio"] == "" and jrun["role"] == "baseline"
                continue
            v = verdicts[rid_]
            assert v.ratio is not None and v.ci95 is not None
            assert float(row["verdict_ratio"]) == pytest.approx(v.ratio, rel=1e-12)
            assert float(row["verdict_ci95_low"]) == pytest.approx(v.ci95[0], rel=1e-12)
            assert float(row["verdict_ci95_high"]) == pytest.approx(v.ci95[1], rel=1e-12)
            assert row["verdict_verdict"] == v.verdict == "faster" and row["verdict_repeats_candidate"] == "3"
    jv = {x["candidate"]: x for x in doc["verdicts"]}
    for cand, v in verdicts.items():
        assert jv[cand]["ratio"] == v.ratio and jv[cand]["ci95"] == list(v.ci95 or ())
        assert jv[cand]["word"] == "faster" and jv[cand]["repeats"] == [3, 3]
    assert {(c["run"], c["field"]) for c in doc["comparability"]} == {(c, "precision") for c in verdicts}
    assert {a["run_id"] for a in doc["accuracy"]} == set(verdicts)
    assert doc["error"] is None and doc["report"]["author"] == "Ada"


def test_pdf_pages(repeats: Repeats) -> None:
    from pypdf import PdfReader

    from dashboard import report_export as rx

    if rx.chromium_path() is None:
        pytest.skip("no Chromium for kaleido (apt-get install -y chromium)")
    d = rx.collect(_report(repeats), repeats.url, n_boot=N_BOOT)
    pdf = rx.build_pdf(d)
    assert pdf.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(pdf))
    # verdicts, comparability, 3 charts, the accuracy table, the notes
    assert len(reader.pages) == 7 == len(rx.pdf_pages(d))
    assert [o.title for o in reader.outline if not isinstance(o, list)][:2] == ["fp16 & int8 <vs> fp32: verdicts", "Comparability"]
    assert reader.metadata is not None and reader.metadata.title == "fp16 & int8 <vs> fp32"
    text = reader.pages[0].extract_text()
    assert "faster" in text


def test_pdf_without_chromium_names_the_fix(repeats: Repeats, monkeypatch: pytest.MonkeyPatch) -> None:
    from dashboard import report_export as rx
    from profiles.errors import EngineError

    monkeypatch.setattr(rx, "chromium_path", lambda: None)
    d = rx.collect(_report(repeats, charts=[]), repeats.url, n_boot=N_BOOT)
    with pytest.raises(EngineError, match="apt-get install -y chromium"):
        rx.build_pdf(d)
    assert rx.build_html(d).count("Plotly.newPlot(") == 0 and len(rx.pdf_pages(d)) == 3


def test_opt_ins_are_shown_and_listed_as_differences(repeats: Repeats) -> None:
    """A run that let code from the model's files run (allow_pickle on a PyTorch run here) says so in the
    report's header and in the comparability list; the others do not."""
    from dashboard import report_export as rx
    from db.models import Run
    from db.session import session_scope

    with session_scope(repeats.url) as s:
        run = s.get(Run, repeats.run_ids["fp16"])
        assert run is not None
        run.config = {**run.config, "torch_options": {"allow_pickle": True}}
    d = rx.collect(_report(repeats), repeats.url, n_boot=N_BOOT)
    assert d.opt_ins == {repeats.run_ids["fp16"]: ["allow_pickle"]}
    assert any("ran with allow_pickle" in line for line in rx.header_lines(d))
    diff = [x for x in d.differences if x["field"] == "opt_ins"]
    assert [(x["run"], x["baseline_value"], x["candidate_value"]) for x in diff] == [
        (repeats.run_ids["fp16"], None, "allow_pickle")]
    assert "ran with allow_pickle" in rx.build_html(d)
