"""Jobs page: the queue, live progress and log tail of one job (``st.fragment(run_every=...)``),
cancel button, status and error. Widget keys start with ``jobs_``.

The page reads the ``jobs``/``job_events`` rows and the job's log file; cancelling goes through
``db.jobs.request_cancel`` (a queued job is cancelled at once; a running one gets ``cancel_requested``
and its worker stops the child process).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import auth, data, machines, ui
from db.jobs import log_tail_path, request_cancel
from db.models import TERMINAL_STATUSES

REFRESH_S = 2.0
STATUS_ICON = {"queued": ":material/schedule:", "running": ":material/autorenew:", "succeeded": ":material/check_circle:",
               "failed": ":material/error:", "cancelled": ":material/cancel:"}

url = ui.db_url()
st.title("Jobs")
st.caption("Jobs run in the worker process (`enginescope worker`), not in this browser tab: close the tab and "
           "they go on. Without a running worker, submitted jobs stay *queued*.")


@st.fragment(run_every=REFRESH_S)
def queue_table() -> None:
    """The newest jobs (refreshes itself)."""
    jobs = data.list_jobs(url, limit=100)
    if not jobs:
        st.info("No jobs yet. Start one on the **New benchmark** page.")
        return
    df = pd.DataFrame([{
        "id": j["id"], "kind": j["kind"], "status": j["status"], "progress": float(j["progress"] or 0.0),
        "model": j["model_name"] or "", "device": j["device"], "origin": j["origin"],
        "created": j["created_at"], "message": j["progress_message"] or "",
    } for j in jobs])
    st.dataframe(df, hide_index=True, key="jobs_table", column_config={
        "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
    })


queue_table()
with st.expander("Machines", expanded=False):
    machines.render_machines(url)

jobs_now = data.list_jobs(url, limit=100)
if not jobs_now:
    st.stop()
ids = [int(j["id"]) for j in jobs_now]
focus = ui.query_int("job")
if focus is None:
    focus = st.session_state.get("newbench_last_job")
default_index = ids.index(focus) if focus in ids else 0
labels = {int(j["id"]): f"#{j['id']} {j['kind']} {j['model_name'] or ''}" for j in jobs_now}
job_id = st.selectbox("Job", ids, index=default_index, format_func=lambda i: labels[i], key="jobs_selected")


@st.fragment(run_every=REFRESH_S)
def job_panel(job_id: int) -> None:
    """Live status, progress bar, events and log tail of one job (refreshes itself)."""
    job = data.get_job(url, job_id)
    if job is None:
        st.warning(f"Job {job_id} no longer exists.")
        return
    status = job["status"]
    if auth.can("cancel", url) and st.button("Cancel this job", key="jobs_cancel", icon=":material/cancel:",
                                             disabled=status in TERMINAL_STATUSES):
        auth.require("cancel", url)
        if request_cancel(job_id, url=url):
            st.toast(f"Cancel requested for job {job_id}")
            job = data.get_job(url, job_id) or job
            status = job["status"]
        else:
            st.warning(f"Job {job_id} has already ended; nothing to cancel.")
    st.subheader(f"Job {job_id}: {status}", anchor=False)
    st.markdown(f"{STATUS_ICON.get(status, '')} **{job['kind']}** on `{job['device']}` - model "
                f"#{job['model_id'] if job['model_id'] is not None else '-'}, origin {job['origin']}"
                + (", **cancel requested**" if job["cancel_requested"] and status == "running" else ""))
    st.progress(min(1.0, max(0.0, float(job["progress"] or 0.0))), text=job["progress_message"] or status)
    cols = st.columns(3)
    cols[0].caption(f"created {job['created_at']:%Y-%m-%d %H:%M:%S}" if job["created_at"] else "")
    cols[1].caption(f"started {job['started_at']:%H:%M:%S}" if job["started_at"] else "not started")
    cols[2].caption(f"finished {job['finished_at']:%H:%M:%S}" if job["finished_at"] else "")
    if status == "failed":
        st.error(job["error"] or "failed (no reason recorded)")
    elif status == "cancelled":
        st.warning(job["error"] or "cancelled")
    elif status == "succeeded" and job["kind"] == "export":
        st.success(f"Exported and registered as model #{job['model_id']}.")
        ui.link_to_page("models", "Inspect the exported model", {"model": job["model_id"]})
        ui.link_to_page("new_benchmark", "Benchmark it", {"model": job["model_id"]})
    elif status == "succeeded":
        st.success("Done. See the results on the Compare and Layers pages.")
        ui.link_to_page("compare", "Compare the runs of this job", {"job": job_id})
    elif status == "queued":
        st.info("Waiting for a worker (start one with `enginescope worker`, or `./run_dashboard.sh`).")
    events = data.job_events(url, job_id, limit=50)
    if events:
        with st.expander(f"Events ({len(events)} most recent)", expanded=status in ("running", "failed")):
            st.dataframe(pd.DataFrame(events), hide_index=True, key=f"jobs_events_{job_id}")
    tail = log_tail_path(job["log_path"], 60) if job["log_path"] else ""
    with st.expander("Log tail", expanded=status == "running"):
        if tail:
            st.code(tail, language=None)
        else:
            st.caption(f"No log yet{' at ' + job['log_path'] if job['log_path'] else ''}.")
    with st.expander("Spec"):
        st.json(job["spec"])


job_panel(job_id)
