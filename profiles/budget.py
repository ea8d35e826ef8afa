"""Latency budget: which engine / precision / batch meets a p99 budget, and the fastest one that does.

``enginescope bench --p99-budget-ms X`` (and the New benchmark form's field) stores the budget in the job's
spec; the bench JSON's ``budget`` block and the Compare page both come from :func:`evaluate_p99_budget`:

- each run's p99 is computed here from its stored raw per-iteration samples with
  :func:`profiles.stats.percentile` (linear interpolation, numpy's default), reported with the sample
  count; a run without samples (e.g. some imports) uses its stored summary p99 and says so
  (``p99_source``);
- a run meets the budget when its p99 <= the budget (ms);
- the fastest run meeting it is the one with the highest throughput in items/s (inferences/s x batch, so
  batches compare), ties broken by the lower p99; a numerically invalid run (outputs NaN/Inf/all zero, or
  an invalid accuracy row) and a failed run are never it, even when their p99 fits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from profiles.errors import InputError
from profiles.stats import percentile


@dataclass(frozen=True)
class BudgetCandidate:
    """One run to judge.

    Attributes:
        run_id / engine / precision / batch_size: the run.
        status: ``runs.status`` (only ``succeeded`` runs are judged).
        valid: False when numerically invalid; None when unknown (kept as eligible).
        items_per_s: throughput, items/s (None when unknown: then never the fastest).
        samples_ms: raw per-iteration latencies, ms (all of them, not a plotting subset), or None.
        summary_p99_ms / summary_count: the stored summary's p99 (ms) and count, used without samples.
    """

    run_id: int
    engine: str | None
    precision: str | None
    batch_size: int | None
    status: str
    valid: bool | None
    items_per_s: float | None
    samples_ms: np.ndarray | None = None
    summary_p99_ms: float | None = None
    summary_count: int = 0


@dataclass(frozen=True)
class BudgetVerdict:
    """The judgement of one run: ``meets`` True/False, or None when it could not be judged (failed run, no
    latency); ``eligible`` True when it may be named the fastest (meets, succeeded, not invalid, has a
    throughput); ``reason`` says why in words."""

    run_id: int
    engine: str | None
    precision: str | None
    batch_size: int | None
    p99_ms: float | None
    samples: int
    p99_source: str
    items_per_s: float | None
    meets: bool | None
    eligible: bool
    reason: str


@dataclass(frozen=True)
class BudgetReport:
    """All verdicts for one budget (ms), and the fastest eligible run (None when no run meets it)."""

    p99_budget_ms: float
    verdicts: list[BudgetVerdict] = field(default_factory=list)
    fastest: BudgetVerdict | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe: ``{"p99_budget_ms", "runs": [verdict dicts], "fastest": verdict dict | None, "note"}``."""
        return {"p99_budget_ms": self.p99_budget_ms, "runs": [asdict(v) for v in self.verdicts],
                "fastest": asdict(self.fastest) if self.fastest else None, "note": self.note}


def _p99(c: BudgetCandidate) -> tuple[float | None, int, str]:
    if c.samples_ms is not None and np.asarray(c.samples_ms).size:
        arr = np.asarray(c.samples_ms, dtype=np.float64)
        return percentile(arr, 99), int(arr.size), "raw samples"
    if c.summary_p99_ms is not None:
        return float(c.summary_p99_ms), int(c.summary_count), "stored summary (no raw samples)"
    return None, 0, "none"


def _label(v: BudgetVerdict | BudgetCandidate) -> str:
    return f"{v.engine or '?'} / {v.precision or '?'} batch {v.batch_size if v.batch_size is not None else '?'}"


def evaluate_p99_budget(candidates: Sequence[BudgetCandidate], p99_budget_ms: float) -> BudgetReport:
    """Judge every candidate against ``p99_budget_ms`` (rules in the module doc).

    Raises:
        InputError: the budget is not a finite number > 0 (names ``--p99-budget-ms``).
    """
    if not np.isfinite(p99_budget_ms) or p99_budget_ms <= 0:
        raise InputError(f"--p99-budget-ms {p99_budget_ms}: must be a number of milliseconds > 0")
    verdicts = []
    for c in candidates:
        p99, n, src = _p99(c)
        if c.status != "succeeded":
            verdicts.append(BudgetVerdict(c.run_id, c.engine, c.precision, c.batch_size, p99, n, src, c.items_per_s,
                                          None, False, f"run {c.status}: not judged"))
            continue
        if p99 is None:
            verdicts.append(BudgetVerdict(c.run_id, c.engine, c.precision, c.batch_size, None, 0, src, c.items_per_s,
                                          None, False, "no latency samples or summary"))
            continue
        meets = p99 <= p99_budget_ms
        if not meets:
            reason = f"p99 {p99:.4g} ms (n={n}) is over the {p99_budget_ms:g} ms budget"
            eligible = False
        elif c.valid is False:
            reason = f"p99 {p99:.4g} ms (n={n}) fits, but the outputs are numerically invalid: never the fastest"
            eligible = False
        elif c.items_per_s is None:
            reason = f"p99 {p99:.4g} ms (n={n}) fits; no throughput recorded, so it cannot be ranked"
            eligible = False
        else:
            reason = f"p99 {p99:.4g} ms (n={n}) fits the {p99_budget_ms:g} ms budget"
            eligible = True
        verdicts.append(BudgetVerdict(c.run_id, c.engine, c.precision, c.batch_size, p99, n, src, c.items_per_s,
                                      meets, eligible, reason))
    ranked = [v for v in verdicts if v.eligible]
    fastest = max(ranked, key=lambda v: (float(v.items_per_s or 0.0), -float(v.p99_ms or 0.0))) if ranked else None
    if fastest is not None:
        note = (f"fastest within p99 <= {p99_budget_ms:g} ms: {_label(fastest)} (run {fastest.run_id}), "
                f"{fastest.items_per_s:.4g} items/s at p99 {fastest.p99_ms:.4g} ms (n={fastest.samples})")
    elif any(v.meets for v in verdicts):
        note = f"runs meet p99 <= {p99_budget_ms:g} ms, but none is numerically valid with a throughput"
    else:
        note = f"no run meets p99 <= {p99_budget_ms:g} ms"
    return BudgetReport(float(p99_budget_ms), verdicts, fastest, note)
