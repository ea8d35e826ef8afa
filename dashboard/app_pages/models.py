"""Models page: add models (drag and drop upload of .onnx + external data files or a .zip, or register
a path on the server for large models), inspect them (inputs/outputs with dtypes and symbolic dims,
opset, IR version, operator counts, non-default domains flagged, external data), delete with
confirmation. Widget keys start with ``models_``.

Adding goes through ``db.store.add_model``; its errors (``ModelError``/``InputError``) are shown with
their message and nothing already stored is touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import auth, data, ui
from profiles.errors import EngineScopeError

url = ui.db_url()
st.title("Models")
#: ``Model.format`` -> what the page calls it
FORMAT_LABELS = {"onnx": "ONNX", "hf": "Hugging Face folder (PyTorch)", "pt2": "torch.export .pt2 (PyTorch)"}


def _added(model: Any) -> tuple[str, str]:
    st.session_state["models_selected_id"] = int(model.id)
    st.session_state.pop("models_selected", None)  # rebuild the selectbox on the new model
    return "success", f"Added model #{model.id} {model.original_name}"


def _register_path(text: str) -> tuple[str, str]:
    """Register what the user named on the server; returns ``(kind, message)`` and selects the new model.

    An ``.onnx`` file or a ``.zip`` goes through ``db.store.add_model`` (stored in EngineScope's folder); a
    Hugging Face model folder (with ``config.json``), a ``torch.export`` ``.pt2`` or a hub id already in the
    server's Hugging Face cache is registered by reference for the PyTorch engine
    (``engine_runner.torch_models.register_source``: safetensors unless pickles are allowed per run)."""
    from db.store import add_model, get_model

    auth.require("upload", url)
    path = Path(text).expanduser()
    try:
        if path.is_dir() or path.suffix.lower() == ".pt2" or (not path.exists() and "/" in text
                                                              and not text.startswith(("/", ".", "~"))):
            from engine_runner.torch_models import register_source

            return _added(get_model(register_source(text, url=url), url=url))
        return _added(add_model([path], path.name, url=url))
    except EngineScopeError as exc:
        return "error", f"Could not add {text}: {exc}"


def _add_uploads(files: list[Any]) -> tuple[str, str]:
    """``db.store.add_uploaded`` on the browser's files (it sanitises names and stages them)."""
    from db.store import add_uploaded

    auth.require("upload", url)
    for f in files:
        f.seek(0)
    try:
        return _added(add_uploaded([(f.name, f) for f in files], url=url))
    except EngineScopeError as exc:
        return "error", f"Could not add {', '.join(f.name for f in files)}: {exc}"


def _show(result: tuple[str, str] | None) -> None:
    if result:
        (st.success if result[0] == "success" else st.error)(result[1])


#: ``ExportSpec`` field -> this page's export form label (validation errors name these).
EXPORT_LABELS: dict[str, str] = {
    "source": "Model folder, hub id or .pt2 on the server", "opset": "Opset", "exporter": "Exporter",
    "dynamic_batch": "Dynamic batch", "seq_len": "Sequence length (text models)", "simplify": "Simplify",
    "allow_pickle": "Allow pickled weights", "name": "Display name", "out_path": "Output file",
    "simplifier": "Simplifier", "timeout_s": "Job timeout (s)",
}


def queue_export(form: dict[str, Any]) -> tuple[str, str]:
    """Validate the export form (``profiles.specs.ExportSpec``, errors name :data:`EXPORT_LABELS`) and queue an
    ``export`` job on ``cpu`` for the worker; returns ``(kind, message)``. A path that does not exist is
    refused here; a hub id is looked up by the job, in the server's local Hugging Face cache."""
    from db.jobs import submit_job
    from profiles.specs import ExportSpec, validate_spec

    who = auth.require("start", url)
    source = str(form.get("source") or "").strip()
    looks_like_path = source.startswith(("/", ".", "~")) or source.endswith(".pt2") or source.count("/") > 1
    if looks_like_path and not Path(source).expanduser().exists():
        return "error", f"{EXPORT_LABELS['source']}: {source} does not exist on the server"
    try:
        spec = validate_spec(ExportSpec, {**form, "source": str(Path(source).expanduser()) if looks_like_path else source},
                             EXPORT_LABELS)
        job_id = submit_job("export", spec.model_dump(mode="json"), device="cpu", timeout_s=spec.timeout_s,
                            origin="dashboard", created_by=who.name, url=url)
    except EngineScopeError as exc:
        return "error", str(exc)
    st.session_state["models_export_job"] = job_id
    return "success", f"Queued export job {job_id} ({spec.exporter}, opset {spec.opset}); the model appears below when it ends."


if auth.can("upload", url):
    add_tab, path_tab, export_tab = st.tabs(["Upload (drag and drop)", "Register a path on the server",
                                             "Export from PyTorch / Hugging Face"])
    with add_tab:
        files = st.file_uploader(
            "Drop an .onnx model (with its external data files, e.g. model.onnx.data / .bin) or a .zip of them",
            accept_multiple_files=True, key="models_upload",
            help="Uploads above the server's limit (server.maxUploadSize in .streamlit/config.toml) are refused; "
                 "register such models by path instead. Behind a reverse proxy, its body limit applies too (HTTP 413).")
        if files:
            fingerprint = tuple(sorted((f.file_id, f.name, f.size) for f in files))
            if st.session_state.get("models_upload_done") != fingerprint:
                with st.spinner("Storing and inspecting..."):
                    st.session_state["models_upload_result"] = _add_uploads(files)
                st.session_state["models_upload_done"] = fingerprint
            _show(st.session_state.get("models_upload_result"))
            if st.session_state["models_upload_result"][0] == "error":
                st.caption("Nothing was stored. Add the missing files (e.g. the external data file) to the upload to retry.")
    with path_tab:
        server_path = st.text_input(
            "Path on the server: an .onnx file (its external data files beside it) or a .zip; for PyTorch, a Hugging "
            "Face model folder, a .pt2 or a hub id in the server's Hugging Face cache", key="models_server_path",
            help="ONNX files are copied into EngineScope's store. PyTorch models are registered by reference (the "
                 "folder stays where it is; its content hash is recorded) and run with the PyTorch engine; export one "
                 "to ONNX in the next tab to compare PyTorch with ONNX Runtime on Compare.")
        if st.button("Register", key="models_register_path", disabled=not server_path.strip()):
            st.session_state["models_path_result"] = _register_path(server_path.strip())
        _show(st.session_state.get("models_path_result"))

    with export_tab:
        st.caption("Exports a Hugging Face model folder (config.json + safetensors), a hub id already in the server's "
                   "Hugging Face cache (nothing is downloaded) or a torch.export program (.pt2) to ONNX: dynamic axes, "
                   "shape inference, simplification, onnx.checker, and a check against PyTorch on ONNX Runtime. The "
                   "worker runs it as a job; the ONNX model is then registered here like an upload.")
        e_source = st.text_input(EXPORT_LABELS["source"], key="models_export_source",
                                 placeholder="/data/models/bert-base-uncased  or  org/name  or  /data/net.pt2")
        e1, e2, e3, e4 = st.columns(4)
        e_exporter = e1.radio(EXPORT_LABELS["exporter"], ["dynamo", "torchscript"], key="models_export_exporter",
                              help="dynamo: torch.export + ONNX Script (PyTorch's default); torchscript: the tracing exporter")
        e_opset = e2.number_input(EXPORT_LABELS["opset"], 9, 23, 18, key="models_export_opset")
        e_seq = e3.number_input(EXPORT_LABELS["seq_len"], 1, 1_048_576, 128, key="models_export_seq_len",
                                help="tokens of the example inputs; the sequence axis of a text model stays dynamic")
        e_name = e4.text_input(EXPORT_LABELS["name"], key="models_export_name")
        e5, e6, e7 = st.columns(3)
        e_dyn = e5.checkbox(EXPORT_LABELS["dynamic_batch"], True, key="models_export_dynamic_batch",
                            help="export the batch dim as dynamic (needed for several batch sizes and the batch sweep)")
        e_simplify = e6.checkbox(EXPORT_LABELS["simplify"], True, key="models_export_simplify",
                                 help="onnxsim (or Polygraphy's constant folding when onnxsim is not installed)")
        e_pickle = e7.checkbox(EXPORT_LABELS["allow_pickle"], False, key="models_export_allow_pickle",
                               help="pytorch_model.bin / pickled .pt2 entries: unpickling runs code from the file")
        if st.button("Queue export", key="models_export_submit", disabled=not e_source.strip()):
            st.session_state["models_export_result"] = queue_export({
                "source": e_source, "exporter": e_exporter, "opset": int(e_opset), "seq_len": int(e_seq),
                "dynamic_batch": bool(e_dyn), "simplify": bool(e_simplify), "allow_pickle": bool(e_pickle),
                "name": e_name.strip() or None})
        _show(st.session_state.get("models_export_result"))
        exports = [j for j in data.list_jobs(url, limit=200) if j["kind"] == "export"][:10]
        if exports:
            st.dataframe(pd.DataFrame([{
                "job": j["id"], "source": (j["spec"] or {}).get("source"), "status": j["status"],
                "model": j["model_id"], "message": (j["error"] or j["progress_message"] or "").splitlines()[0][:200]
                if (j["error"] or j["progress_message"]) else "",
            } for j in exports]), hide_index=True, key="models_export_jobs")
        if st.session_state.get("models_export_job"):
            ui.link_to_page("jobs", f"Follow export job {st.session_state['models_export_job']} on the Jobs page",
                            {"job": st.session_state["models_export_job"]})
else:
    auth.viewer_note("add, register or export models")

models = data.list_models(url)
if not models:
    st.info("No models yet. Drop an ONNX file above.")
    st.stop()

st.subheader("Registered models", anchor=False)
st.dataframe(pd.DataFrame([{
    "id": m["id"], "name": m["original_name"], "format": FORMAT_LABELS.get(m.get("format") or "onnx", m.get("format")),
    "size": ui.fmt_bytes(m["size_bytes"]), "opset": m["opset"],
    "IR": m["ir_version"], "producer": m["producer"], "params": m["param_count"], "added": m["created_at"],
} for m in models]), hide_index=True, key="models_table")

selected = ui.model_selectbox("models_selected", models, label="Inspect model",
                              default_id=st.session_state.get("models_selected_id") or ui.query_int("model"))
if selected is None:
    st.stop()
st.session_state["models_selected_id"] = selected
m = next(x for x in models if int(x["id"]) == selected)

st.header(f"{m['original_name']}", anchor=False)
c = st.columns(5)
fmt = m.get("format") or "onnx"
if fmt == "onnx":
    c[0].metric("Opset", m["opset"] if m["opset"] is not None else "?")
    c[1].metric("IR version", m["ir_version"] if m["ir_version"] is not None else "?")
    c[4].metric("Operators", sum(int(v) for v in (m["op_histogram"] or {}).values()))
else:  # a PyTorch model registered by reference: what its config says, not ONNX fields
    facts = ((m.get("preflight") or {}).get("torch") or {})
    c[0].metric("Format", FORMAT_LABELS.get(fmt, fmt))
    c[1].metric("Architecture", facts.get("architecture") or "?")
    c[4].metric("Model type / kind", f"{facts.get('model_type') or '?'} / {facts.get('kind') or '?'}")
c[2].metric("Size", ui.fmt_bytes(m["size_bytes"]))
c[3].metric("Parameters", f"{m['param_count']:,}" if m["param_count"] is not None else "?")
st.caption(f"Producer: {m['producer'] or '?'} - stored at `{m['path']}` - sha256 `{m['content_hash'][:16]}...`")

export = (m.get("meta") or {}).get("export")
if export:
    src, ex, ver = export["source"], export["exporter"], export["verification"]
    st.markdown(f"**Exported** from `{src['input']}` ({src.get('architecture') or src['format']}) with the "
                f"{ex['name']} exporter, opset {ex['opset']}, torch {ex['torch_version']}; "
                f"simplifier: {export['simplifier'].get('name') or 'none'}; nodes {export['nodes']['before']} -> "
                f"{export['nodes']['after']}.")
    ok = "within" if ver["within_tolerance"] else "**OUTSIDE**"
    st.caption(f"Verified against PyTorch on ONNX Runtime CPU ({ok} tolerance: {ver['tolerance']}): max abs err "
               f"{ver['example']['max_abs_err']:.3g}, cosine {ver['example']['cosine']:.6f} at "
               f"{ver['example']['shapes']}" + (f"; at {ver['other_shapes']['shapes']}: max abs err "
                                                f"{ver['other_shapes']['max_abs_err']:.3g}" if ver.get("other_shapes") else ""))
    for w in export.get("warnings") or []:
        st.warning(f"Export: {w}")
    with st.expander("Export report"):
        st.json(export)

preflight = m["preflight"] or {}
domains = sorted(set(data.non_default_domains(m["op_histogram"] or {}, m["opset_imports"] or {}))
                 | set(preflight.get("nondefault_domains") or []))
for w in preflight.get("warnings") or []:
    st.warning(str(w))
if domains:
    st.warning("Operators from non-default domains: " + ", ".join(f"`{d}`" for d in domains)
               + ". These are likely unsupported by TensorRT's ONNX parser (without plugins); ONNX Runtime may run them.")


def _io_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame([{
        "name": r.get("name"), "dtype": r.get("dtype"), "shape": ui.fmt_shape(r.get("shape")),
        "symbolic dims": ", ".join(str(d) for d in (r.get("shape") or []) if not (isinstance(d, int) and d > 0)) or "-",
    } for r in rows])


io1, io2 = st.columns(2)
with io1:
    st.markdown("**Inputs**")
    st.dataframe(_io_table(m["inputs"] or []), hide_index=True, key="models_inputs")
with io2:
    st.markdown("**Outputs**")
    st.dataframe(_io_table(m["outputs"] or []), hide_index=True, key="models_outputs")

hist = m["op_histogram"] or {}
if hist:
    st.markdown("**Operator counts**")
    ops = pd.DataFrame([{"op": k, "domain": k.split("::", 1)[0] if "::" in k else "ai.onnx", "count": int(v)}
                        for k, v in hist.items()]).sort_values("count", ascending=False)
    ops["likely unsupported by TensorRT"] = ops["domain"].isin(domains)
    st.dataframe(ops, hide_index=True, key="models_ops")
if m["opset_imports"]:
    st.caption("Opset imports: " + ", ".join(f"{d or 'ai.onnx'}={v}" for d, v in m["opset_imports"].items()))
if m["external_data"]:
    st.markdown("**External data**")
    st.dataframe(pd.DataFrame(m["external_data"]), hide_index=True, key="models_external")
if m["preflight"]:
    with st.expander("Pre-flight checks"):
        st.json(m["preflight"])

a1, a2 = st.columns([1, 3])
with a1:
    ui.link_to_page("new_benchmark", "Benchmark this model", {"model": selected})
with a2:
    if auth.can("delete", url):
        with st.popover("Delete model", icon=":material/delete:"):
            st.markdown(f"Delete **#{selected} {m['original_name']}** and its stored files? Its jobs and runs stay in "
                        "the database without the model.")
            confirm = st.checkbox(f"Yes, delete model #{selected}", key=f"models_delete_confirm_{selected}")
            if st.button("Delete", type="primary", key="models_delete", disabled=not confirm):
                from db.store import delete_model

                auth.require("delete", url)
                try:
                    delete_model(selected, url=url)
                except EngineScopeError as exc:
                    st.error(f"Could not delete model #{selected}: {exc}")
                else:
                    st.session_state.pop("models_selected_id", None)
                    st.session_state.pop("models_selected", None)
                    st.session_state.pop(f"models_delete_confirm_{selected}", None)
                    st.rerun()
