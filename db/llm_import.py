"""Import results written by other LLM benchmark tools (vLLM bench, AIPerf, GenAI-Perf, GuideLLM, LLMPerf,
Triton Model Analyzer) as LLM runs, in the tables ``serve-bench`` writes; and :func:`serve_results`, the one
reader of stored LLM results (``serve-bench --json``, ``import --json`` and the dashboard's import page).

Storage of one imported run (:class:`profiles.llm_import.ImportedRun`):
- ``runs``: ``source = "import:<tool>"``, ``engine`` ``openai-endpoint`` (an LLM served over the OpenAI API,
  so it is listed on the LLM serving page) or ``triton`` (Model Analyzer), ``status = "succeeded"``,
  ``config["import"] = {"tool", "tool_version", "file", "format", "content_hash", "metric_names": {ours:
  theirs}, "notes": [...], "meta": {...}}`` and ``config["spec"] = {"model", "concurrency" | "request_rate"}``
  (the levels, for the LLM page's labels).
- ``load_points``: one per level, ``report`` in the keys of :func:`profiles.llm_metrics.point_report`
  (:func:`profiles.llm_import.report.build_report`).
- ``llm_requests``: per-request records where the file has them; ``summaries`` (``point_id`` set; ``source``
  ``computed`` when EngineScope computed it from per-request records, else ``import:<tool>``; percentiles other
  than p50/p90/p95/p99 in ``extra``) and ``run_metrics`` (throughputs, counts, GPU scalars).
- ``artifacts``: the file itself, copied to ``$ENGINESCOPE_HOME/artifacts/imports/<sha256>/``, kind
  ``llm_import``, with its SHA-256: importing the same content again returns the runs already made from it
  (``"existing": true``), as the nsys import does.

Every file of a call is parsed (and its reports built) before anything is written: one bad file leaves the
database unchanged.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from db.config import home as default_home
from db.llm_repeats import level_reports
from db.models import Artifact, LlmRequest, LoadPoint, Run, RunMetric, Summary, utcnow
from db.session import session_scope
from profiles.errors import InputError, ParseError
from profiles.files import sha256_file
from profiles.llm_import import ImportedFile, ImportedRun, parse_file
from profiles.llm_import.report import build_report

ARTIFACT_KIND = "llm_import"
#: scalar report keys stored as run_metrics rows: name -> unit
SCALARS = {
    "request_throughput_per_s": "req/s", "output_token_throughput_per_s": "tok/s",
    "total_token_throughput_per_s": "tok/s", "goodput_per_s": "req/s", "completed": "requests",
    "failed": "requests", "output_tokens_total": "tokens", "input_tokens_total": "tokens",
}
#: summary metrics shown by :func:`serve_results` (each ``{"mean", "p50", "p90", "p99", "count"}``)
POINT_METRICS = ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms", "ttft_first_event_ms")
#: further metrics :func:`serve_results` shows when a point has them (imports: docs/llm.md "Importing other tools' results")
EXTRA_POINT_METRICS = ("itl_chunk_ms", "tpot_incl_ttft_ms", "request_latency_ms", "latency_ms")
#: further scalars :func:`serve_results` shows when a point has them (Model Analyzer)
EXTRA_POINT_SCALARS = ("throughput_per_s", "gpu_mem_used_bytes", "gpu_util_pct", "power_w", "cpu_mem_used_bytes")


@dataclass
class PreparedFile:
    """One file ready to write: ``parsed`` is None when its content was imported before (``existing_run_ids``)
    or earlier in the same call (``duplicate_of``: that file's index)."""

    path: Path
    content_hash: str
    parsed: ImportedFile | None = None
    reports: list[list[dict[str, Any]]] = field(default_factory=list)
    existing_run_ids: list[int] = field(default_factory=list)
    duplicate_of: int | None = None


def _existing_runs(content_hash: str, url: str | None) -> list[int]:
    with session_scope(url) as s:
        q = (select(Artifact.run_id).where(Artifact.content_hash == content_hash, Artifact.kind == ARTIFACT_KIND,
                                           Artifact.run_id.is_not(None)).order_by(Artifact.run_id))
        return [int(r) for r in s.execute(q).scalars() if r is not None]


def prepare_llm(paths: Sequence[Path | str], *, url: str | None = None) -> list[PreparedFile]:
    """Hash and parse every file (nothing written).

    Raises:
        ParseError: a file is unreadable, of no supported tool, or holds a bad value (the message names
            the file and the key/line/column).
    """
    out: list[PreparedFile] = []
    seen: dict[str, int] = {}
    for raw in paths:
        p = Path(raw)
        if not p.is_file():
            raise ParseError(f"{p}: no such file")
        try:
            digest = sha256_file(p)
        except OSError as exc:
            raise ParseError(f"{p}: cannot read ({exc.strerror})") from None
        prep = PreparedFile(path=p, content_hash=digest)
        if digest in seen:
            prep.duplicate_of = seen[digest]
        else:
            prep.existing_run_ids = _existing_runs(digest, url)
            if not prep.existing_run_ids:
                prep.parsed = parse_file(p)
                try:
                    prep.reports = [[build_report(pt) for pt in run.points] for run in prep.parsed.runs]
                except ParseError:
                    raise
                except InputError as exc:  # an inconsistent per-request record (profiles.llm_metrics)
                    raise ParseError(f"{p}: {exc}") from None
            seen[digest] = len(out)
        out.append(prep)
    return out


def _levels(run: ImportedRun) -> dict[str, Any]:
    conc = [p.level for p in run.points if p.mode == "concurrency" and p.level is not None]
    rates = [("inf" if p.level is None else p.level) for p in run.points if p.mode == "request_rate"]

    def fmt(v: Any) -> Any:
        return int(v) if isinstance(v, float) and v.is_integer() else v

    if conc:
        return {"concurrency": [fmt(v) for v in conc]}
    if rates:
        return {"request_rate": [fmt(v) for v in rates]}
    return {}


def _write_run(prep: PreparedFile, run: ImportedRun, reports: list[dict[str, Any]], artifact_rel: str,
               url: str | None) -> int:
    assert prep.parsed is not None
    src = f"import:{run.tool}"
    with session_scope(url) as s:
        r = Run(engine=run.engine, engine_version=None, batch_size=run.batch_size, status="succeeded", source=src,
                label=run.label, finished_at=utcnow(),
                timing_window=f"as {run.tool} measured it, client-side (see config.import.notes)",
                config={"import": {"tool": run.tool, "tool_version": run.tool_version, "file": str(prep.path),
                                   "format": prep.parsed.format, "content_hash": prep.content_hash,
                                   "metric_names": dict(run.metric_names), "notes": list(run.notes),
                                   "meta": dict(run.meta)},
                        "spec": {"model": run.model, **_levels(run)}})
        s.add(r)
        s.flush()
        run_id = int(r.id)
        s.add(Artifact(run_id=run_id, kind=ARTIFACT_KIND, path=artifact_rel, content_hash=prep.content_hash,
                       size_bytes=prep.path.stat().st_size,
                       meta={"tool": run.tool, "format": prep.parsed.format, "original_name": prep.path.name}))
        for idx, (pt, rep) in enumerate(zip(run.points, reports)):
            lp = LoadPoint(run_id=run_id, idx=idx, mode=pt.mode, level=pt.level, t0_ns=0,
                           duration_s=rep.get("duration_s"), completed=int(rep.get("completed") or 0),
                           failed=int(rep.get("failed") or 0), status="succeeded", report=rep)
            s.add(lp)
            s.flush()
            pid = int(lp.id)
            if pt.requests:
                s.execute(insert(LlmRequest), [{"point_id": pid, **rec.as_dict()} for rec in pt.requests])
            for name, d in rep.items():
                if not isinstance(d, dict) or "p50" not in d or "unit" not in d:
                    continue
                if not d.get("count") and all(d.get(k) is None for k in ("mean", "p50", "p90", "p99")):
                    continue
                s.add(Summary(run_id=run_id, point_id=pid, metric=name, unit=d["unit"], count=int(d.get("count") or 0),
                              mean=d.get("mean"), std=d.get("std"), min=d.get("min"), max=d.get("max"),
                              p50=d.get("p50"), p90=d.get("p90"), p95=d.get("p95"), p99=d.get("p99"),
                              median_ci_low=d.get("median_ci_low"), median_ci_high=d.get("median_ci_high"),
                              extra=dict(d.get("extra") or {}) | {"source_unit": d.get("source_unit")},
                              source="computed" if d.get("source") == "computed" else src))
            names = dict(SCALARS) | {k: u for k, (_v, u) in pt.scalars.items()}
            for name, unit in names.items():
                v = rep.get(name)
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)):
                    s.add(RunMetric(run_id=run_id, point_id=pid, name=name, value=float(v), unit=unit))
        return run_id


def write_llm(prepared: Sequence[PreparedFile], *, url: str | None = None, home: Path | None = None) -> list[dict[str, Any]]:
    """Write the prepared files; one ``{"run_id", "existing", "file", "tool"}`` per run, in file order (the
    runs an earlier import or an earlier file of this call made for the same content, marked existing)."""
    root = Path(home) if home is not None else default_home()
    out: list[dict[str, Any]] = []
    made: dict[int, list[tuple[int, str]]] = {}
    for i, prep in enumerate(prepared):
        if prep.duplicate_of is not None:
            out += [{"run_id": rid, "existing": True, "file": str(prep.path), "tool": tool}
                    for rid, tool in made.get(prep.duplicate_of, [])]
            continue
        if prep.existing_run_ids:
            with session_scope(url) as s:
                tools = {int(r.id): (r.source or "").removeprefix("import:")
                         for r in s.execute(select(Run).where(Run.id.in_(prep.existing_run_ids))).scalars()}
            made[i] = [(rid, tools.get(rid, "")) for rid in prep.existing_run_ids]
            out += [{"run_id": rid, "existing": True, "file": str(prep.path), "tool": tool} for rid, tool in made[i]]
            continue
        assert prep.parsed is not None
        dest = root / "artifacts" / "imports" / prep.content_hash
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / prep.path.name
        if not target.exists():
            shutil.copyfile(prep.path, target)
        rel = str(target.relative_to(root))
        made[i] = []
        for run, reports in zip(prep.parsed.runs, prep.reports):
            rid = _write_run(prep, run, reports, rel, url)
            made[i].append((rid, run.tool))
            out.append({"run_id": rid, "existing": False, "file": str(prep.path), "tool": run.tool})
    return out


def import_llm(paths: Sequence[Path | str], *, url: str | None = None, home: Path | None = None) -> list[dict[str, Any]]:
    """Parse every file, then write them; return :func:`serve_results` entries of the runs (with ``existing``
    and ``file``).

    Raises:
        ParseError: any file is bad (nothing is written then).
    """
    written = write_llm(prepare_llm(paths, url=url), url=url, home=home)
    return with_results(written, url=url)


def with_results(written: Sequence[dict[str, Any]], *, url: str | None = None) -> list[dict[str, Any]]:
    """:func:`serve_results` entries for the runs of :func:`write_llm`, each with its ``existing`` and ``file``."""
    docs = {d["run_id"]: d for d in serve_results([w["run_id"] for w in written], url=url)}
    return [docs[w["run_id"]] | {"existing": w["existing"], "file": w["file"]} for w in written if w["run_id"] in docs]


def _stat(d: dict[str, Any] | None, imported: bool) -> dict[str, Any] | None:
    if imported and not d:
        return None
    d = d or {}
    return {k: d.get(k) for k in ("mean", "p50", "p90", "p99")} | {"count": d.get("count", 0)}


def serve_results(run_ids: Sequence[int], *, url: str | None = None) -> list[dict[str, Any]]:
    """The ``runs[]`` entries of ``serve-bench --json`` / ``import --json`` for LLM runs, measured or imported:
    ``{"run_id", "engine", "engine_version", "model", "status", "error", "source", "source_tool",
    "tool_version", "label", "kv_cache", "kv_cache_sizing", "vllm_python", "startup_report", "device_dirty",
    "server_log", "import" (the run's ``config["import"]``, imports only), "points": [...]}``.

    Each point: ``concurrency`` or ``request_rate`` (``"inf"`` for an infinite rate; ``null`` when an imported
    file does not say its level), ``completed``, ``failed`` (``null`` when an imported file does not count them), ``failures_by_reason``, ``duration_s``,
    ``request_throughput_per_s``, ``output_token_throughput_per_s``, ``total_token_throughput_per_s``,
    ``goodput_per_s``, ``ttft_ms``/``tpot_ms``/``itl_ms``/``e2e_ms``/``ttft_first_event_ms`` as ``{"mean", "p50",
    "p90", "p99", "count"}`` (for an imported run ``null`` when the file has no such metric, and ``null`` inside
    for a statistic it lacks), ``empty_first_token_requests``, ``server``, ``client_cpu_s_per_s``,
    ``client_health``, ``peers`` when present, and for imports any of :data:`EXTRA_POINT_METRICS` /
    :data:`EXTRA_POINT_SCALARS` the point has.

    A run measured with ``--repeats N`` still has one point per level: its repeats pooled
    (:func:`db.llm_repeats.pooled_report`; counts, duration, throughputs and percentiles over every repeat's
    requests), with ``repeats``: ``{"count", "per_repeat": [...]}``; its ``peers`` ran after the last repeat
    (``after_repeat``). The run then has ``repeats``: ``{"count", "order": [[level, repeat], ...], ...}``.
    """
    ids = [int(r) for r in run_ids]
    if not ids:
        return []
    with session_scope(url) as s:
        runs = {int(r.id): r for r in s.execute(select(Run).where(Run.id.in_(ids))).scalars()}
        out = []
        for rid in ids:
            r = runs.get(rid)
            if r is None:
                continue
            imported = (r.source or "").startswith("import:")
            pts = s.execute(select(LoadPoint).where(LoadPoint.run_id == r.id).order_by(LoadPoint.idx)).scalars().all()
            points = []
            # one point per level: a level measured with --repeats has its repeats pooled (db.llm_repeats)
            for p, rep, group in level_reports(s, r.config, pts):
                key = "concurrency" if p.mode == "concurrency" else "request_rate"
                lvl: Any
                if p.level is None:
                    lvl = None if p.mode == "concurrency" else "inf"
                else:
                    lvl = int(p.level) if p.mode == "concurrency" and float(p.level).is_integer() else p.level
                pooled = len(group) > 1 or bool(rep.get("repeats"))
                # an imported file that does not count its requests (Model Analyzer) gives null, not 0
                from_rep = pooled or imported
                pt: dict[str, Any] = {
                    key: lvl, "completed": rep.get("completed", None if imported else 0) if from_rep else p.completed,
                    "failed": rep.get("failed", None if imported else 0) if from_rep else p.failed,
                    "failures_by_reason": rep.get("failures_by_reason"),
                    "duration_s": rep.get("duration_s") if pooled else p.duration_s,
                    "request_throughput_per_s": rep.get("request_throughput_per_s"),
                    "output_token_throughput_per_s": rep.get("output_token_throughput_per_s"),
                    "total_token_throughput_per_s": rep.get("total_token_throughput_per_s"),
                    "goodput_per_s": rep.get("goodput_per_s"),
                    **{m: _stat(rep.get(m), imported) for m in POINT_METRICS},
                    "empty_first_token_requests": rep.get("empty_first_token_requests"),
                    "server": rep.get("server"), "client_cpu_s_per_s": rep.get("client_cpu_s_per_s"),
                    "client_health": rep.get("client_health"),
                    **({"peers": rep["peers"]} if rep.get("peers") else {}),
                    **({"repeats": rep["repeats"]} if pooled and rep.get("repeats") else {}),
                }
                if imported:
                    pt.update({m: _stat(rep[m], True) for m in EXTRA_POINT_METRICS if rep.get(m)})
                    pt.update({k: rep[k] for k in EXTRA_POINT_SCALARS if rep.get(k) is not None})
                points.append(pt)
            cfg = r.config or {}
            imp = cfg.get("import") if imported else None
            out.append({
                "run_id": r.id, "engine": r.engine, "engine_version": r.engine_version,
                "model": (cfg.get("spec") or {}).get("model"), "status": r.status, "error": r.error,
                "source": r.source, "source_tool": (imp or {}).get("tool") if imported else None,
                "tool_version": (imp or {}).get("tool_version") if imported else None, "label": r.label,
                "kv_cache": cfg.get("kv_cache"), "kv_cache_sizing": cfg.get("kv_cache_sizing"),
                "vllm_python": (r.environment or {}).get("vllm_python"), "startup_report": cfg.get("startup_report"),
                "device_dirty": cfg.get("device_dirty"), "server_log": cfg.get("server_log"),
                **({"import": imp} if imported else {}),
                **({"repeats": {k: v for k, v in cfg["repeats"].items() if k != "pooled"}}
                   if isinstance(cfg.get("repeats"), dict) else {}),
                "points": points,
            })
        return out
