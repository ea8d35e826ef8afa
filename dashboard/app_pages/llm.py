"""LLM serving page: launch vLLM (or point at an OpenAI-compatible endpoint), sweep concurrency or
request rate, and compare runs: throughput vs load, TTFT/TPOT p50/p99 vs load, throughput vs p99
latency (Pareto), KV-cache usage over time, predicted vs measured maximum concurrency.

Submitting runs the same pre-flight as ``enginescope serve-bench`` (:func:`profiles.llm_preflight.plan`:
paths, tokenizer files, dataset, hub reachability; each problem shown naming its form field), then inserts
an ``llm_serve`` job (``db.jobs.submit_job``); the worker runs it. Progress per level refreshes itself
(``st.fragment(run_every=...)``); when the job reaches a final status the fragment reruns the whole page
once, so the Results section (outside the fragment) shows the new run without a reload. Widget keys
start with ``llm_``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import auth, llm_charts, llm_data, ui
from db.jobs import request_cancel, submit_job
from db.models import TERMINAL_STATUSES
from profiles.errors import InputError
from profiles.llm_preflight import PreflightError, plan
from profiles.llm_spec import parse_int_list, parse_rate_list

REFRESH_S = 2.0
METRICS_DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"

url = ui.db_url()
st.title("LLM serving")
st.caption("Launch a vLLM server on a model (a local folder, or a Hugging Face id this machine can reach), or "
           "use a running OpenAI-compatible endpoint; EngineScope sends a load sweep, stores every request and "
           "the server's /metrics, and plots the curves. Jobs run in the worker (`enginescope worker`).")


def _llm_section_of_metrics_doc() -> str:
    if not METRICS_DOC.is_file():
        return "docs/metrics.md is missing in this installation."
    text = METRICS_DOC.read_text(encoding="utf-8")
    start = text.find("## LLM serving")
    if start < 0:
        return text
    end = text.find("\n## ", start + 5)
    return text[start:end if end > 0 else None]


with st.popover("Metric definitions (TTFT, TPOT, ITL, E2E, goodput)", icon=":material/help:"):
    st.markdown(_llm_section_of_metrics_doc())
    ui.link_to_page("metrics_help", "All metric definitions")

# ---------------------------------------------------------------------------------------------------
# new benchmark

if auth.can("start", url):
    st.subheader("New serving benchmark")
    target = st.radio("Target", ["Launch vLLM", "Existing endpoint"], horizontal=True, key="llm_target")
    with st.form("llm_form"):
        if target == "Launch vLLM":
            model = st.text_input("Model (local folder or Hugging Face id)", key="llm_model",
                                  help="`enginescope tiny-llm DIR` writes a tiny test model vLLM can serve.")
            endpoint = api_key = None
        else:
            endpoint = st.text_input("Endpoint base URL", placeholder="http://127.0.0.1:8000", key="llm_endpoint")
            model = st.text_input("Served model name", key="llm_model_served")
            api_key = st.text_input("API key (optional)", type="password", key="llm_api_key") or None
        tokenizer = st.text_input("Tokenizer (folder or HF id; default: the model)", key="llm_tokenizer") or None

        c1, c2, c3 = st.columns(3)
        mode = c1.radio("Sweep", ["concurrency", "request rate"], key="llm_mode")
        levels_text = c2.text_input("Levels", value="1,4,16", key="llm_levels",
                                    help="Concurrency: integers. Request rate: requests/s, `inf` sends all at once.")
        api = c3.selectbox("API", ["completions", "chat"], key="llm_api")
        c1, c2, c3, c4 = st.columns(4)
        input_len = c1.number_input("Input tokens", 1, 1_000_000, 128, key="llm_input_len")
        output_len = c2.number_input("Output tokens", 1, 1_000_000, 128, key="llm_output_len")
        num_prompts = c3.number_input("Requests per level", 1, 1_000_000, 64, key="llm_num_prompts")
        warmup = c4.number_input("Warm-up requests", 0, 10_000, 2, key="llm_warmup")
        dataset = st.text_input("Dataset file on the server (ShareGPT JSON/JSONL; empty = synthetic prompts)",
                                key="llm_dataset") or None
        repeats = st.number_input("Repeats", min_value=1, value=1, step=1, key="llm_repeats",
                                  help="Measure each level this many times (1-50), interleaved with the other levels "
                                       "(L1 L2 L3, L1 L2 L3, ...): one run, one load point per repeat; the charts pool "
                                       "a level's repeats, verdicts use the spread between them. A peer client runs "
                                       "after a level's last repeat only.")

        st.markdown("**SLOs for goodput** (0 = none)")
        c1, c2, c3 = st.columns(3)
        slo_ttft = c1.number_input("TTFT (ms)", 0.0, 3_600_000.0, 0.0, key="llm_slo_ttft")
        slo_tpot = c2.number_input("TPOT (ms)", 0.0, 3_600_000.0, 0.0, key="llm_slo_tpot")
        slo_e2e = c3.number_input("E2E (ms)", 0.0, 86_400_000.0, 0.0, key="llm_slo_e2e")

        engine_opts: dict[str, Any] = {}
        device = "cpu"
        if target == "Launch vLLM":
            with st.expander("vLLM engine options"):
                c1, c2, c3 = st.columns(3)
                engine_opts["dtype"] = c1.selectbox("dtype", ["auto", "bfloat16", "float16", "float32"], key="llm_dtype")
                engine_opts["kv_cache_dtype"] = c2.selectbox("KV-cache dtype", ["auto", "fp8", "fp8_e4m3", "fp8_e5m2"],
                                                             key="llm_kv_dtype")
                engine_opts["quantization"] = c3.text_input("quantization (e.g. fp8, awq)", key="llm_quant") or None
                c1, c2, c3 = st.columns(3)
                engine_opts["max_model_len"] = int(c1.number_input("max model len (0 = model's)", 0, 10_000_000, 0,
                                                                   key="llm_max_len")) or None
                engine_opts["max_num_seqs"] = int(c2.number_input("max num seqs (0 = default)", 0, 65_536, 0,
                                                                  key="llm_max_seqs")) or None
                engine_opts["tensor_parallel_size"] = int(c3.number_input("tensor parallel size", 1, 64, 1, key="llm_tp"))
                c1, c2, c3 = st.columns(3)
                gmu = c1.number_input("gpu memory utilization (0 = default)", 0.0, 1.0, 0.0, step=0.05, key="llm_gmu")
                engine_opts["gpu_memory_utilization"] = gmu or None
                kv_mib = c2.number_input("KV-cache size MiB (0 = from utilization)", 0, 10_000_000, 0, key="llm_kv_mib",
                                         help="vLLM --kv-cache-memory-bytes; on a CPU-only machine 256 MiB is plenty "
                                              "for a tiny model.")
                engine_opts["kv_cache_memory_bytes"] = int(kv_mib) * 2**20 or None
                prefix = c3.selectbox("prefix caching", ["default", "on", "off"], key="llm_prefix")
                engine_opts["enable_prefix_caching"] = {"default": None, "on": True, "off": False}[prefix]
                c1, c2 = st.columns(2)
                engine_opts["load_format"] = c1.selectbox("load format", ["(default)", "dummy", "safetensors", "auto"],
                                                          key="llm_load_format")
                if engine_opts["load_format"] == "(default)":
                    engine_opts["load_format"] = None
                device = c2.selectbox("device", ["cpu"] + [f"cuda:{i}" for i in range(8)], key="llm_device",
                                      help="One job per device at a time.")
                extra = st.text_input("extra vLLM flags (space-separated)", key="llm_extra",
                                      placeholder="--enforce-eager --block-size 16")
                engine_opts["vllm_args"] = extra.split() if extra.strip() else []
                engine_opts["trust_remote_code"] = st.checkbox(
                    "trust remote code (runs the model repository's Python code in the server)", key="llm_trust")
                engine_opts["startup_timeout_s"] = float(st.number_input("start-up timeout (s)", 10, 7200, 900,
                                                                         key="llm_startup_timeout"))
        submitted = st.form_submit_button("Start benchmark", type="primary")


    #: Form labels of the spec fields the pre-flight checks (errors name the field as the form does).
    FIELD_LABELS = {"model": "Model" if target == "Launch vLLM" else "Served model name", "tokenizer": "Tokenizer",
                    "dataset": "Dataset file", "endpoint": "Endpoint base URL", "repeats": "Repeats"}


    def _build_spec() -> dict[str, Any]:
        """The validated, pre-flighted spec as JSON (``inf`` rates as the string ``"inf"``).

        Raises:
            InputError: a field is invalid; PreflightError: :func:`profiles.llm_preflight.plan` refused a
                path, tokenizer, dataset or hub id (``.issues``, each naming its field).
        """
        if not (model or "").strip():
            raise InputError("model: give a model folder / Hugging Face id (or the served model name)")
        data: dict[str, Any] = {
            "engine": "vllm" if target == "Launch vLLM" else "endpoint", "model": model.strip(), "endpoint": endpoint or None,
            "api_key": api_key, "api": api, "tokenizer": tokenizer, "input_len": int(input_len), "output_len": int(output_len),
            "num_prompts": int(num_prompts), "warmup": int(warmup), "dataset": dataset, "repeats": int(repeats),
            "slos": {k: v for k, v in (("ttft_ms", slo_ttft), ("tpot_ms", slo_tpot), ("e2e_ms", slo_e2e)) if v},
            **engine_opts,
        }
        if mode == "concurrency":
            data["concurrency"] = parse_int_list(levels_text, "Levels")
        else:
            data["request_rate"] = parse_rate_list(levels_text, "Levels")
        spec = plan(data, FIELD_LABELS)  # the same pre-flight as `enginescope serve-bench`
        out = spec.model_dump(mode="json")
        if spec.request_rate:
            out["request_rate"] = ["inf" if math.isinf(r) else r for r in spec.request_rate]
        return out


    if submitted:
        who = auth.require("start", url)
        try:
            spec_json = _build_spec()
            if spec_json["engine"] == "endpoint":
                from urllib.parse import urlparse

                device = f"endpoint:{urlparse(spec_json['endpoint']).netloc}"[:64]
            job_id = submit_job("llm_serve", spec_json, device=device, timeout_s=spec_json["timeout_s"],
                                created_by=who.name, url=url)
        except PreflightError as exc:
            st.error("Not queued: the pre-flight check refused these fields.")
            for issue in exc.issues:
                st.error(issue.describe(FIELD_LABELS.get(issue.field)))
        except InputError as exc:
            st.error(str(exc))
        else:
            st.session_state["llm_job_id"] = job_id
            if spec_json.get("trust_remote_code"):
                st.warning("trust remote code is on: the model repository's own Python code will run in the server.")
            st.success(f"Queued job {job_id}. It runs when the worker picks it up; progress below.")
else:
    auth.viewer_note("start serving benchmarks")

# ---------------------------------------------------------------------------------------------------
# live progress of the job submitted here (or ?job=ID)

job_id = st.session_state.get("llm_job_id") or ui.query_int("job")

# The fragment below reruns alone every REFRESH_S; the Results section further down is outside it and
# is only redrawn by a run of the whole page. A full run records the job's status when it was final,
# so the fragment can tell when the job finished after the page was drawn and rerun the page once.
if job_id is not None:
    _job_now = llm_data.job_summary(url, int(job_id))
    if _job_now is not None and _job_now["status"] in TERMINAL_STATUSES:
        st.session_state["llm_results_drawn_for"] = int(job_id)


@st.fragment(run_every=REFRESH_S)
def live_progress() -> None:
    """Status, progress bar and the finished levels of the current job (refreshes itself). When the job
    has reached a final status since the page was last drawn in full, rerun the whole page so that the
    Results section shows its run."""
    if job_id is None:
        return
    job = llm_data.job_summary(url, int(job_id))
    if job is None or job["kind"] != "llm_serve":
        return
    if job["status"] in TERMINAL_STATUSES and st.session_state.get("llm_results_drawn_for") != int(job_id):
        st.session_state["llm_results_drawn_for"] = int(job_id)
        st.session_state.pop("llm_runs", None)  # open the results on this job's runs (the default below)
        st.rerun(scope="app")
    st.subheader(f"Job {job['id']}: {job['status']}")
    st.progress(min(1.0, job["progress"]), text=job["progress_message"] or job["status"])
    if job["error"]:
        st.error(job["error"].splitlines()[0][:1000])
    run_ids = llm_data.runs_of_job(url, job["id"])
    rows = llm_data.point_rows(url, run_ids)
    if rows:
        st.dataframe(pd.DataFrame([{
            "level": f"{r['mode']} {r['level_label']}", "completed": r["completed"], "failed": r["failed"],
            "output tok/s": r["output_token_throughput_per_s"], "TTFT p50 ms": r["ttft_p50_ms"],
            "TPOT p50 ms": r["tpot_p50_ms"], "E2E p99 ms": r["e2e_p99_ms"]} for r in rows]),
            hide_index=True, key="llm_live_table")
    if job["status"] not in TERMINAL_STATUSES and auth.can("cancel", url) and st.button("Cancel job", key="llm_cancel"):
        auth.require("cancel", url)
        request_cancel(job["id"], url=url)
        st.info("Cancellation requested: the server is stopped after the requests in flight are cancelled.")


live_progress()

# ---------------------------------------------------------------------------------------------------
# results

st.subheader("Results")
runs = llm_data.llm_runs(url)
if not runs:
    st.info("No LLM serving runs yet. Start one above, or from a terminal: "
            "`enginescope tiny-llm /tmp/tiny && enginescope serve-bench --model /tmp/tiny --concurrency 1,4`.")
    st.stop()

labels = {r["run_id"]: r["label"] for r in runs}


def newest_run_with_results(runs: list[dict[str, Any]], points: list[dict[str, Any]]) -> int:
    """The id of the newest run (``runs`` is newest first) with at least one succeeded load point, so the
    page does not open on a failed run's empty charts; the newest run when none has one."""
    ok = {p["run_id"] for p in points if p.get("status") == "succeeded"}
    return next((r["run_id"] for r in runs if r["run_id"] in ok), runs[0]["run_id"])


default = [r["run_id"] for r in runs if job_id is not None and r["job_id"] == job_id] or [
    newest_run_with_results(runs, llm_data.point_rows(url, [r["run_id"] for r in runs]))]
chosen = st.multiselect("Runs to overlay", [r["run_id"] for r in runs], default=default,
                        format_func=lambda i: labels[i], key="llm_runs")
if not chosen:
    st.info("Pick at least one run.")
    st.stop()
rows = llm_data.point_rows(url, chosen)
for r in runs:
    if r["run_id"] in chosen and r["status"] == "failed":
        st.error(f"{r['label']} failed: {(r['error'] or '').splitlines()[0][:800]}")
    if r["run_id"] in chosen and r.get("device_dirty"):
        st.warning(f"{r['label']}: GPU memory did not return to its level before launch (device dirty).")
for p in rows:  # the load generator's own health check: its latencies then include client delay
    if p["client_starved"]:
        st.warning(f"{labels.get(p['run_id'], p['run_id'])}, {p['mode']} {p['level_label']}: the load generator "
                   f"was starved, so these latencies include client delay (TPOT/ITL can read 0 when responses "
                   f"arrive in one read): {p['client_starved_why'] or 'no reason recorded'}. Free the CPUs or use "
                   "more client processes (--client-processes) and re-run.")

pareto_metric = st.selectbox("Pareto chart latency", ["e2e", "ttft", "tpot"], key="llm_pareto_metric",
                             format_func=lambda k: llm_charts.LATENCY_METRICS[k] + " p99")
c1, c2 = st.columns(2)
c1.plotly_chart(llm_charts.throughput_figure(rows, labels), key="llm_fig_throughput")
c2.plotly_chart(llm_charts.pareto_figure(rows, labels, latency=pareto_metric), key="llm_fig_pareto")
c1, c2 = st.columns(2)
c1.plotly_chart(llm_charts.latency_figure(rows, "ttft", labels), key="llm_fig_ttft")
c2.plotly_chart(llm_charts.latency_figure(rows, "tpot", labels), key="llm_fig_tpot")
st.plotly_chart(llm_charts.kv_usage_figure(llm_data.kv_usage_series(url, chosen), labels), key="llm_fig_kv")

st.markdown("**Load points**")
if rows:
    st.dataframe(pd.DataFrame([{
        "run": labels.get(r["run_id"]), "level": f"{r['mode']} {r['level_label']}", "repeats": r.get("repeats", 1),
        "completed": r["completed"],
        "failed": r["failed"], "req/s": r["request_throughput_per_s"], "output tok/s": r["output_token_throughput_per_s"],
        "goodput req/s": r["goodput_per_s"], "TTFT p50/p99 ms": f"{ui.fmt_ms(r['ttft_p50_ms'])} / {ui.fmt_ms(r['ttft_p99_ms'])}",
        "TPOT p50/p99 ms": f"{ui.fmt_ms(r['tpot_p50_ms'])} / {ui.fmt_ms(r['tpot_p99_ms'])}",
        "ITL p50 ms": r["itl_p50_ms"], "E2E p99 ms": r["e2e_p99_ms"], "max running": r["max_running"],
        "failures": ", ".join(f"{k}: {v}" for k, v in r["failures_by_reason"].items()) or "",
    } for r in rows]), hide_index=True, key="llm_points_table")

st.markdown("**KV cache: predicted vs measured maximum concurrency**")
for r in runs:
    if r["run_id"] in chosen:
        st.caption(r["label"])
        st.dataframe(pd.DataFrame(llm_charts.concurrency_table(r, [p for p in rows if p["run_id"] == r["run_id"]])),
                     hide_index=True, key=f"llm_kv_table_{r['run_id']}")
