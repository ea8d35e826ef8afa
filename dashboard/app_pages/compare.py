"""Compare page: runs of one model side by side. Median latency with its 95% bootstrap CI and
throughput per precision and batch size, the distribution of the raw per-iteration latencies, the
accuracy table vs fp32, and the timing window of every number. Numerically invalid variants are
greyed, labelled and excluded from "fastest". GPU runs add their device, CUDA graph flag, energy per
inference (J), average power (W) and SM/memory clocks over the measured window (NVML, run metrics
``energy_per_inference_j``, ``avg_power_w``, ``sm_clock_median_mhz``, ``mem_clock_median_mhz``), and the
run's warnings (clocks throttled, another process on the GPU, nodes that fell back to the CPU). Before any
chart: the verdict of each selected run against a chosen baseline (ratio, 95% interval, word, accuracy,
repeats; :func:`db.verdicts.verdict_table`) and the comparability list, and "Save as report" (runs,
baseline, title, author, notes, charts; opened later on the Reports page). Widget keys start with
``compare_``.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import auth, charts, data, ui
from db import reports as db_reports
from db.reports import difference_rows, verdict_row
from profiles.errors import EngineScopeError
from profiles.verdict import METRICS

url = ui.db_url()
st.title("Compare runs")

models = data.list_models(url)
focus_job = ui.query_int("job")
focus_model = None
if focus_job is not None:
    job = data.get_job(url, focus_job)
    focus_model = job["model_id"] if job else None
if not models:
    st.info("No models yet: add one on the **Models** page, then run a benchmark.")
    st.stop()
model_id = ui.model_selectbox("compare_model", models,
                              default_id=focus_model or st.session_state.get("models_selected_id"))

# the same network in another format (a PyTorch folder and the ONNX exported from it): compared side by side
related = data.related_models(url, model_id)
model_ids = [model_id]
if related:
    names = {int(m["id"]): ui.model_label(m) for m in related}
    model_ids += st.multiselect(
        "Also compare the same network in another format", list(names), default=list(names),
        key=f"compare_related_{model_id}", format_func=names.get,
        help="Models linked by `enginescope export` (the Hugging Face / PyTorch source and the ONNX files exported "
             "from it): PyTorch runs beside ONNX Runtime runs of the export.")
model_names = {int(m["id"]): m["original_name"] for m in models}
all_rows = data.run_rows(url, model_id=model_ids)
if not all_rows:
    st.info("This model has no runs yet. Start a benchmark on the **New benchmark** page.")
    ui.link_to_page("new_benchmark", "New benchmark", {"model": model_id})
    st.stop()

job_ids = sorted({r["job_id"] for r in all_rows if r["job_id"] is not None}, reverse=True)
has_unjobbed = any(r["job_id"] is None for r in all_rows)
jobs_meta = {j["id"]: j for j in data.list_jobs(url, limit=500, model_id=model_ids)}


def _job_label(j: int) -> str:
    if j == 0:
        return "runs without a job (imported)"
    meta = jobs_meta.get(j)
    if not meta:
        return f"job {j}"
    when = f", {meta['created_at']:%Y-%m-%d %H:%M}" if meta["created_at"] else ""
    return f"job {j} ({meta['status']}{when})"


options = job_ids + ([0] if has_unjobbed else [])
default_jobs = [focus_job] if focus_job in job_ids else options[:1]
picked_jobs = st.multiselect("Jobs", options, default=default_jobs, key="compare_jobs", format_func=_job_label)
rows = [r for r in all_rows if (r["job_id"] or 0) in picked_jobs]
if len(model_ids) > 1:  # say which model each run is of wherever the variant is shown
    for r in rows:
        r["variant"] = f"{model_names.get(int(r['model_id']), r['model_id'])}: {r['variant']}"
run_labels = {r["run_id"]: f"run {r['run_id']}: {r['variant']}{ui.batch_suffix(r['batch_size'])}" for r in rows}
# keyed by the picked jobs: adding a job selects its runs (a deselection is kept while the jobs stay the same)
picked_runs = st.multiselect("Runs", list(run_labels), default=list(run_labels),
                             key="compare_runs_" + "_".join(map(str, sorted(picked_jobs))),
                             format_func=lambda i: run_labels[i])
rows = [r for r in rows if r["run_id"] in picked_runs]
if not rows:
    st.info("Pick at least one job and run.")
    st.stop()

ok_rows = [r for r in rows if r["status"] == "succeeded" and r["p50_ms"] is not None]
failed = [r for r in rows if r["status"] == "failed"]
for r in rows:
    if r["status"] == "running":
        st.info(f"Run {r['run_id']} ({r['variant']}, batch {r['batch_size']}) is still running.")
invalid = [r for r in ok_rows if r["valid"] is False]
for r in failed:
    if ((r.get("config") or {}).get("batch_sweep") or {}).get("limit"):
        st.info(f"Run {r['run_id']} ({r['variant']}, batch {r['batch_size']}) ran out of memory: it is the batch "
                f"sweep's recorded memory limit ({(r['error'] or '').splitlines()[0] if r['error'] else 'no message'}).")
        continue
    st.error(f"Run {r['run_id']} ({r['variant']}, batch {r['batch_size']}) {r['status']}: {r['error'] or 'no reason recorded'}")
for r in invalid:
    st.warning(f"Run {r['run_id']} ({r['variant']}, batch {r['batch_size']}) is **numerically invalid** (outputs "
               "NaN/Inf or all zeros): it is greyed in the charts and never counted as the fastest.")

best = data.fastest_valid(ok_rows)
speedups = data.speedups_vs(ok_rows)
if best is not None:
    c = st.columns(3)
    c[0].metric("Fastest valid variant (p50)", f"{best['variant']}{ui.batch_suffix(best['batch_size'])}", help="lowest median latency among numerically valid runs")
    c[1].metric("p50 latency", ui.fmt_ms(best["p50_ms"]),
                help=f"95% CI {ui.fmt_ms(best['ci_low_ms'])} - {ui.fmt_ms(best['ci_high_ms'])}, n={best['count']}")
    sp = speedups.get(int(best["run_id"]))
    c[2].metric("vs fp32 (same engine, batch)", f"{sp:.2f}x" if sp else "-")
    st.caption("Runs are measured one after another: a difference smaller than the spread between repeated "
               "runs of the same variant is noise, whatever the per-run CI says. Repeat a run to see that spread.")
    if any(r.get("engine") == "onnxruntime" and r.get("precision") == "fp16" for r in ok_rows) and \
            not any("CUDA" in (r["timing_window"] or "") for r in ok_rows):
        st.warning("ONNX Runtime's CPU provider has few fp16 kernels: it runs most of an fp16 graph through "
                   "inserted casts (layers named `InsertedPrecisionFreeCast_*`), so an fp16-vs-fp32 difference "
                   "on the CPU is not an fp16 speed-up.")
else:
    st.info("No numerically valid, succeeded run with a latency among the selection.")

for r in ok_rows:
    cfg = r.get("config") or {}
    for w in [*(cfg.get("engine_warnings") or []), *(cfg.get("telemetry_warnings") or [])]:
        st.warning(f"Run {r['run_id']} ({r['variant']}, batch {r['batch_size']}): {w}")

windows = sorted({r["timing_window"] for r in ok_rows if r["timing_window"]})
if windows:
    st.caption("**Timing window** (what each latency includes): " + " | ".join(windows))
else:
    st.caption("Timing window: not recorded for these runs.")

table = pd.DataFrame([{
    "run": r["run_id"], "machine": r.get("machine"), "engine": r["engine"], "precision": r["precision"], "batch": r["batch_size"],
    "valid": {True: "yes", False: "NO (invalid)", None: "?"}[r["valid"]],
    "p50 ms": r["p50_ms"], "CI low ms": r["ci_low_ms"], "CI high ms": r["ci_high_ms"], "p90 ms": r["p90_ms"],
    "p99 ms": r["p99_ms"], "mean ms": r["mean_ms"], "n": r["count"], "items/s": r["items_per_s"],
    "speed-up vs fp32": speedups.get(int(r["run_id"])),
    "device": (r.get("config") or {}).get("device", "cpu"),
    "CUDA graph": "yes" if (r.get("config") or {}).get("cuda_graph") else "",
    "J / inference": r["metrics"].get("energy_per_inference_j"), "avg W": r["metrics"].get("avg_power_w"),
    "SM MHz (median)": r["metrics"].get("sm_clock_median_mhz"),
    "mem MHz (median)": r["metrics"].get("mem_clock_median_mhz"),
    "engine version": r["engine_version"], "timing window": r["timing_window"], "source": r["source"],
} for r in ok_rows])
gpu_rows = [r for r in ok_rows if r["metrics"].get("energy_per_inference_j") is not None]
if gpu_rows:
    methods = sorted({str(((r.get("config") or {}).get("telemetry_window") or {}).get("energy_method")) for r in gpu_rows})
    st.caption("**Energy and power** (GPU runs): NVML sampled at 20 Hz beside the run, over the measured window "
               "only (warm-up and profiling excluded); energy = the board's energy-counter difference, else "
               "trapezoidal integration of power (this selection: " + ", ".join(methods) + "); idle power is "
               "included, not subtracted. J / inference is per call of the batch.")

# ------------------------------------------------------------------ verdicts vs a baseline (before any chart)
verdict_ids = [int(r["run_id"]) for r in ok_rows]
if len(verdict_ids) >= 2:
    st.subheader("Verdicts vs a baseline", anchor=False)
    fp32 = next((int(r["run_id"]) for r in ok_rows if r["precision"] == "fp32"), verdict_ids[0])
    vc = st.columns([2, 1, 1])
    baseline_id = vc[0].selectbox("Baseline run", verdict_ids, index=verdict_ids.index(fp32), key="compare_baseline",
                                  format_func=lambda i: run_labels[i])
    metric_keys = [k for k, m in METRICS.items() if not m.llm]
    metric = vc[1].selectbox("Metric", metric_keys, key="compare_metric", format_func=lambda k: METRICS[k].label)
    allow_different = vc[2].checkbox("Compare across hardware / models", key="compare_allow_different",
                                     help="Blocking differences (another GPU or CPU, another model file) give "
                                          "'not comparable' unless this is ticked.")
    try:
        verdicts = ui.verdicts(url, verdict_ids, int(baseline_id), metric, allow_different=allow_different)
    except EngineScopeError as exc:
        verdicts = []
        st.error(f"No verdicts: {exc}")
    vrows = [verdict_row(v, run_labels) for v in verdicts]
    if vrows:
        st.dataframe(pd.DataFrame([{
            "run": r["label"], "baseline": f"{r['baseline_value']:.4g} {r['unit']}" if r["baseline_value"] is not None else "-",
            "candidate": f"{r['candidate_value']:.4g} {r['unit']}" if r["candidate_value"] is not None else "-",
            "ratio": r["ratio"], "95% low": r["ci95_low"], "95% high": r["ci95_high"], "verdict": r["verdict"],
            "accuracy valid": {True: "yes", False: "NO (invalid)", None: "?"}[r["accuracy_valid"]],
            "cosine min": r["cosine_min"], "max abs err vs ref": r["max_abs_err"],
            "repeats": f"{r['repeats_baseline']} vs {r['repeats_candidate']}",
            "within-run only": "yes" if r["within_run_only"] else "no",
        } for r in vrows]), hide_index=True, key="compare_verdicts",
            column_config={k: st.column_config.NumberColumn(format="%.4f") for k in ("ratio", "95% low", "95% high")})
        st.caption("ratio = candidate / baseline; 95% interval from a hierarchical bootstrap over repeats, then samples; "
                   "'faster'/'slower' only when the interval excludes 1. 'within-run only': a side had one repeat "
                   "(bench --repeats N measures N interleaved repeats). An invalid candidate is never a win.")
    diffs = difference_rows(verdicts, run_labels)
    st.markdown("**Comparability** (fingerprint differences vs the baseline)")
    if diffs:
        st.dataframe(pd.DataFrame([{
            "run": x["label"], "field": x["field"], "baseline": str(x["baseline_value"]),
            "candidate": str(x["candidate_value"]), "blocking": "BLOCKING" if x["blocking"] else "no", "note": x["note"],
        } for x in diffs]), hide_index=True, key="compare_comparability")
    else:
        st.caption("No fingerprint differences between these runs and the baseline.")

    if auth.can("save_report", url):
        with st.expander("Save as report", icon=":material/bookmark_add:"):
            with st.form("compare_save_report"):
                save_runs = st.multiselect("Runs", verdict_ids, default=verdict_ids, key="compare_save_runs",
                                           format_func=lambda i: run_labels[i])
                save_base = st.selectbox("Baseline", verdict_ids, index=verdict_ids.index(int(baseline_id)),
                                         key="compare_save_baseline", format_func=lambda i: run_labels[i])
                title = st.text_input("Title", key="compare_save_title", max_chars=db_reports.TITLE_MAX)
                signed_in = auth.current(url).source != "off"  # then the author is who is signed in
                author = st.text_input("Author", key="compare_save_author", max_chars=db_reports.AUTHOR_MAX,
                                       value=auth.current(url).name if signed_in else "", disabled=signed_in)
                notes = st.text_area("Notes", key="compare_save_notes")
                chart_names = db_reports.charts_for("model")
                chosen = st.multiselect("Charts", chart_names, default=chart_names, key="compare_save_charts",
                                        format_func=lambda c: db_reports.CHARTS[c][0])
                submitted = st.form_submit_button("Save report", type="primary")
            if submitted:
                who = auth.require("save_report", url)
                try:
                    new_id = db_reports.create_report(save_runs, int(save_base), title, notes=notes,
                                                      author=author if who.source == "off" else who.name,
                                                      metric=metric, charts=chosen, allow_different=allow_different, url=url)
                except EngineScopeError as exc:
                    st.error(str(exc).replace("--run", "Runs").replace("--baseline", "Baseline")
                             .replace("--title", "Title").replace("--author", "Author"))
                else:
                    st.session_state["compare_saved_report"] = new_id
    saved = st.session_state.get("compare_saved_report")
    if saved is not None:
        st.success(f"Saved report {saved}: {ui.report_link(int(saved))}")
        ui.link_to_page("reports", f"Open report {saved}", {"report": saved})

if not table.empty:
    st.dataframe(table, hide_index=True, key="compare_table", column_config={
        k: st.column_config.NumberColumn(format="%.4g") for k in
        ("p50 ms", "CI low ms", "CI high ms", "p90 ms", "p99 ms", "mean ms", "items/s", "speed-up vs fp32",
         "J / inference", "avg W", "SM MHz (median)", "mem MHz (median)")})

    l1, l2 = st.columns(2)
    l1.plotly_chart(charts.latency_ci_figure(ok_rows), key="compare_latency_chart")
    l2.plotly_chart(charts.throughput_figure(ok_rows), key="compare_throughput_chart")

    st.subheader("Latency distribution", anchor=False)
    kind = st.radio("Chart", charts.DISTRIBUTION_KINDS, horizontal=True, key="compare_dist_kind")
    ids = [int(r["run_id"]) for r in ok_rows]
    samples = data.latency_samples_ms(url, ids)
    counts = data.sample_counts(url, ids)
    series = [{"label": run_labels[r["run_id"]], "values_ms": samples.get(int(r["run_id"]), []), "valid": r["valid"]}
              for r in ok_rows]
    st.plotly_chart(charts.latency_distribution_figure(series, kind), key="compare_dist_chart")
    strided = [i for i in ids if counts.get(i, 0) > data.MAX_PLOT_SAMPLES]
    st.caption("Raw per-iteration samples after warm-up"
               + (f"; runs {strided} are evenly thinned to about {data.MAX_PLOT_SAMPLES} points for plotting "
                  "(statistics use all samples)." if strided else "."))

profiled = data.profiled_runs(url)
picked_ids = {int(r["run_id"]) for r in rows}
explains = sorted({int(p["of_run_id"]) for p in profiled if p["of_run_id"] is not None and int(p["of_run_id"]) in picked_ids})
profiled_here = [p for p in profiled if int(p["run_id"]) in picked_ids]
if explains or profiled_here:
    st.subheader("Kernel profiles", anchor=False)
    st.caption("What the GPU ran (kernels, copies, Nsight Compute metrics), from separate profiled runs: their "
               "timings include the profiler's overhead and are not these latencies.")
    for rid in explains:
        n = sum(1 for p in profiled if p["of_run_id"] == rid)
        ui.link_to_page("kernels", f"Kernels of {run_labels.get(rid, f'run {rid}')} ({n} profiled run{'s' if n > 1 else ''})",
                        {"of": rid})
    for p in profiled_here:
        ui.link_to_page("kernels", f"Kernels of profiled run {p['run_id']} ({p['tool'] or '?'})", {"run": p["run_id"]})

st.subheader("Latency budget", anchor=False)
asked = data.job_budget_ms(jobs_meta[j] for j in picked_jobs if j in jobs_meta)
budget_ms = st.number_input("p99 budget (ms, 0 = none)", min_value=0.0, max_value=3_600_000.0,
                            value=float(asked or 0.0), step=0.1, format="%.4g", key="compare_p99_budget",
                            help="Which engine / precision / batch has a p99 within the budget (p99 from every raw "
                                 "sample, profiles.stats), and the fastest (highest items/s) numerically valid one. "
                                 "Prefilled from the job's --p99-budget-ms.")
if budget_ms > 0:
    report = data.budget_report(url, [int(r["run_id"]) for r in rows], float(budget_ms))
    if report.fastest is not None:
        f = report.fastest
        b = st.columns(3)
        b[0].metric(f"Fastest within p99 {budget_ms:g} ms", f"{data.variant_label(f.engine, f.precision)}"
                    f"{ui.batch_suffix(f.batch_size)}", help="highest items/s among valid runs meeting the budget")
        b[1].metric("items/s", f"{f.items_per_s:,.4g}")
        b[2].metric("p99", ui.fmt_ms(f.p99_ms), help=f"n={f.samples} samples ({f.p99_source})")
    else:
        st.warning(report.note)
    st.dataframe(pd.DataFrame([{
        "run": v.run_id, "variant": data.variant_label(v.engine, v.precision), "batch": v.batch_size,
        "p99 ms": v.p99_ms, "n": v.samples, "items/s": v.items_per_s,
        "meets budget": {True: "yes", False: "no", None: "-"}[v.meets],
        "fastest": "FASTEST" if report.fastest is not None and v.run_id == report.fastest.run_id else "",
        "why": v.reason,
    } for v in report.verdicts]), hide_index=True, key="compare_budget_table",
        column_config={k: st.column_config.NumberColumn(format="%.4g") for k in ("p99 ms", "items/s")})
    st.caption(report.note + ". p99: linear interpolation over every raw sample of the run (n shown). A numerically "
               "invalid run is never the fastest, even when it fits.")
else:
    st.caption("Set a p99 budget to see which variants meet it (or run the benchmark with a budget).")

sweeps = data.sweep_series(rows)
if sweeps:
    st.subheader("Batch sweep: throughput vs batch", anchor=False)
    st.plotly_chart(charts.batch_sweep_figure(sweeps), key="compare_sweep_chart")
    for sw in sweeps:
        stop = sw["stop"] or {}
        st.caption(f"**{sw['label']}**: stopped by **{stop.get('reason', '?')}** - {stop.get('detail', 'no stop recorded')}; "
                   f"knee at batch {stop.get('knee_batch')} (the smallest batch within 3% of the best items/s)"
                   + (f"; memory limit at batch {stop['limit_batch']}" if stop.get("limit_batch") else ""))

st.subheader("Accuracy vs reference", anchor=False)
acc = data.accuracy_rows(url, [int(r["run_id"]) for r in rows])
if acc:
    acc_df = pd.DataFrame([{
        "run": a["run_id"], "variant": run_labels.get(a["run_id"], a["run_id"]), "reference run": a["reference_run_id"],
        "output": a["output_name"], "max abs err": a["max_abs_err"], "max rel err": a["max_rel_err"],
        "cosine": a["cosine"], "NaN": a["nan_count"], "Inf": a["inf_count"], "all zero": a["all_zero"],
        "valid": "yes" if a["valid"] else "NO (invalid)",
    } for a in acc])
    st.dataframe(acc_df, hide_index=True, key="compare_accuracy")
    st.caption("max rel err = max |a-b| / max(|b|, 1e-12) elementwise; cosine of flattened outputs. "
               "See *Metric definitions*.")
else:
    st.caption("No accuracy results for these runs (the fp32 run is the reference; other precisions are compared with it).")
