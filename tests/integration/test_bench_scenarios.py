"""The users' two ONNX scenarios on real ONNX Runtime runs (CPU): the batch sweep for maximum throughput and
the p99 latency budget. Nothing here asserts on timings: a sweep must stop by one of its documented reasons
and record it; the budget must agree with profiles.budget on the stored samples."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from ort_graphs import build_cnn  # noqa: E402 - tests/integration is on sys.path
from test_bench_cli import FAST as CLI_FAST, enginescope  # noqa: E402
from test_ort_bench import FAST, register, run_job, runs_of  # noqa: E402

pytestmark = pytest.mark.integration


def test_cli_batch_sweep_and_budget(tmp_path: Path) -> None:
    from profiles.sweep import STOP_REASONS

    model = build_cnn(tmp_path / "cnn.onnx")
    res = enginescope(tmp_path / "home", "bench", str(model), "--batch-sweep", "--max-batch", "8", "--no-layers",
                      "--p99-budget-ms", "1000", "--json", *CLI_FAST)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    sweep = doc["batch_sweep"]["fp32"]
    stop = sweep["stop"]
    assert stop["reason"] in STOP_REASONS and stop["detail"]
    batches = [pt["batch_size"] for pt in sweep["points"]]
    assert batches == [1, 2, 4, 8][:len(batches)] and stop["batches"] == batches
    if stop["reason"] == "max_batch":
        assert batches == [1, 2, 4, 8]
    elif stop["reason"] == "plateau":
        assert sweep["points"][-1]["gain_vs_previous"] < 0.03
    assert stop["knee_batch"] in batches
    assert all(r["batch_sweep"]["stop"] == stop for r in doc["runs"])
    budget = doc["budget"]
    assert budget["p99_budget_ms"] == 1000 and len(budget["runs"]) == len(batches)
    assert all(v["samples"] >= 20 and v["p99_source"] == "raw samples" for v in budget["runs"])
    # the fastest meeting the budget is the highest items/s among those that meet it
    meeting = [v for v in budget["runs"] if v["eligible"]]
    if meeting:
        assert budget["fastest"]["items_per_s"] == max(v["items_per_s"] for v in meeting)
    table = enginescope(tmp_path / "home", "bench", "1", "--batch-sweep", "--max-batch", "2", "--no-layers",
                        "--p99-budget-ms", "0.000001", *CLI_FAST)
    assert table.returncode == 0, table.stderr
    assert "batch sweep fp32:" in table.stdout and "stopped:" in table.stdout
    assert "no run meets p99 <= 1e-06 ms" in table.stdout


def test_cli_sweep_refuses_several_batches_and_fixed_batch(tmp_path: Path) -> None:
    model = build_cnn(tmp_path / "cnn.onnx")
    res = enginescope(tmp_path / "home", "bench", str(model), "--batch-sweep", "--batch", "1", "--batch", "4")
    assert res.returncode == 2 and "--batch-sweep" in res.stderr and "one batch size" in res.stderr


class _OomAbove:
    """The real ONNX Runtime engine, except that measuring a batch >= ``limit`` raises MemoryError (as numpy /
    ORT do when an allocation fails), so the sweep's out-of-memory path runs deterministically on CPU."""

    def __init__(self, real: Any, limit: int) -> None:
        self.real, self.limit, self.name = real, limit, real.name

    def __getattr__(self, item: str) -> Any:
        return getattr(self.real, item)

    def __enter__(self) -> "_OomAbove":
        self.real.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.real.__exit__(*exc)

    def measure(self, variant: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        batch = next(iter(inputs.values())).shape[0]
        if batch >= self.limit:
            raise MemoryError(f"Unable to allocate {batch * 2**30} bytes for batch {batch}")
        return self.real.measure(variant, inputs, *args, **kwargs)


def test_sweep_out_of_memory_is_the_recorded_limit(es_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine_runner.jobs.model_bench as mb
    from engine_runner.engines import get_engine_impl

    # out of memory from batch 2: the sweep always measures batch 2 after batch 1 (no gain to judge yet)
    monkeypatch.setattr(mb, "get_engine_impl", lambda name: _OomAbove(get_engine_impl(name), 2))
    mid = register(build_cnn(tmp_path / "cnn.onnx"))
    spec = {"model_id": mid, "batch_sizes": [1], "batch_sweep": True, "max_batch": 64, "profile_layers": False,
            **FAST}
    job_id, status = run_job(es_env, spec)
    runs = runs_of(es_env, job_id)
    assert status == "succeeded", [r.error for r in runs]  # the limit run does not fail the job
    assert [r.batch_size for r in runs] == [1, 2]
    assert [r.status for r in runs] == ["succeeded", "failed"]
    assert "MemoryError" in runs[-1].error and runs[-1].config["batch_sweep"]["limit"] is True
    stop = runs[-1].config["batch_sweep"]["stop"]
    assert stop["reason"] == "out_of_memory" and stop["limit_batch"] == 2 and stop["knee_batch"] == 1
    assert "batch 2 ran out of memory" in stop["detail"]
    assert all(r.config["batch_sweep"]["stop"] == stop for r in runs)
    assert "limit" not in runs[0].config["batch_sweep"]
