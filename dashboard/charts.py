"""Plotly figures of the dashboard, built from plain data (lists of dicts, arrays) so tests can call them.

Conventions:
- Axis titles carry units ("p50 latency (ms)", "throughput (items/s)", "time per inference (ms)").
- A numerically invalid variant (outputs NaN/Inf/all-zero, ``valid is False``) is drawn grey with a
  hatch pattern and the text "numerically invalid", and its trace/point name says so; it is never
  highlighted as the fastest (see :func:`dashboard.data.fastest_valid`).
- Colours: one per batch size (variant charts) or per run (layer charts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

INVALID_COLOR = "#b0b0b0"
INVALID_LABEL = "numerically invalid"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")

#: Distribution chart kinds accepted by :func:`latency_distribution_figure`.
DISTRIBUTION_KINDS = ("box", "violin", "histogram")


def _is_invalid(row: Mapping[str, Any]) -> bool:
    return row.get("valid") is False


def _empty(title: str, message: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, annotations=[dict(text=message, showarrow=False, x=0.5, y=0.5,
                                                     xref="paper", yref="paper")])
    return fig


def _variant_bars(rows: Sequence[Mapping[str, Any]], value_key: str, title: str, yaxis_title: str,
                  err: bool) -> go.Figure:
    """Grouped bars: x = ``variant`` (engine / precision), one trace per ``batch_size``."""
    rows = [r for r in rows if r.get(value_key) is not None]
    if not rows:
        return _empty(title, "no data")
    variants = list(dict.fromkeys(str(r["variant"]) for r in rows))
    batches = sorted({r.get("batch_size") for r in rows}, key=lambda b: (b is None, b or 0))
    fig = go.Figure()
    for k, batch in enumerate(batches):
        sub = [r for r in rows if r.get("batch_size") == batch]
        color = PALETTE[k % len(PALETTE)]
        values = [float(r[value_key]) for r in sub]
        texts = [INVALID_LABEL if _is_invalid(r) else "" for r in sub]
        bar: dict[str, Any] = dict(
            x=[str(r["variant"]) for r in sub],
            y=values,
            name=f"batch {batch}" if batch is not None else "batch ?",
            marker=dict(color=[INVALID_COLOR if _is_invalid(r) else color for r in sub],
                        pattern=dict(shape=["/" if _is_invalid(r) else "" for r in sub])),
            text=texts,
            textposition="outside",
            customdata=[[r.get("run_id"), r.get("count"), INVALID_LABEL if _is_invalid(r) else "valid"] for r in sub],
            hovertemplate="%{x}<br>%{y:.4g}<br>run %{customdata[0]}, n=%{customdata[1]}<br>%{customdata[2]}<extra>%{fullData.name}</extra>",
        )
        if err:
            hi = [max(0.0, float(r["ci_high_ms"]) - float(r[value_key])) if r.get("ci_high_ms") is not None else 0.0 for r in sub]
            lo = [max(0.0, float(r[value_key]) - float(r["ci_low_ms"])) if r.get("ci_low_ms") is not None else 0.0 for r in sub]
            bar["error_y"] = dict(type="data", symmetric=False, array=hi, arrayminus=lo, visible=True)
        fig.add_trace(go.Bar(**bar))
    fig.update_layout(title=title, barmode="group", legend_title_text="batch size",
                      xaxis=dict(title=dict(text="variant (engine / precision)"), categoryorder="array",
                                 categoryarray=variants),
                      yaxis=dict(title=dict(text=yaxis_title)))
    return fig


def latency_ci_figure(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Median (p50) latency per variant and batch size with its 95% bootstrap CI as error bars.

    Args:
        rows: one dict per run with ``variant`` (str), ``batch_size`` (int), ``p50_ms``, ``ci_low_ms``,
            ``ci_high_ms`` (ms), ``valid`` (bool | None), optional ``run_id``, ``count``. Rows without
            ``p50_ms`` are skipped.
    """
    return _variant_bars(rows, "p50_ms", "Latency: median with 95% CI", "p50 latency (ms)", err=True)


def throughput_figure(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Throughput per variant and batch size (items/s = inferences/s x batch size).

    Args:
        rows: as :func:`latency_ci_figure` with ``items_per_s``.
    """
    return _variant_bars(rows, "items_per_s", "Throughput", "throughput (items/s)", err=False)


def latency_distribution_figure(series: Sequence[Mapping[str, Any]], kind: str = "box") -> go.Figure:
    """Distribution of raw per-iteration latencies, one trace per run.

    Args:
        series: dicts with ``label`` (str), ``values_ms`` (1-D array-like, ms), ``valid`` (bool | None).
        kind: ``"box"``, ``"violin"`` or ``"histogram"`` (probability-density histograms, overlaid).

    Raises:
        ValueError: unknown ``kind``.
    """
    if kind not in DISTRIBUTION_KINDS:
        raise ValueError(f"distribution kind {kind!r}: expected one of {DISTRIBUTION_KINDS}")
    title = "Latency distribution (raw samples)"
    series = [s for s in series if len(s.get("values_ms", ())) > 0]
    if not series:
        return _empty(title, "no raw samples")
    fig = go.Figure()
    for k, s in enumerate(series):
        values = np.asarray(s["values_ms"], dtype=float)
        invalid = _is_invalid(s)
        name = f"{s['label']} ({INVALID_LABEL})" if invalid else str(s["label"])
        color = INVALID_COLOR if invalid else PALETTE[k % len(PALETTE)]
        if kind == "box":
            fig.add_trace(go.Box(y=values, name=name, marker_color=color, boxpoints=False))
        elif kind == "violin":
            fig.add_trace(go.Violin(y=values, name=name, line_color=color, box_visible=True, meanline_visible=True,
                                    points=False))
        else:
            fig.add_trace(go.Histogram(x=values, name=name, marker_color=color, opacity=0.6, histnorm="probability density"))
    if kind == "histogram":
        fig.update_layout(barmode="overlay", xaxis_title="latency (ms)", yaxis_title="density (1/ms)")
    else:
        fig.update_layout(yaxis_title="latency (ms)", xaxis_title="run")
    fig.update_layout(title=title)
    return fig


def top_layers_figure(layers: Sequence[Mapping[str, Any]], n: int = 15) -> go.Figure:
    """Horizontal bars of the ``n`` slowest layers of one run.

    Args:
        layers: dicts with ``name``, ``op_type``, ``time_ms`` (ms per inference), optional ``precision``.
    """
    title = f"Top {n} layers by time"
    layers = sorted((r for r in layers if r.get("time_ms") is not None), key=lambda r: -float(r["time_ms"]))[:n]
    if not layers:
        return _empty(title, "no layer timings")
    layers = layers[::-1]  # largest on top
    fig = go.Figure(go.Bar(
        x=[float(r["time_ms"]) for r in layers],
        y=[_short(str(r["name"])) for r in layers],
        orientation="h",
        customdata=[[r.get("op_type") or "?", r.get("precision") or "", str(r["name"])] for r in layers],
        hovertemplate="%{customdata[2]}<br>%{customdata[0]} %{customdata[1]}<br>%{x:.4g} ms<extra></extra>",
        marker_color=PALETTE[0],
    ))
    fig.update_layout(title=title, xaxis_title="time per inference (ms)", yaxis_title="layer",
                      height=max(300, 28 * len(layers) + 120))
    return fig


def op_type_figure(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Time per op type (layer type), one bar trace per run.

    Args:
        rows: dicts with ``run`` (label), ``op_type``, ``time_ms`` (summed ms per inference).
    """
    title = "Time by op type"
    rows = [r for r in rows if r.get("time_ms") is not None]
    if not rows:
        return _empty(title, "no layer timings")
    totals: dict[str, float] = {}
    for r in rows:
        totals[str(r["op_type"])] = totals.get(str(r["op_type"]), 0.0) + float(r["time_ms"])
    ops = sorted(totals, key=lambda o: -totals[o])
    fig = go.Figure()
    for k, run in enumerate(dict.fromkeys(str(r["run"]) for r in rows)):
        per = {str(r["op_type"]): float(r["time_ms"]) for r in rows if str(r["run"]) == run}
        fig.add_trace(go.Bar(x=ops, y=[per.get(o, 0.0) for o in ops], name=run, marker_color=PALETTE[k % len(PALETTE)]))
    fig.update_layout(title=title, barmode="group", xaxis_title="op type", yaxis_title="time per inference (ms)",
                      legend_title_text="run")
    return fig


def layer_side_by_side_figure(table: Sequence[Mapping[str, Any]], run_labels: Sequence[str], n: int = 15) -> go.Figure:
    """The same layers side by side across runs (rows of :func:`profiles.layer_match.compare_runs`).

    Shows the ``n`` layers with the largest time in any run; one horizontal bar trace per run label
    (column ``"<label> ms"``); hover shows the speed-up vs the reference (first label) and the match method.
    """
    title = "Same layers across runs"
    def peak(r: Mapping[str, Any]) -> float:
        return max((float(r.get(f"{lab} ms") or 0.0) for lab in run_labels), default=0.0)
    top = sorted(table, key=lambda r: -peak(r))[:n][::-1]
    if not top or peak(top[-1]) <= 0:
        return _empty(title, "no matched layers")
    fig = go.Figure()
    for k, lab in enumerate(run_labels):
        fig.add_trace(go.Bar(
            y=[_short(str(r["layer"])) for r in top],
            x=[r.get(f"{lab} ms") for r in top],
            name=lab,
            orientation="h",
            marker_color=PALETTE[k % len(PALETTE)],
            customdata=[[r.get(f"{lab} speed-up"), r.get(f"{lab} match") or ("reference" if k == 0 else "-"), str(r["layer"])]
                        for r in top],
            hovertemplate="%{customdata[2]}<br>%{x:.4g} ms<br>speed-up vs reference: %{customdata[0]:.3g}x"
                          "<br>match: %{customdata[1]}<extra>%{fullData.name}</extra>",
        ))
    fig.update_layout(title=title, barmode="group", xaxis_title="time per inference (ms)", yaxis_title="layer",
                      legend_title_text="run", height=max(320, 22 * len(top) * max(1, len(run_labels)) + 140))
    return fig


def _short(name: str, limit: int = 60) -> str:
    return name if len(name) <= limit else name[: limit // 2 - 2] + " ... " + name[-(limit // 2 - 3):]


def batch_sweep_figure(series: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Throughput (items/s) vs batch size of batch sweeps, log2 x axis, the knee of each sweep marked with a
    star and its label, the batch that ran out of memory (or failed) marked with an x at the bottom.

    Args:
        series: :func:`dashboard.data.sweep_series` dicts (``label``, ``points`` with ``batch_size``,
            ``items_per_s``, ``status``, ``valid``, ``limit``; ``stop`` with ``knee_batch``, ``reason``).
    """
    if not series:
        return _empty("Throughput vs batch (batch sweep)", "no batch sweep among these runs")
    fig = go.Figure()
    for k, s in enumerate(series):
        color = PALETTE[k % len(PALETTE)]
        ok = [p for p in s["points"] if p["status"] == "succeeded" and p.get("items_per_s") is not None]
        fig.add_trace(go.Scatter(
            x=[p["batch_size"] for p in ok], y=[float(p["items_per_s"]) for p in ok], mode="lines+markers",
            name=s["label"], line=dict(color=color),
            marker=dict(color=[INVALID_COLOR if p.get("valid") is False else color for p in ok]),
            customdata=[[p["run_id"], INVALID_LABEL if p.get("valid") is False else "valid"] for p in ok],
            hovertemplate="batch %{x}<br>%{y:.4g} items/s<br>run %{customdata[0]}, %{customdata[1]}<extra>%{fullData.name}</extra>"))
        stop = s.get("stop") or {}
        knee = stop.get("knee_batch")
        kp = next((p for p in ok if p["batch_size"] == knee), None)
        if kp is not None:
            fig.add_trace(go.Scatter(x=[knee], y=[float(kp["items_per_s"])], mode="markers+text",
                                     marker=dict(symbol="star", size=16, color=color, line=dict(color="black", width=1)),
                                     text=[f"knee: batch {knee}"], textposition="top center",
                                     name=f"{s['label']}: knee (batch {knee})", showlegend=True))
        bad = [p for p in s["points"] if p["status"] != "succeeded"]
        if bad:
            fig.add_trace(go.Scatter(
                x=[p["batch_size"] for p in bad], y=[0.0] * len(bad), mode="markers+text",
                marker=dict(symbol="x", size=14, color="#d62728"),
                text=["out of memory" if p.get("limit") else "failed" for p in bad], textposition="top center",
                name=f"{s['label']}: {stop.get('reason') or 'failed'} (batch {', '.join(str(p['batch_size']) for p in bad)})"))
    fig.update_layout(title="Throughput vs batch (batch sweep)",
                      xaxis=dict(title=dict(text="batch size"), type="log", dtick=np.log10(2)),
                      yaxis=dict(title=dict(text="throughput (items/s)"), rangemode="tozero"))
    return fig


# -------------------------------------------------------------------------------------------- kernels

#: Colour of each kernel category (``profiles.kernels.CATEGORIES``) in the Kernels page's charts.
CATEGORY_COLORS = {"gemm/conv": "#1f77b4", "attention": "#9467bd", "elementwise/reduction": "#2ca02c",
                   "memcpy": "#ff7f0e", "memset": "#8c564b", "other": "#7f7f7f"}
NVTX_COLOR = "#bcbd22"


def kernel_category_figure(series: Sequence[Mapping[str, Any]], yaxis_title: str = "GPU time (ms)") -> go.Figure:
    """GPU time by kernel category, categories in ``profiles.kernels.CATEGORIES`` order, one bar trace per run.

    Args:
        series: dicts with ``label`` (run label) and ``by_category_ms`` (``{category: ms}``; missing categories are 0).
        yaxis_title: what the times are (per capture, per iteration...).
    """
    from profiles.kernels import CATEGORIES

    title = "GPU time by kernel category"
    series = [s for s in series if s.get("by_category_ms")]
    if not series:
        return _empty(title, "no GPU activities")
    fig = go.Figure()
    one = len(series) == 1
    for k, s in enumerate(series):
        vals = [float(s["by_category_ms"].get(c, 0.0)) for c in CATEGORIES]
        fig.add_trace(go.Bar(x=list(CATEGORIES), y=vals, name=str(s["label"]),
                             marker_color=[CATEGORY_COLORS[c] for c in CATEGORIES] if one else PALETTE[k % len(PALETTE)],
                             hovertemplate="%{x}: %{y:.4g} ms<extra>%{fullData.name}</extra>"))
    fig.update_layout(title=title, barmode="group", showlegend=not one, legend_title_text="run",
                      xaxis=dict(title=dict(text="category (from kernel names)"), categoryorder="array",
                                 categoryarray=list(CATEGORIES)),
                      yaxis=dict(title=dict(text=yaxis_title)))
    return fig


def _lane(device: Any, stream: Any) -> str:
    return f"GPU {'?' if device is None else device} / stream {'?' if stream is None else stream}"


def kernel_timeline_figure(window: Mapping[str, Any], label_limit: int = 60) -> go.Figure:
    """Timeline of GPU activities (one lane per device/stream) with NVTX ranges in lanes of their own above them.

    Args:
        window: :func:`dashboard.data.timeline_window` output: ``activities`` (``GpuActivity``), ``ranges``
            (dicts with ``text``, ``start_ns``, ``end_ns``, ``depth``, ``thread_id``), ``start_ns``, ``end_ns``.
        label_limit: kernel names longer than this are shortened in the hover title (the full name follows it).

    Bars: x from start to end in ms from the trace origin, one trace per category (kernels, memcpy, memset) and
    one ``NVTX ranges`` trace. NVTX ranges are host (CPU) times: when the work was enqueued, not when it ran.
    """
    title = "Timeline"
    acts = list(window.get("activities") or [])
    ranges = list(window.get("ranges") or [])
    if not acts and not ranges:
        return _empty(title, "nothing in this window")
    lanes = sorted({(a.device, a.stream) for a in acts},
                   key=lambda ds: (ds[0] is None, ds[0] or 0, ds[1] is None, ds[1] or 0))
    threads = {r.get("thread_id") for r in ranges}

    def nvtx_name(r: Mapping[str, Any]) -> str:  # one lane per nesting level (and per thread when several)
        who = f" thread {r.get('thread_id')}" if len(threads) > 1 else ""
        d = int(r["depth"])
        return f"NVTX{who}" + ("" if d == 0 else f" (nested {d})")
    nvtx_lanes = sorted({(str(r.get("thread_id")), int(r["depth"])): nvtx_name(r) for r in ranges}.items())
    order = [name for _, name in nvtx_lanes] + [_lane(d, s) for d, s in lanes]
    fig = go.Figure()
    if ranges:
        fig.add_trace(go.Bar(
            base=[r["start_ns"] / 1e6 for r in ranges], x=[(r["end_ns"] - r["start_ns"]) / 1e6 for r in ranges],
            y=[nvtx_name(r) for r in ranges], orientation="h", name="NVTX ranges",
            marker_color=NVTX_COLOR, text=[_short(str(r["text"]), 40) for r in ranges], textposition="inside",
            insidetextanchor="start",
            customdata=[[str(r["text"]), (r["end_ns"] - r["start_ns"]) / 1e3, r.get("thread_id")] for r in ranges],
            hovertemplate="%{customdata[0]}<br>%{customdata[1]:.4g} µs (host), thread %{customdata[2]}<extra>NVTX</extra>"))
    by_cat: dict[str, list[Any]] = {}
    for a in acts:
        by_cat.setdefault(a.category if a.category in CATEGORY_COLORS else "other", []).append(a)
    for cat in CATEGORY_COLORS:
        sub = by_cat.get(cat)
        if not sub:
            continue
        fig.add_trace(go.Bar(
            base=[a.start_ns / 1e6 for a in sub], x=[a.duration_ns / 1e6 for a in sub],
            y=[_lane(a.device, a.stream) for a in sub], orientation="h", name=cat,
            marker=dict(color=CATEGORY_COLORS[cat], line=dict(width=0)),
            customdata=[[_short(a.name, label_limit), a.name if len(a.name) > label_limit else "",
                         a.duration_ns / 1e3, a.op or "", "" if a.iteration is None else a.iteration,
                         a.kind + (f" {a.copy_kind}" if a.copy_kind else "")
                         + (f", {a.bytes} bytes" if a.bytes is not None else "")] for a in sub],
            hovertemplate="<b>%{customdata[0]}</b><br>%{customdata[1]}<br>%{customdata[5]}, %{customdata[2]:.4g} µs"
                          "<br>op: %{customdata[3]}<br>iteration %{customdata[4]}<extra>%{fullData.name}</extra>"))
    fig.update_layout(title=title, barmode="overlay", bargap=0.25, legend_title_text="kind / category",
                      height=max(260, 44 * len(order) + 150),
                      xaxis=dict(title=dict(text="time from the trace start (ms)"),
                                 range=[window["start_ns"] / 1e6, max(window["end_ns"], window["start_ns"] + 1) / 1e6]),
                      yaxis=dict(title=dict(text="lane"), categoryorder="array", categoryarray=order,
                                 autorange="reversed"))
    return fig


def roofline_figure(rows: Sequence[Mapping[str, Any]], ceilings: Mapping[str, Any] | None) -> go.Figure:
    """Roofline of Nsight Compute kernels: log-log, x = arithmetic intensity (FLOP/byte of DRAM traffic), y = achieved
    FLOP/s, one marker trace per category; with ``ceilings`` the roof ``min(peak, bandwidth x AI)`` and the ridge point.

    Args:
        rows: :func:`dashboard.data.ncu_rows` dicts (``arithmetic_intensity``, ``flop_per_s``, ``short_name``,
            ``name``, ``category``, ``duration_ns``); rows without both values are left out.
        ceilings: :func:`dashboard.data.roofline_ceilings` (``peak_flop_per_s``, ``bandwidth_bytes_per_s``,
            ``ridge_flop_per_byte``, ``source``), or None (unknown ceilings: no roof is drawn).
    """
    title = "Roofline (Nsight Compute)"
    pts = [r for r in rows if (r.get("arithmetic_intensity") or 0) > 0 and (r.get("flop_per_s") or 0) > 0]
    if not pts:
        return _empty(title, "no kernel with both FLOP and DRAM bytes measured")
    fig = go.Figure()
    for cat in CATEGORY_COLORS:
        sub = [r for r in pts if (r.get("category") if r.get("category") in CATEGORY_COLORS else "other") == cat]
        if not sub:
            continue
        fig.add_trace(go.Scatter(
            x=[float(r["arithmetic_intensity"]) for r in sub], y=[float(r["flop_per_s"]) for r in sub],
            mode="markers", name=f"kernels: {cat}", marker=dict(color=CATEGORY_COLORS[cat], size=9,
                                                                line=dict(color="black", width=0.5)),
            customdata=[[_short(str(r.get("short_name") or r["name"]), 60),
                         (r.get("duration_ns") or 0) / 1e3] for r in sub],
            hovertemplate="%{customdata[0]}<br>AI %{x:.3g} FLOP/byte<br>%{y:.3g} FLOP/s<br>%{customdata[1]:.4g} µs"
                          "<extra>%{fullData.name}</extra>"))
    if ceilings:
        peak, bw = float(ceilings["peak_flop_per_s"]), float(ceilings["bandwidth_bytes_per_s"])
        ridge = peak / bw
        ais = [float(r["arithmetic_intensity"]) for r in pts]
        lo, hi = min(min(ais), ridge) / 10, max(max(ais), ridge) * 10
        fig.add_trace(go.Scatter(x=[lo, ridge, hi], y=[bw * lo, peak, peak], mode="lines",
                                 name=f"roof: min({peak / 1e12:.4g} TFLOP/s, {bw / 1e12:.4g} TB/s x AI)",
                                 line=dict(color="black", width=2),
                                 hovertemplate="AI %{x:.3g} FLOP/byte<br>attainable %{y:.3g} FLOP/s<extra>roof</extra>"))
        fig.add_trace(go.Scatter(x=[ridge], y=[peak], mode="markers+text", text=[f"ridge {ridge:.3g} FLOP/byte"],
                                 textposition="top left", marker=dict(symbol="diamond", size=11, color="black"),
                                 name=f"ridge point ({ridge:.3g} FLOP/byte)"))
    fig.update_layout(title=title, legend_title_text="",
                      xaxis=dict(title=dict(text="arithmetic intensity (FLOP / DRAM byte)"), type="log"),
                      yaxis=dict(title=dict(text="achieved (FLOP/s)"), type="log"))
    return fig
