"""Read-only queries of the dashboard, returning plain data (dicts, lists, numpy arrays).

Writes (adding models, submitting and cancelling jobs) go through ``db.store`` and ``db.jobs``; this
module only reads, in short sessions, and never imports Streamlit, so tests can call it directly.

Every function takes ``url`` (SQLAlchemy URL; None = ``db.config.db_url()``).
Units: latencies in ms (converted once from the stored integer ns / ms summaries), throughput in /s.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import func, select

from db.models import (
    AccuracyResult,
    Job,
    JobEvent,
    LatencySample,
    LayerTiming,
    Model,
    Run,
    RunMetric,
    Summary,
)
from db.session import session_scope
from profiles.errors import EngineScopeError
from profiles.layer_match import LayerRecord, shapes_from_details

#: Summary metric names read as the headline latency of a model benchmark run (first found wins).
LATENCY_METRICS = ("latency_ms", "latency", "gpu_compute_ms", "host_latency_ms")

#: Most raw samples per run sent to a distribution chart (evenly strided beyond this; the caption says so).
MAX_PLOT_SAMPLES = 20_000


# ---------------------------------------------------------------------------------------------- models

def model_dict(m: Model) -> dict[str, Any]:
    """A ``models`` row as a plain dict (all columns)."""
    return {c.key: getattr(m, c.key) for c in Model.__table__.columns}


def list_models(url: str | None = None) -> list[dict[str, Any]]:
    """All models, newest first, as dicts (``id``, ``original_name``, ``size_bytes``, ``opset``...)."""
    with session_scope(url) as s:
        return [model_dict(m) for m in s.execute(select(Model).order_by(Model.id.desc())).scalars()]


def get_model(url: str | None, model_id: int) -> dict[str, Any] | None:
    """One model as a dict, or None when it does not exist (deleted meanwhile)."""
    with session_scope(url) as s:
        m = s.get(Model, model_id)
        return model_dict(m) if m else None


def export_source_hash(model: Mapping[str, Any]) -> str | None:
    """The content hash of the PyTorch / Hugging Face model that ``model`` (a :func:`model_dict`) was exported
    from (``meta["export"]["source"]["content_hash"]``, written by ``enginescope export``), or None."""
    src = ((model.get("meta") or {}).get("export") or {}).get("source") or {}
    return src.get("content_hash") or None


def related_models(url: str | None, model_id: int) -> list[dict[str, Any]]:
    """Models that are the same network as ``model_id`` in another format, linked by ``enginescope export``:
    the source it was exported from, the ONNX files exported from it, and other exports of the same source
    (matched by content hash, so a re-registered folder still matches). Newest first, ``model_id`` excluded;
    ``[]`` when it has none or does not exist."""
    models = list_models(url)
    me = next((m for m in models if int(m["id"]) == int(model_id)), None)
    if me is None:
        return []
    family = {h for h in (me.get("content_hash"), export_source_hash(me)) if h}
    return [m for m in models if int(m["id"]) != int(model_id)
            and (m.get("content_hash") in family or export_source_hash(m) in family)]


def symbolic_dims(inputs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Symbolic (or unknown) dims of a model's inputs, in order of first appearance.

    Returns dicts ``{"name": dim name, "inputs": [input names], "leading": bool}``; ``leading`` is True
    when the dim is the first dim of every input it appears in (then the batch size fills it by default,
    as ``BenchSpec`` documents). Unknown dims (None) are named ``"<input>[<axis>]"`` and reported too.
    """
    seen: dict[str, dict[str, Any]] = {}
    for inp in inputs:
        for axis, d in enumerate(inp.get("shape") or []):
            if isinstance(d, int) and d > 0:
                continue
            name = d if isinstance(d, str) and d else f"{inp['name']}[{axis}]"
            entry = seen.setdefault(name, {"name": name, "inputs": [], "leading": True, "unnamed": not isinstance(d, str)})
            entry["inputs"].append(inp["name"])
            entry["leading"] = entry["leading"] and axis == 0
    return list(seen.values())


def non_default_domains(op_histogram: Mapping[str, Any], opset_imports: Mapping[str, Any] | None = None) -> list[str]:
    """Operator domains other than the default ONNX domain (``""``/``ai.onnx``) used by the model.

    Ops of such domains (``com.microsoft``, ``ai.onnx.ml``, custom) are likely unsupported by TensorRT's
    ONNX parser without plugins. Reads ``"domain::OpType"`` keys of ``op_histogram`` and the opset imports.
    """
    domains = {k.split("::", 1)[0] for k in op_histogram if "::" in k}
    domains |= {d for d in (opset_imports or {}) if d}
    return sorted(d for d in domains if d not in ("", "ai.onnx"))


# ------------------------------------------------------------------------------------------------ jobs

def job_dict(j: Job) -> dict[str, Any]:
    """A ``jobs`` row as a plain dict."""
    return {c.key: getattr(j, c.key) for c in Job.__table__.columns}


def list_jobs(url: str | None = None, limit: int = 200, model_id: int | Iterable[int] | None = None) -> list[dict[str, Any]]:
    """Most recent jobs first (at most ``limit``), optionally of one model (or several ids), with
    ``model_name`` added."""
    with session_scope(url) as s:
        q = select(Job, Model.original_name).outerjoin(Model, Model.id == Job.model_id).order_by(Job.id.desc()).limit(limit)
        if model_id is not None:
            ids_ = [int(model_id)] if isinstance(model_id, int) else [int(i) for i in model_id]
            q = q.where(Job.model_id.in_(ids_))
        out = []
        for job, name in s.execute(q):
            d = job_dict(job)
            d["model_name"] = name
            out.append(d)
        return out


def get_job(url: str | None, job_id: int) -> dict[str, Any] | None:
    """One job as a dict, or None."""
    with session_scope(url) as s:
        j = s.get(Job, job_id)
        return job_dict(j) if j else None


def job_events(url: str | None, job_id: int, limit: int = 200) -> list[dict[str, Any]]:
    """The last ``limit`` events of a job, oldest first (``ts``, ``kind``, ``message``, ``progress``)."""
    with session_scope(url) as s:
        rows = s.execute(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id.desc()).limit(limit)).scalars()
        return [{"ts": e.ts, "kind": e.kind, "message": e.message, "progress": e.progress} for e in rows][::-1]


# ------------------------------------------------------------------------------------------------ runs

def variant_label(engine: str | None, precision: str | None, label: str | None = None,
                  config: Mapping[str, Any] | None = None) -> str:
    """Display name of a run's variant: ``"engine / precision"``; the run's ``label`` (or the engine)
    when the precision is unknown (e.g. some imported runs). Where the run's config says how the precision
    was made and in which mode (the torch engine's ``precision_detail`` and ``mode``), they replace the bare
    precision: ``"torch / fp16 (weights cast)"``, ``"torch / bf16 (autocast), compile + CUDA graph"``."""
    cfg = config or {}
    if precision:
        shown = str(cfg.get("precision_detail") or precision)
        mode = str(cfg.get("mode") or "")
        tags = (["compile"] if mode.startswith("torch.compile") else []) + (["CUDA graph"] if "CUDA graph" in mode else [])
        return f"{engine or '?'} / {shown}" + (f", {' + '.join(tags)}" if tags else "")
    return label or engine or "?"


def run_rows(url: str | None = None, *, model_id: int | Iterable[int] | None = None,
             job_ids: Iterable[int] | None = None, run_ids: Iterable[int] | None = None) -> list[dict[str, Any]]:
    """Runs with their headline latency summary, throughput and validity, oldest first.

    Filters combine with AND; ``None`` means no filter; ``model_id`` is one id or several (a model and its
    :func:`related_models`). Each dict has the run's columns plus
    ``variant``, ``p50_ms``, ``p90_ms``, ``p95_ms``, ``p99_ms``, ``mean_ms``, ``ci_low_ms``, ``ci_high_ms``,
    ``count`` (samples behind the percentiles), ``latency_metric`` (which summary was used),
    ``throughput_per_s`` (inferences/s), ``items_per_s`` (inferences/s x batch size when not stored),
    ``valid`` (False when ``runs.numerically_valid`` is False or any accuracy row of the run is invalid;
    None when unknown), ``has_layers``, ``worker_id`` (its job's ``jobs.worker_id``: ``ray:<node>@<ip>`` on a
    Ray node, ``worker@<host>:<pid>`` / ``cli@<host>:<pid>`` here) and ``machine`` (:func:`machine_label`:
    where the run was measured, so runs of two fleet nodes can be told apart in one comparison).
    """
    with session_scope(url) as s:
        q = select(Run).order_by(Run.id)
        if model_id is not None:
            ids_ = [int(model_id)] if isinstance(model_id, int) else [int(i) for i in model_id]
            q = q.where(Run.model_id.in_(ids_))
        if job_ids is not None:
            q = q.where(Run.job_id.in_(list(job_ids)))
        if run_ids is not None:
            q = q.where(Run.id.in_(list(run_ids)))
        runs = list(s.execute(q).scalars())
        ids = [r.id for r in runs]
        if not ids:
            return []
        sums: dict[int, dict[str, Summary]] = {}
        for row in s.execute(select(Summary).where(Summary.run_id.in_(ids), Summary.point_id.is_(None))).scalars():
            sums.setdefault(row.run_id, {})[row.metric] = row
        metrics: dict[int, dict[str, float | None]] = {}
        for rm in s.execute(select(RunMetric).where(RunMetric.run_id.in_(ids), RunMetric.point_id.is_(None))).scalars():
            metrics.setdefault(rm.run_id, {})[rm.name] = rm.value
        invalid_acc = set(s.execute(select(AccuracyResult.run_id).where(
            AccuracyResult.run_id.in_(ids), AccuracyResult.valid.is_(False))).scalars())
        layered = set(s.execute(select(LayerTiming.run_id).where(LayerTiming.run_id.in_(ids)).distinct()).scalars())
        run_jobs = sorted({r.job_id for r in runs if r.job_id is not None})
        workers = dict(s.execute(select(Job.id, Job.worker_id).where(Job.id.in_(run_jobs))).all()) if run_jobs else {}
        placements: dict[int, dict[str, Any]] = {}  # the Ray runner's placement event (node id, IP, GPU type)
        ray_jobs = [j for j in run_jobs if str(workers.get(j) or "").startswith("ray:")]
        if ray_jobs:
            for jid, ev in s.execute(select(JobEvent.job_id, JobEvent.data).where(
                    JobEvent.job_id.in_(ray_jobs), JobEvent.kind == "info").order_by(JobEvent.id)).all():
                if isinstance(ev, dict) and ev.get("node_id"):
                    placements.setdefault(jid, ev)
        out = []
        for r in runs:
            d = {c.key: getattr(r, c.key) for c in Run.__table__.columns}
            d["run_id"] = r.id
            d["variant"] = variant_label(r.engine, r.precision, r.label, r.config)
            sm = next((sums.get(r.id, {})[m] for m in LATENCY_METRICS if m in sums.get(r.id, {})), None)
            d["latency_metric"] = sm.metric if sm else None
            for key in ("p50", "p90", "p95", "p99", "mean", "std", "min", "max"):
                d[f"{key}_ms"] = _to_ms(getattr(sm, key), sm.unit) if sm else None
            d["ci_low_ms"] = _to_ms(sm.median_ci_low, sm.unit) if sm else None
            d["ci_high_ms"] = _to_ms(sm.median_ci_high, sm.unit) if sm else None
            d["count"] = sm.count if sm else 0
            m = metrics.get(r.id, {})
            thr = m.get("throughput_per_s")
            d["throughput_per_s"] = thr
            items = m.get("items_per_s")
            if items is None and thr is not None:
                items = thr * (r.batch_size or 1)
            d["items_per_s"] = items
            d["metrics"] = m
            if r.numerically_valid is False or r.id in invalid_acc:
                d["valid"] = False
            elif r.numerically_valid is True:
                d["valid"] = True
            else:
                d["valid"] = None
            d["has_layers"] = r.id in layered
            d["worker_id"] = workers.get(r.job_id) if r.job_id is not None else None
            d["machine"] = machine_label(d["worker_id"], placements.get(r.job_id or 0), r.environment)
            out.append(d)
        return out


def machine_label(worker_id: str | None, placement: Mapping[str, Any] | None = None,
                  environment: Mapping[str, Any] | None = None) -> str | None:
    """Where a run was measured, for tables: ``"<ip> (Ray node <id[:12]>, <accelerator type>)"`` for a job a Ray
    node ran (``jobs.worker_id = "ray:<node_id>@<ip>"``, the type from its placement event), the host of a local
    worker or CLI job (``worker@<host>:<pid>``), else the host the run's environment recorded; None if unknown."""
    wid = worker_id or ""
    if wid.startswith("ray:"):
        node, _, ip = wid[4:].partition("@")
        types = "/".join((placement or {}).get("accelerator_types") or [])
        return f"{ip or '?'} (Ray node {node[:12]}" + (f", {types})" if types else ")")
    if "@" in wid:
        return wid.split("@", 1)[1].rsplit(":", 1)[0] or None
    host = (environment or {}).get("host")
    return str(host) if host else (wid or None)


def _to_ms(value: float | None, unit: str | None) -> float | None:
    if value is None:
        return None
    factor = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}.get((unit or "ms").lower(), 1.0)
    return float(value) * factor


def fastest_valid(rows: Sequence[Mapping[str, Any]], key: str = "p50_ms") -> Mapping[str, Any] | None:
    """The succeeded, numerically valid run with the lowest ``key`` (default p50 latency, ms).

    Runs with ``valid`` False are excluded (a variant that produces NaN/Inf/zeros is never a speed
    win); runs whose validity is unknown (None) are kept. Returns None when no run qualifies.
    """
    cands = [r for r in rows if r.get(key) is not None and r.get("valid") is not False
             and r.get("status", "succeeded") == "succeeded"]
    return min(cands, key=lambda r: float(r[key])) if cands else None


def speedups_vs(rows: Sequence[Mapping[str, Any]], reference_precision: str = "fp32") -> dict[int, float]:
    """Run id -> speed-up of its p50 latency vs the run of ``reference_precision`` with the same engine
    and batch size (reference p50 / run p50). Invalid runs and runs without a reference get no entry."""
    ref = {(r.get("engine"), r.get("batch_size")): r["p50_ms"] for r in rows
           if r.get("precision") == reference_precision and r.get("p50_ms") and r.get("valid") is not False}
    out: dict[int, float] = {}
    for r in rows:
        base = ref.get((r.get("engine"), r.get("batch_size")))
        if base and r.get("p50_ms") and r.get("valid") is not False:
            out[int(r["run_id"])] = float(base) / float(r["p50_ms"])
    return out


def latency_samples_ms(url: str | None, run_ids: Sequence[int], max_points: int = MAX_PLOT_SAMPLES) -> dict[int, np.ndarray]:
    """Raw per-iteration latencies (ms, float64, iteration order) of each run.

    Runs with more than ``max_points`` samples are evenly strided down to about ``max_points``
    (for plotting only; summaries are always computed from all samples).
    """
    out: dict[int, np.ndarray] = {}
    with session_scope(url) as s:
        for rid in run_ids:
            n = s.execute(select(func.count()).select_from(LatencySample).where(LatencySample.run_id == rid)).scalar_one()
            q = select(LatencySample.latency_ns).where(LatencySample.run_id == rid).order_by(LatencySample.seq)
            if n > max_points:
                stride = int(np.ceil(n / max_points))
                q = q.where(LatencySample.seq % stride == 0)
            vals = np.fromiter(s.execute(q).scalars(), dtype=np.float64)
            out[rid] = vals / 1e6
    return out


def runs_stamp(url: str | None, run_ids: Iterable[int]) -> tuple[tuple[int, str, str], ...] | None:
    """``((run_id, status, finished_at ISO), ...)`` sorted by id when every run has ended (its samples no
    longer change), else ``None``; a cache key for results computed from the runs' samples (verdicts)."""
    ids = sorted({int(i) for i in run_ids})
    if not ids:
        return ()
    with session_scope(url) as s:
        rows = s.execute(select(Run.id, Run.status, Run.finished_at).where(Run.id.in_(ids)).order_by(Run.id)).all()
    if len(rows) != len(ids) or any(st in ("running", "queued") or fin is None for _, st, fin in rows):
        return None
    return tuple((int(i), str(st), fin.isoformat() if fin is not None else "") for i, st, fin in rows)


def sample_counts(url: str | None, run_ids: Sequence[int]) -> dict[int, int]:
    """Number of stored raw latency samples per run."""
    with session_scope(url) as s:
        rows = s.execute(select(LatencySample.run_id, func.count()).where(LatencySample.run_id.in_(list(run_ids)))
                         .group_by(LatencySample.run_id)).all()
    return {int(r): int(n) for r, n in rows}


def accuracy_rows(url: str | None, run_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Accuracy results of the runs (vs their reference run), one dict per (run, output)."""
    with session_scope(url) as s:
        rows = s.execute(select(AccuracyResult).where(AccuracyResult.run_id.in_(list(run_ids)))
                         .order_by(AccuracyResult.run_id, AccuracyResult.output_name)).scalars()
        return [{c.key: getattr(a, c.key) for c in AccuracyResult.__table__.columns} for a in rows]


# ---------------------------------------------------------------------------------------------- layers

def runs_with_layers(url: str | None = None) -> list[dict[str, Any]]:
    """Runs that have per-layer timings (measured or imported, with or without a model), newest first,
    as :func:`run_rows` dicts plus ``model_name`` and ``layer_count``."""
    with session_scope(url) as s:
        counts = dict(s.execute(select(LayerTiming.run_id, func.count()).group_by(LayerTiming.run_id)).all())
        names = dict(s.execute(select(Model.id, Model.original_name)).all())
    rows = run_rows(url, run_ids=list(counts)) if counts else []
    for r in rows:
        r["layer_count"] = int(counts.get(r["id"], 0))
        r["model_name"] = names.get(r["model_id"]) if r.get("model_id") else None
    return sorted(rows, key=lambda r: -r["id"])


def layer_rows(url: str | None, run_id: int) -> list[dict[str, Any]]:
    """Per-layer timings of one run in graph/profile order, as dicts with ``name``, ``op_type``,
    ``precision``, ``time_ms`` (median ms per inference: ``median_ms``, else ``avg_ms``, else
    ``total_ms / count``; the median, because a profiling session is short and one outlier moves a mean),
    ``mean_ms``, ``median_ms``, ``count``, ``percentage``, ``fused``, ``tactic``, ``details``."""
    with session_scope(url) as s:
        rows = s.execute(select(LayerTiming).where(LayerTiming.run_id == run_id).order_by(LayerTiming.idx, LayerTiming.id)).scalars()
        out = []
        for lt in rows:
            t = lt.median_ms
            if t is None:
                t = lt.avg_ms
            if t is None and lt.total_ms is not None and lt.count:
                t = lt.total_ms / lt.count
            out.append({"name": lt.name, "op_type": lt.op_type, "precision": lt.precision, "time_ms": t,
                        "mean_ms": lt.avg_ms, "median_ms": lt.median_ms, "count": lt.count,
                        "percentage": lt.percentage, "fused": lt.fused, "tactic": lt.tactic, "details": lt.details or {}})
        return out


def layer_records(rows: Sequence[Mapping[str, Any]]) -> list[LayerRecord]:
    """:func:`layer_rows` dicts -> ``profiles.layer_match.LayerRecord`` (rows without a time are dropped)."""
    out = []
    for r in rows:
        if r.get("time_ms") is None:
            continue
        ins, outs = shapes_from_details(r.get("details"))
        out.append(LayerRecord(name=str(r["name"]), op_type=r.get("op_type"), time_ms=float(r["time_ms"]),
                               input_shapes=ins, output_shapes=outs, precision=r.get("precision")))
    return out


def op_type_totals(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Summed time per inference (ms) per op type of one run's layer rows (unknown op type -> ``"?"``)."""
    totals: dict[str, float] = {}
    for r in rows:
        if r.get("time_ms") is None:
            continue
        op = str(r.get("op_type") or "?")
        totals[op] = totals.get(op, 0.0) + float(r["time_ms"])
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


# ----------------------------------------------------------------------------------------- environment

def environment_status() -> list[dict[str, str]]:
    """What this machine offers the runner, without importing heavy packages.

    Returns rows ``{"component", "status" ("available" | "missing"), "detail"}`` for ONNX Runtime,
    PyTorch, TensorRT, an NVIDIA GPU (``nvidia-smi`` on PATH) and the vLLM environment
    (:func:`profiles.vllm_env.find_vllm_python`: ``ENGINESCOPE_VLLM_PYTHON``, the project's ``.venv-vllm``,
    or an importable ``vllm``; the detail says which).
    """
    def spec(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            return False

    rows = [
        {"component": "ONNX Runtime", "status": "available" if spec("onnxruntime") else "missing",
         "detail": "CPU execution provider" if spec("onnxruntime") else "pip install onnxruntime"},
        {"component": "PyTorch", "status": "available" if spec("torch") else "missing",
         "detail": "" if spec("torch") else "pip install torch"},
    ]
    try:
        from profiles.trt_spec import detect_tensorrt

        avail = detect_tensorrt()
        rows.append({"component": "TensorRT", "status": "available" if avail.available else "missing",
                     "detail": avail.describe() if avail.available else f"{avail.describe()}. {avail.install_hint}"})
    except (ImportError, EngineScopeError) as exc:  # module absent, or ENGINESCOPE_TRTEXEC invalid
        rows.append({"component": "TensorRT", "status": "missing", "detail": str(exc)})
    smi = shutil.which("nvidia-smi")
    rows.append({"component": "NVIDIA GPU", "status": "available" if smi else "missing",
                 "detail": f"nvidia-smi at {smi}" if smi else "no nvidia-smi: CPU-only machine; GPU engines are unavailable"})
    from profiles.vllm_env import find_vllm_python

    try:
        rows.append({"component": "vLLM", "status": "available", "detail": find_vllm_python().describe()})
    except EngineScopeError as exc:  # EngineUnavailableError: not installed, or ENGINESCOPE_VLLM_PYTHON wrong
        rows.append({"component": "vLLM", "status": "missing", "detail": str(exc)})
    return rows


# ------------------------------------------------------------------------------------------ scenarios

def budget_report(url: str | None, run_ids: Sequence[int], p99_budget_ms: float) -> Any:
    """:func:`profiles.budget.evaluate_p99_budget` of the runs, p99 from all their stored raw samples
    (``db.results.budget_candidates``); returns the ``BudgetReport``."""
    from db.results import budget_candidates
    from profiles.budget import evaluate_p99_budget

    return evaluate_p99_budget(budget_candidates(run_ids, url), p99_budget_ms)


def job_budget_ms(jobs: Iterable[Mapping[str, Any]]) -> float | None:
    """The first ``p99_budget_ms`` found in the jobs' specs (what the user asked for), or None."""
    for j in jobs:
        v = (j.get("spec") or {}).get("p99_budget_ms")
        if v:
            return float(v)
    return None


def sweep_series(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Batch sweeps among :func:`run_rows` dicts (runs whose ``config`` has ``batch_sweep``), one series per
    (job, engine, precision): ``{"label", "job_id", "points": [{"batch_size", "items_per_s", "status",
    "run_id", "valid", "limit", "error"}] (by batch), "stop": {"reason", "detail", "knee_batch",
    "limit_batch", ...} | None}`` (``stop`` as the job recorded it, ``profiles.sweep``)."""
    series: dict[tuple[Any, Any, Any], dict[str, Any]] = {}
    for r in rows:
        info = (r.get("config") or {}).get("batch_sweep")
        if not info:
            continue
        key = (r.get("job_id"), r.get("engine"), r.get("precision"))
        entry = series.setdefault(key, {"label": f"{variant_label(r.get('engine'), r.get('precision'))} (job {r.get('job_id')})",
                                        "job_id": r.get("job_id"), "points": [], "stop": None})
        entry["points"].append({"batch_size": r.get("batch_size"), "items_per_s": r.get("items_per_s"),
                                "status": r.get("status"), "run_id": r.get("run_id", r.get("id")),
                                "valid": r.get("valid"), "limit": bool(info.get("limit")), "error": r.get("error")})
        if info.get("stop"):
            entry["stop"] = info["stop"]
    for entry in series.values():
        entry["points"].sort(key=lambda p: p["batch_size"] or 0)
    return list(series.values())


# -------------------------------------------------------------------------------------------- kernels

#: Artifact kinds of raw profiler reports the Kernels page offers for download (other artifacts of the run too).
REPORT_KINDS = ("nsys_sqlite", "nsys_report", "nsys", "kineto_trace", "ort_profile", "ncu_report", "ncu_csv")

#: RunMetric names of an ncu run's roofline ceilings (FLOP/s and bytes/s), written by the ncu capture.
CEILING_FLOPS = "ceiling_matrix_flop_per_s"
CEILING_BYTES = "ceiling_copy_bytes_per_s"


def profiled_runs(url: str | None = None, of_run_id: int | None = None) -> list[dict[str, Any]]:
    """Runs holding a kernel timeline or Nsight Compute rows, newest first (:func:`db.kernels.profiled_runs`:
    ``run_id``, ``label``, ``engine``, ``precision``, ``batch_size``, ``tool``, ``of_run_id``, ``kernels``,
    ``ncu_kernels``...); ``of_run_id`` keeps those that explain that unprofiled run."""
    from db.kernels import profiled_runs as _profiled_runs

    return _profiled_runs(url, of_run_id=of_run_id)


def kernel_trace(url: str | None, run_id: int) -> Any:
    """The stored timeline of ``run_id`` (``profiles.kernels.KernelTrace``, API calls left out: the page does not
    draw them), or None when the run has none."""
    from db.kernels import load_trace

    return load_trace(run_id, url, with_api=False)


def ncu_rows(url: str | None, run_id: int) -> list[dict[str, Any]]:
    """Nsight Compute rows of ``run_id`` in capture order (:func:`db.kernels.load_ncu`): ``name``, ``short_name``,
    ``category``, ``duration_ns``, ``achieved_occupancy_pct``, ``sm_throughput_pct``, ``dram_throughput_pct``,
    ``flop``, ``dram_bytes``, ``arithmetic_intensity`` (FLOP/byte), ``flop_per_s``, ``grid``, ``block``, ``metrics``."""
    from db.kernels import load_ncu

    return load_ncu(run_id, url)


def run_detail(url: str | None, run_id: int) -> dict[str, Any] | None:
    """One run's columns as a dict plus ``metrics`` (``{name: value}`` of its run-level RunMetric rows) and
    ``metric_units``; None when the run does not exist."""
    with session_scope(url) as s:
        r = s.get(Run, run_id)
        if r is None:
            return None
        d = {c.key: getattr(r, c.key) for c in Run.__table__.columns}
        d["run_id"] = r.id
        d["variant"] = variant_label(r.engine, r.precision, r.label, r.config)
        rms = s.execute(select(RunMetric).where(RunMetric.run_id == run_id, RunMetric.point_id.is_(None))).scalars().all()
        d["metrics"] = {m.name: m.value for m in rms}
        d["metric_units"] = {m.name: m.unit for m in rms}
        return d


def roofline_ceilings(run: Mapping[str, Any]) -> dict[str, Any] | None:
    """The roofline ceilings of an ncu run (a :func:`run_detail` dict): ``{"peak_flop_per_s", "bandwidth_bytes_per_s",
    "ridge_flop_per_byte", "source"}`` from its RunMetric rows :data:`CEILING_FLOPS` / :data:`CEILING_BYTES` and
    ``config["ceilings"]["source"]`` (how they were measured); None unless both are present and > 0."""
    m = run.get("metrics") or {}
    peak, bw = m.get(CEILING_FLOPS), m.get(CEILING_BYTES)
    if not peak or not bw or peak <= 0 or bw <= 0:
        return None
    info = (run.get("config") or {}).get("ceilings") or {}
    return {"peak_flop_per_s": float(peak), "bandwidth_bytes_per_s": float(bw),
            "ridge_flop_per_byte": float(peak) / float(bw),
            "source": info.get("source") or "how these ceilings were measured is not recorded"}


def artifact_path(path: str) -> Any:
    """An artifact's file: ``path`` as stored (relative to ENGINESCOPE_HOME, or absolute for files kept where
    they were made), as an absolute ``pathlib.Path``."""
    from pathlib import Path

    from db.config import home

    p = Path(path)
    return p if p.is_absolute() else home() / p


def run_artifacts(url: str | None, run_id: int) -> list[dict[str, Any]]:
    """Artifacts of ``run_id`` (report kinds of :data:`REPORT_KINDS` first): ``id``, ``kind``, ``path`` (as stored),
    ``file`` (absolute Path, :func:`artifact_path`), ``exists``, ``size_bytes`` (of the file when it exists)."""
    from db.models import Artifact

    with session_scope(url) as s:
        rows = s.execute(select(Artifact).where(Artifact.run_id == run_id).order_by(Artifact.id)).scalars().all()
        arts: list[dict[str, Any]] = [{"id": a.id, "kind": a.kind, "path": a.path, "meta": a.meta or {}, "stored_size": a.size_bytes}
                for a in rows]
    for a in arts:
        f = artifact_path(a["path"])
        a["file"] = f
        a["exists"] = f.is_file()
        a["size_bytes"] = f.stat().st_size if a["exists"] else a["stored_size"]
    arts.sort(key=lambda a: (a["kind"] not in REPORT_KINDS, a["id"]))
    return arts


def trace_iterations(trace: Any) -> list[int]:
    """The measured iterations present in ``trace``'s activities (``iteration`` set), ascending."""
    return sorted({a.iteration for a in trace.activities if a.iteration is not None})


def timeline_window(trace: Any, iterations: tuple[int, int] | None = None, first_ms: float = 10.0,
                    max_bars: int = 5000) -> dict[str, Any]:
    """What the Kernels page's timeline draws: the activities and NVTX ranges of a time window of ``trace``.

    Args:
        trace: a ``profiles.kernels.KernelTrace``.
        iterations: ``(first, last)`` measured iterations (inclusive): the window spans their activities and their
            ``iteration N`` ranges; None: the first ``first_ms`` ms from the first activity.
        first_ms: window length without iterations, ms.
        max_bars: most activities returned (the earliest ones; the rest counted in ``dropped``).

    Returns:
        ``{"start_ns", "end_ns", "activities" (in start order, at most max_bars), "ranges" (overlapping the
        window, each with ``depth``: nesting level on its thread), "total" (activities in the window),
        "dropped", "cut_ns" (start of the first activity not drawn, or None)}``.
    """
    acts = trace.activities
    if not acts:
        return {"start_ns": 0, "end_ns": 0, "activities": [], "ranges": [], "total": 0, "dropped": 0, "cut_ns": None}
    if iterations is not None:
        lo, hi = min(iterations), max(iterations)
        inside = [a for a in acts if a.iteration is not None and lo <= a.iteration <= hi]
        from profiles.kernels import iteration_of

        marks = [r for r in trace.ranges if (it := iteration_of(r.text)) is not None and lo <= it <= hi]
        starts = [a.start_ns for a in inside] + [r.start_ns for r in marks]
        ends = [a.end_ns for a in inside] + [r.end_ns for r in marks]
        if not starts:
            start = min(a.start_ns for a in acts)
            end = start
        else:
            start, end = min(starts), max(ends)
    else:
        start = min(a.start_ns for a in acts)
        end = start + int(first_ms * 1e6)
    window = sorted((a for a in acts if a.end_ns >= start and a.start_ns <= end), key=lambda a: a.start_ns)
    drawn = window[:max_bars]
    cut = window[max_bars].start_ns if len(window) > max_bars else None
    ranges = _range_depths([r for r in trace.ranges if r.end_ns >= start and r.start_ns <= end])
    return {"start_ns": start, "end_ns": end, "activities": drawn, "ranges": ranges, "total": len(window),
            "dropped": len(window) - len(drawn), "cut_ns": cut}


def _range_depths(ranges: Sequence[Any]) -> list[dict[str, Any]]:
    """``[{"text", "start_ns", "end_ns", "thread_id", "domain", "depth"}]``: ranges with their nesting level on their
    thread (0 = outermost), so nested ranges get lanes of their own."""
    out = []
    stacks: dict[Any, list[int]] = {}
    for r in sorted(ranges, key=lambda r: (r.start_ns, -r.end_ns)):
        stack = stacks.setdefault(r.thread_id, [])
        while stack and stack[-1] <= r.start_ns:
            stack.pop()
        out.append({"text": r.text, "start_ns": r.start_ns, "end_ns": r.end_ns, "thread_id": r.thread_id,
                    "domain": r.domain, "depth": len(stack)})
        stack.append(r.end_ns)
    return out


def kernel_diff_rows(a: Any, b: Any, tolerance_pct: float = 2.0) -> list[dict[str, Any]]:
    """Which kernels changed between two traces' summaries (``profiles.kernels.TraceSummary``, all names kept), per
    measured iteration when both have iterations (else per capture): :func:`profiles.kernels.diff_top` rows plus
    ``change``: ``appeared`` (only in B), ``disappeared`` (only in A), ``faster`` / ``slower`` (B vs A beyond
    ``tolerance_pct`` % of A), else ``unchanged``; ``per`` says ``iteration`` or ``capture``."""
    from profiles.kernels import diff_top

    per_iter = bool(a.iterations and b.iterations)
    rows = diff_top(a.top, b.top, per_a=a.iterations if per_iter else 1, per_b=b.iterations if per_iter else 1)
    for r in rows:
        if r["status"] == "only_b":
            r["change"] = "appeared"
        elif r["status"] == "only_a":
            r["change"] = "disappeared"
        elif abs(r["delta_ns"]) <= tolerance_pct / 100.0 * max(r["a_ns"], 1e-9):
            r["change"] = "unchanged"
        else:
            r["change"] = "faster" if r["delta_ns"] < 0 else "slower"
        r["per"] = "iteration" if per_iter else "capture"
    return rows
