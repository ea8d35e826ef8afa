"""The paired per-round interval the vLLM agreement test judges noisy runs by (engine_runner.peers.agreement)."""

from __future__ import annotations

import pytest

from engine_runner.peers.agreement import paired_diff_ci95_pct


def test_noisy_rounds_give_an_interval_that_includes_zero() -> None:
    # TPOT means (ms) of the six alternating rounds of a fresh-clone run beside a second vLLM server (2026-12-03)
    es = [7.777, 12.634, 13.258, 10.082, 12.871, 8.718]
    vllm = [8.289, 9.560, 9.768, 8.107, 10.962, 11.340]
    lo, hi = paired_diff_ci95_pct(es, vllm)
    assert lo < 0.0 < hi and hi - lo > 40.0


def test_a_steady_bias_is_not_noise() -> None:
    lo, hi = paired_diff_ci95_pct([10.5, 10.6, 10.4, 10.5], [10.0, 10.1, 9.9, 10.0])
    assert lo == pytest.approx(5.0) and hi == pytest.approx(5.0)  # every round +0.5 ms of a 10 ms mean
    lo, hi = paired_diff_ci95_pct([11.0, 12.0, 11.5], [10.0, 10.0, 10.0])
    # d = 1, 2, 1.5: mean 1.5, sd 0.5, t(0.975, 2) = 4.303 -> 1.5 +- 1.242 ms of 10 ms
    assert lo == pytest.approx(2.58, abs=0.01) and hi == pytest.approx(27.42, abs=0.01)


def test_too_few_rounds() -> None:
    assert paired_diff_ci95_pct([1.0], [1.0]) is None
    assert paired_diff_ci95_pct([1.0, 2.0], [0.0, 0.0]) is None
