"""Batch sweep for maximum throughput: the stopping rule and the knee, as pure functions.

``enginescope bench --batch-sweep`` measures batch ``b0`` (the first ``--batch``, default 1), then doubles
it while it pays. After each measured (or failed) batch, :func:`decide` says whether to go on and why it
stops. The reasons (:data:`STOP_REASONS`):

- ``plateau``: items/s at this batch rose less than :data:`MIN_GAIN` (3%) over the previous batch
  (``gain = items_per_s(b) / items_per_s(b / 2) - 1 < 0.03``; a fall counts too);
- ``out_of_memory``: the run of this batch failed with an out-of-memory / allocation failure
  (:func:`is_out_of_memory`); that batch is recorded as the memory limit (``limit_batch``);
- ``failed``: the run of this batch failed for another reason (its error is the detail);
- ``max_batch``: the next doubling would exceed ``--max-batch`` (default :data:`DEFAULT_MAX_BATCH`).

The knee (:func:`knee_batch`) is the smallest measured batch whose items/s reaches ``1 - MIN_GAIN`` of the
best items/s of the sweep: past it, doubling the batch (and its latency) buys less than 3% throughput.
Throughput here is items/s (inferences/s x batch, ``run_metrics.items_per_s``), so batches compare.

A throughput measured on a shared or noisy machine moves by a few percent between repeats, so a plateau
decision near 3% can differ from one sweep to the next; the recorded gains say how close it was.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from profiles.errors import InputError

#: Smallest relative items/s gain of a doubling that keeps the sweep going.
MIN_GAIN = 0.03
#: Default upper bound of the swept batch (``--max-batch``).
DEFAULT_MAX_BATCH = 4096
#: Why a sweep stopped.
STOP_REASONS = ("plateau", "out_of_memory", "failed", "max_batch")

#: Messages of out-of-memory / allocation failures of the engines EngineScope drives: Python's
#: ``MemoryError``, ONNX Runtime ("Failed to allocate memory for requested buffer", its BFC arena "Available
#: memory of ... is smaller than requested bytes"), CUDA ("out of memory", ``CUDA_ERROR_OUT_OF_MEMORY``,
#: ``cudaErrorMemoryAllocation``), PyTorch (``torch.OutOfMemoryError``), TensorRT ("out of memory",
#: "Requested amount of GPU memory ... could not be allocated"), C++ ``std::bad_alloc``, POSIX ENOMEM.
_OOM_RE = re.compile(
    r"MemoryError|out of memory|OutOfMemory|OUT_OF_MEMORY|cudaErrorMemoryAllocation|Failed to allocate memory|"
    r"failed to allocate|bad_alloc|Cannot allocate memory|could not be allocated|"
    r"Available memory of \d+ is smaller than requested bytes|insufficient memory",
    re.IGNORECASE)


def is_out_of_memory(message: str | None) -> bool:
    """True when ``message`` (a run's error text) reports an out-of-memory or allocation failure."""
    return bool(message) and _OOM_RE.search(message or "") is not None


@dataclass(frozen=True)
class SweepPoint:
    """One batch of a sweep: ``items_per_s`` (items/s) when its run succeeded, else ``error`` (the run's
    error text)."""

    batch: int
    items_per_s: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class SweepDecision:
    """What :func:`decide` says after the last point.

    Attributes:
        next_batch: the batch to measure next, or None when the sweep stops.
        reason: None while going on, else one of :data:`STOP_REASONS`.
        detail: a sentence for the user (the gain, the error, the bound).
        gain: relative items/s gain of the last batch over the previous one (None when not computable).
        knee_batch: :func:`knee_batch` of the points so far.
        limit_batch: the batch that ran out of memory (reason ``out_of_memory``), else None.
    """

    next_batch: int | None
    reason: str | None
    detail: str
    gain: float | None
    knee_batch: int | None
    limit_batch: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe dict of all fields."""
        return asdict(self)


def sweep_batches(start: int, max_batch: int) -> list[int]:
    """Every batch a sweep from ``start`` may reach: ``start * 2**k <= max_batch``.

    Raises:
        InputError: ``start`` < 1 or ``max_batch`` < ``start`` (names ``--batch`` / ``--max-batch``).
    """
    if start < 1:
        raise InputError(f"--batch {start}: the sweep's first batch must be >= 1")
    if max_batch < start:
        raise InputError(f"--max-batch {max_batch}: smaller than the sweep's first batch (--batch {start})")
    out = [start]
    while out[-1] * 2 <= max_batch:
        out.append(out[-1] * 2)
    return out


def gain(previous_items_per_s: float, items_per_s: float) -> float:
    """Relative throughput gain ``items_per_s / previous - 1`` (both items/s, previous > 0).

    Raises:
        InputError: ``previous_items_per_s`` <= 0.
    """
    if previous_items_per_s <= 0:
        raise InputError(f"previous throughput {previous_items_per_s} items/s must be > 0")
    return items_per_s / previous_items_per_s - 1.0


def knee_batch(points: Sequence[SweepPoint], min_gain: float = MIN_GAIN) -> int | None:
    """The smallest succeeded batch with items/s >= ``(1 - min_gain) * best items/s`` of ``points``
    (None when no point succeeded)."""
    ok = [p for p in points if p.error is None and p.items_per_s is not None]
    if not ok:
        return None
    best = max(float(p.items_per_s) for p in ok)  # type: ignore[arg-type]
    return min(p.batch for p in ok if float(p.items_per_s) >= (1.0 - min_gain) * best)  # type: ignore[arg-type]


def decide(points: Sequence[SweepPoint], max_batch: int = DEFAULT_MAX_BATCH, min_gain: float = MIN_GAIN) -> SweepDecision:
    """The sweep's next step after ``points`` (in the order measured; each batch twice the previous).

    Rules, in order, on the last point: failed out of memory -> stop ``out_of_memory`` (its batch is the
    limit); failed otherwise -> stop ``failed``; items/s gain over the previous point < ``min_gain`` -> stop
    ``plateau``; twice its batch > ``max_batch`` -> stop ``max_batch``; else go on with twice its batch.

    Raises:
        InputError: no points, or a succeeded point without items/s.
    """
    if not points:
        raise InputError("a batch sweep decision needs at least one measured batch")
    last = points[-1]
    knee = knee_batch(points, min_gain)
    if last.error is not None:
        first_line = last.error.strip().splitlines()[0] if last.error.strip() else "no reason recorded"
        if is_out_of_memory(last.error):
            return SweepDecision(None, "out_of_memory", f"batch {last.batch} ran out of memory: {first_line}", None,
                                 knee, limit_batch=last.batch)
        return SweepDecision(None, "failed", f"batch {last.batch} failed: {first_line}", None, knee)
    if last.items_per_s is None:
        raise InputError(f"batch {last.batch}: a succeeded sweep point needs its items/s")
    g: float | None = None
    if len(points) >= 2 and points[-2].error is None and points[-2].items_per_s:
        prev = points[-2]
        g = gain(float(prev.items_per_s), float(last.items_per_s))  # type: ignore[arg-type]
        if g < min_gain:
            return SweepDecision(None, "plateau", f"batch {last.batch}: {last.items_per_s:.4g} items/s, {g:+.1%} over "
                                 f"batch {prev.batch} ({prev.items_per_s:.4g} items/s), less than the "
                                 f"{min_gain:.0%} that keeps the sweep going", g, knee)
    nxt = last.batch * 2
    if nxt > max_batch:
        return SweepDecision(None, "max_batch", f"the next batch {nxt} would exceed --max-batch {max_batch}", g, knee)
    return SweepDecision(nxt, None, f"batch {last.batch}: going on with batch {nxt}", g, knee)
