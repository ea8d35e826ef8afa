"""profiles.verdict with a scripted sample source: the A/A property (the same configuration against itself
says "no significant difference" at least 19 times in 20 although repeats drift), a real difference is
found, the interval scope (within-run only with one repeat), comparability and the invalid-candidate
rules, and the regression gate's thresholds.

The scripted source draws each repeat's samples around a repeat-level median that drifts from repeat
to repeat (the run-to-run drift of a shared machine), so the tests exercise exactly what the hierarchical
interval is for; every draw is seeded, so each test's outcome is fixed."""

from __future__ import annotations

import numpy as np
import pytest

from profiles.errors import InputError
from profiles.verdict import (FASTER, METRICS, NO_DIFFERENCE, NOT_COMPARABLE, SLOWER, Difference, Verdict,
                              bootstrap_ratio, compare_fingerprints, judge, metric_def, regression, small_sample_scale,
                              statistic, welch_df)


def scripted_run(rng: np.random.Generator, *, median_ms: float, repeats: int, per_repeat: int = 300,
                 drift_sd: float = 0.03, noise_sd: float = 0.08) -> list[np.ndarray]:
    """Samples (ms) of one configuration measured ``repeats`` times: repeat r's median is
    ``median_ms * exp(N(0, drift_sd))``, its samples lognormal around it with ``noise_sd`` plus a 2% tail
    at 1.5x (the occasional preempted iteration)."""
    out = []
    for _ in range(repeats):
        m = median_ms * np.exp(rng.normal(0.0, drift_sd))
        x = m * np.exp(rng.normal(0.0, noise_sd, per_repeat))
        tail = rng.random(per_repeat) < 0.02
        x[tail] *= 1.5
        out.append(x)
    return out


def _words(pairs: int, *, seed: int, repeats: int, candidate_scale: float = 1.0, metric: str = "latency_p50",
           pooled: bool = False, per_repeat: int = 300) -> list[str]:
    """Verdict words of ``pairs`` scripted comparisons; ``pooled`` merges each side's repeats into one (the
    interval a single-repeat comparison would give on the same samples)."""
    rng = np.random.default_rng(seed)
    words = []
    for _ in range(pairs):
        a = scripted_run(rng, median_ms=2.0, repeats=repeats, per_repeat=per_repeat)
        c = scripted_run(rng, median_ms=2.0 * candidate_scale, repeats=repeats, per_repeat=per_repeat)
        if pooled:
            a, c = [np.concatenate(a)], [np.concatenate(c)]
        words.append(judge(metric, 1, 2, a, c, n_boot=1000).verdict)
    return words


@pytest.mark.parametrize("repeats", [3, 5])
def test_aa_same_configuration_is_no_difference_19_of_20(repeats: int) -> None:
    words = _words(20, seed=100 + repeats, repeats=repeats)
    assert words.count(NO_DIFFERENCE) >= 19, words


def test_aa_with_a_within_run_interval_would_fail() -> None:
    """The same drifting repeats pooled as one: the within-run interval is far too narrow and calls most
    A/A pairs different. This is why the interval must include between-repeat variance."""
    words = _words(20, seed=103, repeats=3, pooled=True)
    assert words.count(NO_DIFFERENCE) < 15, words


@pytest.mark.parametrize(("metric", "per_repeat"), [("latency_p50", 300), ("throughput", 300), ("latency_p99", 3000)])
def test_a_real_difference_is_found(metric: str, per_repeat: int) -> None:
    """A candidate 25% faster per iteration (fp32 -> int8 on CPU is often more) is called faster every
    time, whatever the metric's direction (throughput: higher is better); p99 needs enough samples per
    repeat for its tail (3000 here, ~30 samples above it)."""
    assert _words(20, seed=7, repeats=3, candidate_scale=0.75, metric=metric, per_repeat=per_repeat) == [FASTER] * 20
    assert _words(5, seed=8, repeats=3, candidate_scale=1.33, metric=metric, per_repeat=per_repeat) == [SLOWER] * 5


def test_a_small_real_difference_with_few_repeats_is_not_overclaimed() -> None:
    """With 2 repeats of drifting runs a 10% gap is often left undecided (the interval is honest about
    having two repeats), but never reversed."""
    words = _words(20, seed=11, repeats=2, candidate_scale=0.9)
    assert SLOWER not in words and words.count(NO_DIFFERENCE) >= 5, words


def test_ratio_is_the_ratio_of_pooled_statistics() -> None:
    rng = np.random.default_rng(1)
    a = scripted_run(rng, median_ms=3.0, repeats=3)
    c = scripted_run(rng, median_ms=2.4, repeats=4, per_repeat=700)
    for key in ("latency_p50", "latency_p99", "throughput"):
        m = metric_def(key)
        ratio, (lo, hi), within = bootstrap_ratio(a, c, m, batch_baseline=4, batch_candidate=4, n_boot=400)
        expect = statistic(np.concatenate(c), m, 4) / statistic(np.concatenate(a), m, 4)
        assert ratio == pytest.approx(expect, rel=1e-12)
        assert lo < ratio < hi and not within
    # throughput = batch * 1000 / mean latency (ms): 8 items in 2 ms -> 4000 items/s
    assert statistic(np.array([1.0, 3.0]), METRICS["throughput"], 8) == pytest.approx(4000.0)


def test_binned_bootstrap_matches_a_plain_hierarchical_bootstrap() -> None:
    """The vectorised Poisson bootstrap on <=512 bins per repeat gives the interval a plain resample-with-
    replacement hierarchical bootstrap gives (width within 25%, centres within a fifth of the width)."""
    rng = np.random.default_rng(5)
    a = scripted_run(rng, median_ms=2.0, repeats=4, per_repeat=3000)
    c = scripted_run(rng, median_ms=2.1, repeats=4, per_repeat=3000)
    m = metric_def("latency_p50")
    _, (lo, hi), _ = bootstrap_ratio(a, c, m, n_boot=2000)

    plain = np.random.default_rng(9)

    def rep(groups: list[np.ndarray]) -> float:
        picked = plain.integers(0, len(groups), len(groups))
        return float(np.median(np.concatenate([plain.choice(groups[i], groups[i].size) for i in picked])))

    logs = np.log([rep(c) / rep(a) for _ in range(1000)])
    centre = np.median(logs)
    logs = centre + (logs - centre) * small_sample_scale(a, c, m)
    plo, phi = np.exp(np.percentile(logs, [2.5, 97.5]))
    assert (hi - lo) == pytest.approx(phi - plo, rel=0.25)
    assert abs((lo + hi) / 2 - (plo + phi) / 2) < 0.2 * (phi - plo)


def test_one_repeat_says_the_interval_is_within_run_only() -> None:
    rng = np.random.default_rng(2)
    v = judge("latency_p50", 1, 2, scripted_run(rng, median_ms=2.0, repeats=1),
              scripted_run(rng, median_ms=2.0, repeats=3), n_boot=300)
    assert v.within_run_only and v.repeats == (1, 3)
    assert any("within-run only" in n for n in v.notes) and "within-run interval only" in v.summary


def test_blocking_differences_make_runs_not_comparable_unless_allowed() -> None:
    rng = np.random.default_rng(3)
    a, c = scripted_run(rng, median_ms=2.0, repeats=3), scripted_run(rng, median_ms=1.0, repeats=3)
    diffs = compare_fingerprints({"device": "cuda:0", "gpu.model": "NVIDIA H200", "precision": "fp32"},
                                 {"device": "cuda:0", "gpu.model": "NVIDIA A10G", "precision": "fp16"})
    assert [(d.field, d.blocking) for d in diffs] == [("gpu.model", True), ("precision", False)]
    v = judge("latency_p50", 1, 2, a, c, differences=diffs, n_boot=300)
    assert v.verdict == NOT_COMPARABLE and not v.win and not v.comparable
    assert v.ratio is not None and v.ratio < 0.6  # the number is still shown, the word refuses to judge
    allowed = judge("latency_p50", 1, 2, a, c, differences=diffs, allow_blocking=True, n_boot=300)
    assert allowed.verdict == FASTER and allowed.win and any("gpu.model differs" in n for n in allowed.notes)


def test_fingerprint_rules() -> None:
    base = {"device": "cpu", "cpu.model": "Xeon A", "cpu.load": 0.10, "libraries.onnxruntime": "1.22"}
    assert compare_fingerprints(base, {**base, "cpu.load": 0.30}) == []  # load fluctuation under 0.25 per core
    d = compare_fingerprints(base, {**base, "cpu.load": 0.90, "cpu.model": "Xeon B", "libraries.onnxruntime": "1.23"})
    assert [(x.field, x.blocking) for x in d] == [("cpu.model", True), ("cpu.load", False),
                                                  ("libraries.onnxruntime", False)]
    assert d[2].note == "library version"
    # a GPU run's host CPU is information, not a reason to refuse
    gpu = compare_fingerprints({"device": "cuda:0", "cpu.model": "Xeon A"}, {"device": "cuda:0", "cpu.model": "EPYC"})
    assert [(x.field, x.blocking) for x in gpu] == [("cpu.model", False)]


def test_an_invalid_candidate_is_never_a_win_and_regresses() -> None:
    rng = np.random.default_rng(4)
    a, c = scripted_run(rng, median_ms=2.0, repeats=3), scripted_run(rng, median_ms=1.0, repeats=3)
    acc = {"valid": False, "cosine_min": 0.0, "max_abs_err": 3.0, "baseline_valid": True}
    v = judge("latency_p50", 1, 2, a, c, accuracy=acc, n_boot=300)
    assert v.verdict == FASTER and not v.win and any("never a win" in n for n in v.notes)
    assert regression(v, 50.0)
    ok = judge("latency_p50", 1, 2, a, c, accuracy={**acc, "valid": True}, n_boot=300)
    assert ok.win and not regression(ok, 0.0)


def _verdict(metric: str, lo: float, hi: float) -> Verdict:
    return Verdict(metric, 1, 2, METRICS[metric].unit, 1.0, (lo + hi) / 2, (lo + hi) / 2, (lo, hi),
                   NO_DIFFERENCE, True, False, (3, 3))


@pytest.mark.parametrize(("metric", "lo", "hi", "pct", "worse"), [
    ("latency_p50", 1.06, 1.10, 5.0, True),    # the whole interval beyond +5%
    ("latency_p50", 1.04, 1.10, 5.0, False),   # could be within the allowance
    ("latency_p50", 1.01, 1.03, 0.0, True),    # any significant slowdown with no allowance
    ("latency_p99", 0.90, 0.99, 0.0, False),   # faster
    ("throughput", 0.90, 0.94, 5.0, True),     # throughput: lower is worse
    ("throughput", 0.90, 0.96, 5.0, False),
    ("throughput", 1.02, 1.05, 0.0, False),
])
def test_regression_thresholds(metric: str, lo: float, hi: float, pct: float, worse: bool) -> None:
    assert regression(_verdict(metric, lo, hi), pct) is worse


def test_bad_input_names_the_flag() -> None:
    with pytest.raises(InputError, match="--metric 'p95'"):
        metric_def("p95")
    with pytest.raises(InputError, match="--max-regression"):
        regression(_verdict("latency_p50", 1.0, 1.1), -1.0)
    with pytest.raises(InputError, match="--max-regression"):
        regression(_verdict("latency_p50", 1.0, 1.1), float("nan"))


def test_a_side_without_samples_is_not_comparable_with_the_reason() -> None:
    rng = np.random.default_rng(6)
    v = judge("latency_p50", 1, 2, scripted_run(rng, median_ms=2.0, repeats=2), [np.array([np.nan]), []])
    assert v.verdict == NOT_COMPARABLE and v.ratio is None and v.ci95 is None
    assert v.notes == ["candidate: no samples to compare"] and "no interval" in v.summary
    assert isinstance(v.differences, list) and not any(isinstance(d, Difference) for d in v.differences)


def test_welch_degrees_of_freedom() -> None:
    """Equal repeat-level spread on both sides gives Ra + Rc - 2; one side's spread alone gives its R - 1."""
    m = metric_def("latency_p50")
    a = [np.array([1.0]), np.array([2.0]), np.array([3.0])]
    assert welch_df(a, [x * 1.5 for x in a], m) == pytest.approx(4.0)
    assert welch_df(a, [np.array([2.0])] * 5, m) == pytest.approx(2.0)
    assert welch_df([np.array([2.0])] * 3, [np.array([2.0])] * 4, m) == pytest.approx(5.0)


@pytest.mark.parametrize("metric", ["latency_p50", "latency_p99", "throughput"])
def test_a_handful_of_samples_still_gives_a_finite_interval(metric: str) -> None:
    """Three samples per repeat: some Poisson replicates draw nothing; they are left out, never a NaN
    interval (which once turned a 2x throughput gain into "slower")."""
    rng = np.random.default_rng(12)
    a = scripted_run(rng, median_ms=2.0, repeats=3, per_repeat=3, drift_sd=0.0, noise_sd=0.01)
    c = scripted_run(rng, median_ms=1.0, repeats=3, per_repeat=3, drift_sd=0.0, noise_sd=0.01)
    v = judge(metric, 1, 2, a, c)
    assert v.ci95 is not None and all(np.isfinite(v.ci95)) and v.ci95[0] <= v.ratio <= v.ci95[1]
    assert v.verdict == FASTER
