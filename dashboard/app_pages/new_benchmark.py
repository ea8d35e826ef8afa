"""New benchmark page: build a ``model_bench`` spec (model, engine, precisions, batch sizes, values of
symbolic dims prefilled from the model's inputs, iterations / warm-up / duration, optional inputs .npz,
optional calibration .npz), validate it with ``profiles.specs.BenchSpec`` and queue it with
``db.jobs.submit_job``. Widget keys start with ``newbench_``.

Engines, devices and precisions come from ``profiles.catalog`` (the same catalogue as the CLI and the
spec): the precisions offered are those of the chosen engine on the chosen device kind. Validation errors
name the form's labels (:data:`LABELS`), not the spec's field names.

Inputs (.npz): keys = the model's input names, first axis = N samples (a multiple of every batch size),
split into batches; the first batch is timed, accuracy covers all N (format and full validation:
``engine_runner.inputs``, run by the worker). The page checks keys, dtypes and ranks at once, and named
symbolic dims that the file fixes (e.g. ``sequence``) take the file's value instead of the form's.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from typing import Any

import numpy as np
import streamlit as st

from dashboard import auth, data, ui
from db.config import home
from profiles import catalog
from profiles.errors import EngineScopeError, InputError
from profiles.placement import normalize_gpu_type
from profiles.specs import BenchSpec, validate_spec
from profiles.torch_spec import DEFAULT_SEQ_LEN, parse_torch_options

#: ``BenchSpec`` field -> this form's label (the widgets use these labels; errors name them).
LABELS: dict[str, str] = {
    "model_id": "Model", "engine": "Engine", "device": "Device", "precisions": "Precisions",
    "batch_sizes": "Batch sizes", "shapes": "Shapes", "dim_values": "Symbolic dim",
    "iterations": "Iterations (min)", "warmup_iterations": "Warm-up iterations", "warmup_s": "Warm-up (s, min)",
    "min_duration_s": "Min duration (s)", "max_duration_s": "Max duration per run (s)",
    "intra_op_threads": "Intra-op threads (0 = engine default)", "timeout_s": "Job timeout (s)",
    "profile_layers": "Per-layer profile", "inputs_npz": "Inputs (.npz)", "calibration_npz": "Calibration inputs",
    "calibration_samples": "Calibration samples", "tensorrt": "TensorRT options", "cuda_graph": "CUDA graph",
    "p99_budget_ms": "p99 latency budget (ms, 0 = none)", "batch_sweep": "Batch sweep (max throughput)",
    "max_batch": "Max batch of the sweep", "kernel_iterations": "Kernel timeline iterations (0 = off)",
    "ncu_top": "Nsight Compute: top kernels (0 = off)",
    "nsys": "Nsight Systems capture", "repeats": "Repeats",
}
#: The form's fleet field (not a ``BenchSpec`` field: where the job runs, ``spec.gpu_type``; profiles.placement).
GPU_TYPE_LABEL = "GPU type"
#: ``profiles.torch_spec.TorchOptions`` field -> this form's label (PyTorch option errors name these).
TORCH_LABELS: dict[str, str] = {
    "compile": "torch.compile", "compile_backend": "Compile backend", "compile_mode": "Compile mode",
    "cuda_graph": LABELS["cuda_graph"], "cast": "fp16/bf16 made by", "allow_pickle": "Allow pickle weights",
    "seq_len": "Sequence length (token positions)",
}
#: Display names of the device kinds of ``profiles.catalog.DEVICE_KINDS``.
DEVICE_KIND_LABELS: dict[str, str] = {"cpu": "CPU", "cuda": "CUDA GPU"}


def form_words(message: str) -> str:
    """A planning message with the CLI flags it names (``--seq-len 128: ...``) replaced by this form's labels
    (``'Sequence length (token positions)' 128: ...``); other text unchanged."""
    from profiles.specs import BENCH_SPEC_FLAGS
    from profiles.torch_spec import TORCH_FLAGS

    names = {flag: LABELS[f] for f, flag in BENCH_SPEC_FLAGS.items() if f in LABELS and flag.startswith("--")}
    names.update({flag: TORCH_LABELS[f] for f, flag in TORCH_FLAGS.items()})
    return re.sub(r"--[a-z][a-z0-9-]*", lambda m: f"'{names[m.group(0)]}'" if m.group(0) in names else m.group(0),
                  message)


def device_choices(engine: str) -> list[str]:
    """The device kinds the page offers for ``engine`` (``profiles.catalog.devices``); a ``cuda`` choice
    adds a GPU index field, giving ``cuda:N``."""
    return catalog.devices(engine)


def precision_choices(engine: str, device: str) -> list[str]:
    """The precisions the page offers: the catalogue's for ``engine`` that run on ``device``."""
    return catalog.precisions(engine, device)


def parse_batch_sizes(text: str) -> list[int]:
    """``"1, 8 16"`` -> ``[1, 8, 16]``.

    Raises:
        InputError: a token is not an integer (names the field).
    """
    tokens = [t for t in text.replace(",", " ").split() if t]
    try:
        return [int(t) for t in tokens]
    except ValueError:
        raise InputError(f"{LABELS['batch_sizes']}: {text!r} must be integers separated by commas or spaces") from None


def save_npz(upload: Any, kind: str = "calibration") -> tuple[str, dict[str, tuple[list[int], str]]]:
    """Store an uploaded ``.npz`` (``kind``: ``calibration`` or ``inputs``) under ENGINESCOPE_HOME/uploads
    (content-addressed, ``<kind>-<sha256[:16]>.npz``).

    Returns:
        ``(server path, {key: (shape, dtype name)})``.

    Raises:
        InputError: not a readable .npz archive of arrays, or empty (names the file).
    """
    raw = upload.getvalue()
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            meta = {k: (list(npz[k].shape), str(npz[k].dtype)) for k in npz.files}
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{kind} file {upload.name!r} is not a readable .npz: {exc}") from None
    if not meta:
        raise InputError(f"{kind} file {upload.name!r} holds no arrays")
    digest = hashlib.sha256(raw).hexdigest()
    path = home() / "uploads" / f"{kind}-{digest[:16]}.npz"
    if not path.exists():
        path.write_bytes(raw)
    return str(path), meta


def save_calibration(upload: Any) -> str:
    """Store an uploaded calibration ``.npz`` (:func:`save_npz`) and return its server path."""
    return save_npz(upload, "calibration")[0]


def check_inputs_npz(fname: str, meta: dict[str, tuple[list[int], str]],
                     model_inputs: list[dict[str, Any]]) -> tuple[list[str], dict[str, int], int | None]:
    """Quick check of an inputs ``.npz`` against the model's inputs (the worker validates it fully).

    Args:
        fname: file name for messages.
        meta: ``{key: (shape, dtype)}`` from :func:`save_npz`.
        model_inputs: the model row's ``inputs`` (``[{"name", "dtype", "shape"}]``).

    Returns:
        ``(errors naming the key, {symbolic dim name: size fixed by the file}, N samples or None)``.
    """
    errors: list[str] = []
    dims: dict[str, int] = {}
    names = [i["name"] for i in model_inputs]
    for key in meta:
        if key not in names:
            errors.append(f"inputs_npz {fname}: key {key!r} is not an input of the model (inputs: {names})")
    samples: int | None = None
    for inp in model_inputs:
        if inp["name"] not in meta:
            errors.append(f"inputs_npz {fname}: key {inp['name']!r} (a model input) is missing")
            continue
        shape, dtype = meta[inp["name"]]
        mshape = list(inp.get("shape") or [])
        if inp.get("dtype") and dtype != inp["dtype"]:
            errors.append(f"inputs_npz {fname}: key {inp['name']!r} has dtype {dtype}, the model input is {inp['dtype']}")
        if len(shape) != len(mshape):
            errors.append(f"inputs_npz {fname}: key {inp['name']!r} has shape {shape} (rank {len(shape)}), "
                          f"while the model input is {mshape} (rank {len(mshape)})")
            continue
        for axis, d in enumerate(mshape):
            if axis and isinstance(d, str) and d:
                dims.setdefault(d, int(shape[axis]))
        if mshape and not (isinstance(mshape[0], int) and mshape[0] > 0) and samples is None:
            samples = int(shape[0])
    return errors, dims, samples


url = ui.db_url()
st.title("New benchmark")
if not auth.can("start", url):
    auth.viewer_note("start benchmarks")
    st.stop()
models = data.list_models(url)
if not models:
    st.info("No models yet: add one on the **Models** page first.")
    ui.link_to_page("models", "Go to Models")
    st.stop()

default_model = ui.query_int("model") or st.session_state.get("models_selected_id")
model_id = ui.model_selectbox("newbench_model", models, default_id=default_model)
if model_id is None:
    st.stop()
model = next(m for m in models if int(m["id"]) == model_id)

c1, c2 = st.columns([1, 2])
model_format = model.get("format") or "onnx"
engine_options = catalog.engines_for_format(model_format)
if not engine_options:
    st.error(f"{LABELS['model_id']}: {ui.model_label(model)} is stored as {model_format!r}, which no engine runs.")
    st.stop()
engine = c1.radio(LABELS["engine"], engine_options, horizontal=False,
                  key="newbench_engine" + ("" if model_format == "onnx" else f"_{model_format}"),
                  format_func=lambda e: catalog.engine_info(e).label,
                  help="The engines that run this model's format: ONNX Runtime and TensorRT run .onnx models; "
                       "PyTorch runs a Hugging Face folder or a torch.export .pt2 (register one on the Models page, "
                       "or export it to ONNX there to compare both).")
kinds = device_choices(engine)
kind = c1.radio(LABELS["device"], kinds, key=f"newbench_device_{engine}", horizontal=True,
                format_func=DEVICE_KIND_LABELS.get,
                help="Where the engine runs. " + ", ".join(
                    f"{catalog.engine_info(e).label}: {' or '.join(DEVICE_KIND_LABELS[k] for k in catalog.devices(e))}"
                    for e in catalog.engines()))
device = "cpu"
if kind == "cuda":
    gpu = c1.number_input("GPU index (cuda:N)", 0, 63, 0, step=1, key="newbench_gpu",
                          help="The CUDA device the job occupies: one benchmark per device at a time.")
    device = catalog.parse_device(f"cuda:{int(gpu)}")
gpu_type_text: str | None = None  # fleet (ENGINESCOPE_EXECUTOR=ray): the accelerator type, stored as spec.gpu_type
if (os.environ.get("ENGINESCOPE_EXECUTOR") or "local").strip().lower() == "ray":
    from dashboard.machines import cluster_accelerator_types

    gpu_type_help = ("Ray fleet: run this job only on a node with this accelerator type (one GPU of it); any = the "
                     "first free GPU of any node. docs/fleet.md")
    cluster_types = cluster_accelerator_types()
    if cluster_types:
        gpu_type_text = c1.selectbox(GPU_TYPE_LABEL, ["any", *cluster_types], key="newbench_gpu_type", help=gpu_type_help)
        gpu_type_text = None if gpu_type_text == "any" else gpu_type_text
    else:
        gpu_type_text = c1.text_input(GPU_TYPE_LABEL, "", key="newbench_gpu_type_text", placeholder="any (e.g. H100)",
                                      help=gpu_type_help + " (the cluster did not answer: type the name)")
cuda_graph = False
if kind == "cuda" and engine in ("onnxruntime", "torch"):
    cuda_graph = c1.checkbox(LABELS["cuda_graph"], False,
                             key="newbench_cuda_graph" + ("" if engine == "onnxruntime" else f"_{engine}"),
                             help="Capture each batch size's inference in a CUDA graph and time its replays "
                                  "(ONNX Runtime enable_cuda_graph: every node must run on the CUDA provider, "
                                  "fixed shapes only; PyTorch: torch.cuda.CUDAGraph after a side-stream warm-up).")
profile_kernels = ncu_top = 0
nsys = False
if kind == "cuda" and engine in ("onnxruntime", "torch"):
    profile_kernels = c1.number_input(
        LABELS["kernel_iterations"], 0, 100, 0, step=1, key="newbench_profile_kernels",
        help="After each measured precision x batch, capture this many iterations' GPU kernels with torch.profiler "
             "(CUPTI) into a separate profiled run (ONNX Runtime: kernels attributed to its nodes); the measured "
             "run's latencies are never profiled. CUDA devices only.")
    ncu_top = c1.number_input(
        LABELS["ncu_top"], 0, 200, 0, step=1, key="newbench_ncu_top",
        help="After each measured precision x batch, profile one iteration under Nsight Compute (--clock-control "
             "none) and keep this many kernels with their occupancy, SM/DRAM throughput, FLOP and bytes, placed on a "
             "roofline measured on the same GPU; a separate ncu run. Needs ncu on the worker's machine.")
    nsys = c1.checkbox(
        LABELS["nsys"], False, key="newbench_nsys",
        help="After each measured precision x batch, capture 5 iterations under Nsight Systems (nsys profile, "
             "cudaProfilerApi range, NVTX per iteration) and import the report as a separate profiled run. Needs nsys "
             "on the worker's machine.")
# the engine's default device kind keeps the plain key (newbench_precisions_onnxruntime, ..._tensorrt)
prec_key = f"newbench_precisions_{engine}" + ("" if kind == kinds[0] else f"_{kind}")
precisions = c2.multiselect(LABELS["precisions"], precision_choices(engine, device), default=["fp32"], key=prec_key,
                            help=catalog.precision_help(engine) + ". Offered: those that run on "
                                 f"{DEVICE_KIND_LABELS[kind]}.")
batch_text = c2.text_input(f"{LABELS['batch_sizes']} (comma separated)", "1", key="newbench_batches")

tensorrt_options: dict[str, Any] = {}
trt_blocked = False
if engine == "tensorrt":
    try:
        from dashboard.trt_widgets import render_tensorrt_options
    except ImportError as exc:
        st.warning(f"TensorRT options are unavailable in this installation ({exc}).")
        trt_blocked = True
    else:
        opts = render_tensorrt_options("newbench_trt_", dynamic_inputs=model.get("inputs") or [])
        if opts is None:
            trt_blocked = True
        else:
            tensorrt_options = opts

torch_options: dict[str, Any] = {}
if engine == "torch":
    st.subheader("PyTorch", anchor=False)
    p1, p2, p3, p4 = st.columns(4)
    if p1.checkbox(TORCH_LABELS["compile"], False, key="newbench_torch_compile",
                   help="torch.compile the model (else eager); the first call compiles and is recorded apart."):
        torch_options["compile"] = True
        torch_options["compile_mode"] = p1.selectbox(
            TORCH_LABELS["compile_mode"], ["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
            key="newbench_torch_compile_mode")
        torch_options["compile_backend"] = p1.text_input(TORCH_LABELS["compile_backend"], "inductor",
                                                         key="newbench_torch_backend")
    torch_options["cast"] = p2.radio(TORCH_LABELS["cast"], ["weights", "autocast"], key="newbench_torch_cast",
                                     help="weights: model.to(dtype); autocast: fp32 weights under torch.autocast. "
                                          "The run records which.")
    if any(i.get("dtype", "").startswith("int") for i in (model.get("inputs") or [])):
        positions = ((model.get("preflight") or {}).get("torch") or {}).get("max_positions")
        torch_options["seq_len"] = int(p3.number_input(
            TORCH_LABELS["seq_len"], 1, 1_000_000, min(DEFAULT_SEQ_LEN, int(positions or DEFAULT_SEQ_LEN)),
            key="newbench_torch_seq_len",
            help="Token positions of the generated text inputs (token ids from the tokenizer, with an attention mask)"
                 + (f"; the model has {positions} positions" if positions else "") + "."))
    if p4.checkbox(TORCH_LABELS["allow_pickle"], False, key="newbench_torch_pickle",
                   help="Allow pickle-based weights (pytorch_model.bin): loading a pickle can run code. Recorded "
                        "on the run."):
        torch_options["allow_pickle"] = True

st.subheader("Shapes", anchor=False)
inputs = model.get("inputs") or []
sym = data.symbolic_dims(inputs)
st.caption("Inputs: " + "; ".join(f"`{i['name']}` {i.get('dtype', '?')} [{ui.fmt_shape(i.get('shape'))}]" for i in inputs)
           if inputs else "The model declares no inputs.")
dim_values: dict[str, int] = {}
dim_errors: list[str] = []
if sym and engine == "torch":
    st.caption("The batch dim takes each batch size; a text model's sequence dim is the sequence length above "
               "(PyTorch options).")
elif sym:
    st.markdown("Values for the symbolic dims. A leading (batch) dim left at **0** takes each batch size.")
    cols = st.columns(min(4, len(sym)))
    for k, d in enumerate(sym):
        default = 0 if d["leading"] else 1
        v = cols[k % len(cols)].number_input(
            f"{d['name']}", min_value=0, max_value=1 << 20, value=default, step=1, key=f"newbench_dim_{d['name']}",
            help=f"used by {', '.join(d['inputs'])}" + (" (leading dim: 0 = batch size)" if d["leading"] else ""))
        if v > 0 and not d["unnamed"]:
            dim_values[d["name"]] = int(v)
        elif v == 0 and not d["leading"]:
            dim_errors.append(f"{LABELS['dim_values']} {d['name']}: must be >= 1 (only a leading batch dim may be 0)")
            st.error(dim_errors[-1])
else:
    st.caption("All input dims are fixed.")

st.subheader("Timing", anchor=False)
t1, t2, t3, t4 = st.columns(4)
iterations = t1.number_input(LABELS["iterations"], 1, 10_000_000, 100, key="newbench_iterations")
warmup_iterations = t2.number_input(LABELS["warmup_iterations"], 0, 100_000, 10, key="newbench_warmup_iters")
warmup_s = t3.number_input(LABELS["warmup_s"], 0.0, 600.0, 0.5, step=0.5, key="newbench_warmup_s")
min_duration_s = t4.number_input(LABELS["min_duration_s"], 0.0, 3600.0, 1.0, step=0.5, key="newbench_min_duration")
t5, t6, t7, t8 = st.columns(4)
max_duration_s = t5.number_input(LABELS["max_duration_s"], 1.0, 86_400.0, 300.0, key="newbench_max_duration")
threads = t6.number_input(LABELS["intra_op_threads"], 0, 1024, 0, key="newbench_threads")
timeout_s = t7.number_input(LABELS["timeout_s"], 10.0, 7 * 86_400.0, 3600.0, key="newbench_timeout")
profile_layers = t8.checkbox(LABELS["profile_layers"], True, key="newbench_profile_layers",
                             help="A separate profiled pass records per-layer times; the headline latency is not profiled.")

st.subheader("Scenarios", anchor=False)
s1, s2, s3 = st.columns(3)
p99_budget_ms = s1.number_input(
    LABELS["p99_budget_ms"], 0.0, 3_600_000.0, 0.0, step=1.0, key="newbench_p99_budget",
    help="Compare marks which engine / precision / batch has a p99 (from the raw samples) within this budget, and "
         "names the fastest (highest items/s) numerically valid one.")
batch_sweep = s2.checkbox(
    LABELS["batch_sweep"], False, key="newbench_batch_sweep",
    help="Doubles the batch from the (single) batch size above until items/s rises less than 3%, memory runs out "
         "(recorded as the limit) or the max batch; Compare shows throughput vs batch with the knee.")
max_batch = s3.number_input(LABELS["max_batch"], 1, 65_536, 4096, key="newbench_max_batch", disabled=not batch_sweep)
repeats = st.number_input(
    LABELS["repeats"], min_value=1, value=1, step=1, key="newbench_repeats",
    help="Measure each precision x batch this many times (1-50), interleaved with the job's other configurations "
         "(A B A B ...); one run per configuration whose samples carry their repeat index, so verdicts see the "
         "spread between repeats. Not with a batch sweep.")

st.subheader("Inputs", anchor=False)
inputs_upload = st.file_uploader(
    "Inputs (.npz, one array per input name, first axis = samples)", type=["npz"], key="newbench_inputs",
    help="Optional real inputs: N samples, a multiple of every batch size, split into batches of the run's batch "
         "size. The first batch is timed; accuracy against fp32 covers all N samples. Without a file, seeded "
         "generated inputs are used (token ids in [0, 100) for integer inputs, N(0, 1) floats).")
inputs_path: str | None = None
inputs_errors: list[str] = []
if inputs_upload is not None:
    try:
        inputs_path, inputs_meta = save_npz(inputs_upload, "inputs")
    except InputError as exc:
        inputs_errors.append(str(exc))
        st.error(str(exc))
    else:
        inputs_errors, file_dims, n_samples = check_inputs_npz(inputs_upload.name, inputs_meta, inputs)
        for msg in inputs_errors:
            st.error(msg)
        for name, size in file_dims.items():
            if dim_values.get(name) != size:
                st.info(f"`{name}` = {size}, taken from the inputs file (the form said {dim_values.get(name, 'nothing')}).")
            dim_values[name] = size
        dim_errors = [e for e in dim_errors if not any(e.startswith(f"{LABELS['dim_values']} {n}:") for n in file_dims)]
        st.caption(f"Stored at `{inputs_path}`: " + (f"{n_samples} samples; " if n_samples is not None else "")
                   + "; ".join(f"`{k}` {ui.fmt_shape(v[0])} {v[1]}" for k, v in inputs_meta.items()))
else:
    st.caption("Without a file, the runner generates seeded inputs (said so in each run's config).")

calib_path: str | None = None
if "int8-qdq" in precisions:
    st.subheader("Calibration (int8-qdq)", anchor=False)
    calib = st.file_uploader("Calibration inputs (.npz, one array per input name, first axis = samples)",
                             type=["npz"], key="newbench_calibration")
    calib_samples = st.number_input(LABELS["calibration_samples"], 1, 10_000, 8, key="newbench_calib_samples")
    if calib is not None:
        try:
            calib_path = save_npz(calib, "calibration")[0]
            st.caption(f"Stored at `{calib_path}`")
        except InputError as exc:
            st.error(str(exc))
    else:
        st.caption("Without a file, the runner generates random calibration inputs (said so in the run's config).")
else:
    calib_samples = 8

spec_data: dict[str, Any] = {
    "model_id": int(model_id), "engine": engine, "device": device, "precisions": precisions, "dim_values": dim_values,
    "warmup_iterations": int(warmup_iterations), "warmup_s": float(warmup_s), "iterations": int(iterations),
    "min_duration_s": float(min_duration_s), "max_duration_s": float(max_duration_s),
    "calibration_npz": calib_path, "calibration_samples": int(calib_samples), "profile_layers": bool(profile_layers),
    "intra_op_threads": int(threads) or None, "tensorrt": tensorrt_options, "timeout_s": float(timeout_s),
    "inputs_npz": inputs_path, "cuda_graph": bool(cuda_graph), "p99_budget_ms": float(p99_budget_ms) or None, "batch_sweep": bool(batch_sweep),
    "max_batch": int(max_batch), "kernel_iterations": int(profile_kernels), "ncu_top": int(ncu_top), "nsys": bool(nsys),
    "repeats": int(repeats),
    **({"torch": torch_options} if engine == "torch" else {}),
}

if st.button("Start benchmark", type="primary", key="newbench_submit", icon=":material/play_arrow:"):
    who = auth.require("start", url)
    try:
        spec_data["batch_sizes"] = parse_batch_sizes(batch_text)
        if dim_errors or inputs_errors:
            raise InputError("invalid spec: " + "; ".join(dim_errors + inputs_errors))
        if trt_blocked:
            raise InputError(f"{LABELS['engine']}: TensorRT is not available on this machine (see the message above)")
        if engine == "torch":
            parse_torch_options(torch_options, TORCH_LABELS)  # errors name this form's fields
        spec = validate_spec(BenchSpec, spec_data, LABELS)
        from engine_runner.jobs.model_bench import plan

        try:  # the same planning function as `enginescope bench` (the worker's machine checks its own device)
            plan(spec, url, devices_here=False)
        except EngineScopeError as exc:
            raise type(exc)(form_words(str(exc))) from None
        from db.jobs import submit_job

        gpu_type = normalize_gpu_type(gpu_type_text, GPU_TYPE_LABEL)
        job_id = submit_job("model_bench", {**spec.model_dump(), **({"gpu_type": gpu_type} if gpu_type else {})},
                            device=spec.device, model_id=int(model_id),
                            timeout_s=spec.timeout_s, origin="dashboard", created_by=who.name, url=url)
    except EngineScopeError as exc:
        msg = str(exc)
        if msg.startswith("invalid spec: "):
            st.error("The benchmark spec is invalid:")
            for part in msg[len("invalid spec: "):].split("; "):
                st.error(part)
        else:
            st.error(msg)
    else:
        st.session_state["newbench_last_job"] = job_id
        st.success(f"Queued job {job_id}: {len(spec.precisions)} precision(s) x {len(spec.batch_sizes)} batch size(s) "
                   f"on {spec.engine} ({spec.device}).")
        for note in spec.precision_notes:
            st.info(note)
if st.session_state.get("newbench_last_job"):
    ui.link_to_page("jobs", f"Follow job {st.session_state['newbench_last_job']} on the Jobs page",
                    {"job": st.session_state["newbench_last_job"]})
