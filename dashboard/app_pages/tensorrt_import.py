"""Import page ("Import results"): drag and drop trtexec logs and JSON exports (``--exportTimes``,
``--exportProfile``, ``--exportLayerInfo``), grouped into runs by common name prefix (``db.imports``), Nsight
Systems captures (``nsys export --type sqlite`` files, ``.nsys-rep`` / ``.qdrep`` reports converted with the local
nsys: ``db.nsys_import``), one profiled run each, and other LLM benchmark tools' results (vLLM bench, AIPerf,
GenAI-Perf, GuideLLM, LLMPerf, Triton Model Analyzer: ``db.llm_import``, recognised by content), stored as LLM
serving runs; then open them on the Layers / Compare / Kernels / LLM serving pages. Every file is parsed before
anything is written. Also shows whether this machine has a TensorRT route and how to run it on a GPU machine."""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path
from typing import Any

import streamlit as st
from streamlit.errors import StreamlitAPIException

from dashboard import auth, trt_widgets, ui
from db.config import home
from profiles.errors import EngineScopeError

KERNELS_PAGE = Path(__file__).parent / "kernels.py"

st.title("Import results")
st.caption("Results produced elsewhere (a GPU machine, CI, a colleague). trtexec: stdout logs, "
           "`--exportTimes`, `--exportProfile`, `--exportLayerInfo` (with `--profilingVerbosity=detailed` for layer "
           "types, precisions and tactics); files sharing a name prefix (`resnet.onnx.engine.{graph,profile,timing}.json`, "
           "`resnet.onnx.engine.log`) become one run. Nsight Systems: an `nsys export --type sqlite` file, or a "
           "`.nsys-rep` / `.qdrep` report (converted with this machine's nsys, `$ENGINESCOPE_NSYS` or PATH); each "
           "capture becomes one profiled run with its kernels, copies, CUDA API calls and NVTX ranges. LLM benchmark "
           "results (recognised by their content): vLLM bench `--save-result` JSON / JSON Lines, AIPerf and GenAI-Perf "
           "profile exports (JSON, CSV, per-request `profile_export.jsonl`), GuideLLM `benchmarks.json`, LLMPerf summary "
           "and individual-responses JSON, Triton Model Analyzer `metrics-model-inference.csv` / `metrics-model-gpu.csv`; "
           "each becomes an LLM serving run, in our units (ms, per second) and under our metric names, with the tool's "
           "own names and every definition difference noted (docs/imports.md).")

#: accepted file endings; checked here, not by the uploader's ``type`` (its browser side drops hyphenated
#: extensions such as ``nsys-rep``: seen with Streamlit 1.67)
IMPORT_SUFFIXES = (".json", ".jsonl", ".csv", ".log", ".txt", ".sqlite", ".nsys-rep", ".qdrep")
if not auth.can("import", ui.db_url()):
    auth.viewer_note("import results")
    st.stop()
files = st.file_uploader("trtexec outputs, Nsight Systems captures or LLM benchmark results ("
                         + ", ".join(IMPORT_SUFFIXES) + ")", accept_multiple_files=True, key="trtimport_files")
refused = [f.name for f in files or [] if not f.name.lower().endswith(IMPORT_SUFFIXES)]
if refused:
    st.error(f"Not a trtexec output, Nsight Systems capture or LLM benchmark result: {', '.join(refused)} (accepted: "
             f"{', '.join(IMPORT_SUFFIXES)})")
    files = [f for f in files if f.name not in refused]
if files and st.button("Import", type="primary", key="trtimport_go"):
    auth.require("import", ui.db_url())
    dest = home() / "uploads" / "trtexec_import" / time.strftime("%Y%m%d-%H%M%S")
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in files:
        name = re.sub(r"[^A-Za-z0-9._+-]+", "_", f.name).lstrip(".") or "upload"
        p = dest / name
        p.write_bytes(f.getvalue())
        paths.append(p)
    from db.imports import import_trtexec
    from db.llm_import import prepare_llm, with_results, write_llm
    from db.nsys_import import prepare_nsys, write_nsys
    from profiles.llm_import import detect
    from profiles.nsys_export import is_nsys_file

    st.session_state["trtimport_result"] = None
    st.session_state["trtimport_nsys_result"] = None
    st.session_state["trtimport_llm_result"] = None
    url = ui.db_url()
    try:
        nsys_paths = [p for p in paths if is_nsys_file(p)]
        llm_paths = [p for p in paths if p not in nsys_paths and detect(p) is not None]
        trt_paths = [p for p in paths if p not in nsys_paths and p not in llm_paths]
        # every file is parsed (and nsys reports converted) before anything is written
        with tempfile.TemporaryDirectory(prefix="enginescope-nsys-") as tmp:
            captures = prepare_nsys(nsys_paths, Path(tmp), url=url) if nsys_paths else []
            llm_files = prepare_llm(llm_paths, url=url) if llm_paths else []
            trt_result = import_trtexec(trt_paths, url=url) if trt_paths else []
            st.session_state["trtimport_nsys_result"] = write_nsys(captures, url=url) if captures else []
        st.session_state["trtimport_result"] = trt_result
        st.session_state["trtimport_llm_result"] = with_results(write_llm(llm_files, url=url), url=url) if llm_files else []
    except EngineScopeError as exc:
        st.error(str(exc))


def _llm_page_link(label: str) -> None:
    """A link to the LLM serving page (it opens on the newest run with results: the one just imported)."""
    try:
        st.page_link("app_pages/llm.py", label=label, icon=":material/arrow_forward:")
    except StreamlitAPIException:  # the page runs on its own (tests, `streamlit run` of this page)
        st.caption(f"{label}: open the **LLM serving** page in the sidebar.")


def _p(stat: dict[str, Any] | None, key: str) -> float | None:
    return (stat or {}).get(key)


llm_result = st.session_state.get("trtimport_llm_result")
if llm_result:
    st.subheader("Imported LLM benchmark results")
    st.dataframe([{
        "run": r["run_id"], "tool": r["source_tool"], "version": r.get("tool_version") or "?", "label": r["label"],
        "level": (f"c={p['concurrency'] if p['concurrency'] is not None else '?'}" if "concurrency" in p
                  else f"rate={p['request_rate']}"),
        "TTFT p50 ms": _p(p["ttft_ms"], "p50"), "TTFT p99 ms": _p(p["ttft_ms"], "p99"),
        "TPOT p50 ms": _p(p["tpot_ms"], "p50"), "ITL p50 ms": _p(p["itl_ms"], "p50"),
        "E2E p50 ms": _p(p["e2e_ms"], "p50"), "latency p99 ms": _p(p.get("latency_ms"), "p99"),
        "req/s": p["request_throughput_per_s"], "out tok/s": p["output_token_throughput_per_s"],
        "infer/s": p.get("throughput_per_s"), "file": Path(r["file"]).name, "already imported": r["existing"],
    } for r in llm_result for p in r["points"]], hide_index=True, width="stretch")
    for r in llm_result:
        notes = (r.get("import") or {}).get("notes") or []
        with st.expander(f"run {r['run_id']} ({r['source_tool']}, {Path(r['file']).name}): {len(notes)} notes on "
                         "definitions and units", expanded=False):
            for note in notes:
                st.markdown(f"- {note}")
            names = (r.get("import") or {}).get("metric_names") or {}
            if names:
                st.caption("our metric <- the tool's key: " + "; ".join(f"`{k}` <- `{v}`" for k, v in names.items()))
    if any(r["engine"] == "openai-endpoint" for r in llm_result):
        _llm_page_link("See the imported runs on the LLM serving page")

nsys_result = st.session_state.get("trtimport_nsys_result")
if nsys_result:
    st.subheader("Imported Nsight Systems captures")
    st.dataframe([{
        "run": r["run_id"], "label": r["label"], "file": r["file"], "nsys": r["nsys_version"] or "?",
        "schema": r["schema_version"] or "?", "kernels": r["kernels"], "memcpy": r["memcpy"], "memset": r["memset"],
        "CUDA API calls": r["cuda_api_calls"], "NVTX ranges": r["nvtx_ranges"],
        "already imported": r["existing"], "notes": "; ".join(r["notes"]),
    } for r in nsys_result], hide_index=True, width="stretch")
    for r in nsys_result:
        for note in r["notes"]:
            st.info(f"run {r['run_id']} ({r['file']}): {note}")
        if KERNELS_PAGE.exists():  # the Kernels page (dashboard/app_pages/kernels.py) shows the timeline
            ui.link_to_page("kernels", f"Kernels of run {r['run_id']} ({r['file']})", {"run": r["run_id"]})

result = st.session_state.get("trtimport_result")
if result:
    st.subheader("Imported runs")
    st.dataframe([{
        "run": r["run_id"], "label": r["label"], "status": r["status"], "TensorRT": r["engine_version"] or "?",
        "precision": r["precision"] or "?", "p50 ms": r["latency_ms"]["p50"], "p99 ms": r["latency_ms"]["p99"],
        "mean ms": r["latency_ms"]["mean"], "throughput /s": r["throughput_per_s"], "layers": r["layers"],
        "files": ", ".join(r["files"]), "error": r["error"] or "",
    } for r in result], hide_index=True, width="stretch")
    for r in result:
        if r["error"]:
            st.warning(f"run {r['run_id']} ({r['label']}): {r['error']}")
    with_layers = [r for r in result if r["layers"]]
    for r in with_layers:
        ui.link_to_page("layers", f"Layers of run {r['run_id']} ({r['label']}, {r['precision'] or '?'})", {"run": r["run_id"]})
    ui.link_to_page("compare", "Compare runs")
    st.caption("Tip: import the fp32, fp16 and int8 exports of one model together, then pick them in "
               "Layers → Compare with, to see the same layers side by side across precisions.")

st.divider()
st.subheader("TensorRT on this machine")
trt_widgets.render_availability()
with st.expander("How to run the TensorRT route on a GPU machine", expanded=False):
    st.markdown(
        """
1. On a machine with an NVIDIA GPU, either
   - `pip install tensorrt` (Python route; TensorRT 10/11 wheels), or
   - use an NGC container: `docker run --gpus all -it -v $PWD:/work nvcr.io/nvidia/tensorrt:<yy.mm>-py3`
     and `export ENGINESCOPE_TRTEXEC=/usr/src/tensorrt/bin/trtexec` (trtexec route).
2. `pip install -e .` in the EngineScope checkout there, point `ENGINESCOPE_DB_URL` at the shared database
   (or copy results back with `enginescope import`), and run
   `enginescope bench MODEL.onnx --engine tensorrt --precision fp32 --precision fp16`.
3. Or run trtexec yourself and import its outputs here:
   `trtexec --onnx=m.onnx --saveEngine=m.plan --profilingVerbosity=detailed --exportTimes=m.times.json
   --exportProfile=m.profile.json --exportLayerInfo=m.layers.json --separateProfileRun --dumpProfile > m.log`.

See docs/tensorrt.md for the flags used per TensorRT version (8.6, 10, 11).
"""
    )
