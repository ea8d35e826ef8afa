"""The database EngineScope wrote on the H200 (vLLM 0.25.1, 8B-shaped dummy-weight Llama, concurrency
1/16/64/256 at 128 in / 128 out, vLLM's own client as peer; benchmarks/RESULTS.md) opens here, on a
machine without a GPU, and the LLM page draws the GPU run's curves from it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.dashboard.conftest import page

H200_DB = Path(__file__).resolve().parents[1] / "data" / "h200_vllm_sweep.db"


def test_h200_database_opens_in_the_llm_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from db.session import get_engine, migrate

    db = tmp_path / "enginescope.db"
    shutil.copy(H200_DB, db)  # the page may migrate it; never touch the stored copy
    url = f"sqlite:///{db}"
    monkeypatch.setenv("ENGINESCOPE_HOME", str(tmp_path))
    monkeypatch.setenv("ENGINESCOPE_DB_URL", url)
    get_engine.cache_clear()
    migrate(url)  # already at head: a no-op that proves the schema matches
    at = page("llm").run()
    assert not at.exception, at.exception
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(figs) == 5
    tput = figs[0]
    assert list(tput["data"][0]["x"]) == ["1", "16", "64", "256"]
    # output tokens/s as stored from the H200 run (sweep.json): 212, 3043, 8661, 10934
    assert [round(y) for y in tput["data"][0]["y"]] == [212, 3043, 8661, 10934]
    kv_fig = figs[4]
    assert "KV-cache usage" in kv_fig["layout"]["title"]["text"] and kv_fig["data"]
    tables = [e.value for e in at.dataframe]
    kv = next(t for t in tables if "quantity" in t.columns)
    text = " ".join(str(v) for v in kv["value"])
    assert "937568" in text.replace(",", "") or "937,568" in text
    get_engine.cache_clear()


def test_page_opens_on_the_newest_run_with_results_not_a_newer_failed_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy import select

    from db.models import Run
    from db.session import get_engine, session_scope

    db = tmp_path / "enginescope.db"
    shutil.copy(H200_DB, db)
    url = f"sqlite:///{db}"
    monkeypatch.setenv("ENGINESCOPE_HOME", str(tmp_path))
    monkeypatch.setenv("ENGINESCOPE_DB_URL", url)
    get_engine.cache_clear()
    with session_scope(url) as s:
        newest = s.execute(select(Run).order_by(Run.id.desc())).scalars().first()
        s.add(Run(job_id=newest.job_id, engine=newest.engine, config={"spec": {"model": "broken", "concurrency": [1]}},
                  status="failed", error="EngineError: vLLM did not start"))
    at = page("llm").run()
    assert not at.exception, at.exception
    chosen = at.multiselect(key="llm_runs")
    assert newest.id in chosen.value and len(chosen.value) == 1
    assert len(chosen.options) >= 2  # the failed run can still be picked
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert [round(y) for y in figs[0]["data"][0]["y"]] == [212, 3043, 8661, 10934]
