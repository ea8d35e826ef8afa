"""Layers page: per-layer timings of measured runs (ONNX Runtime profiler) and imported TensorRT
engines. Top-N layers, time by op type, and the same layers side by side across runs/precisions,
matched by ``profiles.layer_match`` (by name, by fused-name components, else by op type and shapes) with
per-layer speed-ups. Widget keys start with ``layers_``.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts, data, ui
from profiles.layer_match import compare_runs

METHOD_HELP = ("match: name = same layer name; fused = TensorRT fused layer matched to the nodes it is made of "
               "(times summed); op_shape = same op type and tensor shapes (k-th to k-th); op_order = same op "
               "type in graph order, no shapes known (weak); only_ref / only_other = no counterpart.")

url = ui.db_url()
st.title("Layers")
runs = data.runs_with_layers(url)
if not runs:
    st.info("No per-layer timings yet. Run a benchmark with *Per-layer profile* on, or import a trtexec "
            "`--exportProfile`/`--exportLayerInfo` on the **Import trtexec** page.")
    st.stop()


def _run_label(r: dict) -> str:
    model = r["model_name"] or "no model"
    src = "" if r["source"] == "measured" else f" [{r['source']}]"
    return f"run {r['id']}: {r['variant']}{ui.batch_suffix(r['batch_size'])} - {model}{src}"


labels = {int(r["id"]): _run_label(r) for r in runs}
by_id = {int(r["id"]): r for r in runs}
model_names = sorted({r["model_name"] or "(runs without a model)" for r in runs})
model_filter = st.selectbox("Model", ["(all)"] + model_names, key="layers_model")
ids = [i for i in labels if model_filter == "(all)" or (by_id[i]["model_name"] or "(runs without a model)") == model_filter]
focus = ui.query_int("run")
picked = st.selectbox("Run", ids, index=ids.index(focus) if focus in ids else 0, format_func=lambda i: labels[i],
                      key="layers_run")
if picked is None:
    st.stop()
run_id = int(picked)
run = by_id[run_id]
if run["valid"] is False:
    st.warning("This run is **numerically invalid** (outputs NaN/Inf or all zeros): its layer times are not a speed result.")
if run["timing_window"]:
    st.caption(f"Timing window of the run: {run['timing_window']}")

profiled = [p for p in data.profiled_runs(url) if p["of_run_id"] == run_id or int(p["run_id"]) == run_id]
if any(int(p["run_id"]) == run_id for p in profiled):
    ui.link_to_page("kernels", f"Kernels of run {run_id} (kernel timeline / Nsight Compute)", {"run": run_id})
elif profiled:
    ui.link_to_page("kernels", f"Kernels of run {run_id} ({len(profiled)} profiled run{'s' if len(profiled) > 1 else ''})",
                    {"of": run_id})

rows = data.layer_rows(url, run_id)
total = sum(r["time_ms"] or 0.0 for r in rows)
c = st.columns(3)
c[0].metric("Layers", len(rows))
c[1].metric("Summed layer time", ui.fmt_ms(total))
c[2].metric("Run p50 latency", ui.fmt_ms(run["p50_ms"]))
st.caption("Layer times are medians per inference (a mean where the tool gave no median) from a profiling "
           "session separate from the timed run; their sum can exceed the run's latency (profiler overhead, "
           "parallel kernels).")
top_n = st.slider("Top N", 5, 50, 15, key="layers_top_n")
t1, t2 = st.columns(2)
t1.plotly_chart(charts.top_layers_figure(rows, top_n), key="layers_top_chart")
t2.plotly_chart(charts.op_type_figure([{"run": labels[run_id], "op_type": k, "time_ms": v}
                                       for k, v in data.op_type_totals(rows).items()]), key="layers_op_chart")
with st.expander("All layers of this run"):
    st.dataframe(pd.DataFrame([{
        "layer": r["name"], "op type": r["op_type"], "precision": r["precision"], "median ms": r["median_ms"],
        "mean ms": r["mean_ms"], "n": r["count"],
        "%": r["percentage"], "fused": r["fused"], "tactic": r["tactic"],
    } for r in rows]), hide_index=True, key="layers_all")

st.subheader("Same layers across runs", anchor=False)
others = st.multiselect("Compare with", [i for i in ids if i != run_id], format_func=lambda i: labels[i], key="layers_compare",
                        help="The selected run above is the reference; speed-up = reference time / other time.")
if others:
    short = {i: f"run {i} {by_id[i]['variant']}{ui.batch_suffix(by_id[i]['batch_size'])}" for i in [run_id, *others]}
    layer_sets = {short[i]: data.layer_records(data.layer_rows(url, i)) for i in [run_id, *others]}
    table = compare_runs(layer_sets, short[run_id])
    order = [short[i] for i in [run_id, *others]]
    st.plotly_chart(charts.layer_side_by_side_figure(table, order, top_n), key="layers_side_chart")
    op_rows = [{"run": short[i], "op_type": k, "time_ms": v}
               for i in [run_id, *others] for k, v in data.op_type_totals(data.layer_rows(url, i)).items()]
    st.plotly_chart(charts.op_type_figure(op_rows), key="layers_op_compare_chart")
    df = pd.DataFrame(table)
    st.dataframe(df, hide_index=True, key="layers_match_table", column_config={
        col: st.column_config.NumberColumn(format="%.4g") for col in df.columns if col.endswith(" ms") or col.endswith("speed-up")})
    st.caption(METHOD_HELP + " Times are ms per inference; op types of TensorRT runs are TensorRT layer types.")
    for i in others:
        if by_id[i]["valid"] is False:
            st.warning(f"{short[i]} is numerically invalid: its per-layer speed-ups are not speed wins.")
else:
    st.caption("Pick runs to compare with (e.g. the same model at another precision, or an imported TensorRT engine).")
