"""Load, small (issue 12): browsers on the dashboard while two workers, one device each, drain a queue.

The same code as ``benchmarks/load_test.py`` (which measures the figures and writes benchmarks/RESULTS.md)
with 2 browser contexts and 10 queued jobs (tiny ONNX model_bench sweeps and clock_checks) over the
lanes ``cpu:0`` / ``cpu:1``. It asserts outcomes only, never a duration: every job ``succeeded``, claimed
exactly once by the worker that owns its device, its rows complete; no two jobs of one device overlapped;
every page load rendered its title with no exception; ``PRAGMA integrity_check`` ok. Every wait has a
generous deadline (a failure, not a measurement).

Also: ``claim_next(only_devices=...)`` (``enginescope worker --device``) never hands out another device's job.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("ENGINESCOPE_CHROMIUM", "/usr/bin/chromium")


def _load_test_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("enginescope_load_test", REPO / "benchmarks" / "load_test.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses need the module registered
    spec.loader.exec_module(mod)
    return mod


def test_claim_next_only_devices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from db import jobs as q
    from db.session import get_engine, migrate

    url = f"sqlite:///{tmp_path / 'es.db'}"
    monkeypatch.setenv("ENGINESCOPE_HOME", str(tmp_path))
    get_engine.cache_clear()
    migrate(url)
    a = q.submit_job("clock_check", {}, device="cpu:0", url=url)
    b = q.submit_job("clock_check", {}, device="cpu:1", url=url)
    c = q.submit_job("clock_check", {}, device="cpu:0", url=url)
    got = q.claim_next("w1", only_devices=["cpu:1"], url=url)
    assert got is not None and got.id == b
    assert q.claim_next("w1", {"cpu:1"}, only_devices=["cpu:1"], url=url) is None  # nothing else on cpu:1
    got = q.claim_next("w0", only_devices=["cpu:0"], url=url)
    assert got is not None and got.id == a
    assert q.claim_next("w0", only_devices=["cpu:0"], url=url) is None  # cpu:0 busy: c waits
    waiting = q.get_job(c, url=url)
    assert waiting is not None and waiting.status == "queued"
    get_engine.cache_clear()


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_two_workers_and_two_browsers_lose_no_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install -y chromium, or set ENGINESCOPE_CHROMIUM)")
    pytest.importorskip("playwright")
    from db.session import get_engine

    lt = _load_test_module()
    for k in ("ENGINESCOPE_HOME", "ENGINESCOPE_DB_URL"):  # run_load sets them for this process
        monkeypatch.setenv(k, os.environ.get(k, ""))
    cfg = lt.LoadConfig(jobs=10, contexts=2, sweep_batches=[1, 2], bench_iterations=10, clock_duration_s=0.3,
                        clock_samples=2000, job_timeout_s=480, home=tmp_path / "es_home")
    try:
        res = lt.run_load(cfg)
    finally:
        get_engine.cache_clear()
    assert res["problems"] == [], res["problems"]
    assert res["statuses"] == {"succeeded": 10}
    assert res["lost"] == [] and res["run_twice"] == [] and res["overlaps"] == []
    assert res["integrity"] == "ok" and res["journal_mode"] == "wal"
    assert res["page_exceptions"] == [], res["page_exceptions"]
    # every context finished a lap of the three pages begun after the workers started
    assert res["page_loads_after_workers_started"] >= cfg.contexts * 3
    assert {p for p, v in res["server_per_page"].items() if v["n"]} <= {"compare", "layers", "llm"}
