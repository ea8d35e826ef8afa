"""The "Repeats" fields: New benchmark's ``newbench_repeats`` (``BenchSpec.repeats``) and the LLM serving form's
``llm_repeats`` (``ServeBenchSpec.repeats``) reach the queued spec; a value outside 1..50 is refused with a form
error naming the field."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from tests.dashboard.conftest import Seeded, page


def _queued(url: str) -> list:  # type: ignore[type-arg]
    from db.models import Job
    from db.session import session_scope

    with session_scope(url) as s:
        return [j.spec for j in s.execute(select(Job).where(Job.status == "queued").order_by(Job.id)).scalars()]


def test_model_benchmark_repeats_reach_the_spec(seeded: Seeded) -> None:
    at = page("new_benchmark").run()
    at.number_input(key="newbench_repeats").set_value(51).run()
    at.button(key="newbench_submit").click().run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert any(e.startswith("Repeats:") and "50" in e for e in errors), errors
    assert _queued(seeded.url) == []
    at.number_input(key="newbench_repeats").set_value(3).run()
    at.button(key="newbench_submit").click().run()
    assert any("Queued job" in s.value for s in at.success), [e.value for e in at.error]
    (spec,) = _queued(seeded.url)
    assert spec["repeats"] == 3


def test_llm_form_repeats_reach_the_spec(seeded: Seeded, tmp_path: Path) -> None:
    from tests.llm_fixtures import tiny_tokenizer

    tok = tiny_tokenizer(tmp_path)
    at = page("llm").run()
    at.radio(key="llm_target").set_value("Existing endpoint").run()
    at.text_input(key="llm_endpoint").set_value("http://127.0.0.1:9")
    at.text_input(key="llm_model_served").set_value("mock-llm")
    at.text_input(key="llm_tokenizer").set_value(str(tok))
    at.number_input(key="llm_repeats").set_value(51)
    next(b for b in at.button if b.label == "Start benchmark").click().run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert any("Repeats:" in e and "50" in e for e in errors), errors
    assert _queued(seeded.url) == []
    at.number_input(key="llm_repeats").set_value(3)
    next(b for b in at.button if b.label == "Start benchmark").click().run()
    assert not at.exception, at.exception
    assert any("Queued job" in s.value for s in at.success), [e.value for e in at.error]
    (spec,) = _queued(seeded.url)
    assert spec["repeats"] == 3 and spec["engine"] == "endpoint"


def test_llm_page_draws_one_point_per_level_of_a_repeated_run(seeded: Seeded, tmp_path: Path) -> None:
    """A run of 2 levels x 3 repeats: the Load points table and the throughput curve have one entry per level
    (the repeats pooled: 3 x 6 requests each), not one per load point."""
    import json

    from tests.llm_fixtures import mock_server, run_llm_job, tiny_tokenizer

    tok = tiny_tokenizer(tmp_path)
    spec = {"engine": "endpoint", "model": "mock-llm", "tokenizer": str(tok), "concurrency": [1, 2],
            "input_len": 16, "output_len": 4, "num_prompts": 6, "warmup": 0, "repeats": 3}
    with mock_server(ttft_ms=5, itl_ms=1, model="mock-llm") as url:
        _, status = run_llm_job(seeded.url, {**spec, "endpoint": url})
    assert status == "succeeded"
    at = page("llm").run()
    assert not at.exception, at.exception
    points = next(t.value for t in at.dataframe if "run" in t.value.columns and "output tok/s" in t.value.columns)
    assert list(points["repeats"]) == [3, 3] and list(points["completed"]) == [18, 18]
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    xs = list(fig["data"][0]["x"])  # the throughput curve of the one run
    assert xs == ["1", "2"], xs  # one point per level
