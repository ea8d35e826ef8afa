"""Verdicts: candidate vs baseline, with an interval that includes between-repeat variance.

The one place a comparison of two runs becomes a word. Pure (numpy only); :mod:`db.verdicts` reads the
stored samples and environments and calls :func:`judge`.

Method (docs/metrics.md, "Verdicts"):

- Each run's samples come grouped by repeat (``--repeats N``: the configuration measured N times,
  interleaved with the job's other configurations). A statistic (:data:`METRICS`) is computed on the pooled
  samples of all repeats.
- The 95% interval of ``ratio = stat(candidate) / stat(baseline)`` is a two-level (hierarchical) bootstrap
  (Davison & Hinkley 1997, "Bootstrap Methods and their Application", s. 3.8, strategy "resample clusters,
  then within clusters"; Saravanan et al. 2020, "Application of the hierarchical bootstrap to multi-level
  data in neuroscience"): each replicate draws the repeats with replacement, then the samples within each
  drawn repeat with replacement, pools them and computes the statistic; the two runs are resampled
  independently, and the interval is the 2.5th and 97.5th percentiles of the replicate ratios. (A paired
  draw of the same repeat indices for both was tried and rejected: with 3-5 repeats it said "different"
  in 6-12% of simulated A/A comparisons; benchmarks/aa_test.py.)
- Resampling R clusters understates their variance by the factor (R-1)/R (Davison & Hinkley eq. 3.19),
  and with a few repeats the variance itself is uncertain; the replicates' log-ratios are therefore
  spread about their median by ``sqrt(R/(R-1)) * t(0.975, df) / z(0.975)`` before the percentiles are
  taken (R = the smaller repeat count, df the Welch-Satterthwaite degrees of freedom of the repeat-level
  statistics; :func:`small_sample_scale`).
- With one repeat on either side the interval is within-run only (only samples are resampled); the
  verdict says so (:attr:`Verdict.within_run_only`): run-to-run drift on a shared machine is often larger.
- The word: the interval entirely on the better side of 1 gives "faster", entirely on the worse side
  "slower", otherwise "no significant difference"; runs on different hardware or of different models give
  "not comparable" unless the caller allows it. "faster" for throughput means more items per second.
- An invalid candidate (accuracy check failed) is never a win: :attr:`Verdict.win` is False whatever the word.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from profiles.errors import InputError

#: The verdict words.
FASTER = "faster"
SLOWER = "slower"
NO_DIFFERENCE = "no significant difference"
NOT_COMPARABLE = "not comparable"
WORDS: tuple[str, ...] = (FASTER, SLOWER, NO_DIFFERENCE, NOT_COMPARABLE)

#: Bootstrap replicates and the default seed (deterministic verdicts: the same data give the same interval).
N_BOOT = 2000
SEED = 20261203


@dataclass(frozen=True)
class MetricDef:
    """One comparable metric.

    Attributes:
        key: CLI spelling (``--metric``).
        label: human name.
        series: which per-sample series it is computed from: ``latency`` (per-iteration latency, ms),
            ``ttft`` / ``tpot`` / ``e2e`` (per-request, ms; TPOT as vLLM's benchmark defines it).
        stat: ``p50`` / ``p99`` (percentile of the pooled samples, linear interpolation) or ``throughput``
            (``batch * 1000 / mean(latency_ms)`` items/s: a synchronous loop's items per second).
        unit: unit of the statistic.
        higher_is_better: True for throughput.
    """

    key: str
    label: str
    series: str
    stat: str
    unit: str
    higher_is_better: bool = False

    @property
    def llm(self) -> bool:
        """True for the per-request LLM metrics."""
        return self.series != "latency"


METRICS: dict[str, MetricDef] = {m.key: m for m in (
    MetricDef("latency_p50", "latency p50", "latency", "p50", "ms"),
    MetricDef("latency_p99", "latency p99", "latency", "p99", "ms"),
    MetricDef("throughput", "throughput", "latency", "throughput", "items/s", higher_is_better=True),
    MetricDef("ttft_p50", "TTFT p50", "ttft", "p50", "ms"),
    MetricDef("ttft_p99", "TTFT p99", "ttft", "p99", "ms"),
    MetricDef("tpot_p50", "TPOT p50", "tpot", "p50", "ms"),
    MetricDef("tpot_p99", "TPOT p99", "tpot", "p99", "ms"),
    MetricDef("e2e_p50", "E2E latency p50", "e2e", "p50", "ms"),
)}


def metric_def(key: str) -> MetricDef:
    """The :class:`MetricDef` for ``key``.

    Raises:
        InputError: unknown key (the message lists the known ones, as ``--metric`` values).
    """
    try:
        return METRICS[key]
    except KeyError:
        raise InputError(f"--metric {key!r} is not one of {', '.join(METRICS)}") from None


@dataclass(frozen=True)
class Difference:
    """One difference between two runs' fingerprints.

    Attributes:
        field: fingerprint key (``gpu.model``, ``model.hash``, ``libraries.onnxruntime``...).
        baseline, candidate: the two values (JSON-safe).
        blocking: True when it makes the runs "not comparable" (hardware, model) unless allowed.
        note: why it matters.
    """

    field: str
    baseline: Any
    candidate: Any
    blocking: bool = False
    note: str = ""


@dataclass
class Verdict:
    """Candidate vs baseline on one metric.

    ``ratio`` = candidate / baseline of the statistic (``None`` when either has no samples); ``ci95`` its
    95% interval (``None`` without samples). ``repeats`` = (baseline, candidate) repeat counts;
    ``accuracy``: the candidate's accuracy
    against its reference (``{"valid", "cosine_min", "max_abs_err"}``; ``None`` when unknown).
    ``win``: the word is "faster" and the candidate is not invalid. ``level``: the LLM load level compared.
    """

    metric: str
    baseline: int
    candidate: int
    unit: str
    baseline_value: float | None
    candidate_value: float | None
    ratio: float | None
    ci95: tuple[float, float] | None
    verdict: str
    comparable: bool
    within_run_only: bool
    repeats: tuple[int, int]
    differences: list[Difference] = field(default_factory=list)
    accuracy: dict[str, Any] | None = None
    win: bool = False
    level: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe dict (the ``enginescope compare --json`` shape plus extras)."""
        d = asdict(self)
        d["ci95"] = list(self.ci95) if self.ci95 is not None else None
        d["repeats"] = list(self.repeats)
        return d

    @property
    def summary(self) -> str:
        """One line: ``"slower: ratio 1.042 [1.013, 1.071] (latency p50, 3 repeats each)"``."""
        if self.ratio is None or self.ci95 is None:
            return f"{self.verdict}: no interval ({'; '.join(self.notes) or 'no samples'})"
        rep = (f"{self.repeats[0]} repeats each" if self.repeats[0] == self.repeats[1]
               else f"{self.repeats[0]} vs {self.repeats[1]} repeats")
        scope = "; within-run interval only" if self.within_run_only else ""
        return (f"{self.verdict}: ratio {self.ratio:.3f} [{self.ci95[0]:.3f}, {self.ci95[1]:.3f}] "
                f"({METRICS[self.metric].label}, {rep}{scope})")


def statistic(samples: np.ndarray, m: MetricDef, batch: int = 1) -> float:
    """The statistic of ``m`` on pooled ``samples`` (float64 ms, shape [n], n >= 1).

    Raises:
        InputError: no samples.
    """
    if samples.size == 0:
        raise InputError(f"{m.label}: no samples")
    if m.stat == "throughput":
        return float(batch * 1000.0 / samples.mean())
    return float(np.percentile(samples, 99.0 if m.stat == "p99" else 50.0))


def _clean(groups: Sequence[np.ndarray | Sequence[float]], who: str) -> list[np.ndarray]:
    out = [np.asarray(g, dtype=np.float64).ravel() for g in groups]
    out = [g[np.isfinite(g)] for g in out]
    out = [g for g in out if g.size]
    if not out:
        raise InputError(f"{who}: no samples to compare")
    return out


#: Samples of one repeat are grouped into at most this many equal-count bins (sorted order) for the
#: bootstrap; a repeat with fewer samples is resampled exactly.
BINS = 512

#: Replicates computed per vectorised block (bounds memory: block x total bins int64).
_BLOCK = 250


def _binned(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(values, sizes)`` of a repeat's samples: each value once when ``g.size <= BINS``, else the means of
    :data:`BINS` equal-count bins of the sorted samples and their sizes."""
    g = np.sort(g)
    if g.size <= BINS:
        return g, np.ones(g.size, dtype=np.int64)
    edges = np.linspace(0, g.size, BINS + 1).astype(np.int64)
    sizes = np.diff(edges)
    return np.add.reduceat(g, edges[:-1]) / sizes, sizes


def _replicates(groups: list[np.ndarray], m: MetricDef, batch: int, idx: np.ndarray,
                rng: np.random.Generator, within_only: bool) -> np.ndarray:
    """Statistic of each bootstrap replicate; ``idx`` [B, R] are the drawn repeat indices per replicate.

    Within a drawn repeat the samples are resampled by the Poisson bootstrap (Hanley & MacGibbon 2006,
    "Creating non-parametric bootstrap samples using Poisson frequencies"; Chamandy et al. 2012, "Estimating
    uncertainty for massive data streams"): each sample (bin of ``s`` samples) of a repeat drawn ``k`` times
    is taken Poisson(k * s) times, the large-n limit of the multinomial counts of resampling with replacement.
    Each replicate is then a vector of counts on the sorted pooled grid of values (exact up to the position
    of a sample within its bin). The percentile of the weighted resample follows numpy's linear
    interpolation (position ``(N-1) q``); the throughput statistic uses the weighted mean. A replicate that
    drew no sample at all (possible with a handful of samples) is NaN and left out by the caller.
    """
    binned = [_binned(g) for g in groups]
    vals = np.concatenate([v for v, _ in binned])
    order = np.argsort(vals, kind="stable")
    vals_sorted = vals[order]
    n_boot = idx.shape[0]
    if within_only:
        mult = np.ones((n_boot, len(groups)), dtype=np.int64)
    else:
        mult = np.stack([(idx == g).sum(axis=1) for g in range(len(groups))], axis=1)
    out = np.empty(n_boot, dtype=np.float64)
    q = 99.0 if m.stat == "p99" else 50.0
    for b0 in range(0, n_boot, _BLOCK):
        b1 = min(b0 + _BLOCK, n_boot)
        counts = np.concatenate([rng.poisson(mult[b0:b1, g, None] * sizes[None, :])
                                 for g, (_, sizes) in enumerate(binned)], axis=1)[:, order]
        cum = np.cumsum(counts, axis=1)
        total = cum[:, -1]
        empty = total == 0
        safe = np.where(empty, 1, total)
        if m.stat == "throughput":
            mean = (counts * vals_sorted).sum(axis=1) / safe
            res = batch * 1000.0 / np.where(empty, 1.0, mean)
        else:
            h = (safe - 1) * q / 100.0
            j0 = np.floor(h)
            frac = h - j0
            i0 = np.minimum((cum <= j0[:, None]).sum(axis=1), vals_sorted.size - 1)
            i1 = np.minimum((cum <= (j0 + 1)[:, None]).sum(axis=1), vals_sorted.size - 1)
            res = vals_sorted[i0] + frac * (vals_sorted[i1] - vals_sorted[i0])
        out[b0:b1] = np.where(empty, np.nan, res)
    return out


def welch_df(baseline: list[np.ndarray], candidate: list[np.ndarray], m: MetricDef, batch_baseline: int = 1,
             batch_candidate: int = 1) -> float:
    """Welch-Satterthwaite degrees of freedom of the difference of the two runs' mean repeat-level
    log-statistics (Welch 1947, "The generalization of 'Student's' problem when several different population
    variances are involved"): ``(va + vc)^2 / (va^2 / (Ra - 1) + vc^2 / (Rc - 1))`` with ``v = var(log stat of
    each repeat, ddof=1) / R``; ``Ra + Rc - 2`` when both variances are 0. Needs >= 2 repeats a side."""
    la = np.log([statistic(g, m, batch_baseline) for g in baseline])
    lc = np.log([statistic(g, m, batch_candidate) for g in candidate])
    va, vc = float(np.var(la, ddof=1)) / la.size, float(np.var(lc, ddof=1)) / lc.size
    if va + vc <= 0.0:
        return float(la.size + lc.size - 2)
    den = (va * va / (la.size - 1) if va > 0 else 0.0) + (vc * vc / (lc.size - 1) if vc > 0 else 0.0)
    return float((va + vc) ** 2 / den)


def small_sample_scale(baseline: list[np.ndarray], candidate: list[np.ndarray], m: MetricDef,
                       batch_baseline: int = 1, batch_candidate: int = 1) -> float:
    """Factor by which the bootstrap log-ratios are spread about their median (>= 2 repeats a side).

    ``sqrt(R / (R - 1)) * t(0.975, df) / z(0.975)``, R the smaller repeat count, df :func:`welch_df`:
    resampling R clusters understates their variance by (R-1)/R (Davison & Hinkley 1997, eq. 3.19), and a
    variance estimated from a few repeats calls for Student's t quantile rather than the normal one
    (the percentile interval of a cluster bootstrap under-covers with few clusters; Davison & Hinkley s. 3.8).
    Without the t factor the A/A test with 3 repeats called 10% of identical pairs different
    (tests/unit/test_verdict.py, benchmarks/aa_test.py)."""
    from scipy import stats

    r = min(len(baseline), len(candidate))
    df = welch_df(baseline, candidate, m, batch_baseline, batch_candidate)
    return float(np.sqrt(r / (r - 1)) * stats.t.ppf(0.975, df) / stats.norm.ppf(0.975))


def bootstrap_ratio(baseline: Sequence[np.ndarray | Sequence[float]], candidate: Sequence[np.ndarray | Sequence[float]],
                    m: MetricDef, *, batch_baseline: int = 1, batch_candidate: int = 1, n_boot: int = N_BOOT, seed: int = SEED) -> tuple[float, tuple[float, float], bool]:
    """Ratio candidate/baseline of ``m`` and its 95% hierarchical-bootstrap interval (module doc).

    Args:
        baseline, candidate: samples grouped by repeat, ms (lists of 1-D arrays; empty repeats dropped).

    Returns:
        ``(ratio, (lo, hi), within_run_only)``.

    Raises:
        InputError: a side has no samples.
    """
    a = _clean(baseline, "baseline")
    c = _clean(candidate, "candidate")
    ratio = statistic(np.concatenate(c), m, batch_candidate) / statistic(np.concatenate(a), m, batch_baseline)
    within_only = len(a) < 2 or len(c) < 2
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, len(a), (n_boot, len(a)))
    ic = rng.integers(0, len(c), (n_boot, len(c)))
    ra = _replicates(a, m, batch_baseline, ia, rng, within_only)
    rc = _replicates(c, m, batch_candidate, ic, rng, within_only)
    logs = np.log(rc / ra)
    logs = logs[np.isfinite(logs)]
    if logs.size < n_boot // 2:
        raise InputError(f"{m.label}: too few samples for an interval ({sum(g.size for g in a)} baseline, "
                         f"{sum(g.size for g in c)} candidate)")
    if not within_only:
        center = float(np.median(logs))
        logs = center + (logs - center) * small_sample_scale(a, c, m, batch_baseline, batch_candidate)
    lo, hi = np.percentile(logs, [2.5, 97.5])
    return ratio, (float(np.exp(lo)), float(np.exp(hi))), within_only


def word(ratio_ci: tuple[float, float], m: MetricDef) -> str:
    """"faster" / "slower" / "no significant difference" from the interval (module doc)."""
    lo, hi = ratio_ci
    if lo <= 1.0 <= hi:
        return NO_DIFFERENCE
    above = lo > 1.0
    return FASTER if above == m.higher_is_better else SLOWER


def judge(metric: str, baseline_id: int, candidate_id: int,
          baseline: Sequence[np.ndarray | Sequence[float]], candidate: Sequence[np.ndarray | Sequence[float]], *,
          batch_baseline: int = 1, batch_candidate: int = 1,
          differences: Sequence[Difference] = (), allow_blocking: bool = False,
          accuracy: dict[str, Any] | None = None, level: str | None = None,
          n_boot: int = N_BOOT, seed: int = SEED) -> Verdict:
    """The :class:`Verdict` of candidate vs baseline (module doc).

    ``differences``: from :func:`compare_fingerprints`; a blocking one makes the word "not comparable"
    unless ``allow_blocking``. A side with no samples gives ratio/interval ``None`` and "not comparable"
    with a note.

    Raises:
        InputError: unknown ``metric``.
    """
    m = metric_def(metric)
    blocking = [d for d in differences if d.blocking]
    comparable = not blocking or allow_blocking
    notes: list[str] = []
    if blocking and allow_blocking:
        notes.append("compared although " + "; ".join(f"{d.field} differs" for d in blocking) + " (allowed)")
    nb = sum(1 for g in baseline if np.asarray(g).size)
    nc = sum(1 for g in candidate if np.asarray(g).size)
    try:
        ratio, ci, within = bootstrap_ratio(baseline, candidate, m, batch_baseline=batch_baseline,
                                            batch_candidate=batch_candidate, n_boot=n_boot, seed=seed)
    except InputError as exc:
        return Verdict(metric, baseline_id, candidate_id, m.unit, None, None, None, None, NOT_COMPARABLE, False,
                       True, (nb, nc), list(differences), accuracy, False, level, [str(exc)])
    a = np.concatenate(_clean(baseline, "baseline"))
    c = np.concatenate(_clean(candidate, "candidate"))
    w = word(ci, m) if comparable else NOT_COMPARABLE
    if within:
        notes.append("one repeat on a side: the interval is within-run only and leaves out run-to-run drift")
    invalid = bool(accuracy) and accuracy.get("valid") is False  # type: ignore[union-attr]
    if invalid:
        notes.append("the candidate's outputs failed the accuracy check: never a win")
    return Verdict(metric, baseline_id, candidate_id, m.unit, statistic(a, m, batch_baseline),
                   statistic(c, m, batch_candidate), ratio, ci, w, comparable, within, (nb, nc),
                   list(differences), accuracy,
                   w == FASTER and not invalid, level, notes)


def regression(v: Verdict, max_regression_pct: float) -> bool:
    """True when the candidate is significantly worse than ``max_regression_pct`` allows: for a
    lower-is-better metric the interval's low end exceeds ``1 + pct/100``; for throughput the high end is
    below ``1 - pct/100``. An invalid candidate whose baseline was valid is a regression too; a verdict
    without an interval is not (the caller reports it as not comparable).

    Raises:
        InputError: negative or non-finite ``max_regression_pct`` (named as ``--max-regression``).
    """
    if not np.isfinite(max_regression_pct) or max_regression_pct < 0:
        raise InputError(f"--max-regression must be a finite percentage >= 0, got {max_regression_pct}")
    if v.accuracy and v.accuracy.get("valid") is False and v.accuracy.get("baseline_valid") is not False:
        return True
    if v.ci95 is None or not v.comparable:
        return False
    lo, hi = v.ci95
    if METRICS[v.metric].higher_is_better:
        return hi < 1.0 - max_regression_pct / 100.0
    return lo > 1.0 + max_regression_pct / 100.0


#: Fingerprint fields whose difference makes two runs "not comparable" (hardware and model identity).
BLOCKING_FIELDS: tuple[str, ...] = ("gpu.model", "gpu.count", "cpu.model", "model.hash")

#: Why each fingerprint field can explain a gap (shown beside a difference).
FIELD_NOTES: dict[str, str] = {
    "gpu.model": "different GPU", "gpu.count": "different number of GPUs", "cpu.model": "different CPU",
    "model.hash": "different model file", "gpu.driver": "driver changes kernels and clocks",
    "gpu.cuda_driver": "CUDA driver version", "gpu.clocks": "GPU clocks (locked or not)",
    "gpu.power_limit_w": "power limit caps clocks", "cpu.load": "other work on the CPU during the run",
    "host": "another machine of the same kind", "engine": "different engine", "engine_version": "engine version",
    "precision": "different precision", "batch": "different batch size", "shapes": "different input shapes",
    "engine_options": "different engine options", "profiled": "a profiler slows the run",
    "device": "different device",
    "opt_ins": "code from the model's files ran (trust_remote_code / allow_pickle)",
}


def compare_fingerprints(a: dict[str, Any], b: dict[str, Any]) -> list[Difference]:
    """Every differing key of two flat fingerprints (``db.verdicts.fingerprint``), blocking ones first.

    ``cpu.load`` differs only when the two 1-minute load averages per core differ by more than 0.25
    (small fluctuations are not news); ``cpu.model`` blocks only when both runs ran on the CPU.
    """
    diffs: list[Difference] = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if va == vb:
            continue
        if k == "cpu.load":
            if va is None or vb is None or abs(float(va) - float(vb)) <= 0.25:
                continue
        blocking = k in BLOCKING_FIELDS and va is not None and vb is not None
        if k == "cpu.model" and not (a.get("device") == "cpu" and b.get("device") == "cpu"):
            blocking = False
        note = FIELD_NOTES.get(k) or ("library version" if k.startswith("libraries.") else "")
        diffs.append(Difference(k, va, vb, blocking, note))
    diffs.sort(key=lambda d: (not d.blocking, d.field))
    return diffs
