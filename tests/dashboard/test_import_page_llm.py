"""The import page with LLM benchmark results: a real vLLM bench JSON Lines file (../shared) dropped on the page
becomes LLM serving runs with the file's numbers; dropping it again imports nothing new; a broken result file is
one error naming the file and nothing is stored."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.dashboard.conftest import page

VLLM = "fixtures/llm_bench/vllm_benchmark_serving_results_llmd.jsonl"


def _frame(at, column: str):  # type: ignore[no-untyped-def]
    return next(e.value for e in at.dataframe if column in e.value.columns)


def _drop(name: str, data: bytes):  # type: ignore[no-untyped-def]
    at = page("tensorrt_import").run()
    assert not at.exception
    at.file_uploader(key="trtimport_files").set_value([(name, data, "application/octet-stream")]).run()
    at.button(key="trtimport_go").click().run()
    assert not at.exception, at.exception
    return at


def test_import_vllm_results_on_page(es_env: str, shared: Path) -> None:
    from db.models import LoadPoint, Run
    from db.session import session_scope

    data = (shared / VLLM).read_bytes()
    at = _drop("results.jsonl", data)
    assert at.title[0].value == "Import results"
    assert not at.error, [e.value for e in at.error]
    table = _frame(at, "TTFT p50 ms")
    assert len(table) == 9 and set(table["tool"]) == {"vllm-bench"}
    first = table.iloc[0]
    assert first["level"] == "rate=10.0"
    assert first["TTFT p50 ms"] == pytest.approx(52.868896000063614)
    assert first["TPOT p50 ms"] == pytest.approx(13.686303201518745)
    assert first["out tok/s"] == pytest.approx(2258.212337970085)
    assert not first["already imported"]
    assert any("LLM serving" in c.value for c in at.caption)  # the link (a hint when the page runs alone)
    with session_scope(es_env) as s:
        assert s.execute(select(func.count()).select_from(Run).where(Run.source == "import:vllm-bench")).scalar_one() == 3
        assert s.execute(select(func.count()).select_from(LoadPoint)).scalar_one() == 9

    again = _drop("results.jsonl", data)
    assert all(_frame(again, "already imported")["already imported"])
    with session_scope(es_env) as s:
        assert s.execute(select(func.count()).select_from(Run)).scalar_one() == 3


def test_bad_llm_result_on_page(es_env: str) -> None:
    from db.models import Run
    from db.session import session_scope

    at = _drop("bench.json", b'{"completed": 10, "duration": 2.0, "request_throughput": 5, "mean_ttft_ms": "fast"}')
    errors = " ".join(e.value for e in at.error)
    assert "bench.json" in errors and "mean_ttft_ms" in errors
    with session_scope(es_env) as s:
        assert s.execute(select(func.count()).select_from(Run)).scalar_one() == 0
