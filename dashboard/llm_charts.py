"""Plotly figures of the LLM serving page, built from plain rows (see :mod:`dashboard.llm_data`).

Rows are dicts with ``run_id``, ``level`` (float; ``inf`` for an infinite request rate), ``mode`` and
metric keys. ``labels`` maps a run id to its legend name; several runs are overlaid, one colour each.
Load levels are drawn on a categorical axis in numeric order (``inf`` last), so concurrency 1, 4, 16
and rates 2, 8, inf are evenly spaced. Axis titles carry units.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")

#: Latency metrics the page offers: key prefix -> axis title.
LATENCY_METRICS = {"ttft": "TTFT", "tpot": "TPOT", "itl": "ITL", "e2e": "E2E latency"}


def level_label(level: float) -> str:
    """``inf`` -> ``"inf"``, 4.0 -> ``"4"``, 2.5 -> ``"2.5"``."""
    return "inf" if math.isinf(level) else f"{level:g}"


def _level_axis_title(rows: Sequence[Mapping[str, Any]]) -> str:
    modes = {r.get("mode") for r in rows}
    if modes == {"concurrency"}:
        return "concurrency (requests in flight)"
    if modes == {"request_rate"}:
        return "request rate (requests/s)"
    return "load level (concurrency or requests/s)"


def _by_run(rows: Sequence[Mapping[str, Any]]) -> dict[int, list[Mapping[str, Any]]]:
    out: dict[int, list[Mapping[str, Any]]] = {}
    for r in rows:
        out.setdefault(int(r["run_id"]), []).append(r)
    for v in out.values():
        v.sort(key=lambda r: r["level"])
    return out


def _categories(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return [level_label(v) for v in sorted({float(r["level"]) for r in rows})]


def _empty(title: str, message: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, xaxis={"visible": False}, yaxis={"visible": False},
                      annotations=[{"text": message, "showarrow": False, "xref": "paper", "yref": "paper",
                                    "x": 0.5, "y": 0.5}])
    return fig


def _name(labels: Mapping[int, str] | None, run_id: int) -> str:
    return (labels or {}).get(run_id, f"run {run_id}")


def throughput_figure(rows: Sequence[Mapping[str, Any]], labels: Mapping[int, str] | None = None,
                      key: str = "output_token_throughput_per_s") -> go.Figure:
    """Throughput (``key``: output tokens/s by default) vs load level, one line per run."""
    title = "Output token throughput vs load" if key == "output_token_throughput_per_s" else f"{key} vs load"
    pts = [r for r in rows if r.get(key) is not None]
    if not pts:
        return _empty(title, "no completed load level yet")
    fig = go.Figure()
    for i, (rid, rs) in enumerate(_by_run(pts).items()):
        fig.add_trace(go.Scatter(x=[level_label(r["level"]) for r in rs], y=[r[key] for r in rs], mode="lines+markers",
                                 name=_name(labels, rid), line={"color": PALETTE[i % len(PALETTE)]},
                                 hovertemplate="level %{x}<br>%{y:.1f}<extra>%{fullData.name}</extra>"))
    unit = "tokens/s" if "token" in key else "requests/s"
    fig.update_layout(title=title, xaxis_title=_level_axis_title(pts), yaxis_title=f"throughput ({unit})",
                      xaxis={"type": "category", "categoryorder": "array", "categoryarray": _categories(pts)},
                      legend_title_text="run")
    return fig


def latency_figure(rows: Sequence[Mapping[str, Any]], metric: str = "ttft",
                   labels: Mapping[int, str] | None = None) -> go.Figure:
    """``metric`` (ttft | tpot | itl | e2e) p50 (solid) and p99 (dashed) vs load level, per run."""
    name = LATENCY_METRICS.get(metric, metric)
    title = f"{name} p50 / p99 vs load"
    pts = [r for r in rows if r.get(f"{metric}_p50_ms") is not None]
    if not pts:
        return _empty(title, f"no {name} samples yet")
    fig = go.Figure()
    for i, (rid, rs) in enumerate(_by_run(pts).items()):
        color = PALETTE[i % len(PALETTE)]
        x = [level_label(r["level"]) for r in rs]
        for q, dash in (("p50", "solid"), ("p99", "dash")):
            fig.add_trace(go.Scatter(x=x, y=[r[f"{metric}_{q}_ms"] for r in rs], mode="lines+markers",
                                     name=f"{_name(labels, rid)} {q}", line={"color": color, "dash": dash},
                                     hovertemplate=f"level %{{x}}<br>{q} %{{y:.2f}} ms<extra>%{{fullData.name}}</extra>"))
    fig.update_layout(title=title, xaxis_title=_level_axis_title(pts), yaxis_title=f"{name} (ms)",
                      xaxis={"type": "category", "categoryorder": "array", "categoryarray": _categories(pts)})
    return fig


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the Pareto-optimal points of ``(latency, throughput)`` pairs (lower latency and higher
    throughput are better): a point is kept when no other has latency <= and throughput >= with one
    strictly better. Returned in increasing latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best = -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def pareto_figure(rows: Sequence[Mapping[str, Any]], labels: Mapping[int, str] | None = None,
                  latency: str = "e2e", throughput: str = "output_token_throughput_per_s") -> go.Figure:
    """Throughput vs p99 ``latency`` (the serving trade-off curve): one marker per load level labelled with
    the level, per run; the Pareto front over all runs is the dotted black line."""
    lat_key = f"{latency}_p99_ms"
    name = LATENCY_METRICS.get(latency, latency)
    title = f"Throughput vs {name} p99 (Pareto)"
    pts = [r for r in rows if r.get(lat_key) is not None and r.get(throughput) is not None]
    if not pts:
        return _empty(title, "no completed load level yet")
    fig = go.Figure()
    for i, (rid, rs) in enumerate(_by_run(pts).items()):
        fig.add_trace(go.Scatter(x=[r[lat_key] for r in rs], y=[r[throughput] for r in rs], mode="lines+markers+text",
                                 text=[level_label(r["level"]) for r in rs], textposition="top center",
                                 name=_name(labels, rid), line={"color": PALETTE[i % len(PALETTE)]},
                                 hovertemplate=f"{name} p99 %{{x:.1f}} ms<br>%{{y:.1f}}<br>level %{{text}}"
                                               "<extra>%{fullData.name}</extra>"))
    front = pareto_front([(float(r[lat_key]), float(r[throughput])) for r in pts])
    fig.add_trace(go.Scatter(x=[pts[i][lat_key] for i in front], y=[pts[i][throughput] for i in front],
                             mode="lines", name="Pareto front", line={"color": "black", "dash": "dot"}, hoverinfo="skip"))
    fig.update_layout(title=title, xaxis_title=f"{name} p99 (ms)", yaxis_title="output throughput (tokens/s)")
    return fig


def kv_usage_figure(series: Sequence[Mapping[str, Any]], labels: Mapping[int, str] | None = None) -> go.Figure:
    """KV-cache usage (% of blocks, left axis) and requests running (dotted, right axis) over the sweep's
    time (s), per run, from the server's /metrics samples."""
    title = "KV-cache usage over time (server /metrics)"
    pts = [r for r in series if r.get("kv_usage_pct") is not None or r.get("running") is not None]
    if not pts:
        return _empty(title, "no /metrics samples (the server exposes none, or no level has run yet)")
    fig = go.Figure()
    by: dict[int, list[Mapping[str, Any]]] = {}
    for r in pts:
        by.setdefault(int(r["run_id"]), []).append(r)
    for i, (rid, rs) in enumerate(by.items()):
        color = PALETTE[i % len(PALETTE)]
        rs = sorted(rs, key=lambda r: r["t_s"])
        kv = [r for r in rs if r.get("kv_usage_pct") is not None]
        if kv:
            fig.add_trace(go.Scatter(x=[r["t_s"] for r in kv], y=[r["kv_usage_pct"] for r in kv], mode="lines",
                                     name=f"{_name(labels, rid)} KV cache %", line={"color": color},
                                     text=[r.get("level_label") for r in kv],
                                     hovertemplate="t %{x:.1f} s<br>%{y:.2f} %<br>level %{text}<extra></extra>"))
        fig.add_trace(go.Scatter(x=[r["t_s"] for r in rs], y=[r.get("running") for r in rs], mode="lines",
                                 name=f"{_name(labels, rid)} running", yaxis="y2",
                                 line={"color": color, "dash": "dot", "shape": "hv"}))
    max_running = max((float(r.get("running") or 0) for r in pts), default=0.0)
    y2: dict[str, Any] = {"title": "requests running", "overlaying": "y", "side": "right", "rangemode": "tozero",
                          "showgrid": False}
    if max_running <= 16:
        y2["dtick"] = 1  # whole requests
    fig.update_layout(title=title, xaxis_title="time since the sweep began (s)", yaxis_title="KV-cache usage (%)",
                      yaxis2=y2, yaxis={"rangemode": "tozero"})
    return fig


def concurrency_table(run: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Predicted vs measured maximum concurrency of one run: the KV-cache facts (bytes/token, tokens,
    vLLM's own maximum concurrency) and, per level, the maximum ``num_requests_running`` seen. Plain
    rows ``{"quantity", "value"}`` for a table."""
    kv = run.get("kv_cache") or {}
    out = [
        {"quantity": "KV-cache bytes per token (config.json: layers x 2 x KV heads x head dim x dtype)",
         "value": kv.get("bytes_per_token")},
        {"quantity": "KV-cache bytes per token implied by vLLM (cache memory / cache tokens)",
         "value": None if kv.get("implied_bytes_per_token") is None else round(kv["implied_bytes_per_token"], 1)},
        {"quantity": "KV-cache capacity (tokens)", "value": kv.get("kv_cache_tokens")},
        {"quantity": "KV-cache blocks x block size", "value": (f"{kv.get('kv_cache_blocks')} x {kv.get('block_size')}"
                                                           if kv.get("kv_cache_blocks") else None)},
        {"quantity": "tokens per request (input + output)", "value": kv.get("tokens_per_request")},
        {"quantity": "predicted max concurrency (KV tokens / tokens per request)",
         "value": None if kv.get("predicted_max_concurrency") is None else round(kv["predicted_max_concurrency"], 2)},
        {"quantity": f"vLLM's own max concurrency at {kv.get('vllm_max_concurrency_tokens')} tokens/request",
         "value": kv.get("vllm_max_concurrency")},
        {"quantity": "measured max requests running (vllm:num_requests_running)",
         "value": kv.get("measured_max_running") if kv.get("measured_max_running") is not None else
         max((r["max_running"] for r in rows if r.get("max_running") is not None), default=None)},
    ]
    return [{"quantity": r["quantity"], "value": "-" if r["value"] is None else str(r["value"])} for r in out]
