"""profiles.sweep: the batch sweep's stopping rule and knee on scripted throughputs."""

from __future__ import annotations

import pytest

from profiles.errors import InputError
from profiles.sweep import MIN_GAIN, STOP_REASONS, SweepPoint, decide, is_out_of_memory, knee_batch, sweep_batches


def run_script(throughputs: dict[int, float | str], start: int = 1, max_batch: int = 4096):
    """Drive decide() like the job does: measure (look up the script), decide, repeat."""
    points: list[SweepPoint] = []
    batch: int | None = start
    while batch is not None:
        v = throughputs[batch]
        points.append(SweepPoint(batch, None, v) if isinstance(v, str) else SweepPoint(batch, float(v)))
        d = decide(points, max_batch)
        batch = d.next_batch
    return points, d


def test_plateau_stops_below_three_percent_and_knee_is_before_it() -> None:
    points, d = run_script({1: 100, 2: 190, 4: 300, 8: 305, 16: 999})
    assert [p.batch for p in points] == [1, 2, 4, 8]  # 16 never measured
    assert d.reason == "plateau" and d.next_batch is None
    assert d.gain == pytest.approx(305 / 300 - 1)
    assert d.knee_batch == 4  # 300 >= 0.97 * 305
    assert "batch 8" in d.detail and "batch 4" in d.detail


def test_exactly_three_percent_goes_on() -> None:
    points, d = run_script({1: 100, 2: 103, 4: 103.5})
    assert [p.batch for p in points] == [1, 2, 4] and d.reason == "plateau"
    assert decide([SweepPoint(1, 100.0), SweepPoint(2, 100 * (1 + MIN_GAIN))]).next_batch == 4


def test_a_fall_is_a_plateau() -> None:
    _, d = run_script({1: 100, 2: 80})
    assert d.reason == "plateau" and d.gain == pytest.approx(-0.2) and d.knee_batch == 1


def test_out_of_memory_is_the_limit_and_keeps_earlier_points() -> None:
    msg = ("RuntimeException: [ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while "
           "running MatMul node. Name:'fc' Status Message: Failed to allocate memory for requested buffer of size 4294967296")
    points, d = run_script({1: 100, 2: 200, 4: 400, 8: msg})
    assert d.reason == "out_of_memory" and d.limit_batch == 8 and d.knee_batch == 4
    assert "batch 8 ran out of memory" in d.detail and "Failed to allocate memory" in d.detail
    assert [p.batch for p in points] == [1, 2, 4, 8]


def test_other_failure_stops_with_failed() -> None:
    _, d = run_script({1: 100, 2: "EngineError: the engine returned no latency samples"})
    assert d.reason == "failed" and d.limit_batch is None and d.knee_batch == 1
    _, d = run_script({1: "EngineError: session creation failed"})
    assert d.reason == "failed" and d.knee_batch is None


def test_max_batch_bounds_the_sweep() -> None:
    points, d = run_script({b: 100.0 * b for b in (4, 8, 16, 32)}, start=4, max_batch=40)
    assert [p.batch for p in points] == [4, 8, 16, 32] and d.reason == "max_batch" and d.knee_batch == 32
    assert "64" in d.detail and "--max-batch 40" in d.detail
    assert sweep_batches(4, 40) == [4, 8, 16, 32] and sweep_batches(1, 1) == [1]


def test_every_reason_is_documented() -> None:
    assert set(STOP_REASONS) == {"plateau", "out_of_memory", "failed", "max_batch"}


@pytest.mark.parametrize("msg", [
    "MemoryError: Unable to allocate 8.00 GiB for an array with shape (1024, 1048576) and data type float64",
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
    "CUDA failure 2: out of memory ; GPU=0",
    "[TRT] [E] 1: [defaultAllocator.cpp::allocate::20] Error Code 1: Cuda Runtime (out of memory)",
    "Available memory of 1048576 is smaller than requested bytes of 4194304",
    "std::bad_alloc",
])
def test_memory_messages(msg: str) -> None:
    assert is_out_of_memory(msg)


def test_non_memory_messages() -> None:
    assert not is_out_of_memory("InputError: dim 1 of input 'x' is fixed at 3")
    assert not is_out_of_memory(None) and not is_out_of_memory("")


def test_bad_input() -> None:
    with pytest.raises(InputError):
        decide([])
    with pytest.raises(InputError, match="--max-batch 2"):
        sweep_batches(4, 2)
    assert knee_batch([SweepPoint(1, None, "x")]) is None
