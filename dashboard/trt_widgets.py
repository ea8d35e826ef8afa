"""Streamlit widgets for TensorRT: the build/run options form and the route availability banner.

``render_tensorrt_options`` is called by the New benchmark page when the TensorRT engine is picked;
it returns a dict that validates as ``profiles.trt_spec.TensorRTOptions`` (put it in
``BenchSpec.tensorrt``), or None when TensorRT is unavailable on the runner machine (the widgets are
then shown disabled with the reason and the install command).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from profiles.errors import InputError
from profiles.trt_spec import MIB, TensorRTAvailability, detect_tensorrt, parse_tensorrt_options


def availability() -> TensorRTAvailability:
    """The TensorRT route of this machine; an invalid ``ENGINESCOPE_TRTEXEC`` reads as unavailable."""
    try:
        return detect_tensorrt()
    except InputError as exc:
        return TensorRTAvailability(route=None, reason=str(exc))


def render_availability(avail: TensorRTAvailability | None = None) -> TensorRTAvailability:
    """Show which TensorRT route the runner will use, or why none and how to install one."""
    avail = avail or availability()
    if avail.available:
        st.success(avail.describe())
    else:
        st.warning(f"{avail.describe()}.\n\n**Install:** {avail.install_hint}")
    return avail


def _shape_text(dims: list[Any], fill: int) -> str:
    return "x".join(str(d) if isinstance(d, int) and d > 0 else str(fill) for d in dims)


def _parse_dims(text: str, field: str) -> list[int]:
    try:
        dims = [int(d) for d in text.lower().replace(",", "x").split("x") if d.strip()]
    except ValueError:
        raise InputError(f"{field}: {text!r} is not D1xD2x... with integer dims") from None
    if not dims:
        raise InputError(f"{field}: empty shape")
    return dims


def render_tensorrt_options(key_prefix: str, dynamic_inputs: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """Render the TensorRT options form; return the options dict, or None when TensorRT is unavailable
    (or a field is invalid, then the error is shown under the form).

    Args:
        key_prefix: prefix of every widget key (e.g. ``"newbench_trt_"``).
        dynamic_inputs: the model's inputs (``models.inputs`` rows: ``{"name", "shape"}``); those with
            symbolic or unknown dims get min/opt/max shape fields (the optimization profile). Blank
            fields use the documented defaults (min = 1 for the symbolic dims, opt = max = the batch size
            of the run).
    """
    avail = render_availability()
    disabled = not avail.available
    k = key_prefix
    with st.expander("TensorRT build and run options", expanded=False):
        if disabled:
            st.caption("Disabled: TensorRT is not installed on this machine. " + avail.install_hint)
        c1, c2, c3 = st.columns(3)
        level = c1.slider("Builder optimization level", 0, 5, 3, key=f"{k}opt_level", disabled=disabled,
                          help="trtexec --builderOptimizationLevel (TensorRT >= 8.6). Higher = longer build, maybe faster engine.")
        ws_mib = c2.number_input("Workspace pool (MiB, 0 = TensorRT default)", 0, 1 << 20, 0, step=256,
                                 key=f"{k}workspace", disabled=disabled,
                                 help="--memPoolSize=workspace:<N>M (TensorRT >= 8.4), --workspace=<N> before")
        timing_cache = c3.checkbox("Reuse timing cache", True, key=f"{k}timing_cache", disabled=disabled,
                                   help="One timing cache per (GPU, TensorRT version) under ENGINESCOPE_HOME/artifacts/trt_timing_cache")
        c4, c5, c6 = st.columns(3)
        cuda_graph = c4.checkbox("CUDA graph", False, key=f"{k}cuda_graph", disabled=disabled, help="--useCudaGraph")
        spin = c5.checkbox("Spin wait", True, key=f"{k}spin", disabled=disabled, help="--useSpinWait: stabler latency")
        no_copies = c6.checkbox("No data transfers (GPU compute only)", False, key=f"{k}nocopy", disabled=disabled,
                                help="--noDataTransfers: the timed window excludes H2D/D2H copies")
        c7, c8, c9, c10 = st.columns(4)
        streams = c7.number_input("Inference streams", 1, 64, 1, key=f"{k}streams", disabled=disabled,
                                  help="--infStreams (TensorRT >= 8.6), --streams before")
        warmup = c8.number_input("Warm-up (ms)", 0, 600_000, 200, step=100, key=f"{k}warmup", disabled=disabled)
        duration = c9.number_input("Duration (s)", 0.0, 3600.0, 3.0, step=1.0, key=f"{k}duration", disabled=disabled)
        iters = c10.number_input("Iterations (min)", 1, 10_000_000, 100, key=f"{k}iters", disabled=disabled)
        separate = st.checkbox("Per-layer profile in a separate run", True, key=f"{k}separate", disabled=disabled,
                               help="--separateProfileRun: the headline latency is measured without the layer profiler")
        profiles: dict[str, dict[str, list[int]]] = {}
        errors: list[str] = []
        dyn = [i for i in (dynamic_inputs or []) if any(not (isinstance(d, int) and d > 0) for d in i.get("shape") or [])]
        if dyn:
            st.markdown("**Optimization profile** (full shapes `D1xD2x...`; blank = defaults)")
        for inp in dyn:
            name = str(inp["name"])
            cols = st.columns(3)
            texts = [cols[j].text_input(f"{name} {which}", "", key=f"{k}prof_{name}_{which}", disabled=disabled,
                                        placeholder=_shape_text(inp["shape"], 1))
                     for j, which in enumerate(("min", "opt", "max"))]
            if all(t.strip() for t in texts):
                try:
                    profiles[name] = {w: _parse_dims(t, f"profile {w} of input {name!r}")
                                      for w, t in zip(("min", "opt", "max"), texts, strict=True)}
                except InputError as exc:
                    errors.append(str(exc))
            elif any(t.strip() for t in texts):
                errors.append(f"input {name!r}: give all of min, opt and max, or none")
    if disabled:
        return None
    data: dict[str, Any] = {
        "builder_optimization_level": int(level),
        "workspace_bytes": int(ws_mib) * MIB if ws_mib else None,
        "timing_cache": bool(timing_cache),
        "use_cuda_graph": bool(cuda_graph),
        "spin_wait": bool(spin),
        "no_data_transfers": bool(no_copies),
        "infer_streams": int(streams),
        "warmup_ms": int(warmup),
        "duration_s": float(duration),
        "iterations": int(iters),
        "separate_profile_run": bool(separate),
        "profiles": profiles,
    }
    if not errors:
        try:
            parse_tensorrt_options(data)
        except InputError as exc:
            errors.append(str(exc))
    if errors:
        for e in errors:
            st.error(e)
        return None
    return data
