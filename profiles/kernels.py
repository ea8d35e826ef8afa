"""Kernel timelines: the records every GPU-trace source is parsed into, and the summaries the Kernels page shows.

Sources (each a parser elsewhere in ``profiles``, all producing a :class:`KernelTrace`):

- ``nsys``: an ``nsys export --type sqlite`` file (``profiles.nsys_export``);
- ``torch.profiler``: a Kineto Chrome trace of a PyTorch run (``profiles.kineto_trace``);
- ``onnxruntime+kineto``: a Kineto trace taken around ONNX Runtime ``session.run`` calls (CUPTI records every
  kernel of the process), its kernels attributed to ONNX Runtime's profiler nodes (``profiles.kineto_trace``).

Conventions (AIPerf style: units in names, integer nanoseconds):

- every time is integer ns relative to the trace's origin (``KernelTrace.origin_ns``: the earliest event of
  the trace; an absolute clock reading of the source's own clock, kept only to align two sources of one capture);
- ``kind`` of a GPU activity is ``kernel``, ``memcpy`` or ``memset``;
- ``category`` is :func:`categorize`'s word, the same whatever the source, so the Kernels page reads the same.

Pure: no files written, no DB, no subprocesses.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

#: Activity kinds of :class:`GpuActivity`.
ACTIVITY_KINDS = ("kernel", "memcpy", "memset")

#: Category words, in display order (the time-by-category chart uses this order).
CATEGORIES = ("gemm/conv", "attention", "elementwise/reduction", "memcpy", "memset", "other")

#: Copy directions (CUPTI's ``copyKind`` names, shortened as nsys and Kineto print them).
COPY_KINDS = ("HtoD", "DtoH", "DtoD", "HtoH", "PtoP", "unknown")

# Order matters: attention kernels often contain "gemm" in their names (flash/fmha), so attention is tried first.
_ATTENTION = re.compile(r"flash|fmha|attention|attn|softmax_warp|sdpa|mha|cutlass.*fmha|xformers", re.I)
_GEMM_CONV = re.compile(r"gemm|gemv|conv|cublas|cudnn|cutlass|sm\d+_xmma|xmma|hmma|wgmma|dgrad|wgrad|"
                        r"implicit_|winograd|matmul|magma|nchwToNhwc|nhwcToNchw|s1688|s16816|h884|splitK", re.I)
_ELEMENTWISE = re.compile(r"elementwise|reduce|reduction|norm|softmax|gelu|relu|silu|sigmoid|tanh|add|mul|"
                          r"copy|cast|fill|index|gather|scatter|cat|transpose|permute|pool|mean|sum|bias|"
                          r"vectorized|unrolled|triton_|where|clamp|pow|exp|erf|layer_norm|batch_norm|bn_", re.I)


def categorize(name: str, kind: str = "kernel") -> str:
    """The category word (:data:`CATEGORIES`) of one GPU activity.

    Args:
        name: kernel name as the source printed it (demangled or not).
        kind: ``kernel``, ``memcpy`` or ``memset``.

    Rules (a heuristic on names, the same for every source; the Kernels page says so): memcpy/memset by kind;
    attention before GEMM/conv (flash/fmha kernels contain "gemm"); then GEMM/conv (cuBLAS, cuDNN, CUTLASS,
    xmma/wgmma, implicit-GEMM convolutions); then elementwise/reduction (PyTorch's elementwise and reduce
    kernels, norms, activations, copies, Triton fusions); else ``other``.
    """
    if kind == "memcpy":
        return "memcpy"
    if kind == "memset":
        return "memset"
    if _ATTENTION.search(name):
        return "attention"
    if _GEMM_CONV.search(name):
        return "gemm/conv"
    if _ELEMENTWISE.search(name):
        return "elementwise/reduction"
    return "other"


def short_name(name: str) -> str:
    """A kernel's function name without return type, namespaces, template arguments or parameters
    (``void at::native::vectorized_elementwise_kernel<8, ...>(int, ...)`` -> ``vectorized_elementwise_kernel``):
    what ``ncu --kernel-name-base function`` matches, and a readable label."""
    s = name.strip()
    if s.startswith("void "):
        s = s[5:]
    depth = 0
    out = []
    for ch in s:  # drop template arguments and everything from the parameter list on
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(depth - 1, 0)
        elif ch == "(" and depth == 0:
            break
        elif depth == 0:
            out.append(ch)
    base = "".join(out).strip()
    base = base.split("::")[-1].strip() if "::" in base else base
    return base or name


@dataclass
class GpuActivity:
    """One kernel, memcpy or memset on the GPU.

    Attributes:
        kind: ``kernel`` | ``memcpy`` | ``memset``.
        name: kernel name (demangled where the source had it), or ``Memcpy HtoD`` / ``Memset``.
        start_ns, duration_ns: GPU start and duration, ns (start relative to the trace origin).
        device: CUDA device index, or None.
        stream: CUDA stream id as the source numbers it, or None.
        correlation_id: CUPTI correlation id linking it to the API call that launched it, or None.
        launch_ns: start of that API call (host), ns relative to the origin, or None.
        grid, block: ``[x, y, z]`` launch dimensions (kernels), or None.
        registers_per_thread, shared_mem_bytes: launch resources where the source has them.
        bytes: bytes copied or set (memcpy/memset), or None.
        copy_kind: ``HtoD`` | ``DtoH`` | ``DtoD`` | ``HtoH`` | ``PtoP`` | ``unknown`` (memcpy), else None.
        op: the framework op / ONNX Runtime node / NVTX range that launched it, or None.
        iteration: index of the measured iteration it ran in (``iteration N`` ranges), or None.
        category: :func:`categorize` of name and kind.
    """

    kind: str
    name: str
    start_ns: int
    duration_ns: int
    device: int | None = None
    stream: int | None = None
    correlation_id: int | None = None
    launch_ns: int | None = None
    grid: list[int] | None = None
    block: list[int] | None = None
    registers_per_thread: int | None = None
    shared_mem_bytes: int | None = None
    bytes: int | None = None
    copy_kind: str | None = None
    op: str | None = None
    iteration: int | None = None
    category: str = ""

    def __post_init__(self) -> None:
        if not self.category:
            self.category = categorize(self.name, self.kind)

    @property
    def end_ns(self) -> int:
        """``start_ns + duration_ns``."""
        return self.start_ns + self.duration_ns

    @property
    def throughput_bytes_per_s(self) -> float | None:
        """``bytes / duration`` for a memcpy/memset, bytes/s; None without bytes or with zero duration."""
        if self.bytes is None or self.duration_ns <= 0:
            return None
        return self.bytes / (self.duration_ns / 1e9)


@dataclass
class ApiCall:
    """One CUDA runtime or driver API call on a host thread. Times ns relative to the trace origin.

    ``kind``: ``runtime`` | ``driver``; ``correlation_id`` links it to the GPU activity it launched."""

    kind: str
    name: str
    start_ns: int
    duration_ns: int
    thread_id: int | None = None
    correlation_id: int | None = None


@dataclass
class Range:
    """An NVTX range (or a ``record_function`` annotation): ``text``, host ``start_ns``/``end_ns`` relative to
    the origin, ``thread_id``, ``domain`` (NVTX domain name, None for the default domain)."""

    text: str
    start_ns: int
    end_ns: int
    thread_id: int | None = None
    domain: str | None = None


@dataclass
class KernelTrace:
    """Everything one capture holds, from any source.

    Attributes:
        source_tool: ``nsys`` | ``torch.profiler`` | ``onnxruntime+kineto``.
        tool_version: the capturing tool's version (nsys version, torch version...), or None.
        schema_version: the export format's version (nsys ``META_DATA_EXPORT`` schema, Kineto schemaVersion).
        origin_ns: absolute time of the origin in the source's clock (ns), or None.
        activities, api_calls, ranges: the rows (times relative to the origin).
        devices: ``[{"id", "name", ...}]`` from the source (nsys ``TARGET_INFO_GPU``, Kineto deviceProperties).
        notes: what was missing or odd (no NVTX table, no kernels, ...), one sentence each.
        meta: JSON facts of the source (capture/analysis versions, file names...).
    """

    source_tool: str
    tool_version: str | None = None
    schema_version: str | None = None
    origin_ns: int | None = None
    activities: list[GpuActivity] = field(default_factory=list)
    api_calls: list[ApiCall] = field(default_factory=list)
    ranges: list[Range] = field(default_factory=list)
    devices: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def kernels(self) -> list[GpuActivity]:
        """Activities of kind ``kernel``."""
        return [a for a in self.activities if a.kind == "kernel"]

    def counts(self) -> dict[str, int]:
        """``{"kernels", "memcpy", "memset", "cuda_api_calls", "nvtx_ranges"}`` row counts."""
        by: defaultdict[str, int] = defaultdict(int)
        for a in self.activities:
            by[a.kind] += 1
        return {"kernels": by["kernel"], "memcpy": by["memcpy"], "memset": by["memset"],
                "cuda_api_calls": len(self.api_calls), "nvtx_ranges": len(self.ranges)}


@dataclass
class KernelStat:
    """Aggregate of the kernels with one name: ``count``, ``total_ns``, ``mean_ns``, ``min_ns``, ``max_ns``,
    ``share_pct`` of all GPU activity time, ``category``, ``short_name``, and the ops that launched it."""

    name: str
    short_name: str
    category: str
    kind: str
    count: int
    total_ns: int
    mean_ns: float
    min_ns: int
    max_ns: int
    share_pct: float
    ops: list[str] = field(default_factory=list)


@dataclass
class TraceSummary:
    """The summaries the Kernels page shows, the same for every source.

    Attributes:
        top: per-name aggregates, largest ``total_ns`` first (:class:`KernelStat`).
        by_category_ns: ``{category: summed duration ns}`` over :data:`CATEGORIES` (zeros included).
        busy_ns: union of GPU activity intervals per device, summed over devices, ns.
        span_ns: first activity start to last activity end (per device, summed), ns.
        idle_ns: ``span_ns - busy_ns``: gaps between kernels where the GPU did nothing, ns.
        idle_gaps: ``{"count", "p50_ns", "max_ns"}`` of the gaps between consecutive busy intervals.
        overlap_ns: summed activity durations minus ``busy_ns`` (concurrent kernels / copies), ns.
        iterations: the measured iterations seen (``iteration N`` ranges), or 0.
        per_iteration_busy_ns: busy time per iteration, in iteration order (empty without iterations).
    """

    top: list[KernelStat]
    by_category_ns: dict[str, int]
    busy_ns: int
    span_ns: int
    idle_ns: int
    idle_gaps: dict[str, Any]
    overlap_ns: int
    iterations: int
    per_iteration_busy_ns: list[int]

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form (stored in ``runs.config["kernel_summary"]`` and printed by ``--json``)."""
        return asdict(self)


def _union(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for s, e in sorted(intervals):
        if merged and s <= merged[-1][1]:
            if e > merged[-1][1]:
                merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return merged


def summarize_activities(activities: Sequence[GpuActivity], top_n: int | None = None) -> TraceSummary:
    """Top kernels, time by category and idle gaps of GPU activities (any source).

    Args:
        activities: kernels, memcpys and memsets (times ns, one origin).
        top_n: keep this many names in ``top`` (all when None).

    Busy time is the union of activity intervals per device (concurrent kernels counted once); idle time is
    the span minus busy time per device, summed: the GPU-idle gaps a launch-bound run shows. ``share_pct`` of a
    name is its summed duration over the summed duration of all activities x 100 (so shares add to 100 even when
    kernels overlap).
    """
    by_name: dict[tuple[str, str], list[GpuActivity]] = defaultdict(list)
    for a in activities:
        by_name[(a.name, a.kind)].append(a)
    total_all = sum(a.duration_ns for a in activities) or 0
    top = []
    for (name, kind), acts in by_name.items():
        durs = [a.duration_ns for a in acts]
        tot = sum(durs)
        ops = sorted({a.op for a in acts if a.op})
        top.append(KernelStat(name=name, short_name=short_name(name) if kind == "kernel" else name,
                              category=acts[0].category, kind=kind, count=len(acts), total_ns=tot,
                              mean_ns=tot / len(acts), min_ns=min(durs), max_ns=max(durs),
                              share_pct=100.0 * tot / total_all if total_all else 0.0, ops=ops[:20]))
    top.sort(key=lambda k: (-k.total_ns, k.name))
    if top_n is not None:
        top = top[:top_n]
    by_cat = {c: 0 for c in CATEGORIES}
    for a in activities:
        by_cat[a.category if a.category in by_cat else "other"] += a.duration_ns
    busy = span = 0
    gaps: list[int] = []
    per_dev: dict[Any, list[tuple[int, int]]] = defaultdict(list)
    for a in activities:
        per_dev[a.device].append((a.start_ns, a.end_ns))
    for ivs in per_dev.values():
        merged = _union(ivs)
        busy += sum(e - s for s, e in merged)
        span += merged[-1][1] - merged[0][0]
        gaps.extend(merged[i + 1][0] - merged[i][1] for i in range(len(merged) - 1))
    gaps.sort()
    idle_gaps: dict[str, Any] = {"count": len(gaps), "p50_ns": gaps[len(gaps) // 2] if gaps else None,
                                 "max_ns": gaps[-1] if gaps else None}
    iters = sorted({a.iteration for a in activities if a.iteration is not None})
    per_iter = []
    for it in iters:
        merged = _union((a.start_ns, a.end_ns) for a in activities if a.iteration == it)
        per_iter.append(sum(e - s for s, e in merged))
    return TraceSummary(top=top, by_category_ns=by_cat, busy_ns=busy, span_ns=span, idle_ns=span - busy,
                        idle_gaps=idle_gaps, overlap_ns=total_all - busy, iterations=len(iters),
                        per_iteration_busy_ns=per_iter)


_ITERATION = re.compile(r"^iteration (\d+)$")


def iteration_of(text: str) -> int | None:
    """The index N of an ``iteration N`` range text (the ranges EngineScope's captures put around each measured
    iteration), else None."""
    m = _ITERATION.match(text.strip())
    return int(m.group(1)) if m else None


def assign_iterations(trace: KernelTrace) -> None:
    """Set ``iteration`` on each activity whose launching API call (``launch_ns``, else its own start) falls in an
    ``iteration N`` range of ``trace.ranges``. Activities outside every such range keep ``iteration=None``."""
    spans = sorted((r.start_ns, r.end_ns, it) for r in trace.ranges
                   if (it := iteration_of(r.text)) is not None)
    if not spans:
        return
    import bisect
    starts = [s for s, _, _ in spans]
    for a in trace.activities:
        t = a.launch_ns if a.launch_ns is not None else a.start_ns
        i = bisect.bisect_right(starts, t) - 1
        if i >= 0 and spans[i][0] <= t <= spans[i][1]:
            a.iteration = spans[i][2]


def diff_top(a: Sequence[KernelStat], b: Sequence[KernelStat], per_a: int = 1, per_b: int = 1) -> list[dict[str, Any]]:
    """Which kernels changed between two runs: one row per kernel name in either run.

    Args:
        a, b: :class:`KernelStat` lists of two runs (e.g. fp32 and fp16).
        per_a, per_b: the iterations each run's stats cover, so totals compare per iteration.

    Returns:
        ``[{"name", "short_name", "category", "a_ns", "b_ns", "delta_ns", "status"}]`` with per-iteration times
        (ns; 0 where absent) and ``status`` ``both`` | ``only_a`` | ``only_b``, largest ``|delta_ns|`` first.
    """
    ia = {k.name: k for k in a}
    ib = {k.name: k for k in b}
    rows: list[dict[str, Any]] = []
    for name in set(ia) | set(ib):
        ka, kb = ia.get(name), ib.get(name)
        a_ns = ka.total_ns / max(per_a, 1) if ka else 0.0
        b_ns = kb.total_ns / max(per_b, 1) if kb else 0.0
        k = ka if ka is not None else ib[name]
        rows.append({"name": name, "short_name": k.short_name, "category": k.category, "a_ns": a_ns, "b_ns": b_ns,
                     "delta_ns": b_ns - a_ns, "status": "both" if ka and kb else ("only_a" if ka else "only_b")})
    rows.sort(key=lambda r: (-abs(float(r["delta_ns"])), str(r["name"])))
    return rows
