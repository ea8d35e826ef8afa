"""Compare a variant's outputs with reference (fp32) outputs on the same inputs. Pure numpy.

Definitions (per output tensor, computed in float64 on the flattened arrays; the candidate's NaN/Inf
elements are counted, and excluded from the error metrics):

- ``max_abs_err`` = max |c - r|.
- ``max_rel_err`` = max |c - r| / |r| over elements with r != 0 (as Polygraphy's ``CompareFunc.simple``
  defines relative difference, ``absdiff / abs(reference)``; elements where the reference is exactly 0
  are left out rather than divided by an epsilon, so one near-zero element does not dominate).
- ``cosine`` = <c, r> / (||c|| ||r||); 1.0 when both are all zeros, 0.0 when exactly one is.
- ``nan_count`` / ``inf_count``: NaN / +-Inf elements of the candidate.
- ``all_zero``: the candidate has at least one element and all of them are exactly 0.
- ``valid``: no NaN, no Inf, and not all-zero (an all-zero candidate is still valid when the reference
  is all-zero too).

The aggregate row (``output_name == "*"``) takes the max of the errors, the *minimum* cosine (the
worst output, so a bad small output is not hidden by a large good one), summed counts, ``all_zero``
when every output is all-zero, and ``valid`` when every output is valid.

A run without a reference (the fp32 reference itself) is checked with :func:`output_health`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from profiles.errors import InputError

AGGREGATE = "*"


@dataclass(frozen=True)
class AccuracyRecord:
    """Comparison of one output (or the aggregate ``"*"``) with the reference; see module doc.

    Error fields are None when no element could be compared (empty output, or all candidate
    elements NaN/Inf). ``details``: ``{"shape", "dtype", "compared_elements"}`` per output.
    """

    output_name: str
    max_abs_err: float | None
    max_rel_err: float | None
    cosine: float | None
    nan_count: int
    inf_count: int
    all_zero: bool
    valid: bool
    details: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict."""
        return asdict(self)


@dataclass(frozen=True)
class OutputHealth:
    """NaN/Inf/all-zero check of one set of outputs without a reference."""

    nan_count: int
    inf_count: int
    all_zero: bool
    per_output: dict[str, dict[str, Any]]

    @property
    def valid(self) -> bool:
        """No NaN, no Inf, not all outputs all-zero."""
        return self.nan_count == 0 and self.inf_count == 0 and not self.all_zero


def _as_f64(name: str, a: Any) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise InputError(f"output {name!r}: dtype {arr.dtype} cannot be compared numerically")
    return arr.astype(np.float64, copy=False).ravel()


def _counts(arr: np.ndarray) -> tuple[int, int, bool]:
    return int(np.isnan(arr).sum()), int(np.isinf(arr).sum()), bool(arr.size > 0 and not np.any(arr))


def output_health(outputs: Mapping[str, Any]) -> OutputHealth:
    """NaN/Inf counts and all-zero flag of ``outputs`` (name -> array of any numeric dtype/shape).

    ``all_zero`` is True when every non-empty output is all zeros (a model whose outputs are all
    exactly 0 on random inputs is almost surely broken).

    Raises:
        InputError: an output is not numeric (names it).
    """
    per: dict[str, dict[str, Any]] = {}
    for name, value in outputs.items():
        n, i, z = _counts(_as_f64(name, value))
        per[name] = {"nan_count": n, "inf_count": i, "all_zero": z}
    nonempty = [name for name, v in outputs.items() if np.asarray(v).size > 0]
    return OutputHealth(
        nan_count=sum(p["nan_count"] for p in per.values()),
        inf_count=sum(p["inf_count"] for p in per.values()),
        all_zero=bool(nonempty) and all(per[n]["all_zero"] for n in nonempty),
        per_output=per,
    )


def compare_output(name: str, reference: Any, candidate: Any) -> AccuracyRecord:
    """Compare one output tensor; see module doc for every formula.

    Args:
        name: output name (used in the record and in errors).
        reference: fp32 reference array, any numeric dtype and shape.
        candidate: the variant's array; must have the reference's shape.

    Raises:
        InputError: shapes differ or a dtype is not numeric (names the output).
    """
    ref_arr, cand_arr = np.asarray(reference), np.asarray(candidate)
    if ref_arr.shape != cand_arr.shape:
        raise InputError(f"output {name!r}: shape {list(cand_arr.shape)} differs from the reference's "
                         f"{list(ref_arr.shape)}")
    r, c = _as_f64(name, ref_arr), _as_f64(name, cand_arr)
    nan_count, inf_count, all_zero = _counts(c)
    ref_zero = bool(r.size > 0 and not np.any(r))
    ok = np.isfinite(c) & np.isfinite(r)
    rc, cc = r[ok], c[ok]
    max_abs = max_rel = cosine = None
    if rc.size:
        diff = np.abs(cc - rc)
        max_abs = float(diff.max())
        nz = rc != 0
        max_rel = float((diff[nz] / np.abs(rc[nz])).max()) if np.any(nz) else None
        nr, nc = float(np.linalg.norm(rc)), float(np.linalg.norm(cc))
        if nr == 0 and nc == 0:
            cosine = 1.0
        elif nr == 0 or nc == 0:
            cosine = 0.0
        else:
            cosine = float(np.clip(np.dot(rc, cc) / (nr * nc), -1.0, 1.0))
    valid = nan_count == 0 and inf_count == 0 and not (all_zero and not ref_zero)
    return AccuracyRecord(
        output_name=name, max_abs_err=max_abs, max_rel_err=max_rel, cosine=cosine,
        nan_count=nan_count, inf_count=inf_count, all_zero=all_zero, valid=valid,
        details={"shape": list(cand_arr.shape), "dtype": str(cand_arr.dtype), "compared_elements": int(rc.size)},
    )


def _max_or_none(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def compare_outputs(reference: Mapping[str, Any], candidate: Mapping[str, Any]) -> list[AccuracyRecord]:
    """Compare every reference output with the candidate's; per output, then the aggregate ``"*"`` last.

    Raises:
        InputError: the candidate lacks an output of the reference (names it), or a shape differs.
    """
    records = []
    for name, ref in reference.items():
        if name not in candidate:
            raise InputError(f"output {name!r} of the reference is missing from the variant's outputs "
                             f"(it has {sorted(candidate)})")
        records.append(compare_output(name, ref, candidate[name]))
    cosines = [r.cosine for r in records if r.cosine is not None]
    records.append(AccuracyRecord(
        output_name=AGGREGATE,
        max_abs_err=_max_or_none([r.max_abs_err for r in records]),
        max_rel_err=_max_or_none([r.max_rel_err for r in records]),
        cosine=min(cosines) if cosines else None,
        nan_count=sum(r.nan_count for r in records),
        inf_count=sum(r.inf_count for r in records),
        all_zero=bool(records) and all(r.all_zero for r in records),
        valid=all(r.valid for r in records),
        details={"outputs": len(records), "cosine": "min over outputs"},
    ))
    return records
