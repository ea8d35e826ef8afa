"""Parsers of Polygraphy outputs (pure).

- ``polygraphy run ... --onnxrt --trt`` log: per-output comparison (``Comparing Output: 'y'``, the
  ``Absolute Difference``/``Relative Difference`` stats lines, ``PASSED|FAILED | Output: 'y'``), the
  ``Accuracy Summary`` (passed iterations, pass rate) and the final ``PASSED|FAILED | Runtime: Ns``.
- ``polygraphy inspect capability`` log: the ``===== Summary =====`` table (Operator | Node | Reason)
  of nodes TensorRT's ONNX parser cannot import.
- ``--save-accuracy-results`` JSON (``AccuracyResult`` objects: per runner pair, per iteration, per
  output ``OutputCompareResult`` with ``max_absdiff``, ``max_reldiff``, ``passed``...).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from profiles.errors import ParseError

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf"
_COMPARING_RE = re.compile(r"Comparing Output: '([^']*)' \(dtype=(\w+), shape=\(([^)]*)\)\)")
_STATS_RE = re.compile(rf"(Absolute|Relative) Difference \| Stats: mean=({_NUM}).*?\bmax=({_NUM})")
_TOL_RE = re.compile(rf"Tolerance: \[abs=({_NUM}), rel=({_NUM})\]")
_RESULT_RE = re.compile(r"\b(PASSED|FAILED) \| Output: '([^']*)'")
_SUMMARY_RE = re.compile(r"Accuracy Summary \| (.+?) vs\. (.+?) \| Passed: (\d+)/(\d+) iterations \| Pass Rate: ([\d.]+)%")
_FINAL_RE = re.compile(r"^\[[IEW]\] (PASSED|FAILED) \| Runtime: ([\d.]+)s \| Command: (.*)$")


@dataclass(frozen=True)
class OutputComparison:
    """Comparison of one output tensor between two runners (e.g. ONNX Runtime vs TensorRT).

    ``max_abs_err``/``max_rel_err`` (and means) from the printed Absolute/Relative Difference stats;
    ``atol``/``rtol`` the tolerance applied; ``passed`` the printed verdict (None if not printed).
    """

    name: str
    dtype: str | None = None
    shape: list[int] | None = None
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    mean_abs_err: float | None = None
    mean_rel_err: float | None = None
    atol: float | None = None
    rtol: float | None = None
    passed: bool | None = None


@dataclass
class PolygraphyRun:
    """A parsed ``polygraphy run`` log."""

    outputs: list[OutputComparison] = field(default_factory=list)
    runners: tuple[str, str] | None = None
    passed_iterations: int | None = None
    total_iterations: int | None = None
    pass_rate_pct: float | None = None
    passed: bool | None = None
    runtime_s: float | None = None
    command: str | None = None


@dataclass(frozen=True)
class UnsupportedNode:
    """One row of ``polygraphy inspect capability``'s summary: a node the TensorRT ONNX parser rejects."""

    operator: str
    node: str
    reason: str


def _shape(text: str) -> list[int]:
    return [int(x) for x in text.replace(" ", "").split(",") if x]


def parse_polygraphy_run(text: str, source: str = "<polygraphy log>") -> PolygraphyRun:
    """Parse a ``polygraphy run`` log with an accuracy comparison.

    Raises:
        ParseError: no ``Comparing Output`` and no ``Accuracy Summary`` in the text (names ``source``).
    """
    run = PolygraphyRun()
    cur: dict[str, Any] | None = None

    def flush() -> None:
        if cur is not None:
            run.outputs.append(OutputComparison(**cur))

    for line in text.splitlines():
        m = _COMPARING_RE.search(line)
        if m:
            flush()
            cur = {"name": m.group(1), "dtype": m.group(2), "shape": _shape(m.group(3))}
            continue
        if cur is not None:
            t = _TOL_RE.search(line)
            if t:
                cur["atol"], cur["rtol"] = float(t.group(1)), float(t.group(2))
                continue
            s = _STATS_RE.search(line)
            if s:
                kind = "abs" if s.group(1) == "Absolute" else "rel"
                cur[f"mean_{kind}_err"], cur[f"max_{kind}_err"] = float(s.group(2)), float(s.group(3))
                continue
            r = _RESULT_RE.search(line)
            if r and r.group(2) == cur["name"]:
                cur["passed"] = r.group(1) == "PASSED"
                flush()
                cur = None
                continue
        sm = _SUMMARY_RE.search(line)
        if sm:
            run.runners = (sm.group(1), sm.group(2))
            run.passed_iterations, run.total_iterations = int(sm.group(3)), int(sm.group(4))
            run.pass_rate_pct = float(sm.group(5))
            continue
        fm = _FINAL_RE.match(line)
        if fm:
            run.passed, run.runtime_s, run.command = fm.group(1) == "PASSED", float(fm.group(2)), fm.group(3)
    flush()
    if not run.outputs and run.pass_rate_pct is None:
        raise ParseError(f"{source}: not a `polygraphy run` comparison log (no 'Comparing Output' or 'Accuracy Summary')")
    return run


def parse_capability_summary(text: str, source: str = "<polygraphy log>") -> list[UnsupportedNode]:
    """Rows of ``polygraphy inspect capability``'s ``===== Summary =====`` table.

    Raises:
        ParseError: the text has no summary table (names ``source``).
    """
    lines = text.splitlines()
    try:
        start = next(i for i, ln in enumerate(lines) if "===== Summary =====" in ln)
    except StopIteration:
        raise ParseError(f"{source}: no '===== Summary =====' table of `polygraphy inspect capability`") from None
    rows: list[UnsupportedNode] = []
    header_seen = False
    for ln in lines[start + 1:]:
        if ln.startswith("["):
            break
        cells = [c.strip() for c in ln.split("|")]
        if len(cells) < 4:
            continue
        if not header_seen:
            header_seen = cells[1].lower() == "operator"
            continue
        rows.append(UnsupportedNode(operator=cells[1], node=cells[2], reason="|".join(cells[3:]).strip()))
    return rows


def parse_accuracy_results(text: str | Any, source: str = "<accuracy results>") -> list[dict[str, Any]]:
    """Flatten a ``--save-accuracy-results`` JSON into one dict per (runner pair, iteration, output):
    ``{"runners": [a, b], "iteration", "output", "max_abs_err", "max_rel_err", "mean_abs_err",
    "mean_rel_err", "atol", "rtol", "passed", "result_class", "threshold", "l2_norm",
    "cosine_similarity", "psnr"}`` (fields a result class does not have are None: an ``L2Result``
    carries only ``l2_norm``; PSNR may be ``inf`` for identical outputs).

    Raises:
        ParseError: not a Polygraphy ``AccuracyResult`` list (names ``source``).
    """
    data = json.loads(text) if isinstance(text, str) else text
    if not isinstance(data, dict) or not isinstance(data.get("lst"), list):
        raise ParseError(f"{source}: not a Polygraphy --save-accuracy-results file (no top-level 'lst')")
    out: list[dict[str, Any]] = []
    for acc in data["lst"]:
        if not isinstance(acc, dict) or acc.get("polygraphy_class") != "AccuracyResult":
            raise ParseError(f"{source}: entry is not an AccuracyResult")
        for pair in acc.get("lst", []):
            runners, iterations = pair[0], pair[1]
            for it_idx, it in enumerate(iterations):
                for name, res in it.items():
                    th = res.get("thresholds") or {}
                    out.append({
                        "runners": list(runners), "iteration": it_idx, "output": name,
                        "max_abs_err": res.get("max_absdiff"), "max_rel_err": res.get("max_reldiff"),
                        "mean_abs_err": res.get("mean_absdiff"), "mean_rel_err": res.get("mean_reldiff"),
                        "atol": th.get("atol"), "rtol": th.get("rtol"), "passed": res.get("passed"),
                        "result_class": res.get("polygraphy_class"), "threshold": th.get("threshold"),
                        "l2_norm": res.get("l2_norm"), "cosine_similarity": res.get("cosine_similarity"),
                        "psnr": res.get("psnr"),
                    })
    return out
