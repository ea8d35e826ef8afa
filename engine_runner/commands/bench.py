"""``enginescope bench MODEL``: benchmark one model at several precisions and batch sizes, in-process.

MODEL is a path to an ``.onnx`` (registered via ``db.store.add_model``; an identical file registered
before is reused) or a model id. The command validates everything first (bad input: message on stderr,
exit 2, no job created), inserts a ``model_bench`` Job (origin ``cli``) owned by this process, runs it
through ``engine_runner.jobs.execute`` with progress on stderr, and prints a summary table on stdout, or
with ``--json`` exactly one JSON document::

    {"job_id": int, "status": str, "notes": [str], "runs": [{"run_id", "engine", "precision", "batch_size", "status",
      "error", "latency_ms": {"mean", "std", "min", "p50", "p90", "p95", "p99", "max"}, "samples",
      "throughput_per_s", "layers", "accuracy": {"max_abs_err", "max_rel_err", "cosine", "nan_count",
      "inf_count"} | null, "items_per_s", "median_ci_ms": [low, high], "numerically_valid", "shapes",
      "inputs": {"source": "npz" | "generated" | "tokenizer" | "random ids", "samples", "batches", ...}, "timing_window": str | null,
      "precision_detail": str | null, "mode": str | null,
      "device": str, "cuda_graph": bool, "energy_per_inference_j": float | null, "avg_power_w": float | null,
      "gpu": {"energy_per_inference_j", "energy_per_item_j", "avg_power_w", "energy_window_j",
              "sm_clock_median_mhz", "sm_clock_min_mhz", "mem_clock_median_mhz", "gpu_temp_max_c",
              "gpu_util_mean_pct", "energy_method", "window_s", "samples_in_window", "sample_rate_hz",
              "throttle", "other_processes"} | null,
      "placement": {"requested", "nodes_per_provider", "fallback_nodes", "copy_nodes"} | null,
      "profiled_run_id": int | null, "warnings": [str]}],
     "profiled_runs": [{"run_id", "of_run_id", "tool", "tool_version", "engine", "precision", "batch_size", "status",
      "error", "label", "iterations", "kernels", "memcpy", "memset", "cuda_api_calls", "nvtx_ranges",
      "kernels_attributed", "ncu_kernels", "ncu_launches_profiled", "notes": [str]}]}

``runs`` are the measured runs; ``profiled_runs`` the kernel timelines of ``--profile-kernels N`` (one per measured
run, ``of_run_id``; ``engine_runner.jobs.model_bench._kernel_run``): their own runs, no latency samples, never in
``runs``, the budget or the exit status (a failed capture is a warning of its measured run). ``kernels`` counts the
kernels of all N iterations; ``kernels_attributed`` (ONNX Runtime) those launched inside a node, else null.
``--ncu-top N`` adds one ``tool: "ncu"`` entry per measured run: ``ncu_kernels`` launches stored (the top N names),
``ncu_launches_profiled`` all launches ncu profiled in the iteration (``engine_runner.jobs.model_bench._ncu_run``).

``precision_detail`` says how the precision was realised where the engine records it (torch:
``"fp16 (weights cast)"``, ``"bf16 (autocast)"``, ``"fp32 (TF32 off)"``); ``mode`` is torch's ``"eager"`` /
``"torch.compile (backend inductor, mode default)"`` (+ ``" + CUDA graph"``); both null for other engines.

With ``--engine torch`` MODEL is a Hugging Face model folder, a hub id in the local Hugging Face cache, or a
``torch.export`` program (``.pt2``), registered by reference (``engine_runner.torch_models``); options
``--seq-len``, ``--compile`` (``--compile-backend``, ``--compile-mode``), ``--cast``,
``--allow-pickle`` (``profiles.torch_spec``) are refused with another engine.

GPU figures (``energy_per_inference_j``, ``avg_power_w``, ``gpu``) cover the measured window only (the timed
loop, not warm-up or profiling), from the NVML sampler beside the run (``engine_runner.telemetry``,
``profiles.telemetry_window``: energy counter difference, else trapezoidal integration of power, named in
``gpu.energy_method``); null on the CPU. ``placement`` counts nodes per ONNX Runtime execution provider.

``notes`` are the spec's ``precision_notes`` (how an alias was resolved: ``--precision int8`` on ONNX
Runtime says "int8 resolved to int8-qdq (static Q/DQ, calibrated)"); engine, precision and device names
come from ``profiles.catalog`` (any case, aliases).

With ``--p99-budget-ms X`` the document also has ``"budget": {"p99_budget_ms", "runs": [{"run_id", "engine",
"precision", "batch_size", "p99_ms", "samples", "p99_source", "items_per_s", "meets", "eligible", "reason"}],
"fastest": {...} | null, "note"}`` (``profiles.budget``: p99 from the stored raw samples; the fastest is the
highest items/s among numerically valid runs that meet the budget), else ``"budget": null``. With
``--batch-sweep`` it has ``"batch_sweep": {precision: {"points": [{"batch_size", "items_per_s", "status",
"gain_vs_previous", "run_id", "limit"}], "stop": {"reason", "detail", "knee_batch", "limit_batch",
"batches"}}}`` (``profiles.sweep``; ``reason`` is plateau | out_of_memory | failed | max_batch), else null; each
run carries its ``runs.config["batch_sweep"]`` as ``batch_sweep``. A sweep's out-of-memory run is failed with
its error but is the recorded limit: it does not make the exit status 1. With ``--repeats N`` each run has
``"repeats": {"count", "per_repeat": [{"repeat", "samples", "p50_ms", "items_per_s"}], "positions", "pooled"}``
(``positions``: its places in the job's interleaved measurement order; ``latency_ms`` and the throughputs are
over every repeat's samples), else ``"repeats": null``.

``timing_window`` is ``runs.timing_window`` (what one latency sample includes; null when unknown).
``warnings`` lists what the run's ``runs.config`` records as degraded: the timed loop capped by
``--max-duration`` (``timing_stop_note``), a failed per-layer profile (``layer_profile_error``), a failed kernel
capture (``kernel_capture_error``), a failed
accuracy check (``accuracy_error``), outputs accuracy skipped (``accuracy_skipped``), the engine's
warnings (``engine_warnings``: nodes that fell back to the CPU on a CUDA run, a CUDA graph whose outputs differ)
and the telemetry's (``telemetry_warnings``: throttled clocks, another process on the GPU, few samples).

``layers`` is the number of per-layer rows stored; ``accuracy`` is the aggregate (``"*"``) row against
fp32 (null for fp32 itself and for failed runs), computed over every batch of ``--inputs FILE.npz`` when
given (``inputs.samples`` samples; the first batch is the timed one; format in ``engine_runner.inputs``).
Exit status: 0 when every run succeeded, 1 when a run or
the job failed, 2 for bad input.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import typer

from profiles import catalog
from profiles.errors import EngineScopeError, InputError, ModelError

_LAT_KEYS = ("mean", "std", "min", "p50", "p90", "p95", "p99", "max")
_TORCH_FLAG_NAMES = {"seq_len": "--seq-len", "compile": "--compile", "compile_backend": "--compile-backend",
                     "compile_mode": "--compile-mode", "cuda_graph": "--cuda-graph", "cast": "--cast",
                     "allow_pickle": "--allow-pickle"}
_ENGINE_HELP = ("engine: " + ", ".join(catalog.engines()) + " (aliases " +
                ", ".join(f"{a}={catalog.resolve_engine(a)}" for a in catalog.engine_choices()[len(catalog.engines()):])
                + "; any case)")
_DEVICE_HELP = ("cpu, cuda or cuda:N; default: the engine's first device ("
                + ", ".join(f"{e}: {catalog.default_device(e)}" for e in catalog.engines()) + ")")
_PRECISION_HELP = ("precision, repeatable, any case; default fp32. Per engine: " + catalog.precision_help())


def _parse_dim(text: str) -> tuple[str, int]:
    name, sep, value = text.rpartition("=")
    if not sep or not name:
        raise InputError(f"--dim {text!r}: expected NAME=N, e.g. sequence=128")
    try:
        n = int(value)
    except ValueError:
        raise InputError(f"--dim {text!r}: N must be an integer") from None
    if n < 1:
        raise InputError(f"--dim {text!r}: N must be >= 1")
    from profiles.specs import MAX_DIM

    if n > MAX_DIM:
        raise InputError(f"--dim {text!r}: N must be <= {MAX_DIM}")
    return name, n


def resolve_model(model: str, url: str, engine: str = "onnxruntime") -> int:
    """Model id for MODEL: digits are an id; with ``--engine torch`` a Hugging Face folder, a ``.pt2`` or a
    hub id in the local HF cache is registered by reference (``engine_runner.torch_models.register_source``);
    otherwise an existing path is registered as ONNX (``db.store.add_model``).

    Raises:
        ModelError: neither an existing file nor a known model id (or the file is not ONNX; or, for torch,
            a folder without config.json, a pickle file, a hub id not in the local cache).
    """
    from db.store import add_model, get_model

    path = Path(model)
    if model.isdigit() and not path.exists():
        return int(get_model(int(model), url=url).id)
    if engine == "torch":
        from engine_runner.torch_models import register_source

        return register_source(model, url=url)
    if path.is_dir():
        raise ModelError(f"MODEL {model}: a folder; --engine {engine} runs .onnx files (a Hugging Face folder "
                         f"runs with --engine torch)")
    if path.exists():
        return int(add_model(path, url=url).id)
    if model.isdigit():
        return int(get_model(int(model), url=url).id)
    raise ModelError(f"MODEL {model!r}: no such file, and not a model id")


def _default_batches(model_id: int, shapes: dict[str, list[int]], url: str) -> list[int]:
    """Batch sizes when ``--batch`` is not given: the model's fixed batch, else the first dim of a
    ``--shape`` on an input with a symbolic first dim, else 1."""
    from db.session import session_scope
    from db.models import Model
    from db.store import model_file
    from engine_runner.inputs import InputSpec, fixed_batch, read_input_specs

    with session_scope(url) as s:
        model = s.get(Model, model_id)
        if model is None:
            raise ModelError(f"model id {model_id}: no such model")
        path = model_file(model)
        fmt, stored = model.format or "onnx", list(model.inputs or [])
    if fmt != "onnx":  # registered by reference (torch engine): the inputs recorded at registration
        specs = [InputSpec(str(i["name"]), str(i["dtype"]), tuple(i["shape"])) for i in stored]
        if not specs:
            return [1]
    else:
        specs = read_input_specs(path)
    fb = fixed_batch(specs)
    if fb is not None:
        return [fb]
    for spec in specs:
        if spec.name in shapes and spec.shape and spec.is_symbolic(0):
            b = int(shapes[spec.name][0])
            from profiles.specs import MAX_BATCH_SIZE

            if not 1 <= b <= MAX_BATCH_SIZE:  # it becomes the batch size: say where it came from
                raise InputError(f"--shape {spec.name}=...: its first dim {b} is the batch size (the input's first "
                                 f"dim is symbolic) and must be in 1..{MAX_BATCH_SIZE}; give a smaller one, or --batch")
            return [b]
    return [1]


def collect_results(job_id: int, url: str | None = None) -> dict[str, Any]:
    """The JSON document of a finished ``model_bench`` job (schema in the module doc)."""
    from sqlalchemy import func, select

    from db.models import AccuracyResult, Job, LayerTiming, Run, RunMetric, Summary
    from db.session import session_scope

    from db.kernels import is_profiled

    out: dict[str, Any] = {"job_id": job_id, "status": None, "error": None, "notes": [], "runs": [],
                           "profiled_runs": []}
    with session_scope(url) as s:
        job = s.get(Job, job_id)
        if job is not None:
            out["status"], out["error"] = job.status, job.error
            out["notes"] = list((job.spec or {}).get("precision_notes") or [])
        for r in s.execute(select(Run).where(Run.job_id == job_id).order_by(Run.id)).scalars():
            if is_profiled(r.config):
                out["profiled_runs"].append(profiled_entry(r))
                continue
            summ = s.execute(select(Summary).where(Summary.run_id == r.id, Summary.metric == "latency_ms",
                                                   Summary.point_id.is_(None))).scalars().first()
            metrics = dict(s.execute(select(RunMetric.name, RunMetric.value).where(RunMetric.run_id == r.id)).all())
            n_layers = s.execute(select(func.count()).select_from(LayerTiming).where(LayerTiming.run_id == r.id)).scalar_one()
            acc = s.execute(select(AccuracyResult).where(AccuracyResult.run_id == r.id,
                                                         AccuracyResult.output_name == "*")).scalars().first()
            out["runs"].append({
                "run_id": r.id, "engine": r.engine, "engine_version": r.engine_version, "precision": r.precision,
                "batch_size": r.batch_size, "status": r.status, "error": r.error,
                "latency_ms": {k: getattr(summ, k) for k in _LAT_KEYS} if summ else None,
                "median_ci_ms": [summ.median_ci_low, summ.median_ci_high] if summ else None,
                "samples": summ.count if summ else 0,
                "throughput_per_s": metrics.get("throughput_per_s"),
                "items_per_s": metrics.get("items_per_s"),
                "layers": int(n_layers),
                "accuracy": {"max_abs_err": acc.max_abs_err, "max_rel_err": acc.max_rel_err, "cosine": acc.cosine,
                             "nan_count": acc.nan_count, "inf_count": acc.inf_count} if acc else None,
                "numerically_valid": r.numerically_valid,
                "shapes": r.shapes,
                "inputs": (r.config or {}).get("inputs"),
                "timing_window": r.timing_window,
                "device": (r.config or {}).get("device", "cpu"),
                "cuda_graph": bool((r.config or {}).get("cuda_graph", False)),
                "energy_per_inference_j": metrics.get("energy_per_inference_j"),
                "avg_power_w": metrics.get("avg_power_w"),
                "gpu": gpu_summary(r.config, metrics),
                "placement": (r.config or {}).get("placement"),
                "profiled_run_id": ((r.config or {}).get("kernel_capture") or {}).get("profiled_run_id"),
                "precision_detail": (r.config or {}).get("precision_detail"),
                "mode": (r.config or {}).get("mode"),
                "warnings": run_warnings(r.config),
                "batch_sweep": (r.config or {}).get("batch_sweep"),
                "repeats": (r.config or {}).get("repeats"),
            })
        spec = (job.spec or {}) if job is not None else {}
    out["budget"] = budget_block(job_id, spec.get("p99_budget_ms"), url)
    out["batch_sweep"] = sweep_block(out["runs"]) if spec.get("batch_sweep") else None
    return out


def profiled_entry(run: Any) -> dict[str, Any]:
    """One ``profiled_runs`` entry of the JSON document (module doc) from a profiled ``Run`` row: its
    ``config["profiler"]`` and the counts :func:`db.kernels.store_trace` recorded in ``config["kernel_trace"]``."""
    cfg = run.config or {}
    prof, kt = cfg.get("profiler") or {}, cfg.get("kernel_trace") or {}
    counts = kt.get("counts") or {}
    return {"run_id": run.id, "of_run_id": prof.get("of_run_id"), "tool": prof.get("tool"),
            "tool_version": prof.get("version"), "engine": run.engine, "precision": run.precision,
            "batch_size": run.batch_size, "status": run.status, "error": run.error, "label": run.label,
            "iterations": prof.get("iterations"),
            **{k: counts.get(k, 0) for k in ("kernels", "memcpy", "memset", "cuda_api_calls", "nvtx_ranges")},
            "kernels_attributed": ((kt.get("meta") or {}).get("ort_attribution") or {}).get("kernels_attributed"),
            "ncu_kernels": prof.get("stored_kernels") if prof.get("tool") == "ncu" else None,
            "ncu_launches_profiled": prof.get("launches_profiled") if prof.get("tool") == "ncu" else None,
            "notes": list(kt.get("notes") or prof.get("notes") or [])}


def budget_block(job_id: int, p99_budget_ms: float | None, url: str | None = None) -> dict[str, Any] | None:
    """The ``budget`` block of the JSON document (None without ``--p99-budget-ms``):
    :meth:`profiles.budget.BudgetReport.as_dict` of the job's measured runs (profiled runs left out), p99 from
    their stored raw samples."""
    if p99_budget_ms is None:
        return None
    from sqlalchemy import select

    from db.kernels import is_profiled
    from db.models import Run
    from db.results import budget_candidates
    from db.session import session_scope
    from profiles.budget import evaluate_p99_budget

    with session_scope(url) as s:
        ids = [rid for rid, cfg in s.execute(select(Run.id, Run.config).where(Run.job_id == job_id)).all()
               if not is_profiled(cfg)]
    return evaluate_p99_budget(budget_candidates(ids, url), float(p99_budget_ms)).as_dict()


def sweep_block(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``batch_sweep`` block: per precision, the swept batches with items/s and status, and the stop
    record (``reason`` of ``profiles.sweep.STOP_REASONS``, ``detail``, ``knee_batch``, ``limit_batch``)."""
    out: dict[str, Any] = {}
    for r in runs:
        info = r.get("batch_sweep") or {}
        entry = out.setdefault(r["precision"], {"points": [], "stop": None})
        entry["points"].append({"batch_size": r["batch_size"], "items_per_s": r["items_per_s"], "status": r["status"],
                                "gain_vs_previous": info.get("gain_vs_previous"), "run_id": r["run_id"],
                                "limit": bool(info.get("limit"))})
        if info.get("stop"):
            entry["stop"] = info["stop"]
    return out


#: ``run_metrics`` of the measured window's GPU telemetry copied into the JSON's ``gpu`` object.
GPU_METRICS = ("energy_per_inference_j", "energy_per_item_j", "avg_power_w", "energy_window_j", "sm_clock_median_mhz",
               "sm_clock_min_mhz", "mem_clock_median_mhz", "gpu_temp_max_c", "gpu_util_mean_pct")


def gpu_summary(config: dict[str, Any] | None, metrics: dict[str, float | None]) -> dict[str, Any] | None:
    """The JSON's ``gpu`` object (module doc) from ``runs.config["telemetry_window"]`` and the run's metrics;
    None when the run has no GPU telemetry window."""
    win = (config or {}).get("telemetry_window")
    if not win:
        return None
    out: dict[str, Any] = {k: metrics.get(k) for k in GPU_METRICS}
    out.update({"energy_method": win.get("energy_method"), "window_s": win.get("duration_s"),
                "samples_in_window": win.get("samples_in_window"), "sample_rate_hz": win.get("sample_rate_hz"),
                "throttle": win.get("throttle"), "other_processes": win.get("other_processes")})
    return out


def run_warnings(config: dict[str, Any] | None) -> list[str]:
    """User-facing warnings recorded in a run's ``runs.config`` (keys listed in the module doc)."""
    cfg = config or {}
    out = []
    if cfg.get("timing_stop_reason") == "max_duration":
        out.append(cfg.get("timing_stop_note") or "timed loop capped by max_duration_s")
    if cfg.get("layer_profile_error"):
        out.append(f"no per-layer rows: {cfg['layer_profile_error']}")
    if cfg.get("accuracy_error"):
        out.append(f"accuracy not checked: {cfg['accuracy_error']}")
    for name, reason in (cfg.get("accuracy_skipped") or {}).items():
        out.append(f"accuracy skipped output {name!r}: {reason}")
    out.extend(cfg.get("engine_warnings") or [])
    out.extend(cfg.get("telemetry_warnings") or [])
    if cfg.get("kernel_capture_error"):
        out.append(f"no kernel timeline: {cfg['kernel_capture_error']}")
    return out


def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def format_table(doc: dict[str, Any]) -> str:
    """A readable fixed-width table of :func:`collect_results`'s document."""
    head = (f"{'run':>4}  {'precision':<12} {'batch':>5}  {'status':<9} {'p50 ms':>9} {'p99 ms':>9} {'mean ms':>9} "
            f"{'n':>6} {'thr/s':>10} {'items/s':>10} {'layers':>6} {'max_abs_err':>11} {'cosine':>9}")
    lines = [f"job {doc['job_id']}: {doc['status']}"] + [f"note: {n}" for n in doc.get("notes") or []]
    src = next((r["inputs"] for r in doc["runs"] if r.get("inputs")), None)
    if src:
        lines.append(f"inputs: {src.get('file', src['source'])}, {src.get('samples')} sample(s) "
                     f"(timing: first batch; accuracy: all samples)" if src["source"] == "npz"
                     else f"inputs: {src['source']} (seed {src.get('seed')})")
    lines += [head, "-" * len(head)]
    for r in doc["runs"]:
        lat = r["latency_ms"] or {}
        acc = r["accuracy"] or {}
        lines.append(
            f"{r['run_id']:>4}  {r['precision']:<12} {r['batch_size']:>5}  {r['status']:<9} {_fmt(lat.get('p50')):>9} "
            f"{_fmt(lat.get('p99')):>9} {_fmt(lat.get('mean')):>9} {r['samples']:>6} {_fmt(r['throughput_per_s'], '.1f'):>10} "
            f"{_fmt(r['items_per_s'], '.1f'):>10} {r['layers']:>6} {_fmt(acc.get('max_abs_err'), '.3g'):>11} "
            f"{_fmt(acc.get('cosine'), '.6f'):>9}")
        if r.get("precision_detail") or r.get("mode"):
            lines.append(f"{'':>6}precision: {r.get('precision_detail') or r['precision']}"
                         + (f"; mode: {r['mode']}" if r.get("mode") else ""))
        if r.get("timing_window"):
            lines.append(f"{'':>6}timing window: {r['timing_window']}")
        gpu = r.get("gpu")
        if gpu:
            lines.append(f"{'':>6}gpu (measured window {_fmt(gpu.get('window_s'), '.2f')} s, "
                         f"{gpu.get('samples_in_window')} samples): energy/inference {_fmt(gpu.get('energy_per_inference_j'), '.4g')} J "
                         f"({gpu.get('energy_method') or 'none'}), avg power {_fmt(gpu.get('avg_power_w'), '.1f')} W, "
                         f"SM clock median {_fmt(gpu.get('sm_clock_median_mhz'), '.0f')} MHz "
                         f"(min {_fmt(gpu.get('sm_clock_min_mhz'), '.0f')}), mem clock {_fmt(gpu.get('mem_clock_median_mhz'), '.0f')} MHz")
        for w in r.get("warnings") or []:
            lines.append(f"{'':>6}warning: {w}")
        if r["numerically_valid"] is False:
            lines.append(f"{'':>6}outputs NOT numerically valid (NaN/Inf/all zero): not a usable speed-up")
        if r["error"]:
            lines.append(f"{'':>6}error: {r['error'].splitlines()[0]}")
    for pr in doc.get("profiled_runs") or []:
        if pr.get("tool") == "ncu":
            lines.append(f"ncu: run {pr['run_id']} of run {pr['of_run_id']} ({pr['status']}): {pr['ncu_kernels']} "
                         f"launches of the top kernels kept of {pr['ncu_launches_profiled']} profiled"
                         + (f"; error: {pr['error'].splitlines()[0]}" if pr.get("error") else ""))
            continue
        attributed = (f", {pr['kernels_attributed']} attributed to ONNX Runtime nodes"
                      if pr.get("kernels_attributed") is not None else "")
        lines.append(f"kernel timeline: run {pr['run_id']} of run {pr['of_run_id']} ({pr['tool']}, {pr['status']}): "
                     f"{pr['kernels']} kernels, {pr['memcpy']} memcpy, {pr['memset']} memset over "
                     f"{pr['iterations']} iterations{attributed}")
    budget = doc.get("budget")
    if budget:
        lines.append(f"p99 budget {budget['p99_budget_ms']:g} ms (p99 from the raw samples):")
        for v in budget["runs"]:
            mark = {True: "meets", False: "over", None: "n/a"}[v["meets"]]
            lines.append(f"{'':>6}run {v['run_id']:>4} {v['precision'] or '?':<12} b{v['batch_size']}: {mark:<5} {v['reason']}")
        lines.append(f"{'':>6}{budget['note']}")
    for precision, sweep in (doc.get("batch_sweep") or {}).items():
        stop = sweep.get("stop") or {}
        pts = ", ".join(f"b{pt['batch_size']} " + (_fmt(pt["items_per_s"], ".4g") if pt["status"] == "succeeded"
                                                   else pt["status"]) for pt in sweep["points"])
        lines.append(f"batch sweep {precision}: {pts} (items/s)")
        lines.append(f"{'':>6}stopped: {stop.get('reason')} - {stop.get('detail')}; knee at batch {stop.get('knee_batch')}")
    return "\n".join(lines)


def run_inline(job_id: int, kind: str, spec_json: dict[str, Any], url: str | None, *, quiet: bool, as_json: bool,
               collect: Any, render: Any, error_prefix: str) -> tuple[str, dict[str, Any]]:
    """Run the queued-inline job ``job_id`` in this process (the worker's code: ``engine_runner.jobs.execute``)
    with progress on stderr unless ``quiet``, then print ``collect(job_id, url)`` as one JSON document on stdout
    (``as_json``) or as ``render(doc)`` with the job's error's first line on stderr. Returns (status, doc)."""
    from engine_runner.interrupts import execute_interruptible
    from engine_runner.jobctx import JobContext

    ctx = JobContext(job_id=job_id, kind=kind, spec=spec_json, db_url=url, hooks=[] if quiet else [_StderrProgress()])
    # SIGINT / SIGTERM cancel the job (recorded, run in flight failed) instead of leaving it "running"
    status, interrupted = execute_interruptible(ctx)
    doc = collect(job_id, url)
    if as_json:
        sys.stdout.write(json.dumps(doc, allow_nan=False, default=str) + "\n")
    else:
        typer.echo(render(doc))
        if doc["error"]:
            typer.echo(f"{error_prefix}: {doc['error'].splitlines()[0]}", err=True)
    if interrupted.exit_code is not None:
        raise typer.Exit(interrupted.exit_code)
    return status, doc


class _StderrProgress:
    """Event hook printing stages and (throttled) progress on stderr."""

    def __init__(self, min_interval_s: float = 1.0) -> None:
        self.min_interval_s = min_interval_s
        self._last = 0.0

    def __call__(self, kind: str, message: str, progress: float | None, data: dict[str, Any]) -> None:
        now = time.monotonic()
        if kind == "progress" and now - self._last < self.min_interval_s:
            return
        self._last = now
        pct = f"[{progress:4.0%}] " if progress is not None else "       "
        typer.echo(f"{pct}{kind}: {message}", err=True)


def register(app: typer.Typer) -> None:
    """Add ``bench``."""

    @app.command("bench")
    def bench_cmd(
        model: str = typer.Argument(..., help="path to an .onnx file (registered on first use) or a model id"),
        engine: str = typer.Option("onnxruntime", "--engine", help=_ENGINE_HELP),
        device: str = typer.Option(None, "--device", help=_DEVICE_HELP),
        precision: list[str] = typer.Option(None, "--precision", help=_PRECISION_HELP),
        batch: list[int] = typer.Option(None, "--batch", help="batch size (repeatable); default: the model's fixed batch, else the first dim of --shape, else 1"),
        shape: list[str] = typer.Option(None, "--shape", help="NAME=D1xD2... full input shape (repeatable); a symbolic first dim is replaced by each --batch"),
        dim: list[str] = typer.Option(None, "--dim", help="NAME=N value of a symbolic dim, e.g. sequence=128 (repeatable)"),
        warmup: int = typer.Option(10, "--warmup", help="minimum warm-up iterations"),
        warmup_s: float = typer.Option(0.5, "--warmup-s", help="minimum warm-up time, seconds"),
        iterations: int = typer.Option(100, "--iterations", help="minimum timed iterations"),
        min_duration: float = typer.Option(1.0, "--min-duration", help="minimum timed duration, seconds"),
        max_duration: float = typer.Option(300.0, "--max-duration", help="cap on each run's timing loop, seconds"),
        calibration: Path = typer.Option(None, "--calibration", help=".npz of calibration inputs for int8-qdq (keys = input names)"),
        calibration_samples: int = typer.Option(8, "--calibration-samples", help="generated calibration feeds when no --calibration"),
        inputs: Path = typer.Option(None, "--inputs", help=".npz of benchmark inputs: keys = input names, first axis = N samples "
                                    "(a multiple of every --batch), split into batches; the first batch is timed, accuracy "
                                    "uses all; symbolic dims not set by --dim/--shape come from the file"),
        threads: int = typer.Option(None, "--threads", help="intra-op threads (default: the engine's)"),
        no_layers: bool = typer.Option(False, "--no-layers", help="skip the per-layer profiling session"),
        cuda_graph: bool = typer.Option(False, "--cuda-graph", help="CUDA devices: capture each batch size's inference "
                                        "in a CUDA graph and time its replays (fixed shapes only; onnxruntime: "
                                        "enable_cuda_graph, torch: torch.cuda.CUDAGraph)"),
        seed: int = typer.Option(0, "--seed", help="seed of the generated inputs"),
        seq_len: int = typer.Option(None, "--seq-len", help="torch, text models: token positions of the generated "
                                    "inputs (default 128)"),
        compile_: bool = typer.Option(False, "--compile", help="torch: torch.compile the model (default eager)"),
        compile_backend: str = typer.Option("inductor", "--compile-backend", help="torch.compile backend"),
        compile_mode: str = typer.Option("default", "--compile-mode",
                                         help="torch.compile mode: default | reduce-overhead | max-autotune | "
                                              "max-autotune-no-cudagraphs"),
        cast: str = typer.Option("weights", "--cast", help="torch fp16/bf16: weights (model.to(dtype)) | autocast"),
        allow_pickle: bool = typer.Option(False, "--allow-pickle", help="torch: allow pickle weights "
                                          "(pytorch_model.bin, pickled .pt2 entries); recorded in the run config"),
        p99_budget_ms: float = typer.Option(None, "--p99-budget-ms", help="latency budget (ms): mark the runs whose p99 "
                                            "(from the raw samples) meets it and name the fastest (highest items/s) "
                                            "numerically valid one; JSON: the 'budget' block"),
        batch_sweep: bool = typer.Option(False, "--batch-sweep", help="double the batch from the first --batch "
                                         "(default 1) until items/s rises < 3%, memory runs out (recorded as the "
                                         "limit) or --max-batch; JSON: the 'batch_sweep' block"),
        max_batch: int = typer.Option(4096, "--max-batch", help="largest batch of --batch-sweep"),
        profile_kernels: int = typer.Option(0, "--profile-kernels", help="CUDA devices: after each measured precision "
                                            "x batch, record N iterations' GPU kernels with torch.profiler (CUPTI) as a "
                                            "separate profiled run (0 = off, at most 100); JSON: 'profiled_runs'"),
        ncu_top: int = typer.Option(0, "--ncu-top", help="CUDA devices with Nsight Compute (ncu on PATH or "
                                    "$ENGINESCOPE_NCU): after each measured precision x batch, profile one iteration "
                                    "under ncu --clock-control none and keep the N kernels with the largest summed "
                                    "duration (occupancy, SM/DRAM throughput, FLOP, bytes, roofline) as a separate ncu "
                                    "run (0 = off, at most 200)"),
        repeats: int = typer.Option(1, "--repeats", help="measure each precision x batch N times, interleaved with "
                                    "the job's other configurations (A B A B ...); each stays one run whose samples "
                                    "carry their repeat index, so `enginescope compare` intervals include "
                                    "between-repeat variance (1..50; keeps every precision's engine loaded)"),
        nsys: bool = typer.Option(False, "--nsys", help="CUDA devices with Nsight Systems (nsys on PATH or "
                                  "$ENGINESCOPE_NSYS): after each measured precision x batch, capture 5 iterations "
                                  "under nsys profile (cudaProfilerApi range, NVTX per iteration) and import the report "
                                  "as a separate profiled run"),
        as_json: bool = typer.Option(False, "--json", help="print one JSON document on stdout"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress on stderr"),
    ) -> None:
        """Benchmark MODEL: every --precision x --batch, with latency percentiles, throughput, per-layer
        timings and accuracy against fp32. Exit 0 all runs succeeded, 1 a run failed, 2 bad input."""
        from db.config import db_url
        from db.jobs import start_inline_job
        from db.session import migrate
        from engine_runner.cli import fail
        from engine_runner.jobs.model_bench import plan
        from profiles.specs import BenchSpec, parse_shape_flag, validate_spec

        try:
            url = db_url()
            migrate(url)
            shapes = dict(parse_shape_flag(s) for s in (shape or []))
            dims = dict(_parse_dim(d) for d in (dim or []))
            if calibration is not None and not calibration.is_file():
                raise InputError(f"--calibration {calibration}: file not found")
            if inputs is not None and not inputs.is_file():
                raise InputError(f"--inputs {inputs}: file not found")
            model_id = resolve_model(model, url, catalog.resolve_engine(engine))
            data: dict[str, Any] = {
                "model_id": model_id, "engine": engine, "device": device, "precisions": list(precision or ["fp32"]),
                "batch_sizes": list(batch) if batch else _default_batches(model_id, shapes, url),
                "shapes": shapes, "dim_values": dims, "warmup_iterations": warmup, "warmup_s": warmup_s,
                "iterations": iterations, "min_duration_s": min_duration, "max_duration_s": max_duration,
                "calibration_npz": str(calibration.resolve()) if calibration else None,
                "calibration_samples": calibration_samples, "profile_layers": not no_layers, "seed": seed,
                "inputs_npz": str(inputs.resolve()) if inputs else None, "cuda_graph": cuda_graph,
                "p99_budget_ms": p99_budget_ms, "batch_sweep": batch_sweep, "max_batch": max_batch,
                "kernel_iterations": profile_kernels, "ncu_top": ncu_top, "nsys": nsys, "repeats": repeats,
            }
            torch_opts = {k: v for k, v in {"seq_len": seq_len, "compile": compile_ or None,
                                            "compile_backend": compile_backend if compile_backend != "inductor" else None,
                                            "compile_mode": compile_mode if compile_mode != "default" else None,
                                            "cast": cast if cast != "weights" else None,
                                            "allow_pickle": allow_pickle or None}.items() if v is not None}
            if torch_opts:
                if catalog.resolve_engine(engine) != "torch":
                    raise InputError(f"{', '.join(_TORCH_FLAG_NAMES[k] for k in torch_opts)}: PyTorch options; "
                                     f"add --engine torch (this run uses --engine {engine})")
                data["torch"] = torch_opts
            if threads is not None:
                data["intra_op_threads"] = threads
            spec = validate_spec(BenchSpec, data)
            plan(spec, url)
            spec_json = spec.model_dump(mode="json")
            job_id = start_inline_job("model_bench", spec_json, device=spec.device, model_id=model_id, origin="cli",
                                      url=url)
        except EngineScopeError as exc:
            fail(exc)
            return
        status, doc = run_inline(job_id, "model_bench", spec_json, url, quiet=quiet, as_json=as_json,
                                 collect=collect_results, render=format_table, error_prefix="job error")
        ok = status == "succeeded" and bool(doc["runs"]) and all(
            r["status"] == "succeeded" or (r.get("batch_sweep") or {}).get("limit") for r in doc["runs"])
        raise typer.Exit(0 if ok else 1)
