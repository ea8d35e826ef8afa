"""A client tokenizer that does not match the served model: client and server token counts compared per
level (profiles.llm_metrics.token_check), a warning event stored with the numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from profiles.llm_metrics import RequestRecord, token_check
from tests.llm_fixtures import mock_server, run_llm_job, tiny_tokenizer


def _rec(i: int, client_in: int, server_in: int, client_out: int = 4, server_out: int = 4, **kw: object) -> RequestRecord:
    return RequestRecord(seq=i, input_tokens=server_in, client_input_tokens=client_in,
                         client_output_tokens=client_out, output_tokens=server_out, **kw)  # type: ignore[arg-type]


def test_matching_counts_are_not_suspect() -> None:
    recs = [_rec(i, 16, 16) for i in range(8)] + [_rec(8, 16, 16, client_out=5)]  # one re-tokenization off by one
    chk = token_check(recs)
    assert (chk["prompt_compared"], chk["prompt_mismatches"], chk["output_mismatches"]) == (9, 0, 1)
    assert chk["suspect"] is False and chk["message"] is None and chk["prompt_ratio_median"] == 1.0


def test_a_foreign_tokenizer_is_suspect() -> None:
    recs = [_rec(i, 16, 23) for i in range(6)] + [_rec(6, 16, 16)]
    recs.append(_rec(7, 16, 99, warmup=True))  # warm-up requests are left out
    recs.append(_rec(8, 16, 99, error_reason="timeout"))  # and failed ones
    chk = token_check(recs)
    assert (chk["requests"], chk["prompt_compared"], chk["prompt_mismatches"]) == (7, 7, 6)
    assert chk["suspect"] is True and chk["prompt_ratio_median"] == pytest.approx(23 / 16)
    assert "differ for 6 of 7 prompts (median server/client 1.44)" in chk["message"] and "--tokenizer" in chk["message"]


def test_the_job_warns_and_stores_the_comparison(es_env: str, tmp_path: Path) -> None:
    """The mock server counts prompt tokens as words, not in the tiny tokenizer's tokens: exactly the
    situation of a --tokenizer that is not the served model's."""
    from db.models import JobEvent
    from db.session import session_scope

    tok = tiny_tokenizer(tmp_path)
    spec = {"engine": "endpoint", "model": "mock-llm", "tokenizer": str(tok), "concurrency": [2],
            "input_len": 16, "output_len": 4, "num_prompts": 6, "warmup": 1}
    with mock_server(ttft_ms=2, itl_ms=1, model="mock-llm") as url:
        job_id, status = run_llm_job(es_env, {**spec, "endpoint": url})
    assert status == "succeeded"
    with session_scope(es_env) as s:
        ev = [e for e in s.execute(select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.kind == "warning")).scalars()
              if "tokenizer does not seem to match" in e.message]
    assert len(ev) == 1
    chk = ev[0].data["token_check"]
    assert chk["requests"] == 6 and chk["prompt_compared"] == 6 and chk["prompt_mismatches"] > 3
