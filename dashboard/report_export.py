"""A saved report's contents and its exports: self-contained HTML, PDF, CSV and JSON.

:func:`collect` reads everything a report shows (the report row through :mod:`db.reports`, the verdicts
through :func:`db.verdicts.verdict_table`, run summaries, raw samples and load points through
:mod:`dashboard.data` / :mod:`dashboard.llm_data`) into one :class:`ReportData`; the builders below are
pure functions of it, shared by the Reports page and ``enginescope report``:

- :func:`figures`: the chosen charts, built by the dashboard's own figure builders
  (:mod:`dashboard.charts`, :mod:`dashboard.llm_charts`).
- :func:`build_html`: one HTML file with no external reference at all (plotly.js inline once, no CDN,
  no web fonts, no MathJax), so it renders with the network off. Order: header (title, author, dates,
  baseline, notes), verdict table, comparability list, charts (and the accuracy table).
- :func:`build_pdf`: the same in pages: the verdict table, the comparability list, one page per chart
  or table, the notes; each page is a Plotly figure rendered by kaleido (v1, which drives a Chromium:
  Debian's ``/usr/bin/chromium`` or ``$ENGINESCOPE_CHROMIUM`` through choreographer's ``BROWSER_PATH``;
  nothing is downloaded), merged with pypdf.
- :func:`build_csv` (one row per run, or per run and LLM load level: its summary and its verdict vs the
  baseline) and :func:`build_json` (report, runs, verdicts, comparability list, accuracy rows).
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

from dashboard import charts, data, llm_charts, llm_data
from db import reports as db_reports
from profiles.errors import EngineError, EngineScopeError, InputError
from profiles.verdict import METRICS, Verdict

#: PDF page size in CSS pixels at 96 dpi (US letter landscape is 1056 x 816; A4 landscape 1123 x 794).
PAGE_W, PAGE_H = 1100, 800
#: Table rows per PDF page.
ROWS_PER_PAGE = 16


@dataclass
class ReportData:
    """Everything one report shows (see :func:`collect`). ``samples``: raw latencies (ms) of model runs for
    the distribution chart (thinned for plotting as :func:`dashboard.data.latency_samples_ms` says);
    ``points``: LLM load points (:func:`dashboard.llm_data.point_rows`); ``error``: why the verdicts could
    not be computed (shown instead of the table)."""

    report: dict[str, Any]
    kind: str
    labels: dict[int, str]
    runs: list[dict[str, Any]]
    verdicts: list[Verdict]
    verdict_rows: list[dict[str, Any]]
    differences: list[dict[str, Any]]
    accuracy: list[dict[str, Any]] = field(default_factory=list)
    samples: dict[int, np.ndarray] = field(default_factory=dict)
    points: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    opt_ins: dict[int, list[str]] = field(default_factory=dict)

    @property
    def chart_names(self) -> list[str]:
        """The report's chosen charts that fit its runs, in :data:`db.reports.CHARTS` order."""
        chosen = set(self.report.get("charts") or [])
        return [c for c in db_reports.charts_for(self.kind) if c in chosen]


def _model_label(r: Mapping[str, Any]) -> str:
    return f"run {r['run_id']}: {r['variant']}{' b' + str(r['batch_size']) if r.get('batch_size') else ''}"


def collect(report_id: int, url: str | None = None, *, n_boot: int | None = None) -> ReportData:
    """Read report ``report_id`` and everything it shows.

    Raises:
        InputError: no such report (named as ``REPORT_ID``).
    """
    rep = db_reports.get_report(report_id, url)
    if rep is None:
        raise InputError(f"REPORT_ID: report {report_id} does not exist (report list prints ids)")
    ids = [i for i in rep["run_ids"] if i not in rep["missing_runs"]]
    kind = str((rep.get("options") or {}).get("kind") or (db_reports.runs_kind(ids, url) if ids else "model"))
    base = rep.get("baseline_run_id")
    rows = {int(r["run_id"]): r for r in data.run_rows(url, run_ids=ids)}
    repeats = db_reports.repeat_counts(ids, url)
    models = {int(m["id"]): m["original_name"] for m in data.list_models(url)}
    labels: dict[int, str] = {}
    runs: list[dict[str, Any]] = []
    points: list[dict[str, Any]] = []
    samples: dict[int, np.ndarray] = {}
    accuracy: list[dict[str, Any]] = []
    if kind == "llm":
        meta = {int(r["run_id"]): r for r in llm_data.llm_runs(url, limit=100_000) if int(r["run_id"]) in rows}
        for rid in ids:
            m = meta.get(rid)
            labels[rid] = llm_data.run_label(m) if m else f"#{rid} {rows[rid]['engine'] if rid in rows else '?'}"
        points = llm_data.point_rows(url, ids)
        for p in points:
            rid = int(p["run_id"])
            r = rows.get(rid, {})
            runs.append({
                "run": rid, "label": labels.get(rid), "role": "baseline" if rid == base else "candidate",
                "model": (meta.get(rid) or {}).get("model"), "engine": r.get("engine"),
                "engine_version": r.get("engine_version"), "level": f"{p['mode']}={p['level_label']}",
                "repeats": repeats.get(rid), "completed": p.get("completed"), "failed": p.get("failed"),
                **{k: p.get(k) for k in ("ttft_p50_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p99_ms", "e2e_p50_ms",
                                         "e2e_p99_ms", "request_throughput_per_s", "output_token_throughput_per_s")},
            })
    else:
        for rid in ids:
            if rid in rows:
                labels[rid] = _model_label(rows[rid])
        for rid in ids:
            mr = rows.get(rid)
            if mr is None:
                continue
            r = mr
            runs.append({
                "run": rid, "label": labels[rid], "role": "baseline" if rid == base else "candidate",
                "model": models.get(int(r["model_id"])) if r.get("model_id") is not None else r.get("label"),
                "engine": r["engine"], "engine_version": r["engine_version"], "precision": r["precision"],
                "batch": r["batch_size"], "status": r["status"], "valid": r["valid"], "repeats": repeats.get(rid),
                "n": r["count"], "p50_ms": r["p50_ms"], "ci95_low_ms": r["ci_low_ms"], "ci95_high_ms": r["ci_high_ms"],
                "p90_ms": r["p90_ms"], "p99_ms": r["p99_ms"], "mean_ms": r["mean_ms"], "items_per_s": r["items_per_s"],
                "timing_window": r["timing_window"],
            })
        if "latency_distribution" in (rep.get("charts") or []):
            samples = data.latency_samples_ms(url, [i for i in ids if i in rows])
        accuracy = [a for a in data.accuracy_rows(url, ids)]
    error: str | None = None
    verdicts: list[Verdict] = []
    if base is None or int(base) in rep["missing_runs"]:
        error = "the baseline run was deleted: no verdicts"
    else:
        try:
            verdicts = db_reports.report_verdicts(rep, url, n_boot=n_boot)
        except EngineScopeError as exc:
            error = f"verdicts could not be computed: {exc}"
    return ReportData(report=rep, kind=kind, labels=labels, runs=runs, verdicts=verdicts,
                      verdict_rows=[db_reports.verdict_row(v, labels) for v in verdicts],
                      differences=db_reports.difference_rows(verdicts, labels), accuracy=accuracy,
                      samples=samples, points=points, error=error, opt_ins=db_reports.opt_ins_of(ids, url))


# ------------------------------------------------------------------------------------------- tables

def _num(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not np.isfinite(v):
            return str(v)
        return f"{v:.{digits}g}"
    return str(v)


#: Columns of the verdict table as shown (header, row key).
VERDICT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run", "label"), ("level", "level"), ("metric", "metric_label"), ("baseline", "baseline_value_s"),
    ("candidate", "candidate_value_s"), ("ratio", "ratio_s"), ("95% interval", "ci_s"), ("verdict", "verdict"),
    ("within-run only", "within_s"), ("repeats", "repeats_s"), ("accuracy valid", "valid_s"),
    ("cosine min", "cosine_s"), ("max abs err", "err_s"),
)


def verdict_display_rows(d: ReportData) -> list[dict[str, str]]:
    """The verdict table as strings, columns :data:`VERDICT_COLUMNS` (headers as keys), in report order."""
    out = []
    for r in d.verdict_rows:
        unit = r["unit"]
        shown = {
            "label": r["label"], "level": r["level"] or "-",
            "metric_label": METRICS[r["metric"]].label if r["metric"] in METRICS else r["metric"],
            "baseline_value_s": f"{_num(r['baseline_value'])} {unit}" if r["baseline_value"] is not None else "-",
            "candidate_value_s": f"{_num(r['candidate_value'])} {unit}" if r["candidate_value"] is not None else "-",
            "ratio_s": _num(r["ratio"]),
            "ci_s": f"[{r['ci95_low']:.3f}, {r['ci95_high']:.3f}]" if r["ci95_low"] is not None else "-",
            "verdict": r["verdict"], "within_s": "yes" if r["within_run_only"] else "no",
            "repeats_s": f"{r['repeats_baseline']} vs {r['repeats_candidate']}",
            "valid_s": {True: "yes", False: "NO (invalid)", None: "?"}[r["accuracy_valid"]],
            "cosine_s": _num(r["cosine_min"], 6), "err_s": _num(r["max_abs_err"]),
        }
        out.append({h: shown[k] for h, k in VERDICT_COLUMNS})
    return out


def difference_display_rows(d: ReportData) -> list[dict[str, str]]:
    """The comparability list as strings: run, field, baseline, candidate, blocking, note."""
    return [{"run": r["label"], "field": r["field"], "baseline": _num(r["baseline_value"]),
             "candidate": _num(r["candidate_value"]), "blocking": "BLOCKING" if r["blocking"] else "no",
             "note": r["note"]} for r in d.differences]


def accuracy_display_rows(d: ReportData) -> list[dict[str, str]]:
    """The accuracy rows as strings (run, reference run, output, max abs err, max rel err, cosine, valid)."""
    return [{"run": d.labels.get(int(a["run_id"]), f"run {a['run_id']}"), "reference run": _num(a["reference_run_id"]),
             "output": str(a["output_name"]), "max abs err": _num(a["max_abs_err"]),
             "max rel err": _num(a["max_rel_err"]), "cosine": _num(a["cosine"], 6),
             "valid": "yes" if a["valid"] else "NO (invalid)"} for a in d.accuracy]


# ------------------------------------------------------------------------------------------- charts

def figures(d: ReportData) -> list[tuple[str, str, go.Figure]]:
    """``(name, title, figure)`` of each chosen chart (tables such as ``accuracy`` excluded), in order."""
    out: list[tuple[str, str, go.Figure]] = []
    rows = [{**r, "run_id": r["run"], "variant": r["label"], "batch_size": r["batch"], "count": r["n"],
             "ci_low_ms": r["ci95_low_ms"], "ci_high_ms": r["ci95_high_ms"]} for r in d.runs] if d.kind == "model" else []
    for name in d.chart_names:
        title = db_reports.CHARTS[name][0]
        if name == "latency_p50":
            fig = charts.latency_ci_figure(rows)
        elif name == "throughput":
            fig = charts.throughput_figure(rows)
        elif name == "latency_distribution":
            fig = charts.latency_distribution_figure(
                [{"label": r["label"], "values_ms": d.samples.get(int(r["run"]), []), "valid": r["valid"]} for r in d.runs],
                "box")
        elif name == "ttft_vs_load":
            fig = llm_charts.latency_figure(d.points, "ttft", d.labels)
        elif name == "tpot_vs_load":
            fig = llm_charts.latency_figure(d.points, "tpot", d.labels)
        elif name == "llm_throughput":
            fig = llm_charts.throughput_figure(d.points, d.labels)
        else:  # a table (accuracy)
            continue
        if name in ("latency_p50", "throughput"):
            fig.update_layout(xaxis_title="run")
        out.append((name, title, fig))
    return out


# --------------------------------------------------------------------------------------------- HTML

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em; color: #222; }
h1 { margin-bottom: 0.2em; } .meta { color: #555; margin-bottom: 1.5em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } tr.win td { background: #eaf7ea; } tr.invalid td { background: #f4f4f4; color: #777; }
td.blocking { color: #b00; font-weight: bold; } .note { color: #555; font-size: 0.9em; }
.notes { white-space: pre-wrap; border-left: 3px solid #ccc; padding-left: 1em; }
.chart { margin-bottom: 2em; }
"""


def _table_html(rows: Sequence[Mapping[str, str]], cls: str, row_classes: Sequence[str] | None = None,
                cell_classes: Mapping[str, Mapping[str, str]] | None = None) -> str:
    if not rows:
        return "<p class='note'>(none)</p>"
    heads = list(rows[0])
    out = [f"<table class='{cls}'><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in heads) + "</tr></thead><tbody>"]
    for i, r in enumerate(rows):
        rc = f" class='{row_classes[i]}'" if row_classes and row_classes[i] else ""
        cells = []
        for h in heads:
            cc = (cell_classes or {}).get(h, {}).get(str(r[h]))
            cells.append(f"<td{f' class={chr(39)}{cc}{chr(39)}' if cc else ''}>{html.escape(str(r[h]))}</td>")
        out.append(f"<tr{rc}>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _fmt_time(v: Any) -> str:
    if isinstance(v, dt.datetime):
        return v.strftime("%Y-%m-%d %H:%M UTC")
    return str(v) if v else "-"


def header_lines(d: ReportData) -> list[str]:
    """The lines under the title: author, date, baseline, metric, runs, options."""
    rep = d.report
    base = rep.get("baseline_run_id")
    m = METRICS.get(str(rep.get("metric")))
    lines = [f"Author: {rep.get('author') or '-'}; created {_fmt_time(rep.get('created_at'))}"
             + (f", updated {_fmt_time(rep.get('updated_at'))}" if rep.get("updated_at") else ""),
             f"Baseline: {d.labels.get(int(base), f'run {base}') if base is not None else '(deleted)'}; "
             f"metric: {m.label if m else rep.get('metric')}" + (f" ({m.unit})" if m else ""),
             "Runs: " + ", ".join(d.labels.get(i, f"run {i}") for i in rep["run_ids"] if i not in rep["missing_runs"])]
    if rep["missing_runs"]:
        lines.append("Deleted since the report was saved: runs " + ", ".join(map(str, rep["missing_runs"])))
    if (rep.get("options") or {}).get("allow_different"):
        lines.append("Compared although hardware or model differ (allowed when saved).")
    for rid, opts in d.opt_ins.items():
        lines.append(f"Opted in: {d.labels.get(rid, f'run {rid}')} ran with {' and '.join(opts)} (code from the "
                     "model's own files ran in the engine).")
    return lines


VERDICT_EXPLAINED = ("Each run vs the baseline: ratio = candidate / baseline of the metric; 95% interval from a "
                     "hierarchical bootstrap over repeats, then samples; \"faster\"/\"slower\" only when the interval "
                     "excludes 1; \"within-run only\" means a side had one repeat (run-to-run drift not included). "
                     "A numerically invalid candidate is never a win. See docs/metrics.md, \"Verdicts\".")


def build_html(d: ReportData) -> str:
    """The report as one self-contained HTML document (module doc): no URL is fetched when it opens."""
    rep = d.report
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             f"<title>{html.escape(str(rep['title']))}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(str(rep['title']))}</h1><div class='meta'>"
             + "<br>".join(html.escape(x) for x in header_lines(d)) + "</div>",
             (f"<h2 id='notes'>Notes</h2><div class='notes'>{html.escape(rep['notes'])}</div>" if rep.get("notes") else ""),
             "<h2 id='verdicts'>Verdicts</h2>"]
    if d.error:
        parts.append(f"<p class='note'>{html.escape(d.error)}</p>")
    else:
        rcls = ["win" if r["win"] else ("invalid" if r["accuracy_valid"] is False else "") for r in d.verdict_rows]
        parts.append(_table_html(verdict_display_rows(d), "verdicts", rcls))
        notes = [f"{r['label']}{' at ' + r['level'] if r['level'] else ''}: {r['notes']}" for r in d.verdict_rows if r["notes"]]
        if notes:
            parts.append("<ul class='note'>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    parts.append(f"<p class='note'>{html.escape(VERDICT_EXPLAINED)}</p>")
    parts.append("<h2 id='comparability'>Comparability</h2><p class='note'>Fingerprint differences of each run vs the "
                 "baseline; a blocking one (hardware, model) makes the runs not comparable unless allowed.</p>")
    parts.append(_table_html(difference_display_rows(d), "comparability",
                             cell_classes={"blocking": {"BLOCKING": "blocking"}}))
    parts.append("<h2 id='charts'>Charts</h2>")
    first = True
    figs = {name: (title, fig) for name, title, fig in figures(d)}
    for name in d.chart_names:
        if name == "accuracy":
            parts.append(f"<div class='chart' id='table-accuracy'><h3>{html.escape(db_reports.CHARTS[name][0])}</h3>"
                         + _table_html(accuracy_display_rows(d), "accuracy") + "</div>")
            continue
        title, fig = figs[name]
        div = fig.to_html(full_html=False, include_plotlyjs=True if first else False, include_mathjax=False,
                          div_id=f"chart-{name}", config={"displaylogo": False, "responsive": True})
        first = False
        parts.append(f"<div class='chart'>{div}</div>")
    if not d.chart_names:
        parts.append("<p class='note'>(no charts chosen)</p>")
    parts.append(f"<p class='note'>Report {rep['id']} exported by EngineScope on "
                 f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.</p></body></html>")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------- PDF

def _table_figure(title: str, rows: Sequence[Mapping[str, str]], subtitle: str = "") -> go.Figure:
    heads = list(rows[0]) if rows else ["(none)"]
    cols = [[str(r[h]) for r in rows] for h in heads] if rows else [[""]]
    fig = go.Figure(go.Table(header={"values": [f"<b>{html.escape(h)}</b>" for h in heads], "fill_color": "#f2f2f2",
                                     "align": "left", "font": {"size": 11}},
                             cells={"values": [[html.escape(c) for c in col] for col in cols], "align": "left",
                                    "font": {"size": 10}, "height": 24}))
    fig.update_layout(title={"text": html.escape(title) + (f"<br><sup>{subtitle}</sup>" if subtitle else "")},
                      margin={"l": 30, "r": 30, "t": 110 if subtitle else 70, "b": 30})
    return fig


def _chunks(rows: Sequence[Any], n: int) -> list[Sequence[Any]]:
    return [rows[i:i + n] for i in range(0, len(rows), n)] or [rows]


def pdf_pages(d: ReportData) -> list[tuple[str, go.Figure]]:
    """The PDF's pages in order as ``(page title, figure)``: the verdict table (with the report's header),
    the comparability list, each chart or table, the notes (when any); long tables continue on more pages."""
    pages: list[tuple[str, go.Figure]] = []
    head = "<br>".join(html.escape(x) for x in header_lines(d)[:3])
    vrows = verdict_display_rows(d) if not d.error else [{"verdicts": d.error}]
    for k, chunk in enumerate(_chunks(vrows, ROWS_PER_PAGE)):
        t = f"{d.report['title']}: verdicts" + (f" (continued {k + 1})" if k else "")
        pages.append((t, _table_figure(t, chunk, head if k == 0 else "")))
    for k, chunk in enumerate(_chunks(difference_display_rows(d), ROWS_PER_PAGE)):
        t = "Comparability" + (f" (continued {k + 1})" if k else "")
        pages.append((t, _table_figure(t, chunk)))
    figs = {name: (title, fig) for name, title, fig in figures(d)}
    for name in d.chart_names:
        if name == "accuracy":
            for k, chunk in enumerate(_chunks(accuracy_display_rows(d), ROWS_PER_PAGE)):
                t = db_reports.CHARTS[name][0] + (f" (continued {k + 1})" if k else "")
                pages.append((t, _table_figure(t, chunk)))
        else:
            title, fig = figs[name]
            pages.append((title, fig))
    if d.report.get("notes"):
        notes = str(d.report["notes"])
        pages.append(("Notes", _table_figure("Notes", [{"notes": notes}])))
    return pages


def chromium_path() -> str | None:
    """The Chromium kaleido should drive: ``$BROWSER_PATH`` (choreographer's own override), else
    ``$ENGINESCOPE_CHROMIUM``, else ``/usr/bin/chromium`` when it exists; None when none is found."""
    for cand in (os.environ.get("BROWSER_PATH"), os.environ.get("ENGINESCOPE_CHROMIUM"), "/usr/bin/chromium"):
        if cand and Path(cand).is_file():
            return cand
    return None


def build_pdf(d: ReportData) -> bytes:
    """The report as a PDF (:func:`pdf_pages`, one page each, ``PAGE_W`` x ``PAGE_H`` px).

    Raises:
        EngineError: no Chromium found, or kaleido/Chromium failed (the message says which and how to fix it).
    """
    import plotly.io as pio
    from pypdf import PdfReader, PdfWriter

    browser = chromium_path()
    if browser is None:
        raise EngineError("PDF export needs a Chromium for kaleido: apt-get install -y chromium (or set "
                          "ENGINESCOPE_CHROMIUM to a Chromium/Chrome executable)")
    os.environ["BROWSER_PATH"] = browser  # choreographer (kaleido's browser driver) reads it; never downloads
    pages = pdf_pages(d)
    with tempfile.TemporaryDirectory(prefix="enginescope-pdf-") as tmp:
        paths = [Path(tmp) / f"page{i:03d}.pdf" for i in range(len(pages))]
        try:
            pio.write_images([f for _, f in pages], paths, format="pdf", width=PAGE_W, height=PAGE_H)
        except Exception as exc:  # kaleido raises its own and choreographer's errors
            raise EngineError(f"PDF export: kaleido could not render with {browser}: {type(exc).__name__}: {exc}") from exc
        writer = PdfWriter()
        for p, (title, _) in zip(paths, pages):
            reader = PdfReader(str(p))
            for pg in reader.pages:
                writer.add_page(pg)
            writer.add_outline_item(title=title, page_number=len(writer.pages) - len(reader.pages))
        writer.add_metadata({"/Title": str(d.report["title"]), "/Author": str(d.report.get("author") or ""),
                             "/Creator": "EngineScope"})
        buf = io.BytesIO()
        writer.write(buf)
        return buf.getvalue()


# ------------------------------------------------------------------------------------------ numbers

def _jsonable(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.isoformat()
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None if np.isnan(v) else str(v)
    return v


def number_rows(d: ReportData) -> list[dict[str, Any]]:
    """One row per run (per run and load level for LLM runs): its summary and its verdict vs the baseline
    (``verdict_*`` columns; empty for the baseline itself). The CSV's rows."""
    by_key: dict[tuple[int, str | None], dict[str, Any]] = {(int(r["run"]), r.get("level")): r for r in d.verdict_rows}
    keys = ["ratio", "ci95_low", "ci95_high", "verdict", "win", "comparable", "within_run_only", "repeats_baseline",
            "repeats_candidate", "accuracy_valid", "cosine_min", "max_abs_err", "blocking_differences", "notes"]
    out = []
    for r in d.runs:
        v = by_key.get((int(r["run"]), r.get("level"))) if d.kind == "llm" else next(
            (x for x in d.verdict_rows if int(x["run"]) == int(r["run"])), None)
        row = {"report": d.report["id"], **r, "metric": d.report.get("metric")}
        for k in keys:
            row[f"verdict_{k}"] = v.get(k) if v else None
        out.append({k: _jsonable(x) for k, x in row.items()})
    return out


def build_csv(d: ReportData) -> str:
    """:func:`number_rows` as CSV (header row first; empty cells for missing values)."""
    rows = number_rows(d)
    buf = io.StringIO()
    if not rows:
        return ""
    heads: list[str] = []
    for r in rows:
        heads += [k for k in r if k not in heads]
    w = csv.DictWriter(buf, fieldnames=heads, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in heads})
    return buf.getvalue()


def as_json(d: ReportData) -> dict[str, Any]:
    """The report's numbers as a JSON-safe dict: ``report`` (its fields), ``runs`` (per-run summaries),
    ``verdicts`` (:meth:`profiles.verdict.Verdict.as_dict` plus ``label`` and the shown ``word``),
    ``verdict_rows``, ``comparability``, ``accuracy``, ``error``."""
    rep = {k: _jsonable(v) for k, v in d.report.items()}
    verdicts = []
    for v, row in zip(d.verdicts, d.verdict_rows):
        vd = v.as_dict()
        vd["label"] = row["label"]
        vd["word"] = row["verdict"]
        verdicts.append(vd)
    return json.loads(json.dumps({
        "report": rep, "runs": d.runs, "verdicts": verdicts, "verdict_rows": d.verdict_rows,
        "comparability": d.differences,
        "accuracy": [{k: _jsonable(x) for k, x in a.items()} for a in d.accuracy], "error": d.error,
    }, default=_jsonable_default))


def _jsonable_default(v: Any) -> Any:
    out = _jsonable(v)
    if out is v:
        return str(v)
    return out


def build_json(d: ReportData) -> str:
    """:func:`as_json` as indented JSON text."""
    return json.dumps(as_json(d), indent=2)
