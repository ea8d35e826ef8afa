"""Reports page: saved reports for team leads.

Without a query parameter: the list of saved reports (newest first), searched by model, engine, precision,
creation date range, author and title/notes text (:func:`db.reports.list_reports`). A report opens by its
stable address ``/reports?report=ID`` (the link a colleague pastes; ``enginescope report create`` prints it)
and shows, in order: the header (title, author, created, baseline, notes), the verdict table (each run vs
the baseline: ratio, 95% interval, word, accuracy, repeats, within-run-only flag), the comparability list
(every fingerprint difference, blocking ones marked) and only then the chosen charts; then the downloads
(self-contained HTML, PDF, CSV, JSON: :mod:`dashboard.report_export`). Reports are saved from the Compare
page ("Save as report") or with ``enginescope report create``. Widget keys start with ``reports_``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import report_export as rx
from dashboard import ui
from db import reports as db_reports
from profiles.errors import EngineScopeError

url = ui.db_url()


def _file_stem(rep: dict[str, Any]) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in str(rep["title"]).lower()).strip("-")
    return f"report-{rep['id']}-{safe[:40] or 'untitled'}"


def _back() -> None:
    if st.button("All reports", key="reports_back", icon=":material/arrow_back:"):
        st.query_params.clear()
        st.rerun()


def show_report(raw: str) -> None:
    """The report named by the ``report`` query parameter ``raw`` (an error, not a traceback, when it is bad)."""
    try:
        report_id = int(raw)
    except ValueError:
        st.error(f"`?report={raw}` is not a report id: the address should end in `/reports?report=` and a number.")
        _back()
        return
    try:
        d = rx.collect(report_id, url)
    except EngineScopeError as exc:
        msg = str(exc)
        st.error(f"Report {report_id} does not exist (it may have been deleted)." if "does not exist" in msg
                 else f"Report {report_id} could not be read: {msg}")
        _back()
        return
    rep = d.report
    _back()
    st.title(str(rep["title"]))
    for line in rx.header_lines(d):
        st.caption(line)
    st.caption(f"Link to this report: `{ui.report_link(report_id)}`")
    if rep.get("notes"):
        st.markdown("**Notes**")
        st.text(str(rep["notes"]))

    st.subheader("Verdicts", anchor=False)
    if d.error:
        st.warning(d.error)
    else:
        st.dataframe(pd.DataFrame(rx.verdict_display_rows(d)), hide_index=True, key="reports_verdicts")
        for r in d.verdict_rows:
            if r["notes"]:
                st.caption(f"{r['label']}{' at ' + r['level'] if r['level'] else ''}: {r['notes']}")
    st.caption(rx.VERDICT_EXPLAINED)

    st.subheader("Comparability", anchor=False)
    diffs = rx.difference_display_rows(d)
    if diffs:
        blocking = sum(1 for x in d.differences if x["blocking"])
        if blocking:
            st.warning(f"{blocking} blocking difference{'s' if blocking > 1 else ''} (hardware or model): those runs "
                       "are **not comparable**" + (" (compared anyway: allowed when saved)."
                                                  if (rep.get("options") or {}).get("allow_different") else "."))
        st.dataframe(pd.DataFrame(diffs), hide_index=True, key="reports_comparability")
    else:
        st.caption("No fingerprint differences between the runs and the baseline.")
    st.caption("Fingerprint differences of each run vs the baseline (host, GPU, CPU and its load, libraries, engine "
               "and its options, precision, batch, shapes, model); a blocking one makes the runs not comparable.")

    figs = {name: (title, fig) for name, title, fig in rx.figures(d)}
    if d.chart_names:
        st.subheader("Charts", anchor=False)
    for name in d.chart_names:
        if name == "accuracy":
            st.markdown(f"**{db_reports.CHARTS[name][0]}**")
            acc = rx.accuracy_display_rows(d)
            if acc:
                st.dataframe(pd.DataFrame(acc), hide_index=True, key="reports_accuracy")
            else:
                st.caption("No accuracy results for these runs.")
            continue
        title, fig = figs[name]
        st.markdown(f"**{title}**")
        st.plotly_chart(fig, key=f"reports_chart_{name}")

    st.subheader("Download", anchor=False)
    stem = _file_stem(rep)
    c = st.columns(4)
    c[0].download_button("HTML (self-contained)", rx.build_html(d), file_name=f"{stem}.html", mime="text/html",
                         key="reports_dl_html", help="One file with plotly.js inside: opens offline.")
    c[1].download_button("CSV", rx.build_csv(d), file_name=f"{stem}.csv", mime="text/csv", key="reports_dl_csv",
                         help="One row per run (per run and load level for LLM runs): summary and verdict.")
    c[2].download_button("JSON", rx.build_json(d), file_name=f"{stem}.json", mime="application/json",
                         key="reports_dl_json")
    pdf_key = f"reports_pdf_{report_id}"
    if st.session_state.get(pdf_key) is None:
        if c[3].button("Make PDF", key="reports_make_pdf", help="Renders every page with kaleido and Chromium (a few "
                       "seconds)."):
            try:
                with st.spinner("Rendering the PDF..."):
                    st.session_state[pdf_key] = rx.build_pdf(d)
            except EngineScopeError as exc:
                st.error(str(exc))
    if st.session_state.get(pdf_key) is not None:
        c[3].download_button("PDF", st.session_state[pdf_key], file_name=f"{stem}.pdf", mime="application/pdf",
                             key="reports_dl_pdf")
    st.caption(f"Or from a terminal: `enginescope report export {report_id} --html {stem}.html --pdf {stem}.pdf`")


def show_list() -> None:
    """The saved reports with their search form."""
    st.title("Reports")
    st.caption("Saved comparisons: runs judged against a baseline, with the verdicts, the comparability list and "
               "the chosen charts. Save one from the **Compare** page or with `enginescope report create`.")
    everything = db_reports.list_reports(url)
    if not everything:
        st.info("No saved reports yet: pick runs on the **Compare** page and use *Save as report*.")
        ui.link_to_page("compare", "Compare")
        return
    c = st.columns(5)
    model = c[0].text_input("Model", key="reports_q_model", placeholder="name contains")
    engines = sorted({e for r in everything for e in r["engines"]})
    engine = c[1].selectbox("Engine", ["(any)", *engines], key="reports_q_engine")
    precisions = sorted({p for r in everything for p in r["precisions"]})
    precision = c[2].selectbox("Precision", ["(any)", *precisions], key="reports_q_precision")
    author = c[3].text_input("Author", key="reports_q_author", placeholder="name contains")
    dates = c[4].date_input("Created between", value=[], key="reports_q_dates", format="YYYY-MM-DD")
    text = st.text_input("Title or notes contain", key="reports_q_text")
    since: dt.date | None = None
    until: dt.date | None = None
    if isinstance(dates, (list, tuple)):
        if len(dates) >= 1:
            since = dates[0]
        if len(dates) == 2:
            until = dates[1]
    elif isinstance(dates, dt.date):
        since = until = dates
    found = db_reports.list_reports(url, model=model or None, engine=None if engine == "(any)" else engine,
                                    precision=None if precision == "(any)" else precision, since=since, until=until,
                                    author=author or None, text=text or None)
    st.caption(f"{len(found)} of {len(everything)} report{'s' if len(everything) != 1 else ''}")
    if not found:
        st.info("No report matches the search.")
        return
    st.dataframe(pd.DataFrame([{
        "id": r["id"], "title": r["title"], "author": r["author"] or "",
        "created": r["created_at"].strftime("%Y-%m-%d %H:%M") if r["created_at"] else "",
        "runs": len(r["run_ids"]), "baseline run": r["baseline_run_id"], "metric": r["metric"],
        "models": ", ".join(r["models"]), "engines": ", ".join(r["engines"]), "precisions": ", ".join(r["precisions"]),
        "open": f"?report={r['id']}",
    } for r in found]), hide_index=True, key="reports_list", column_config={
        "open": st.column_config.LinkColumn("open", display_text="open"),
    })
    labels = {int(r["id"]): f"#{r['id']} {r['title']}" for r in found}
    o = st.columns([3, 1])
    pick = o[0].selectbox("Report", list(labels), format_func=lambda i: labels[int(i)], key="reports_pick",
                          label_visibility="collapsed")
    if o[1].button("Open", key="reports_open", type="primary") and pick is not None:
        st.query_params["report"] = str(pick)
        st.rerun()


raw_id = st.query_params.get("report")
if raw_id is not None:
    show_report(str(raw_id))
else:
    show_list()
