"""db.reports: saving a report (validation naming the flag), reading it back, search by model, engine,
precision, date range and author, and the verdict rows of an fp32 baseline vs fp16/int8 candidates measured
3 repeats each (runs made here directly in a temp DB, samples with repeat 0, 1, 2).

``seed_repeats`` is imported by the other report tests (dashboard page, exports, CLI, browser)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.dashboard.conftest import make_mlp_onnx

ENV = {"host": "bench-host", "cpu": {"model": "Test CPU @ 2.0GHz", "cores_logical": 2},
       "libraries": {"onnxruntime": "1.32.0", "numpy": "2.3.0"}}


@dataclass
class Repeats:
    url: str
    model_id: int
    job_id: int
    run_ids: dict[str, int]  # precision -> run id


def seed_repeats(url: str, model_id: int, *, invalid_int8: bool = False, n: int = 150,
                 medians_ns: dict[str, int] | None = None) -> Repeats:
    """A succeeded model_bench job on ``model_id`` with fp32 / fp16 / int8-qdq ONNX Runtime runs at batch 1,
    each measured in 3 repeats of ``n`` samples (``latency_samples.repeat`` 0, 1, 2; each repeat with its own
    small offset, as run-to-run drift), summaries from profiles.stats, throughput and accuracy vs fp32.
    The int8 run is numerically invalid (all-zero outputs) when ``invalid_int8``."""
    from db.models import AccuracyResult, Job, LatencySample, Run, RunMetric, Summary, utcnow
    from db.session import session_scope
    from profiles.stats import summarize_ns

    rng = np.random.default_rng(7)
    medians = medians_ns or {"fp32": 200_000, "fp16": 150_000, "int8-qdq": 110_000}
    ids: dict[str, int] = {}
    with session_scope(url) as s:
        job = Job(kind="model_bench", spec={"model_id": model_id, "engine": "onnxruntime", "precisions": list(medians),
                                           "batch_sizes": [1], "repeats": 3},
                  status="succeeded", progress=1.0, progress_message="done", device="cpu", model_id=model_id,
                  started_at=utcnow(), finished_at=utcnow(), origin="cli")
        s.add(job)
        s.flush()
        for precision, med in medians.items():
            valid = not (invalid_int8 and precision == "int8-qdq")
            run = Run(job_id=job.id, model_id=model_id, engine="onnxruntime", engine_version="1.32.0",
                      precision=precision, batch_size=1, shapes={"x": [1, 16]}, status="succeeded",
                      config={"device": "cpu", "providers": ["CPUExecutionProvider"], "repeats": 3},
                      environment=ENV, timing_window="session.run on host tensors (CPU EP, no copies)",
                      numerically_valid=valid, finished_at=utcnow())
            s.add(run)
            s.flush()
            allv = []
            seq = 0
            for rep in range(3):
                drift = 1.0 + 0.01 * (rep - 1)
                vals = (med * drift + rng.normal(0, med * 0.03, n)).astype(np.int64)
                for v in vals:
                    s.add(LatencySample(run_id=run.id, seq=seq, latency_ns=int(v), repeat=rep))
                    seq += 1
                allv.append(vals)
            samples = np.concatenate(allv)
            s.add(Summary(run_id=run.id, metric="latency_ms", **summarize_ns(samples, "ms").as_dict()))
            thr = 1e9 / float(np.mean(samples))
            s.add(RunMetric(run_id=run.id, name="throughput_per_s", value=thr, unit="1/s"))
            s.add(RunMetric(run_id=run.id, name="items_per_s", value=thr, unit="items/s"))
            ids[precision] = run.id
        ref = ids["fp32"]
        for precision, rid in ids.items():
            if rid == ref:
                continue
            bad = invalid_int8 and precision == "int8-qdq"
            s.add(AccuracyResult(run_id=rid, reference_run_id=ref, output_name="y",
                                 max_abs_err=3.1 if bad else (2e-3 if precision == "fp16" else 4e-2),
                                 max_rel_err=1.0 if bad else 1e-3, cosine=0.0 if bad else 0.99991,
                                 all_zero=bad, valid=not bad))
        job_id = job.id
    return Repeats(url=url, model_id=model_id, job_id=job_id, run_ids=ids)


@pytest.fixture
def repeats(es_env: str, tmp_path: Path) -> Repeats:
    from db.store import add_model

    model = add_model([make_mlp_onnx(tmp_path / "mlp.onnx")], "mlp.onnx", url=es_env)
    return seed_repeats(es_env, int(model.id))


def test_create_and_read_back(repeats: Repeats) -> None:
    from db import reports

    ids = repeats.run_ids
    rid = reports.create_report([ids["fp32"], ids["fp16"], ids["int8-qdq"], ids["fp16"]], ids["fp32"],
                                "  fp16/int8 on CPU  ", author="Ada", notes="for the weekly review", url=repeats.url)
    rep = reports.get_report(rid, repeats.url)
    assert rep is not None
    assert rep["title"] == "fp16/int8 on CPU"
    assert rep["run_ids"] == [ids["fp32"], ids["fp16"], ids["int8-qdq"]]  # duplicates dropped, order kept
    assert rep["baseline_run_id"] == ids["fp32"] and rep["metric"] == "latency_p50"
    assert rep["charts"] == reports.charts_for("model")
    assert rep["options"] == {"allow_different": False, "kind": "model"}
    assert rep["models"] == ["mlp.onnx"] and rep["engines"] == ["onnxruntime"]
    assert rep["precisions"] == ["fp16", "fp32", "int8-qdq"] and rep["missing_runs"] == []
    assert reports.repeat_counts(rep["run_ids"], repeats.url) == {i: 3 for i in rep["run_ids"]}
    assert reports.get_report(rid + 100, repeats.url) is None


@pytest.mark.parametrize(("kwargs", "flag"), [
    ({"run_ids": [], "baseline_id": 1}, "--run"),
    ({"run_ids": ["fp32", 9999], "baseline_id": "fp32"}, "--run: run 9999 does not exist"),
    ({"run_ids": ["fp32", "fp16"], "baseline_id": "int8-qdq"}, "--baseline"),
    ({"run_ids": ["fp32", "fp16"], "baseline_id": "fp32", "title": " "}, "--title"),
    ({"run_ids": ["fp32", "fp16"], "baseline_id": "fp32", "metric": "ttft_p99"}, "--metric ttft_p99 is for LLM"),
    ({"run_ids": ["fp32", "fp16"], "baseline_id": "fp32", "metric": "nope"}, "--metric 'nope'"),
    ({"run_ids": ["fp32", "fp16"], "baseline_id": "fp32", "charts": ["ttft_vs_load"]}, "--chart ttft_vs_load"),
    ({"run_ids": ["fp32", "fp16"], "baseline_id": "fp32", "charts": ["pie"]}, "--chart 'pie'"),
    ({"run_ids": ["fp32", "fp16"], "baseline_id": "fp32", "author": "x" * 300}, "--author"),
])
def test_create_refuses_bad_input(repeats: Repeats, kwargs: dict, flag: str) -> None:
    from db import reports
    from profiles.errors import InputError

    def rid(x: object) -> object:
        return repeats.run_ids.get(x, x) if isinstance(x, str) else x

    kw = {"title": "t", **kwargs}
    kw["run_ids"] = [rid(x) for x in kw["run_ids"]]
    kw["baseline_id"] = rid(kw["baseline_id"])
    with pytest.raises(InputError, match=flag.replace("(", r"\(")):
        reports.create_report(url=repeats.url, **kw)
    assert reports.list_reports(repeats.url) == []


def test_search_filters(repeats: Repeats, tmp_path: Path) -> None:
    from db import reports
    from db.models import Report
    from db.session import session_scope
    from db.store import add_model

    ids = repeats.run_ids
    other = add_model([make_mlp_onnx(tmp_path / "other.onnx", hidden=8)], "resnet-ish.onnx", url=repeats.url)
    more = seed_repeats(repeats.url, int(other.id), medians_ns={"fp32": 100_000, "fp16": 90_000})
    a = reports.create_report([ids["fp32"], ids["fp16"], ids["int8-qdq"]], ids["fp32"], "MLP int8", author="Ada Lovelace",
                              url=repeats.url)
    b = reports.create_report([more.run_ids["fp32"], more.run_ids["fp16"]], more.run_ids["fp32"], "ResNet fp16",
                              author="Grace", notes="int8 next week", url=repeats.url)
    with session_scope(repeats.url) as s:  # back-date report a by ten days
        rep_a = s.get(Report, a)
        assert rep_a is not None
        rep_a.created_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10)

    def found(**kw: Any) -> list[int]:
        return [r["id"] for r in reports.list_reports(repeats.url, **kw)]

    assert found() == [b, a]  # newest first
    assert found(model="MLP") == [a] and found(model="resnet") == [b] and found(model="vgg") == []
    assert found(engine="ONNXRuntime") == [b, a] and found(engine="tensorrt") == []
    assert found(precision="int8-qdq") == [a] and found(precision="fp16") == [b, a]
    assert found(author="ada") == [a] and found(author="grace") == [b] and found(author="linus") == []
    today = dt.datetime.now(dt.timezone.utc).date()
    assert found(since=today) == [b]
    assert found(until=today - dt.timedelta(days=5)) == [a]
    assert found(since=today - dt.timedelta(days=10), until=today - dt.timedelta(days=10)) == [a]
    assert found(text="int8") == [b, a]  # title of a, notes of b
    assert found(model="mlp", precision="fp16", author="ada") == [a]
    assert reports.delete_report(a, repeats.url) and not reports.delete_report(a, repeats.url)
    assert found() == [b]


def test_verdict_rows_fp16_int8_vs_fp32(repeats: Repeats) -> None:
    from db import reports

    ids = repeats.run_ids
    rid = reports.create_report([ids["fp32"], ids["fp16"], ids["int8-qdq"]], ids["fp32"], "t", url=repeats.url)
    rep = reports.get_report(rid, repeats.url)
    assert rep is not None
    verdicts = reports.report_verdicts(rep, repeats.url, n_boot=300)
    rows = [reports.verdict_row(v) for v in verdicts]
    assert [r["run"] for r in rows] == [ids["fp16"], ids["int8-qdq"]]
    for r, expect in zip(rows, (0.75, 0.55)):
        assert r["verdict"] == "faster" and r["win"] is True
        assert r["ratio"] == pytest.approx(expect, rel=0.05)
        assert r["ci95_low"] < r["ratio"] < r["ci95_high"] < 1.0
        assert (r["repeats_baseline"], r["repeats_candidate"]) == (3, 3) and r["within_run_only"] is False
        assert r["accuracy_valid"] is True and r["cosine_min"] == pytest.approx(0.99991)
        assert r["blocking_differences"] == 0
    diffs = reports.difference_rows(verdicts)
    assert {(d["run"], d["field"]) for d in diffs} == {(ids["fp16"], "precision"), (ids["int8-qdq"], "precision")}
    assert all(not d["blocking"] and d["note"] == "different precision" for d in diffs)


def test_invalid_candidate_is_never_a_win(es_env: str, tmp_path: Path) -> None:
    from db import reports
    from db.store import add_model

    model = add_model([make_mlp_onnx(tmp_path / "mlp.onnx")], "mlp.onnx", url=es_env)
    seeded = seed_repeats(es_env, int(model.id), invalid_int8=True)
    ids = seeded.run_ids
    rid = reports.create_report(list(ids.values()), ids["fp32"], "t", url=es_env)
    rep = reports.get_report(rid, es_env)
    assert rep is not None
    row = [reports.verdict_row(v) for v in reports.report_verdicts(rep, es_env, n_boot=200)][1]
    assert row["run"] == ids["int8-qdq"] and row["accuracy_valid"] is False
    assert row["win"] is False and row["verdict"] == "faster, but numerically invalid (not a win)"


def test_deleted_runs_and_baseline(repeats: Repeats) -> None:
    from db import reports
    from db.models import Run
    from db.session import session_scope

    ids = repeats.run_ids
    rid = reports.create_report([ids["fp32"], ids["fp16"], ids["int8-qdq"]], ids["fp32"], "t", url=repeats.url)
    with session_scope(repeats.url) as s:
        s.delete(s.get(Run, ids["int8-qdq"]))
    rep = reports.get_report(rid, repeats.url)
    assert rep is not None and rep["missing_runs"] == [ids["int8-qdq"]]
    assert [v.candidate for v in reports.report_verdicts(rep, repeats.url, n_boot=100)] == [ids["fp16"]]
    with session_scope(repeats.url) as s:
        s.delete(s.get(Run, ids["fp32"]))
    rep = reports.get_report(rid, repeats.url)
    assert rep is not None and reports.report_verdicts(rep, repeats.url) == []
