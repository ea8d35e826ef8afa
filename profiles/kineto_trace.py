"""Parse a Kineto (``torch.profiler``) Chrome trace into a :class:`profiles.kernels.KernelTrace`, and attribute
its kernels to ONNX Runtime nodes when the trace was taken around ``session.run`` calls.

The trace (``prof.export_chrome_trace(path)``, plain or ``.gz`` JSON) is ``{"traceEvents": [...],
"schemaVersion", "deviceProperties", "baseTimeNanoseconds", "cupti_version", "cuda_runtime_version",
"cuda_driver_version", ...}``. Events used (``ph: "X"`` complete events; ``ts``/``dur`` in µs, floats):

- ``cat: "kernel"``: one GPU kernel; ``args``: ``device``, ``stream``, ``correlation``, ``grid``, ``block``,
  ``registers per thread``, ``shared memory`` (bytes), ``External id`` (the torch op; absent for kernels
  launched outside torch ops, e.g. ONNX Runtime's, and for CUDA-graph replays);
- ``cat: "gpu_memcpy"`` (name ``Memcpy HtoD (Pageable -> Device)``: the direction is the word after
  ``Memcpy``) and ``cat: "gpu_memset"``: ``args.bytes``;
- ``cat: "cuda_runtime"`` / ``"cuda_driver"``: host API calls (``cudaLaunchKernel``, ``cuLaunchKernelEx``,
  ``cudaGraphLaunch``, ``cudaMemcpyAsync``...) with the ``correlation`` of the GPU activity they launched
  (every kernel of one graph replay carries the ``cudaGraphLaunch``'s correlation);
- ``cat: "cpu_op"``: torch operators with ``External id``;
- ``cat: "user_annotation"``: ``record_function`` ranges on the host (EngineScope's captures put
  ``iteration N`` around each profiled call). The device-side copies (``gpu_user_annotation``), flow arrows
  (``ac2g``), profiler overhead and metadata events are not kept.

Clock: Kineto's ``ts`` (µs) x 1000 + ``baseTimeNanoseconds`` is the system clock in epoch ns (checked on an
H200, tests/data/kernels/README.md), the clock ONNX Runtime's ``session.get_profiling_start_time_ns()`` reads.
The :class:`KernelTrace` origin (``origin_ns``) is the earliest event's absolute ns; every time in it is
integer ns relative to that origin (``round(ts x 1000)``: floats of a ~5e12 µs ``ts`` resolve about 1 ns).

Per activity: ``op`` is the innermost torch operator (the ``cpu_op`` whose ``External id`` the kernel
carries, e.g. ``aten::cudnn_convolution`` beneath ``aten::conv2d``), else the name of the launching API
call when it is a graph launch (``cudaGraphLaunch``: a CUDA-graph replay), else None; ``launch_ns`` is the
start of the API call with the same correlation; ``iteration`` comes from
:func:`profiles.kernels.assign_iterations` (the launch inside an ``iteration N`` range).

Pure: reads the file it is given, writes nothing, no DB, no subprocesses.
"""

from __future__ import annotations

import bisect
import gzip
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from profiles.errors import ParseError
from profiles.kernels import ApiCall, GpuActivity, KernelTrace, Range, assign_iterations
from profiles.ort_profile import KERNEL_SUFFIX

#: ``source_tool`` of a plain Kineto trace and of one attributed to ONNX Runtime nodes.
SOURCE_TORCH = "torch.profiler"
SOURCE_ORT = "onnxruntime+kineto"

_ACTIVITY_CATS = {"kernel": "kernel", "gpu_memcpy": "memcpy", "gpu_memset": "memset"}
_API_CATS = {"cuda_runtime": "runtime", "cuda_driver": "driver"}
_COPY_KIND = re.compile(r"^Memcpy\s+(HtoD|DtoH|DtoD|HtoH|PtoP)\b")
_META_KEYS = ("cupti_version", "cuda_runtime_version", "cuda_driver_version", "trace_id", "traceName",
              "baseTimeNanoseconds", "displayTimeUnit", "record_shapes")


def read_trace_json(path: str | Path, what: str = "trace") -> Any:
    """The decoded JSON of a trace file, gzip-compressed (by its magic bytes, whatever the name) or plain.

    Args:
        path: the file.
        what: the kind of file for error messages (``Kineto trace``, ``ONNX Runtime profile``).

    Raises:
        ParseError: the file is missing, unreadable, or not JSON (names the file).
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ParseError(f"{p}: {what} not found") from None
    except OSError as exc:
        raise ParseError(f"{p}: {what} unreadable ({exc})") from None
    try:
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        return json.loads(raw.decode("utf-8"))
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParseError(f"{p}: not a JSON {what} ({type(exc).__name__}: {exc})") from None


def _int(v: Any) -> int | None:
    try:
        return int(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def _dims(v: Any) -> list[int] | None:
    if isinstance(v, (list, tuple)) and all(isinstance(x, (int, float)) for x in v):
        return [int(x) for x in v]
    return None


def copy_kind(name: str) -> str:
    """The copy direction of a Kineto memcpy name (``Memcpy HtoD (Pageable -> Device)`` -> ``HtoD``), else
    ``unknown``."""
    m = _COPY_KIND.match(name.strip())
    return m.group(1) if m else "unknown"


def parse_kineto_trace(source: str | Path | Mapping[str, Any], *, name: str | None = None) -> KernelTrace:
    """A :class:`KernelTrace` (``source_tool`` ``torch.profiler``) from a Kineto Chrome trace.

    Args:
        source: a trace file (``.json`` or gzip-compressed) or its decoded JSON object.
        name: the trace's name in error messages (default: the file path, or ``trace``).

    Returns:
        the trace: activities in GPU start order (kernels, memcpys, memsets; times ns from the origin), API
        calls, ``record_function`` ranges, ``devices`` (``deviceProperties``), ``schema_version``
        (``schemaVersion``), ``meta`` (CUPTI/CUDA versions, ``baseTimeNanoseconds``, file name), ``origin_ns``
        (absolute epoch ns of the earliest event), ``notes`` (no kernels, activities without a launching call).
        ``tool_version`` is None: the file does not record torch's version (the capture sets it).

    Raises:
        ParseError: unreadable file, not an object with a ``traceEvents`` list, an event that is not an
            object, or a kept event without a numeric ``ts``/``dur`` (names the file and the event index).
    """
    src = name or (str(source) if isinstance(source, (str, Path)) else "trace")
    data = read_trace_json(source, "Kineto trace") if isinstance(source, (str, Path)) else source
    if not isinstance(data, Mapping) or not isinstance(data.get("traceEvents"), list):
        raise ParseError(f"{src}: not a Kineto trace (expected a JSON object with a traceEvents list)")
    events: list[Any] = data["traceEvents"]
    try:
        base_ns = int(data.get("baseTimeNanoseconds") or 0)
    except (TypeError, ValueError):
        raise ParseError(f"{src}: baseTimeNanoseconds is not an integer") from None

    kept: list[tuple[str, int, int, Mapping[str, Any], Mapping[str, Any]]] = []  # (cat, ts_ns, dur_ns, ev, args)
    first_ns: int | None = None
    for i, ev in enumerate(events):
        if not isinstance(ev, Mapping):
            raise ParseError(f"{src}: event {i} is not an object")
        if ev.get("ph") != "X":
            continue
        cat = ev.get("cat")
        try:
            ts_ns = round(float(ev["ts"]) * 1000.0)
            dur_ns = round(float(ev.get("dur", 0.0)) * 1000.0)
        except (KeyError, TypeError, ValueError):
            if cat in _ACTIVITY_CATS or cat in _API_CATS or cat in ("cpu_op", "user_annotation"):
                raise ParseError(f"{src}: event {i} ({ev.get('name')!r}, {cat}) lacks a numeric ts/dur") from None
            continue
        first_ns = ts_ns if first_ns is None else min(first_ns, ts_ns)
        if cat in _ACTIVITY_CATS or cat in _API_CATS or cat in ("cpu_op", "user_annotation"):
            args = ev.get("args")
            kept.append((str(cat), ts_ns, dur_ns, ev, args if isinstance(args, Mapping) else {}))
    t0 = first_ns or 0

    ops: dict[int, str] = {}
    apis: dict[int, ApiCall] = {}
    trace = KernelTrace(source_tool=SOURCE_TORCH, schema_version=None if data.get("schemaVersion") is None
                        else str(data.get("schemaVersion")), origin_ns=base_ns + t0 if first_ns is not None else None)
    for cat, ts_ns, dur_ns, ev, args in kept:
        tid = _int(ev.get("tid"))
        if cat == "cpu_op":
            ext = _int(args.get("External id"))
            if ext is not None:
                ops[ext] = str(ev.get("name", ""))
        elif cat == "user_annotation":
            trace.ranges.append(Range(text=str(ev.get("name", "")), start_ns=ts_ns - t0, end_ns=ts_ns - t0 + dur_ns,
                                      thread_id=tid))
        elif cat in _API_CATS:
            call = ApiCall(kind=_API_CATS[cat], name=str(ev.get("name", "")), start_ns=ts_ns - t0, duration_ns=dur_ns,
                           thread_id=tid, correlation_id=_int(args.get("correlation")))
            trace.api_calls.append(call)
            if call.correlation_id is not None:
                apis[call.correlation_id] = call
    unlaunched = 0
    for cat, ts_ns, dur_ns, ev, args in kept:
        kind = _ACTIVITY_CATS.get(cat)
        if kind is None:
            continue
        name_ = str(ev.get("name", ""))
        corr = _int(args.get("correlation"))
        launch = apis.get(corr) if corr is not None else None
        ext = _int(args.get("External id"))
        op = ops.get(ext) if ext is not None else None
        if op is None and launch is not None and "Graph" in launch.name:
            op = launch.name
        if launch is None:
            unlaunched += 1
        trace.activities.append(GpuActivity(
            kind=kind, name=name_, start_ns=ts_ns - t0, duration_ns=dur_ns, device=_int(args.get("device")),
            stream=_int(args.get("stream")), correlation_id=corr, launch_ns=launch.start_ns if launch else None,
            grid=_dims(args.get("grid")) if kind == "kernel" else None,
            block=_dims(args.get("block")) if kind == "kernel" else None,
            registers_per_thread=_int(args.get("registers per thread")) if kind == "kernel" else None,
            shared_mem_bytes=_int(args.get("shared memory")) if kind == "kernel" else None,
            bytes=_int(args.get("bytes")) if kind != "kernel" else None,
            copy_kind=copy_kind(name_) if kind == "memcpy" else None, op=op))
    trace.activities.sort(key=lambda a: (a.start_ns, a.device if a.device is not None else -1))
    trace.api_calls.sort(key=lambda c: c.start_ns)
    trace.ranges.sort(key=lambda r: r.start_ns)
    assign_iterations(trace)
    props = data.get("deviceProperties")
    trace.devices = [dict(d) for d in props if isinstance(d, Mapping)] if isinstance(props, list) else []
    trace.meta = {k: data[k] for k in _META_KEYS if k in data}
    if isinstance(source, (str, Path)):
        trace.meta["file"] = Path(source).name
    if not trace.kernels():
        trace.notes.append("no GPU kernel events in the trace (CUDA activity not recorded, or nothing ran on the GPU)")
    if unlaunched:
        trace.notes.append(f"{unlaunched} GPU activities have no launching CUDA API call in the trace "
                           "(launch_ns unknown; iteration from their GPU start)")
    return trace


def ort_node_spans(ort_profile_events: Sequence[Mapping[str, Any]] | Mapping[str, Any], ort_start_ns: int,
                   source: str = "ONNX Runtime profile") -> list[tuple[int, int, str, str | None]]:
    """Host spans of ONNX Runtime's node events, absolute ns: ``[(start_ns, end_ns, node, op_type)]`` sorted by start.

    Args:
        ort_profile_events: ONNX Runtime's profile JSON (a list of events or ``{"traceEvents": [...]}``).
        ort_start_ns: ``session.get_profiling_start_time_ns()`` of that session (epoch ns); an event's
            absolute start is ``ort_start_ns + ts x 1000`` (ORT ``ts``/``dur`` are integer µs from that start).
        source: name used in error messages.

    Raises:
        ParseError: not a list of events, or a node event without a numeric ``ts``/``dur``.
    """
    events = ort_profile_events.get("traceEvents") if isinstance(ort_profile_events, Mapping) else ort_profile_events
    if not isinstance(events, Sequence) or isinstance(events, (str, bytes)):
        raise ParseError(f"{source}: an ONNX Runtime profile is a JSON list of trace events")
    spans = []
    for i, ev in enumerate(events):
        if not isinstance(ev, Mapping) or ev.get("cat") != "Node" or not str(ev.get("name", "")).endswith(KERNEL_SUFFIX):
            continue
        try:
            start = int(ort_start_ns) + round(float(ev["ts"]) * 1000.0)
            end = start + round(float(ev["dur"]) * 1000.0)
        except (KeyError, TypeError, ValueError):
            raise ParseError(f"{source}: event {i} ({ev.get('name')!r}) lacks a numeric ts/dur") from None
        raw_args = ev.get("args")
        op_type = raw_args.get("op_name") if isinstance(raw_args, Mapping) else None
        spans.append((start, end, str(ev["name"])[: -len(KERNEL_SUFFIX)], str(op_type) if op_type else None))
    spans.sort()
    return spans


def attribute_ort_nodes(trace: KernelTrace, ort_profile_events: Sequence[Mapping[str, Any]] | Mapping[str, Any],
                        ort_start_ns: int, *, source: str = "ONNX Runtime profile") -> dict[str, Any]:
    """Set each GPU activity's ``op`` to the ONNX Runtime node whose host span holds its launch, in place.

    Clocks: a launch's absolute time is ``trace.origin_ns + launch_ns`` (Kineto: ``baseTimeNanoseconds`` + ts),
    a node's span ``ort_start_ns + ts`` .. ``+ dur`` (ONNX Runtime's profile); both are the system clock, so no
    offset is fitted. ``op`` becomes ``"<node name> (<op type>)"`` (e.g. ``/conv/conv.0/Conv (Conv)``); an
    activity launched outside every node (ONNX Runtime's input/output copies between nodes, another thread's
    work) keeps its ``op``. ``trace.source_tool`` becomes ``onnxruntime+kineto``; a note says how many kernels
    were attributed and ``trace.meta["ort_attribution"]`` holds the counts.

    Args:
        trace: a Kineto trace of ``session.run`` calls (:func:`parse_kineto_trace`), with ``origin_ns``.
        ort_profile_events, ort_start_ns: ONNX Runtime's profile of the same session and its profiling start
            (see :func:`ort_node_spans`).
        source: name of the profile in error messages.

    Returns:
        ``{"kernels", "kernels_attributed", "activities_attributed", "nodes"}`` (``nodes``: distinct nodes seen).

    Raises:
        ParseError: the trace has no origin, or the profile is malformed.
    """
    if trace.origin_ns is None:
        raise ParseError(f"{source}: the Kineto trace has no events, so no clock to align ONNX Runtime's nodes to")
    spans = ort_node_spans(ort_profile_events, ort_start_ns, source)
    starts = [s for s, _, _, _ in spans]
    kernels = attributed_k = attributed = 0
    nodes: set[str] = set()
    for a in trace.activities:
        if a.kind == "kernel":
            kernels += 1
        if a.launch_ns is None:
            continue
        t = trace.origin_ns + a.launch_ns
        i = bisect.bisect_right(starts, t) - 1
        if i < 0 or t > spans[i][1]:
            continue
        _, _, node, op_type = spans[i]
        a.op = f"{node} ({op_type})" if op_type else node
        nodes.add(node)
        attributed += 1
        attributed_k += a.kind == "kernel"
    trace.source_tool = SOURCE_ORT
    counts = {"kernels": kernels, "kernels_attributed": attributed_k, "activities_attributed": attributed,
              "nodes": len(nodes)}
    trace.meta["ort_attribution"] = {**counts, "ort_profiling_start_ns": int(ort_start_ns),
                                     "rule": "kernel launch inside the node's host span (system clock)"}
    rest = kernels - attributed_k
    trace.notes.append(f"ONNX Runtime nodes: {attributed_k} of {kernels} kernels launched inside a node's host span "
                       f"({len(nodes)} nodes)" + (f"; {rest} launched outside every node" if rest else ""))
    return counts
