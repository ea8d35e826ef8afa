"""Stored runs compared: fingerprints, samples grouped by repeat, and verdicts (shared by the CLI's
``compare`` and ``report``, the Compare page and the Reports page).

:func:`compare_runs` reads both runs' raw samples grouped by ``repeat`` (``latency_samples`` for model runs;
per-request TTFT/TPOT/E2E from ``llm_requests`` of the load points at one level for LLM runs, computed by
:func:`profiles.llm_metrics.request_metrics`), their fingerprints (:func:`fingerprint`) and the candidate's
accuracy, and hands them to :func:`profiles.verdict.judge`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import AccuracyResult, LatencySample, LlmRequest, LoadPoint, Model, Run
from db.session import session_scope
from profiles.errors import InputError
from profiles.llm_metrics import RequestRecord, request_metrics
from profiles.verdict import Verdict, compare_fingerprints, judge, metric_def

#: ``runs.config`` keys that are engine options (they change what is measured, not how it is reported).
ENGINE_OPTION_KEYS: tuple[str, ...] = (
    "providers", "intra_op_threads", "inter_op_threads", "execution_mode", "graph_optimization_level",
    "io_binding", "cuda_graph", "provider_options", "compile", "compile_mode", "channels_last", "tf32",
    "builder_optimization_level", "workspace_bytes", "sparsity", "builder_flags",
)

#: ``spec`` keys of an LLM run that are server options.
LLM_OPTION_KEYS: tuple[str, ...] = (
    "dtype", "quantization", "kv_cache_dtype", "max_num_seqs", "max_model_len", "enable_prefix_caching",
    "tensor_parallel_size", "gpu_memory_utilization", "kv_cache_memory_bytes", "load_format", "vllm_args",
    "api", "input_len", "output_len", "dataset",
)


def _gpu_fields(env: dict[str, Any], device: str, cfg: dict[str, Any]) -> dict[str, Any]:
    if device == "cpu":
        return {}
    gpus = env.get("gpus") or []
    idx = 0
    if isinstance(device, str) and ":" in device:
        try:
            idx = int(device.split(":", 1)[1])
        except ValueError:
            idx = 0
    g = next((x for x in gpus if x.get("index") == idx), gpus[0] if gpus else {})
    tw = cfg.get("telemetry_window") or {}
    clocks = g.get("clocks") or {}
    sm_clock = tw.get("sm_clock_mhz_mean") if isinstance(tw, dict) else None
    return {
        "gpu.model": g.get("name"),
        "gpu.count": len(gpus) or None,
        "gpu.driver": env.get("driver"),
        "gpu.cuda_driver": env.get("cuda_driver"),
        "gpu.power_limit_w": g.get("power_limit_w"),
        "gpu.clocks": (f"applications SM {clocks.get('applications_sm_mhz')} MHz, mem {clocks.get('applications_mem_mhz')} MHz"
                       if clocks else None),
        "gpu.sm_clock_mean_mhz": round(float(sm_clock)) if isinstance(sm_clock, (int, float)) else None,
    }


def opt_ins(run: Run) -> list[str]:
    """The explicit opt-ins that let code from the model's own files run, as recorded on the run:
    ``trust_remote_code`` (an LLM run's spec: vLLM imports the repository's Python code) and ``allow_pickle``
    (a PyTorch run's ``torch_options``, or an LLM/export spec: unpickling runs code). Sorted; ``[]`` for none."""
    cfg = run.config or {}
    spec: dict[str, Any] = cfg["spec"] if isinstance(cfg.get("spec"), dict) else {}
    torch_opts: dict[str, Any] = cfg["torch_options"] if isinstance(cfg.get("torch_options"), dict) else {}
    out = {k for k in ("trust_remote_code", "allow_pickle") if spec.get(k) is True or torch_opts.get(k) is True}
    return sorted(out)


def fingerprint(run: Run, model: Model | None) -> dict[str, Any]:
    """Flat environment fingerprint of a stored run: ``{"host", "device", "gpu.model", "gpu.count",
    "gpu.driver", "gpu.cuda_driver", "gpu.power_limit_w", "gpu.clocks", "gpu.sm_clock_mean_mhz",
    "cpu.model", "cpu.load" (1-minute load average per logical core when the run started),
    "libraries.<name>", "engine", "engine_version", "precision", "batch", "shapes", "model.hash",
    "engine_options", "profiled", "opt_ins"}`` (``None`` where not known; GPU fields absent for CPU runs;
    ``opt_ins`` from :func:`opt_ins`, comma-joined, or ``None``).

    ``model.hash`` is the ONNX/native model's content hash, or for LLM runs the served model's name.
    Values are JSON-safe scalars (dicts/lists are JSON-encoded with sorted keys, so they compare).
    """
    env = run.environment or {}
    cfg = run.config or {}
    spec: dict[str, Any] = cfg["spec"] if isinstance(cfg.get("spec"), dict) else {}
    device = str(cfg.get("device") or spec.get("device") or ("cuda:0" if run.engine in ("vllm", "tensorrt") and env.get("gpus")
                                                               else "cpu"))
    cpu = env.get("cpu") or {}
    load = env.get("load_avg_1m")
    cores = cpu.get("cores_logical")
    out: dict[str, Any] = {
        "host": env.get("host"),
        "device": device,
        **_gpu_fields(env, device, cfg),
        "cpu.model": cpu.get("model"),
        "cpu.load": round(float(load) / float(cores), 2) if isinstance(load, (int, float)) and cores else None,
        "engine": run.engine,
        "engine_version": run.engine_version,
        "precision": run.precision,
        "batch": run.batch_size,
        "shapes": json.dumps(run.shapes or {}, sort_keys=True),
        "model.hash": (model.content_hash if model is not None else (spec.get("model") if spec else None)),
        "profiled": bool(cfg.get("profiler")),
        "opt_ins": ", ".join(opt_ins(run)) or None,
    }
    opts = {k: cfg[k] for k in ENGINE_OPTION_KEYS if k in cfg}
    if spec and run.engine == "vllm":
        opts.update({k: spec.get(k) for k in LLM_OPTION_KEYS if k in spec})
    out["engine_options"] = json.dumps(opts, sort_keys=True, default=str)
    for k, v in (env.get("libraries") or {}).items():
        out[f"libraries.{k}"] = v
    return out


def _load(s: Session, run_id: int, flag: str) -> tuple[Run, Model | None]:
    run = s.get(Run, int(run_id))
    if run is None:
        raise InputError(f"{flag}: run {run_id} does not exist (bench --json and serve-bench --json print run ids)")
    return run, (s.get(Model, run.model_id) if run.model_id is not None else None)


def latency_by_repeat(s: Session, run_id: int) -> list[np.ndarray]:
    """The run's latency samples in ms grouped by repeat index (list position = repeat, float64 [n_r])."""
    res = s.connection().execute(select(LatencySample.repeat, LatencySample.latency_ns)
                                 .where(LatencySample.run_id == run_id).order_by(LatencySample.seq))
    flat = np.fromiter((v for row in res for v in row), dtype=np.int64)
    if not flat.size:
        return []
    arr = flat.reshape(-1, 2)
    reps = np.unique(arr[:, 0])
    return [arr[arr[:, 0] == r, 1].astype(np.float64) / 1e6 for r in reps]


def _level_key(p: LoadPoint) -> str:
    return f"{p.mode}={'inf' if p.level is None else f'{p.level:g}'}"


def llm_levels(s: Session, run_id: int) -> list[str]:
    """The run's load levels as ``"concurrency=16"`` / ``"request_rate=4"`` / ``"request_rate=inf"``, in order."""
    pts = s.execute(select(LoadPoint).where(LoadPoint.run_id == run_id).order_by(LoadPoint.idx)).scalars()
    seen: list[str] = []
    for p in pts:
        if _level_key(p) not in seen:
            seen.append(_level_key(p))
    return seen


def llm_by_repeat(s: Session, run_id: int, level: str, series: str) -> list[np.ndarray]:
    """Per-request ``series`` (``ttft``/``tpot``/``e2e``, ms) of the successful, non-warm-up requests at
    ``level``, grouped by the load point's repeat. Requests with undefined TPOT (one token) are left out
    of ``tpot``."""
    pts = [p for p in s.execute(select(LoadPoint).where(LoadPoint.run_id == run_id).order_by(LoadPoint.idx)).scalars()
           if _level_key(p) == level]
    groups: dict[int, list[float]] = {}
    for p in pts:
        vals = groups.setdefault(int(p.repeat or 0), [])
        for r in s.execute(select(LlmRequest).where(LlmRequest.point_id == p.id, LlmRequest.warmup.is_(False),
                                                   LlmRequest.error_reason.is_(None))).scalars():
            rec = RequestRecord.from_attrs(r)
            m = request_metrics(rec)
            v = {"ttft": m.ttft_ms, "tpot": m.tpot_ms, "e2e": m.e2e_ms}[series]
            if v is not None:
                vals.append(float(v))
    return [np.asarray(groups[k], np.float64) for k in sorted(groups)]


def accuracy_of(s: Session, run: Run) -> dict[str, Any] | None:
    """``{"valid", "cosine_min", "max_abs_err", "reference_run_id"}`` from the run's accuracy rows (worst
    over outputs); ``None`` when it has none and ``numerically_valid`` is unknown."""
    rows = list(s.execute(select(AccuracyResult).where(AccuracyResult.run_id == run.id)).scalars())
    if not rows and run.numerically_valid is None:
        return None
    cos = [r.cosine for r in rows if r.cosine is not None]
    err = [r.max_abs_err for r in rows if r.max_abs_err is not None]
    valid = not (run.numerically_valid is False or any(r.valid is False for r in rows))
    return {"valid": valid, "cosine_min": min(cos) if cos else None, "max_abs_err": max(err) if err else None,
            "reference_run_id": next((r.reference_run_id for r in rows if r.reference_run_id), None)}


def compare_runs(baseline_id: int, candidate_id: int, metric: str | None = None, *, url: str | None = None,
                 level: str | None = None, allow_different: bool = False, n_boot: int | None = None,
                 session: Session | None = None) -> Verdict:
    """Verdict of run ``candidate_id`` against run ``baseline_id`` on ``metric`` (default ``latency_p50``
    for model runs, ``ttft_p99`` for LLM runs).

    Args:
        level: LLM load level (``"concurrency=16"``, or just ``"16"``); needed when the runs share more than one.
        allow_different: compare although hardware or model differ ("that is the point").

    Raises:
        InputError: a run does not exist (named as BASELINE_RUN / CANDIDATE_RUN), the metric does not fit the
            runs (an LLM metric on a model run or the reverse), or the level is missing/ambiguous/absent.
    """
    if session is None:
        with session_scope(url) as s:
            return compare_runs(baseline_id, candidate_id, metric, level=level, allow_different=allow_different,
                                n_boot=n_boot, session=s)
    s = session
    base, bmodel = _load(s, baseline_id, "BASELINE_RUN")
    cand, cmodel = _load(s, candidate_id, "CANDIDATE_RUN")
    llm = base.engine == "vllm" or bool(s.execute(select(LoadPoint.id).where(LoadPoint.run_id == base.id)).first())
    llm_c = cand.engine == "vllm" or bool(s.execute(select(LoadPoint.id).where(LoadPoint.run_id == cand.id)).first())
    if llm != llm_c:
        raise InputError(f"run {baseline_id} is {'an LLM serving' if llm else 'a model'} run and run {candidate_id} "
                         f"is {'an LLM serving' if llm_c else 'a model'} run: they cannot be compared")
    m = metric_def(metric or ("ttft_p99" if llm else "latency_p50"))
    if m.llm != llm:
        raise InputError(f"--metric {m.key} is for {'LLM serving' if m.llm else 'model'} runs; runs {baseline_id} "
                         f"and {candidate_id} are {'LLM serving' if llm else 'model'} runs")
    diffs = compare_fingerprints(fingerprint(base, bmodel), fingerprint(cand, cmodel))
    acc = accuracy_of(s, cand)
    bacc = accuracy_of(s, base)
    if acc is not None:
        acc["baseline_valid"] = bacc["valid"] if bacc else None
    kw: dict[str, Any] = {} if n_boot is None else {"n_boot": n_boot}
    if llm:
        common = [x for x in llm_levels(s, base.id) if x in llm_levels(s, cand.id)]
        if level is not None:
            want = level if "=" in level else None
            matches = [x for x in common if x == want or (want is None and x.split("=", 1)[1] == level)]
            if not matches:
                raise InputError(f"--level {level!r}: the runs share the levels {', '.join(common) or 'none'}")
            lv = matches[0]
        elif len(common) == 1:
            lv = common[0]
        elif not common:
            raise InputError(f"runs {baseline_id} and {candidate_id} share no load level (run {baseline_id}: "
                             f"{', '.join(llm_levels(s, base.id)) or 'none'}; run {candidate_id}: "
                             f"{', '.join(llm_levels(s, cand.id)) or 'none'})")
        else:
            raise InputError(f"--level is needed: runs {baseline_id} and {candidate_id} share the levels "
                             f"{', '.join(common) or 'none'}")
        series = m.series
        return judge(m.key, base.id, cand.id, llm_by_repeat(s, base.id, lv, series), llm_by_repeat(s, cand.id, lv, series),
                     differences=diffs, allow_blocking=allow_different, accuracy=acc, level=lv, **kw)
    return judge(m.key, base.id, cand.id, latency_by_repeat(s, base.id), latency_by_repeat(s, cand.id),
                 batch_baseline=base.batch_size or 1, batch_candidate=cand.batch_size or 1,
                 differences=diffs, allow_blocking=allow_different, accuracy=acc, **kw)


def verdict_table(run_ids: Sequence[int], baseline_id: int, metric: str | None = None, *, url: str | None = None,
                  allow_different: bool = False, n_boot: int | None = None) -> list[Verdict]:
    """One :class:`Verdict` per run of ``run_ids`` other than the baseline, in the given order; for LLM runs
    one per load level the two share.

    Raises:
        InputError: as :func:`compare_runs`.
    """
    out: list[Verdict] = []
    with session_scope(url) as s:
        base = s.get(Run, int(baseline_id))
        for rid in run_ids:
            if int(rid) == int(baseline_id):
                continue
            cand = s.get(Run, int(rid))
            # LLM runs: vLLM's, and any run with load points (an endpoint's or imported results), as compare_runs
            if base is not None and cand is not None and (base.engine == "vllm" or cand.engine == "vllm"
                                                          or llm_levels(s, base.id) or llm_levels(s, cand.id)):
                common: list[str | None] = [x for x in llm_levels(s, base.id) if x in llm_levels(s, cand.id)]
                for lv in common or [None]:
                    out.append(compare_runs(baseline_id, rid, metric, level=lv, allow_different=allow_different,
                                            n_boot=n_boot, session=s) if lv else
                               compare_runs(baseline_id, rid, metric, allow_different=allow_different,
                                            n_boot=n_boot, session=s))
            else:
                out.append(compare_runs(baseline_id, rid, metric, allow_different=allow_different, n_boot=n_boot,
                                        session=s))
    return out
