"""trtexec command lines per TensorRT version, engine cache keys and timing-cache paths.

Flag history applied here (trtexec ``--help`` of each release and NVIDIA's "Migrating trtexec Usage
from TensorRT 8.x to 10.x" page; checked against the options printed by the real 8.0.3, 8.6.0 and
10.16.1 logs in shared/fixtures/trtexec/logs):

===========================  ==========================================================================
flag                          versions
===========================  ==========================================================================
``--explicitBatch``           needed for ONNX before 8.0; ignored (deprecated) in 8.x; removed in 10.0
``--workspace=MiB``           up to 8.x; deprecated in 8.4 by ``--memPoolSize=workspace:MiB``; removed 10.0
``--memPoolSize=...``         8.4+ (``tacticSharedMem`` pool from 10.0)
``--buildOnly``               up to 8.5; ``--skipInference`` from 8.6 (``--buildOnly`` removed in 10.0)
``--streams=N``               up to 8.5; ``--infStreams=N`` from 8.6
``--nvtxMode=verbose``        up to 8.1; ``--profilingVerbosity=detailed`` from 8.2 (``--nvtxMode`` removed 10.0)
``--exportLayerInfo``         8.2+
``--builderOptimizationLevel`` 8.6+
``--percentile=P``            one value up to 8.5; a list (``90,95,99``) from 8.6
``--fp16 --int8 --best``      up to 10.x; ``--bf16`` from 9.0, ``--fp8`` from 8.6/9.0; TensorRT 11 removed
                              all precision flags: networks are always strongly typed, precision
                              comes from the ONNX (casts, Q/DQ nodes)
===========================  ==========================================================================

Never pass a flag to a version that rejects it: :func:`trtexec_commands` builds argv lists (no
shell) for one version and :func:`flag_supported` is the single table of the rules above.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from profiles.errors import InputError
from profiles.trt_spec import MIB, ShapeRange, TensorRTOptions
from profiles.trtexec.version import TrtVersion

V = TrtVersion

#: flag -> (first version that accepts it, first version that rejects it or None).
FLAG_RANGES: dict[str, tuple[TrtVersion, TrtVersion | None]] = {
    "explicitBatch": (V(6, 0), V(10, 0)),
    "workspace": (V(6, 0), V(10, 0)),
    "memPoolSize": (V(8, 4), None),
    "buildOnly": (V(7, 0), V(10, 0)),
    "skipInference": (V(8, 6), None),
    "streams": (V(7, 0), V(10, 0)),
    "infStreams": (V(8, 6), None),
    "nvtxMode": (V(7, 0), V(10, 0)),
    "profilingVerbosity": (V(8, 2), None),
    "exportLayerInfo": (V(8, 2), None),
    "builderOptimizationLevel": (V(8, 6), None),
    "timingCacheFile": (V(8, 0), None),
    "separateProfileRun": (V(7, 1), None),
    "fp16": (V(5, 0), V(11, 0)),
    "int8": (V(5, 0), V(11, 0)),
    "best": (V(5, 0), V(11, 0)),
    "bf16": (V(9, 0), V(11, 0)),
    "fp8": (V(8, 6), V(11, 0)),
    "stronglyTyped": (V(9, 1), V(11, 0)),
    "calib": (V(5, 0), V(11, 0)),
}

#: Precision -> trtexec flags on TensorRT < 11 (after the ONNX variant is chosen). Its keys are the TensorRT
#: precisions of ``profiles.catalog`` (tests/unit/test_trt_commands.py checks they agree). There is no
#: ``int8-dynamic`` for TensorRT: dynamic quantization is an ONNX Runtime technique; TensorRT's int8 is
#: explicit Q/DQ (``int8-qdq``; ``--precision int8`` resolves to it).
PRECISION_FLAGS: dict[str, list[str]] = {
    "fp32": [],
    "fp16": ["--fp16"],
    "bf16": ["--bf16"],
    "int8-qdq": ["--int8"],  # explicit quantization: Q/DQ nodes in the ONNX; --int8 enables INT8 kernels (8.x/10 weakly typed)
    "fp8": ["--fp8"],
    "best": ["--best"],
}


def flag_supported(flag: str, version: TrtVersion) -> bool:
    """True when trtexec of ``version`` accepts ``--flag`` (see the module table)."""
    lo, hi = FLAG_RANGES.get(flag, (V(0, 0), None))
    return version >= lo and (hi is None or version < hi)


def _quote_name(name: str) -> str:
    # trtexec splits "name:dims" on ':' and lists on ','; it accepts names wrapped in single quotes.
    return f"'{name}'" if any(c in name for c in ":,'") else name


def shape_arg(shapes: dict[str, list[int]]) -> str:
    """``name:AxBxC,name2:...`` as trtexec's ``--shapes``/``--minShapes``... take it."""
    return ",".join(f"{_quote_name(n)}:{'x'.join(str(d) for d in dims)}" for n, dims in shapes.items())


@dataclass(frozen=True)
class TrtexecCommands:
    """argv lists for one engine: ``build`` (parse + build + save, no inference), ``run`` (timed run
    of the saved engine, per-query times exported), ``profile`` (separate per-layer profile run, or
    None) and ``notes`` (what was adapted to the version)."""

    build: list[str]
    run: list[str]
    profile: list[str] | None
    notes: list[str] = field(default_factory=list)


def precision_plan(precision: str, version: TrtVersion) -> dict[str, Any]:
    """How ``precision`` is obtained on ``version``.

    Returns ``{"onnx_variant": <variant for engine_runner.precision or None = the model as is>,
    "flags": [...], "strongly_typed": bool}``. TensorRT 11: flags are empty and the precision comes
    from an ONNX variant (fp16/bf16 casts, int8/fp8 Q/DQ). TensorRT < 11: int8-qdq uses the Q/DQ
    variant plus ``--int8``; fp16/bf16/fp8/best use the fp32 ONNX plus the flag.

    Raises:
        InputError: precision not available on this version (names it and the version).
    """
    if precision not in PRECISION_FLAGS:
        raise InputError(f"--precision: {precision!r} is not a TensorRT precision (choose {', '.join(PRECISION_FLAGS)})")
    if version.major >= 11:
        if precision == "best":
            raise InputError(f"precision {precision!r} needs builder flags, which TensorRT {version} removed "
                             "(strongly typed networks only); pick fp16, bf16, int8-qdq or fp8")
        variant = {"fp32": None, "fp16": "fp16", "bf16": "bf16", "int8-qdq": "int8-qdq", "fp8": "fp8"}[precision]
        return {"onnx_variant": variant, "flags": [], "strongly_typed": True}
    flags = PRECISION_FLAGS[precision]
    for f in flags:
        if not flag_supported(f[2:], version):
            raise InputError(f"precision {precision!r}: trtexec of TensorRT {version} has no {f} flag")
    variant = "int8-qdq" if precision == "int8-qdq" else None
    return {"onnx_variant": variant, "flags": list(flags), "strongly_typed": False}


def trtexec_commands(
    trtexec: str,
    version: TrtVersion,
    onnx_path: Path,
    engine_path: Path,
    precision: str,
    options: TensorRTOptions,
    *,
    profile: dict[str, ShapeRange],
    run_shapes: dict[str, list[int]],
    timing_cache: Path | None,
    export_prefix: Path,
) -> TrtexecCommands:
    """argv lists to build, time and profile one engine with trtexec of ``version``.

    Args:
        trtexec: path of the executable.
        onnx_path: the ONNX to build (already the precision variant from :func:`precision_plan`).
        engine_path: where the engine is saved (``--saveEngine``) and loaded from (``--loadEngine``).
        profile: optimization profile per dynamic input (full shapes); empty for static models.
        run_shapes: shapes of the timed run (``--shapes``), inside ``profile``.
        timing_cache: ``--timingCacheFile`` path, or None.
        export_prefix: prefix of exported files: ``<prefix>.times.json``, ``.profile.json``, ``.layers.json``.

    Export files: the run writes ``--exportTimes``; the separate profile run writes
    ``--exportProfile`` and ``--exportLayerInfo`` (8.2+), with ``--dumpProfile --separateProfileRun``
    so the headline latency of the run is measured without the layer profiler.
    """
    notes: list[str] = []
    plan = precision_plan(precision, version)
    build = [trtexec, f"--onnx={onnx_path}", f"--saveEngine={engine_path}"]
    if version < V(8, 0):
        build.append("--explicitBatch")
        notes.append("--explicitBatch: ONNX needs explicit batch before TensorRT 8.0")
    build += plan["flags"]
    if plan["strongly_typed"]:
        notes.append(f"TensorRT {version}: strongly typed network, no precision flags; precision from the ONNX variant")
    if profile:
        for key, flag in (("min", "--minShapes"), ("opt", "--optShapes"), ("max", "--maxShapes")):
            build.append(f"{flag}={shape_arg({n: getattr(r, key) for n, r in profile.items()})}")
    if options.workspace_bytes:
        mib = options.workspace_bytes // MIB
        if flag_supported("memPoolSize", version):
            pools = [f"workspace:{mib}"]
            if options.tactic_dram_bytes is not None and version >= V(10, 0):
                pools.append(f"tacticSharedMem:{max(1, options.tactic_dram_bytes // MIB)}")
            build.append("--memPoolSize=" + ",".join(pools))
        else:
            build.append(f"--workspace={mib}")
            notes.append(f"--workspace (MiB) instead of --memPoolSize on TensorRT {version}")
    if flag_supported("builderOptimizationLevel", version):
        build.append(f"--builderOptimizationLevel={options.builder_optimization_level}")
    elif options.builder_optimization_level != 3:
        notes.append(f"builder optimization level ignored: TensorRT {version} has no --builderOptimizationLevel (8.6+)")
    if timing_cache is not None and options.timing_cache and flag_supported("timingCacheFile", version):
        build.append(f"--timingCacheFile={timing_cache}")
    if flag_supported("profilingVerbosity", version):
        build.append("--profilingVerbosity=detailed")  # layer info with formats/tactics in the engine
    else:
        build.append("--nvtxMode=verbose")
    build.append("--skipInference" if flag_supported("skipInference", version) else "--buildOnly")

    run = [trtexec, f"--loadEngine={engine_path}"]
    if run_shapes:
        run.append(f"--shapes={shape_arg(run_shapes)}")
    run += [f"--warmUp={options.warmup_ms}", f"--duration={options.duration_s:g}",
            f"--iterations={options.iterations}", f"--avgRuns={options.avg_runs}"]
    run.append("--percentile=90,95,99" if version >= V(8, 6) else "--percentile=99")
    if options.infer_streams != 1:
        run.append(f"--infStreams={options.infer_streams}" if flag_supported("infStreams", version)
                   else f"--streams={options.infer_streams}")
    if options.use_cuda_graph:
        run.append("--useCudaGraph")
    if options.spin_wait:
        run.append("--useSpinWait")
    if options.no_data_transfers:
        run.append("--noDataTransfers")
    run.append(f"--exportTimes={export_prefix}.times.json")

    prof: list[str] | None = None
    if options.separate_profile_run:
        prof = [trtexec, f"--loadEngine={engine_path}"]
        if run_shapes:
            prof.append(f"--shapes={shape_arg(run_shapes)}")
        prof += [f"--warmUp={options.warmup_ms}", "--iterations=50", "--duration=0",
                 "--dumpProfile", "--separateProfileRun", f"--exportProfile={export_prefix}.profile.json"]
        if flag_supported("exportLayerInfo", version):
            prof += [f"--exportLayerInfo={export_prefix}.layers.json", "--profilingVerbosity=detailed"]
        else:
            notes.append(f"no --exportLayerInfo on TensorRT {version} (8.2+): layer types/precisions unavailable")
    return TrtexecCommands(build=build, run=run, profile=prof, notes=notes)


def default_profile(inputs: list[dict[str, Any]], batch_size: int, overrides: dict[str, ShapeRange] | None = None,
                    dim_values: dict[str, int] | None = None) -> dict[str, ShapeRange]:
    """Optimization profile for the dynamic inputs of a model (documented defaults).

    For each input with a symbolic/unknown dim: ``overrides[name]`` when given; otherwise the first
    dim (batch) gets ``min=1, opt=max=batch_size`` and any other symbolic dim gets
    ``min=opt=max=dim_values.get(symbol, 1)``. Static inputs get no profile entry.

    Args:
        inputs: ``models.inputs`` rows ``{"name", "shape": [int | str | None]}``.
    """
    overrides = overrides or {}
    dim_values = dim_values or {}
    out: dict[str, ShapeRange] = {}
    for inp in inputs:
        name, shape = str(inp["name"]), list(inp.get("shape") or [])
        if name in overrides:
            out[name] = overrides[name]
            continue
        if all(isinstance(d, int) and d > 0 for d in shape):
            continue
        lo: list[int] = []
        opt: list[int] = []
        hi: list[int] = []
        for i, d in enumerate(shape):
            if isinstance(d, int) and d > 0:
                a, b, c = d, d, d
            elif i == 0:
                a, b, c = 1, batch_size, batch_size
            else:
                a = b = c = int(dim_values.get(str(d), 1))
            lo.append(a)
            opt.append(b)
            hi.append(c)
        out[name] = ShapeRange(min=lo, opt=opt, max=hi)
    return out


def check_shapes_in_profile(run_shapes: dict[str, list[int]], profile: dict[str, ShapeRange]) -> None:
    """Refuse a run shape outside the optimization profile before anything runs.

    Raises:
        InputError: naming the input, the dim, the value and the allowed range.
    """
    for name, dims in run_shapes.items():
        rng = profile.get(name)
        if rng is None:
            continue
        if len(dims) != len(rng.min):
            raise InputError(f"input {name!r}: run shape {dims} has rank {len(dims)}, the optimization profile has rank {len(rng.min)}")
        for i, (d, lo, hi) in enumerate(zip(dims, rng.min, rng.max, strict=True)):
            if not lo <= d <= hi:
                raise InputError(f"input {name!r} dim {i} = {d} is outside the optimization profile range {lo}..{hi} "
                                 f"(profile min {rng.min}, max {rng.max}); rebuild with a wider profile or change the shape")


def engine_cache_key(model_hash: str, precision: str, options: TensorRTOptions, gpu_name: str, trt_version: TrtVersion,
                     calibration: dict[str, Any] | None = None) -> str:
    """sha256 (hex, 64 chars) of everything that changes a built engine: model content hash, precision
    variant (and its calibration), build options, GPU name and TensorRT version."""
    blob = json.dumps({"model": model_hash, "precision": precision, "build": options.build_key(), "gpu": gpu_name,
                       "trt": str(trt_version), "calibration": calibration or {}}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def timing_cache_path(home: Path, gpu_name: str, trt_version: TrtVersion) -> Path:
    """``<home>/artifacts/trt_timing_cache/<gpu>__trt<version>.cache`` (one per GPU model and TensorRT version)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", gpu_name).strip("_") or "gpu"
    d = home / "artifacts" / "trt_timing_cache"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{slug}__trt{trt_version}.cache"
