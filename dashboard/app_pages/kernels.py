"""Kernels page: what the GPU ran in a *profiled* run (a kernel timeline from Nsight Systems, torch.profiler or a
Kineto trace around ONNX Runtime, and/or Nsight Compute metrics), read from ``db.kernels`` through
``dashboard.data``.

Sections: header (tool, versions, notes, the unprofiled run it explains), top kernels, time by category, GPU
busy/idle and idle gaps, a timeline of an iteration window (device/stream lanes plus NVTX lanes), Nsight Compute
metrics with a roofline, downloads of the raw reports, and a second run side by side (which kernels appeared,
disappeared, got faster or slower per iteration). A profiled run's timings include the profiler's overhead: they
explain where time goes, they are not the run's latency.

Query parameters: ``?run=<profiled run id>`` selects a run; ``?of=<unprofiled run id>`` lists the profiled runs
explaining that run. Widget keys start with ``kernels_``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import charts, data, ui
from profiles.kernels import CATEGORIES, TraceSummary, summarize_activities

#: Most activities drawn in the timeline (the earliest of the window; the caption says when more were left out).
MAX_TIMELINE_BARS = 5000
#: Kernel names are shortened to this many characters in tables (the full name is in its own column).
NAME_CHARS = 80

HOW_TO_PROFILE = (
    "A profiled run holds what the GPU ran (kernels, copies, NVTX ranges; or Nsight Compute metrics), captured in "
    "a separate run beside the timed one so the profiler's overhead never reaches a latency. To get one:\n\n"
    "- benchmark with a kernel capture: `enginescope bench MODEL --device cuda:0 --profile-kernels 5` "
    "(5 profiled iterations after the timed run);\n"
    "- or import an Nsight Systems capture: `nsys export --type sqlite report.nsys-rep`, then "
    "`enginescope import report.sqlite`.")


@st.cache_data(ttl=120, show_spinner="Reading the kernel timeline...")
def _trace_and_summary(url: str, run_id: int) -> tuple[Any, TraceSummary | None]:
    """The run's timeline (API calls left out) and its full summary (every kernel name), cached for 2 minutes."""
    trace = data.kernel_trace(url, run_id)
    if trace is None or not trace.activities:
        return trace, None
    return trace, summarize_activities(trace.activities)


def _short(name: str, limit: int = NAME_CHARS) -> str:
    return name if len(name) <= limit else name[: limit - 3] + "..."


def _ms(ns: float | None) -> float | None:
    return None if ns is None else float(ns) / 1e6


def _run_label(r: Mapping[str, Any]) -> str:
    what = []
    if r.get("kernels"):
        what.append(f"{r['kernels']} kernels")
    if r.get("ncu_kernels"):
        what.append(f"{r['ncu_kernels']} ncu rows")
    of = f", of run {r['of_run_id']}" if r.get("of_run_id") is not None else ""
    name = r.get("label") or f"{r.get('engine') or '?'} / {r.get('precision') or '?'}"
    return f"run {r['run_id']}: {name}{ui.batch_suffix(r.get('batch_size'))} ({r.get('tool') or '?'}{of}; {', '.join(what)})"


url = ui.db_url()
st.title("Kernels")
all_runs = data.profiled_runs(url)
if not all_runs:
    st.info("No profiled runs yet. " + HOW_TO_PROFILE)
    st.stop()

focus = ui.query_int("run")
of_param = ui.query_int("of")
profiled_ids = {int(r["run_id"]) for r in all_runs}
if focus is not None and focus not in profiled_ids and of_param is None:
    if any(r["of_run_id"] == focus for r in all_runs):  # ?run= of an unprofiled run: its profiled runs
        of_param = focus
    else:
        st.warning(f"Run {focus} holds no kernel timeline or Nsight Compute rows.")
candidates = all_runs
if of_param is not None:
    mine = [r for r in all_runs if r["of_run_id"] == of_param]
    if mine:
        candidates = mine
        st.caption(f"Profiled runs explaining run {of_param} ({len(mine)}).")
    else:
        st.warning(f"Run {of_param} has no profiled run; all profiled runs are listed. " + HOW_TO_PROFILE)
labels = {int(r["run_id"]): _run_label(r) for r in all_runs}
ids = [int(r["run_id"]) for r in candidates]
if focus in labels and focus not in ids:
    ids = [focus, *ids]
run_id = int(st.selectbox("Profiled run", ids, index=ids.index(focus) if focus in ids else 0,
                          format_func=lambda i: labels[i], key="kernels_run"))
run = data.run_detail(url, run_id) or {"config": {}, "metrics": {}}
cfg = run.get("config") or {}
prof = cfg.get("profiler") or {}
kt = cfg.get("kernel_trace") or {}

# ------------------------------------------------------------------------------------------------ header
tool = prof.get("tool") or kt.get("source_tool") or "?"
version = prof.get("version") or kt.get("tool_version")
schema = prof.get("schema_version") or kt.get("schema_version")
devices = ", ".join(str(d.get("name") or d.get("id")) for d in (kt.get("devices") or []) if isinstance(d, Mapping))
st.markdown(f"**Captured by** `{tool}`" + (f" {version}" if version else " (version not recorded)")
            + (f", export schema {schema}" if schema else "")
            + (f"; engine {run.get('engine')} {run.get('engine_version') or ''}".rstrip() if run.get("engine") else "")
            + (f"; precision {run['precision']}" if run.get("precision") else "")
            + (f"; batch {run['batch_size']}" if run.get("batch_size") else "")
            + (f"; devices: {devices}" if devices else ""))
st.warning("This is a **profiled run**: its timings include the profiler's overhead (tracing every kernel launch; "
           "Nsight Compute replays each kernel in isolation) and are **not the unprofiled latency**. Use it to see "
           "where GPU time goes; read latencies from the run it explains.")
of_run_id = prof.get("of_run_id")
if of_run_id is not None:
    of_rows = data.run_rows(url, run_ids=[int(of_run_id)])
    if of_rows:
        o = of_rows[0]
        st.markdown(f"Explains **run {of_run_id}** ({o['variant']}{ui.batch_suffix(o['batch_size'])}): unprofiled p50 "
                    f"latency {ui.fmt_ms(o['p50_ms'])}" + (f" (n={o['count']})" if o.get("count") else "")
                    + (f"; timing window: {o['timing_window']}" if o.get("timing_window") else "") + ".")
        if o.get("job_id") is not None:
            ui.link_to_page("compare", f"Compare the runs of job {o['job_id']} (run {of_run_id})", {"job": o["job_id"]})
        if o.get("has_layers"):
            ui.link_to_page("layers", f"Layers of run {of_run_id}", {"run": of_run_id})
    else:
        st.caption(f"Explains run {of_run_id}, which is no longer in the database.")
else:
    st.caption("No unprofiled run is recorded for this capture (e.g. an imported report).")


def _notes(value: Any) -> list[str]:
    """Notes as a list of sentences (a single string is one note)."""
    if not value:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value if v]


for n in dict.fromkeys([*_notes(prof.get("notes")), *_notes(kt.get("notes"))]):
    st.info(n)

trace, summary = _trace_and_summary(url, run_id)

# ------------------------------------------------------------------------------------------ top kernels
if summary is None:
    st.info("This run holds no kernel timeline" + (" (only Nsight Compute metrics, below)." if run.get("run_id") else "."))
else:
    iters = summary.iterations
    counts = trace.counts()
    st.subheader("Top kernels", anchor=False)
    st.caption(f"{counts['kernels']} kernels, {counts['memcpy']} memcpy, {counts['memset']} memset, "
               f"{counts['nvtx_ranges']} NVTX ranges" + (f" over {iters} measured iterations" if iters else
                                                          " (no measured-iteration ranges)")
               + ". Share = the name's summed duration over the summed duration of all GPU activities.")
    st.dataframe(pd.DataFrame([{
        "kernel": _short(k.short_name), "category": k.category, "kind": k.kind, "count": k.count,
        "total ms": k.total_ns / 1e6, "mean ms": k.mean_ns / 1e6,
        **({"ms / iteration": k.total_ns / 1e6 / iters} if iters else {}),
        "share %": k.share_pct, "ops": ", ".join(k.ops), "full name": k.name,
    } for k in summary.top]), hide_index=True, key="kernels_top_table", column_config={
        "total ms": st.column_config.NumberColumn(format="%.4g"), "mean ms": st.column_config.NumberColumn(format="%.4g"),
        "ms / iteration": st.column_config.NumberColumn(format="%.4g"),
        "share %": st.column_config.NumberColumn(format="%.2f"),
        "full name": st.column_config.TextColumn(width="large", help="the kernel's name as the profiler printed it")})

    c1, c2 = st.columns(2)
    c1.plotly_chart(charts.kernel_category_figure(
        [{"label": f"run {run_id}", "by_category_ms": {c: v / 1e6 for c, v in summary.by_category_ns.items()}}],
        yaxis_title="GPU time, whole capture (ms)"), key="kernels_category_chart")
    with c2:
        span = summary.span_ns or 0
        m = st.columns(2)
        m[0].metric("GPU busy", ui.fmt_ms(_ms(summary.busy_ns)),
                    help="union of kernel/copy intervals per device (concurrent work counted once), summed over devices")
        m[1].metric("GPU idle", ui.fmt_ms(_ms(summary.idle_ns)),
                    f"{100.0 * summary.idle_ns / span:.1f}% of the span" if span else None, delta_color="off",
                    help="span (first activity start to last end, per device) minus busy time")
        gaps = summary.idle_gaps or {}
        m = st.columns(2)
        m[0].metric("Idle gaps", gaps.get("count", 0),
                    help="gaps between consecutive busy intervals on a device")
        m[1].metric("Gap p50 / max", f"{(gaps.get('p50_ns') or 0) / 1e3:.3g} / {(gaps.get('max_ns') or 0) / 1e3:.3g} µs"
                    if gaps.get("count") else "-")
        if summary.per_iteration_busy_ns:
            busy_sorted = sorted(summary.per_iteration_busy_ns)
            st.metric("Busy per iteration (median)", ui.fmt_ms(busy_sorted[len(busy_sorted) // 2] / 1e6),
                      help=f"{len(busy_sorted)} iterations: " + ", ".join(f"{v / 1e6:.4g}" for v in summary.per_iteration_busy_ns[:20])
                           + " ms")
        st.caption("**GPU idle** is time between kernels when the GPU had nothing to run: the host had not enqueued "
                   "the next kernel yet. A large idle share means the run is **launch-bound** (Python, framework and "
                   "launch overhead, synchronisations): CUDA graphs, a larger batch or fusing kernels help; faster "
                   "kernels do not. Overlapping work (concurrent kernels or copies): "
                   f"{ui.fmt_ms(_ms(summary.overlap_ns))}.")
    st.caption("Categories come from kernel names (the same rules for every profiler): attention before GEMM/conv "
               "(flash/fmha kernels contain 'gemm'), then GEMM/conv, then elementwise/reduction, else other.")

    # ------------------------------------------------------------------------------------------ timeline
    st.subheader("Timeline", anchor=False)
    present = data.trace_iterations(trace)
    if present:
        t1, t2 = st.columns(2)
        lo = t1.number_input("From iteration", min_value=present[0], max_value=present[-1], value=present[0], step=1,
                             key="kernels_iter_from")
        hi = t2.number_input("To iteration", min_value=present[0], max_value=present[-1], value=present[0], step=1,
                             key="kernels_iter_to")
        lo, hi = int(min(lo, hi)), int(max(lo, hi))
        window = data.timeline_window(trace, (lo, hi), max_bars=MAX_TIMELINE_BARS)
        what = f"iteration {lo}" if lo == hi else f"iterations {lo} to {hi}"
    else:
        first_ms = st.number_input("First N ms of the capture", min_value=0.01, max_value=3_600_000.0, value=10.0,
                                   step=1.0, format="%.4g", key="kernels_first_ms")
        window = data.timeline_window(trace, None, first_ms=float(first_ms), max_bars=MAX_TIMELINE_BARS)
        what = f"the first {first_ms:g} ms from the first GPU activity (the capture has no iteration ranges)"
    st.plotly_chart(charts.kernel_timeline_figure(window), key="kernels_timeline_chart")
    st.caption(f"Window: {what}, {(window['end_ns'] - window['start_ns']) / 1e6:.4g} ms, {window['total']} GPU "
               "activities. Lanes: one per GPU / CUDA stream; NVTX ranges (their own lanes, nested ranges below their "
               "parent) are host times, when the work was enqueued, not when it ran.")
    if window["dropped"]:
        st.warning(f"Only the first {MAX_TIMELINE_BARS} of {window['total']} GPU activities of this window are drawn "
                   f"(up to {window['cut_ns'] / 1e6:.4g} ms); narrow the window to see the rest.")

# --------------------------------------------------------------------------------------------- ncu
ncu = data.ncu_rows(url, run_id)
if ncu:
    st.subheader("Nsight Compute", anchor=False)
    st.dataframe(pd.DataFrame([{
        "kernel": _short(str(r.get("short_name") or r["name"])), "category": r.get("category"),
        "duration µs": (r["duration_ns"] / 1e3) if r.get("duration_ns") is not None else None,
        "achieved occupancy %": r.get("achieved_occupancy_pct"), "SM %": r.get("sm_throughput_pct"),
        "DRAM %": r.get("dram_throughput_pct"), "FLOP": r.get("flop"), "DRAM bytes": r.get("dram_bytes"),
        "FLOP / byte": r.get("arithmetic_intensity"),
        "achieved TFLOP/s": (r["flop_per_s"] / 1e12) if r.get("flop_per_s") is not None else None,
        "grid": "x".join(map(str, r["grid"])) if r.get("grid") else "", "block": "x".join(map(str, r["block"])) if r.get("block") else "",
        "full name": r["name"],
    } for r in ncu]), hide_index=True, key="kernels_ncu_table", column_config={
        k: st.column_config.NumberColumn(format="%.4g") for k in
        ("duration µs", "achieved occupancy %", "SM %", "DRAM %", "FLOP", "DRAM bytes", "FLOP / byte", "achieved TFLOP/s")})
    st.caption("Nsight Compute replays each profiled launch to collect its counters: a duration here is one launch "
               "run alone, not its time inside the pipelined run. FLOP counts tensor-core and FP32/FP16/FP64 "
               "instructions (an FMA is 2 FLOP); bytes are DRAM reads + writes; arithmetic intensity = FLOP / DRAM byte.")
    ceilings = data.roofline_ceilings(run)
    st.plotly_chart(charts.roofline_figure(ncu, ceilings), key="kernels_roofline_chart")
    if ceilings:
        st.caption(f"Ceilings: peak {ceilings['peak_flop_per_s'] / 1e12:.4g} TFLOP/s, bandwidth "
                   f"{ceilings['bandwidth_bytes_per_s'] / 1e12:.4g} TB/s, ridge point "
                   f"{ceilings['ridge_flop_per_byte']:.3g} FLOP/byte; attainable = min(peak, bandwidth x intensity). "
                   f"Source: {ceilings['source']}")
    else:
        st.info("Roofline ceilings are unknown for this run (no measured peak FLOP/s and copy bandwidth stored with "
                "it): the kernels are placed, but no roof is drawn.")
    missing = len([r for r in ncu if not (r.get("arithmetic_intensity") and r.get("flop_per_s"))])
    if missing:
        st.caption(f"{missing} of {len(ncu)} kernels have no FLOP or no DRAM bytes and are not on the roofline.")
    collected = (cfg.get("ncu") or {}).get("metrics")
    with st.expander("Nsight Compute metrics collected"):
        if collected:
            st.markdown("\n".join(f"- `{m}`" for m in collected))
        else:
            seen = sorted({k for r in ncu for k in (r.get("metrics") or {})})
            st.caption("The capture did not record its metric list; the rows hold: " + (", ".join(f"`{m}`" for m in seen) or "none"))
        extra = {k: v for k, v in (cfg.get("ncu") or {}).items() if k != "metrics" and isinstance(v, (str, int, float, bool))}
        if extra:
            st.caption("; ".join(f"{k}: {v}" for k, v in extra.items()))

# ---------------------------------------------------------------------------------------- downloads
st.subheader("Raw reports", anchor=False)
arts = data.run_artifacts(url, run_id)
if not arts:
    st.caption("No raw report file is stored with this run.")
for a in arts:
    name = a["file"].name
    if a["exists"]:
        st.download_button(f"Download {a['kind']}: {name} ({ui.fmt_bytes(a['size_bytes'])})",
                           data=partial(Path.read_bytes, a["file"]), file_name=name, mime="application/octet-stream",
                           key=f"kernels_download_{a['id']}", on_click="ignore")
    else:
        st.warning(f"The {a['kind']} file of this run is missing: {a['file']} (stored as `{a['path']}`; moved or "
                   "deleted from ENGINESCOPE_HOME?).")

# ------------------------------------------------------------------------------------------ compare
st.subheader("Side by side", anchor=False)
others = [int(r["run_id"]) for r in all_runs if int(r["run_id"]) != run_id]
other = st.selectbox("Compare with another profiled run", [None, *others], key="kernels_compare_run",
                     format_func=lambda i: "(none)" if i is None else labels[i],
                     help="e.g. the fp16 capture of the same model beside the fp32 one: which kernels appeared, "
                          "disappeared, got faster or slower")
if other is None:
    st.caption("Pick a second profiled run (e.g. the same model at another precision) to see which kernels changed.")
elif summary is None:
    st.info("The selected run has no kernel timeline to compare.")
else:
    other_trace, other_summary = _trace_and_summary(url, int(other))
    if other_summary is None:
        st.info(f"Run {other} has no kernel timeline to compare.")
    else:
        rows = data.kernel_diff_rows(summary, other_summary)
        per = rows[0]["per"] if rows else "capture"
        a_lab, b_lab = f"A: run {run_id}", f"B: run {other}"
        if per != "iteration":
            st.warning("At least one of the two runs has no measured-iteration ranges: times are per capture, which "
                       "compares only when both captured the same number of iterations.")
        by = {c: sum(1 for r in rows if r["change"] == c) for c in ("appeared", "disappeared", "faster", "slower", "unchanged")}
        st.caption(f"Times are ms per {per} (A: {summary.iterations or 1}, B: {other_summary.iterations or 1} "
                   f"{per}s). {by['appeared']} kernels appeared in B, {by['disappeared']} disappeared, {by['faster']} got "
                   f"faster, {by['slower']} slower, {by['unchanged']} within 2%.")
        busy_a = summary.busy_ns / max(summary.iterations, 1) if per == "iteration" else summary.busy_ns
        busy_b = other_summary.busy_ns / max(other_summary.iterations, 1) if per == "iteration" else other_summary.busy_ns
        bm = st.columns(3)
        bm[0].metric(f"GPU busy per {per}, A", ui.fmt_ms(busy_a / 1e6))
        bm[1].metric(f"GPU busy per {per}, B", ui.fmt_ms(busy_b / 1e6),
                    f"{(busy_b - busy_a) / 1e6:+.4g} ms", delta_color="inverse")
        bm[2].metric("Busy-time ratio B / A", f"{busy_b / busy_a:.3g}x" if busy_a else "-")
        st.dataframe(pd.DataFrame([{
            "kernel": _short(r["short_name"]), "category": r["category"], "change": r["change"],
            f"A ms / {per}": r["a_ns"] / 1e6, f"B ms / {per}": r["b_ns"] / 1e6, "delta ms": r["delta_ns"] / 1e6,
            "B / A": (r["b_ns"] / r["a_ns"]) if r["a_ns"] and r["b_ns"] else None, "full name": r["name"],
        } for r in rows]), hide_index=True, key="kernels_diff_table", column_config={
            k: st.column_config.NumberColumn(format="%.4g") for k in
            (f"A ms / {per}", f"B ms / {per}", "delta ms", "B / A")})
        div_a = summary.iterations if per == "iteration" else 1
        div_b = other_summary.iterations if per == "iteration" else 1
        st.plotly_chart(charts.kernel_category_figure([
            {"label": a_lab, "by_category_ms": {c: v / 1e6 / div_a for c, v in summary.by_category_ns.items()}},
            {"label": b_lab, "by_category_ms": {c: v / 1e6 / div_b for c, v in other_summary.by_category_ns.items()}},
        ], yaxis_title=f"GPU time per {per} (ms)"), key="kernels_compare_category_chart")
        st.caption("Kernel names are matched exactly: a kernel of another precision (an fp16 GEMM in place of an fp32 "
                   "one) shows as one that disappeared and one that appeared. Categories in the order: "
                   + ", ".join(CATEGORIES) + ".")
