"""Parse an ONNX Runtime profiler trace (``SessionOptions.enable_profiling``) into per-node timings.

The trace is a JSON array of Chrome-trace "complete" events (``ph: "X"``), ``ts`` and ``dur`` in
microseconds. ONNX Runtime writes, per ``InferenceSession.run``:

- one ``{"cat": "Session", "name": "model_run"}`` event spanning the whole run;
- per executed kernel, one ``{"cat": "Node", "name": "<node name>_kernel_time"}`` event whose ``args``
  carry ``op_name``, ``provider``, ``input_type_shape`` / ``output_type_shape`` (lists of
  ``{dtype: [dims]}``), ``node_index`` and memory/thread statistics. (``_fence_before`` /
  ``_fence_after`` events of older versions are ignored.)

Node names are those of the *optimised* graph ONNX Runtime executed (fused nodes such as
``.../MatMulAddFusion`` or NCHWc-transformed ``..._nchwc`` keep the name ONNX Runtime gave them);
they are stored as printed so that another precision's run of the same graph matches by name where
the node survives.

Per node (grouped by name and op type) we report, over the inferences kept (see ``skip_runs``):
``total_ms`` (sum of kernel durations), ``count`` (kernel events), ``avg_ms`` = total / inferences,
``median_ms`` = median over inferences of the node's summed time in that inference (0 in an inference
where it did not run) and ``percentage`` = share of the sum of all nodes' ``total_ms``.

Execution providers: each kernel event's ``args.provider`` says which provider ran the node;
:func:`provider_placement` counts the distinct nodes per provider and lists the nodes that ran on another
provider than the one requested (on a CUDA session: the CPU fallbacks, and ORT's ``Memcpy*`` copy nodes at
the boundaries between them).

What a ``_kernel_time`` duration is: ONNX Runtime's host clock around the kernel's ``Compute()`` call
(``KernelScope`` in ``onnxruntime/core/framework/session_scope.cc``; no device synchronisation). On the CPU
provider that is the node's execution time. On the CUDA provider kernels are launched asynchronously, so it
is the host-side time to enqueue the node's work (launch, plus any synchronisation the kernel itself does),
not GPU execution time; GPU kernel times need an ONNX Runtime built with ``--enable_cuda_profiling``
(CUPTI ``"Kernel"`` events, not parsed here). :data:`TIME_BASIS` names both, and engines store it with
every layer row.

Pure: no files are written, no DB, no onnxruntime import.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from profiles.errors import ParseError

KERNEL_SUFFIX = "_kernel_time"
US_PER_MS = 1000.0

#: What a node's time means, by the provider that ran it (see the module doc).
TIME_BASIS: dict[str, str] = {
    "CPUExecutionProvider": "host: the node's execution on the CPU (ONNX Runtime profiler, kernel_time)",
    "CUDAExecutionProvider": ("host-side enqueue time of the node's CUDA work (ONNX Runtime profiler, kernel_time; "
                              "asynchronous launches, no device sync), not GPU execution time"),
}


@dataclass(frozen=True)
class OrtNodeTiming:
    """Timing of one node of the executed (optimised) graph.

    Attributes:
        idx: order of first execution in the kept inferences (0-based).
        name: node name as in the trace, without the ``_kernel_time`` suffix.
        op_type: ``args.op_name`` (e.g. ``Conv``, ``FusedConv``, ``MatMulInteger``), None if absent.
        provider: execution provider that ran it (``CPUExecutionProvider``...), None if absent.
        avg_ms: mean time per inference, ms.
        median_ms: median over inferences of the node's time in that inference, ms.
        total_ms: summed kernel time over the kept inferences, ms.
        count: kernel events (invocations) in the kept inferences.
        percentage: ``total_ms`` / sum of all nodes' ``total_ms`` x 100.
        input_shapes / output_shapes: ``[[dims...], ...]`` of the first kept invocation.
        input_dtypes / output_dtypes: ONNX Runtime's type names (``float``, ``float16``, ``int8``...).
    """

    idx: int
    name: str
    op_type: str | None
    provider: str | None
    avg_ms: float
    median_ms: float
    total_ms: float
    count: int
    percentage: float
    input_shapes: list[list[int]] = field(default_factory=list)
    output_shapes: list[list[int]] = field(default_factory=list)
    input_dtypes: list[str] = field(default_factory=list)
    output_dtypes: list[str] = field(default_factory=list)

    @property
    def fused(self) -> bool:
        """True for a node ONNX Runtime created by fusing others (``Fused*`` ops, ``*Fusion`` names)."""
        op = self.op_type or ""
        return op.startswith("Fused") or "Fusion" in self.name


@dataclass(frozen=True)
class OrtProfile:
    """A parsed trace: per-node timings plus what the numbers are over.

    Attributes:
        nodes: per-node timings in first-execution order.
        inferences: ``model_run`` events kept (the divisor of ``avg_ms``).
        skipped_runs: ``model_run`` events dropped at the start (warm-up inside the profiling session).
        run_ms: per-kept-inference wall time of ``model_run`` (ms), for reference (includes the
            profiler's own overhead, so it is not the headline latency).
    """

    nodes: list[OrtNodeTiming]
    inferences: int
    skipped_runs: int
    run_ms: list[float]

    @property
    def total_node_ms(self) -> float:
        """Sum of all nodes' ``total_ms``."""
        return float(sum(n.total_ms for n in self.nodes))


def _type_shapes(entries: Any) -> tuple[list[str], list[list[int]]]:
    dtypes: list[str] = []
    shapes: list[list[int]] = []
    if not isinstance(entries, list):
        return dtypes, shapes
    for entry in entries:
        if isinstance(entry, Mapping) and len(entry) == 1:
            (dtype, dims), = entry.items()
            dtypes.append(str(dtype))
            shapes.append([int(d) for d in dims] if isinstance(dims, list) else [])
    return dtypes, shapes


def parse_ort_trace(events: Sequence[Mapping[str, Any]] | Mapping[str, Any], *, skip_runs: int = 0,
                    source: str = "trace") -> OrtProfile:
    """Per-node timings from ONNX Runtime profiler events.

    Args:
        events: the decoded JSON (a list of events, or ``{"traceEvents": [...]}``).
        skip_runs: drop node events belonging to the first ``skip_runs`` ``model_run`` events (the
            profiling session's warm-up). When the trace has no ``model_run`` events every kernel event
            counts as its own inference and ``skip_runs`` is ignored.
        source: name used in error messages (the file path).

    Returns:
        :class:`OrtProfile`; ``nodes`` is empty when no kernel events remain.

    Raises:
        ParseError: not a list of events, or an event lacks a numeric ``ts``/``dur``.
    """
    if isinstance(events, Mapping):
        events = events.get("traceEvents", None)  # type: ignore[assignment]
    if not isinstance(events, Sequence) or isinstance(events, (str, bytes)):
        raise ParseError(f"{source}: an ONNX Runtime profile is a JSON list of trace events")

    runs: list[tuple[float, float]] = []
    kernels: list[tuple[float, float, Mapping[str, Any], str]] = []
    for i, ev in enumerate(events):
        if not isinstance(ev, Mapping):
            raise ParseError(f"{source}: event {i} is not an object")
        cat, name = ev.get("cat"), ev.get("name", "")
        if (cat == "Session" and name == "model_run") or (cat == "Node" and str(name).endswith(KERNEL_SUFFIX)):
            try:
                ts, dur = float(ev["ts"]), float(ev["dur"])
            except (KeyError, TypeError, ValueError):
                raise ParseError(f"{source}: event {i} ({name!r}) lacks a numeric ts/dur") from None
            if cat == "Session":
                runs.append((ts, ts + dur))
            else:
                raw_args = ev.get("args")
                args: Mapping[str, Any] = raw_args if isinstance(raw_args, Mapping) else {}
                kernels.append((ts, dur, args, str(name)[: -len(KERNEL_SUFFIX)]))

    runs.sort()
    kernels.sort(key=lambda k: k[0])
    if runs:
        starts = [r[0] for r in runs]
        skip = min(max(skip_runs, 0), len(runs))
        kept_runs = runs[skip:]
        n_inf = len(kept_runs)

        def run_of(ts: float) -> int | None:
            j = bisect.bisect_right(starts, ts) - 1
            if j < skip or j < 0 or ts > runs[j][1]:
                return None
            return j - skip
    else:
        kept_runs, skip, n_inf = [], 0, len(kernels)
        counter = iter(range(len(kernels)))

        def run_of(ts: float) -> int | None:  # noqa: ARG001 - every kernel is its own inference
            return next(counter)

    per_node: dict[tuple[str, str | None], dict[str, Any]] = {}
    for ts, dur, args, node in kernels:
        r = run_of(ts)
        if r is None:
            continue
        op = args.get("op_name")
        key = (node, str(op) if op is not None else None)
        rec = per_node.get(key)
        if rec is None:
            in_dt, in_sh = _type_shapes(args.get("input_type_shape"))
            out_dt, out_sh = _type_shapes(args.get("output_type_shape"))
            rec = per_node[key] = {
                "per_run_us": np.zeros(max(n_inf, 1)), "count": 0, "provider": args.get("provider"),
                "in_dt": in_dt, "in_sh": in_sh, "out_dt": out_dt, "out_sh": out_sh,
            }
        rec["per_run_us"][r] += dur
        rec["count"] += 1

    grand_total_us = float(sum(rec["per_run_us"].sum() for rec in per_node.values()))
    nodes = []
    for idx, ((node, op), rec) in enumerate(per_node.items()):
        total_us = float(rec["per_run_us"].sum())
        nodes.append(OrtNodeTiming(
            idx=idx, name=node, op_type=op, provider=rec["provider"],
            avg_ms=total_us / max(n_inf, 1) / US_PER_MS,
            median_ms=float(np.median(rec["per_run_us"])) / US_PER_MS,
            total_ms=total_us / US_PER_MS,
            count=int(rec["count"]),
            percentage=100.0 * total_us / grand_total_us if grand_total_us > 0 else 0.0,
            input_shapes=rec["in_sh"], output_shapes=rec["out_sh"],
            input_dtypes=rec["in_dt"], output_dtypes=rec["out_dt"],
        ))
    return OrtProfile(nodes=nodes, inferences=n_inf, skipped_runs=skip,
                      run_ms=[(e - s) / US_PER_MS for s, e in kept_runs])


@dataclass(frozen=True)
class ProviderPlacement:
    """Which execution provider ran which node, from a profile (see :func:`provider_placement`).

    Attributes:
        requested: the provider the session was asked to run on (e.g. ``CUDAExecutionProvider``).
        counts: ``{provider: distinct nodes}`` (``"unknown"`` for events without ``args.provider``).
        fallback_nodes: ``[(node name, op type, provider)]`` of nodes that ran elsewhere than ``requested``,
            ORT's copy nodes (``Memcpy*``) excluded.
        copy_nodes: names of ``MemcpyFromHost`` / ``MemcpyToHost`` nodes ONNX Runtime inserted between
            providers (host-device copies inside the graph).
    """

    requested: str
    counts: dict[str, int]
    fallback_nodes: list[tuple[str, str | None, str]]
    copy_nodes: list[str]

    def warning(self) -> str | None:
        """One sentence naming the fallback nodes (at most 20, then a count), or None when every node ran on
        ``requested``."""
        if not self.fallback_nodes:
            return None
        shown = ", ".join(f"{n} ({op or '?'} on {p})" for n, op, p in self.fallback_nodes[:20])
        more = f" and {len(self.fallback_nodes) - 20} more" if len(self.fallback_nodes) > 20 else ""
        total = sum(self.counts.values())
        copies = f"; {len(self.copy_nodes)} host-device copy node(s) inserted" if self.copy_nodes else ""
        return (f"{len(self.fallback_nodes)} of {total} node(s) did not run on {self.requested}: {shown}{more}"
                f"{copies} (ONNX Runtime profiler, args.provider)")

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {"requested": self.requested, "nodes_per_provider": dict(self.counts),
                "fallback_nodes": [{"name": n, "op_type": op, "provider": p} for n, op, p in self.fallback_nodes],
                "copy_nodes": list(self.copy_nodes)}


COPY_OPS = ("MemcpyFromHost", "MemcpyToHost")


def provider_placement(profile: OrtProfile, requested: str) -> ProviderPlacement:
    """Count the profile's nodes per execution provider and list those not on ``requested``.

    A node is one (name, op type) of :attr:`OrtProfile.nodes`; its provider is the first kernel event's
    ``args.provider``.
    """
    counts: dict[str, int] = {}
    fallback: list[tuple[str, str | None, str]] = []
    copies: list[str] = []
    for n in profile.nodes:
        prov = n.provider or "unknown"
        counts[prov] = counts.get(prov, 0) + 1
        if n.op_type in COPY_OPS:
            copies.append(n.name)
        elif prov != requested:
            fallback.append((n.name, n.op_type, prov))
    return ProviderPlacement(requested, counts, fallback, copies)


def load_ort_trace(path: str | Path, *, skip_runs: int = 0) -> OrtProfile:
    """Read and parse an ONNX Runtime profile JSON file (see :func:`parse_ort_trace`).

    Raises:
        ParseError: the file is missing, not JSON, or not a trace (message names the file).
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParseError(f"{p}: ONNX Runtime profile not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ParseError(f"{p}: not a JSON ONNX Runtime profile ({exc})") from None
    return parse_ort_trace(data, skip_runs=skip_runs, source=str(p))
