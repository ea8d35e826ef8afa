"""Saved reports (table ``reports``): create, read, search, delete, and the verdict rows a report shows.

One module for the Reports page, the Compare page's "Save as report" form and ``enginescope report``.

A report is a set of stored runs judged against one of them (the baseline) on one metric
(:data:`profiles.verdict.METRICS`), with a title, an author, notes and the chosen charts/tables
(:data:`CHARTS`). Its verdicts are not stored: they are recomputed from the runs' raw samples by
:func:`db.verdicts.verdict_table` (deterministic: fixed bootstrap seed), so a report always shows what
the stored samples say. ``options``: ``{"allow_different": bool}`` (compare runs on different hardware or
of different models instead of calling them "not comparable").

Search (:func:`list_reports`) filters by model name, engine, precision, creation date range and author.
``run_ids`` is a JSON list, so the filters on runs are applied in Python over the reports' runs (read in
one query); reports are few (team leads' saved views), not millions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import select

from db.models import LatencySample, LoadPoint, Model, Report, Run, utcnow
from db.session import session_scope
from profiles.errors import InputError
from profiles.verdict import FASTER, METRICS, Verdict, metric_def

#: Engines whose runs are LLM serving runs (as ``dashboard.llm_data.LLM_ENGINES``).
LLM_ENGINES: tuple[str, ...] = ("vllm", "openai-endpoint")

#: The charts and tables a report can show: name -> (title, kind of runs it is for: "model" | "llm").
#: The verdict table and the comparability list are always shown, first.
CHARTS: dict[str, tuple[str, str]] = {
    "latency_p50": ("Latency p50 with 95% CI (bars)", "model"),
    "latency_distribution": ("Latency distribution (raw samples)", "model"),
    "throughput": ("Throughput (items/s)", "model"),
    "accuracy": ("Accuracy vs reference (table)", "model"),
    "ttft_vs_load": ("TTFT p50 / p99 vs load", "llm"),
    "tpot_vs_load": ("TPOT p50 / p99 vs load", "llm"),
    "llm_throughput": ("Output token throughput vs load", "llm"),
}

TITLE_MAX = 512

#: Where the dashboard is reached, for the links printed by ``enginescope report`` and shown on the Reports page.
DASHBOARD_URL_ENV = "ENGINESCOPE_DASHBOARD_URL"
DEFAULT_DASHBOARD_URL = "http://localhost:8501"


def report_url(report_id: int, base: str | None = None) -> str:
    """The stable address of a report on the dashboard's Reports page:
    ``${ENGINESCOPE_DASHBOARD_URL:-http://localhost:8501}/reports?report=ID``."""
    import os

    root = (base or os.environ.get(DASHBOARD_URL_ENV) or DEFAULT_DASHBOARD_URL).rstrip("/")
    return f"{root}/reports?report={int(report_id)}"
AUTHOR_MAX = 256


def charts_for(kind: str) -> list[str]:
    """Every chart name of :data:`CHARTS` for runs of ``kind`` ("model" or "llm"), in display order."""
    return [k for k, (_, kd) in CHARTS.items() if kd == kind]


def _is_llm(s: Any, run: Run) -> bool:
    return run.engine in LLM_ENGINES or bool(s.execute(select(LoadPoint.id).where(LoadPoint.run_id == run.id)).first())


def runs_kind(run_ids: Sequence[int], url: str | None = None) -> str:
    """"model" or "llm" for a set of existing runs (as :func:`create_report` checks them)."""
    with session_scope(url) as s:
        runs = [s.get(Run, int(r)) for r in run_ids]
        return "llm" if any(r is not None and _is_llm(s, r) for r in runs) else "model"


def create_report(run_ids: Sequence[int], baseline_id: int, title: str, *, author: str | None = None,
                  notes: str | None = None, metric: str | None = None, charts: Sequence[str] | None = None,
                  allow_different: bool = False, url: str | None = None) -> int:
    """Save a report and return its id.

    Args:
        run_ids: the runs shown, in display order (duplicates dropped); the baseline must be among them.
        metric: :data:`profiles.verdict.METRICS` key; default ``latency_p50`` (model runs) or
            ``ttft_p99`` (LLM runs).
        charts: names of :data:`CHARTS`; default every chart for the runs' kind. ``[]`` = none.

    Raises:
        InputError: no runs or an unknown run (``--run``), a baseline not among them (``--baseline``), an empty
            or too long title (``--title``) or author (``--author``), model and LLM runs mixed (``--run``), an
            unknown metric or one for the other kind of runs (``--metric``), an unknown chart or one for the
            other kind (``--chart``).
    """
    ids: list[int] = []
    for r in run_ids:
        if int(r) not in ids:
            ids.append(int(r))
    if not ids:
        raise InputError("--run: give at least one run (bench --json and serve-bench --json print run ids)")
    title = (title or "").strip()
    if not title:
        raise InputError("--title: a report needs a title")
    if len(title) > TITLE_MAX:
        raise InputError(f"--title: at most {TITLE_MAX} characters (got {len(title)})")
    author = (author or "").strip() or None
    if author is not None and len(author) > AUTHOR_MAX:
        raise InputError(f"--author: at most {AUTHOR_MAX} characters (got {len(author)})")
    if int(baseline_id) not in ids:
        raise InputError(f"--baseline: run {baseline_id} is not among the --run runs ({', '.join(map(str, ids))})")
    with session_scope(url) as s:
        kinds: dict[int, str] = {}
        for rid in ids:
            run = s.get(Run, rid)
            if run is None:
                raise InputError(f"--run: run {rid} does not exist (bench --json and serve-bench --json print run ids)")
            kinds[rid] = "llm" if _is_llm(s, run) else "model"
        if len(set(kinds.values())) > 1:
            llm = [r for r, k in kinds.items() if k == "llm"]
            raise InputError(f"--run: runs {', '.join(map(str, llm))} are LLM serving runs and the others model runs: "
                             "one report compares one kind")
        kind = next(iter(kinds.values()))
        m = metric_def(metric or ("ttft_p99" if kind == "llm" else "latency_p50"))
        if m.llm != (kind == "llm"):
            raise InputError(f"--metric {m.key} is for {'LLM serving' if m.llm else 'model'} runs; these are "
                             f"{'LLM serving' if kind == 'llm' else 'model'} runs "
                             f"(use one of {', '.join(k for k, d in METRICS.items() if d.llm == (kind == 'llm'))})")
        chosen = charts_for(kind) if charts is None else list(dict.fromkeys(charts))
        for c in chosen:
            if c not in CHARTS:
                raise InputError(f"--chart {c!r} is not one of {', '.join(CHARTS)}")
            if CHARTS[c][1] != kind:
                raise InputError(f"--chart {c} is for {CHARTS[c][1]} runs; these are {kind} runs "
                                 f"(use one of {', '.join(charts_for(kind))})")
        rep = Report(title=title, author=author, notes=(notes or "").strip() or None, baseline_run_id=int(baseline_id),
                     run_ids=ids, metric=m.key, charts=chosen, options={"allow_different": bool(allow_different),
                                                                          "kind": kind})
        s.add(rep)
        s.flush()
        return int(rep.id)


def _run_facts(s: Any, run_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    ids = sorted({int(i) for i in run_ids})
    if not ids:
        return {}
    rows = s.execute(select(Run, Model.original_name).outerjoin(Model, Model.id == Run.model_id)
                     .where(Run.id.in_(ids))).all()
    out: dict[int, dict[str, Any]] = {}
    for run, model_name in rows:
        spec = (run.config or {}).get("spec") or {}
        name = model_name or (spec.get("model") if isinstance(spec, dict) else None) or run.label
        out[int(run.id)] = {"engine": run.engine, "precision": run.precision, "model": name,
                            "batch_size": run.batch_size}
    return out


def report_dict(rep: Report, facts: Mapping[int, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """A ``reports`` row as a plain dict (all columns) plus ``models``, ``engines``, ``precisions`` (sorted
    distinct values over its runs that still exist) and ``missing_runs`` (run ids deleted since)."""
    d = {c.key: getattr(rep, c.key) for c in Report.__table__.columns}
    d["run_ids"] = [int(i) for i in (rep.run_ids or [])]
    d["charts"] = list(rep.charts or [])
    d["options"] = dict(rep.options or {})
    f = facts or {}
    present = [f[i] for i in d["run_ids"] if i in f]
    d["models"] = sorted({str(x["model"]) for x in present if x.get("model")})
    d["engines"] = sorted({str(x["engine"]) for x in present if x.get("engine")})
    d["precisions"] = sorted({str(x["precision"]) for x in present if x.get("precision")})
    d["missing_runs"] = [i for i in d["run_ids"] if facts is not None and i not in f]
    return d


def get_report(report_id: int, url: str | None = None) -> dict[str, Any] | None:
    """One report as :func:`report_dict`, or None when it does not exist."""
    with session_scope(url) as s:
        rep = s.get(Report, int(report_id))
        if rep is None:
            return None
        return report_dict(rep, _run_facts(s, rep.run_ids or []))


def _as_utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)


def _day_start(d: dt.date | dt.datetime) -> dt.datetime:
    if isinstance(d, dt.datetime):
        return _as_utc(d)  # type: ignore[return-value]
    return dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc)


def list_reports(url: str | None = None, *, model: str | None = None, engine: str | None = None,
                 precision: str | None = None, since: dt.date | dt.datetime | None = None,
                 until: dt.date | dt.datetime | None = None, author: str | None = None,
                 text: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
    """Saved reports, newest first, as :func:`report_dict`; every filter given must match (AND).

    Args:
        model: case-insensitive substring of the name of a model of one of its runs (the stored model's
            file name, or the served model of an LLM run).
        engine, precision: equal (case-insensitive) to one of its runs' engine / precision.
        since, until: creation date range, inclusive; a ``date`` means that whole UTC day.
        author: case-insensitive substring of the author.
        text: case-insensitive substring of the title or the notes.
    """
    lo = _day_start(since) if since is not None else None
    hi: dt.datetime | None = None
    if until is not None:
        hi = _as_utc(until) if isinstance(until, dt.datetime) else _day_start(until) + dt.timedelta(days=1)
    with session_scope(url) as s:
        reps = list(s.execute(select(Report).order_by(Report.created_at.desc(), Report.id.desc())).scalars())
        facts = _run_facts(s, [i for r in reps for i in (r.run_ids or [])])
        out: list[dict[str, Any]] = []
        for rep in reps:
            created = _as_utc(rep.created_at)
            if lo is not None and (created is None or created < lo):
                continue
            if hi is not None and (created is None or (created >= hi if not isinstance(until, dt.datetime) else created > hi)):
                continue
            if author and author.strip().lower() not in (rep.author or "").lower():
                continue
            if text and text.strip().lower() not in f"{rep.title}\n{rep.notes or ''}".lower():
                continue
            d = report_dict(rep, facts)
            if model and not any(model.strip().lower() in m.lower() for m in d["models"]):
                continue
            if engine and engine.strip().lower() not in [e.lower() for e in d["engines"]]:
                continue
            if precision and precision.strip().lower() not in [p.lower() for p in d["precisions"]]:
                continue
            out.append(d)
            if len(out) >= limit:
                break
        return out


def delete_report(report_id: int, url: str | None = None) -> bool:
    """Delete a report (its runs stay); False when it did not exist."""
    with session_scope(url) as s:
        rep = s.get(Report, int(report_id))
        if rep is None:
            return False
        s.delete(rep)
        return True


def update_report(report_id: int, url: str | None = None, **fields: Any) -> None:
    """Change ``title``, ``author`` or ``notes`` of a report (``updated_at`` set to now).

    Raises:
        InputError: unknown report (``REPORT_ID``), another field, or an empty title (``--title``).
    """
    allowed = {"title", "author", "notes"}
    bad = sorted(set(fields) - allowed)
    if bad:
        raise InputError(f"report fields {', '.join(bad)} cannot be changed (only {', '.join(sorted(allowed))})")
    with session_scope(url) as s:
        rep = s.get(Report, int(report_id))
        if rep is None:
            raise InputError(f"REPORT_ID: report {report_id} does not exist (report list prints ids)")
        if "title" in fields:
            t = (fields["title"] or "").strip()
            if not t or len(t) > TITLE_MAX:
                raise InputError(f"--title: a title of 1 to {TITLE_MAX} characters")
            rep.title = t
        if "author" in fields:
            rep.author = (fields["author"] or "").strip() or None
        if "notes" in fields:
            rep.notes = (fields["notes"] or "").strip() or None
        rep.updated_at = utcnow()


def opt_ins_of(run_ids: Sequence[int], url: str | None = None) -> dict[int, list[str]]:
    """``{run_id: db.verdicts.opt_ins(run)}`` of the given runs that opted in to running code from the model's
    files (``trust_remote_code`` / ``allow_pickle``); runs without any are left out."""
    from db.verdicts import opt_ins

    ids = [int(i) for i in run_ids]
    if not ids:
        return {}
    with session_scope(url) as s:
        return {int(r.id): o for r in s.execute(select(Run).where(Run.id.in_(ids))).scalars() if (o := opt_ins(r))}


def repeat_counts(run_ids: Sequence[int], url: str | None = None) -> dict[int, int]:
    """Number of distinct repeats (``latency_samples.repeat``; for LLM runs ``load_points.repeat`` per level,
    the most of any level) of each run that has samples."""
    out: dict[int, int] = {}
    ids = [int(i) for i in run_ids]
    if not ids:
        return out
    with session_scope(url) as s:
        for rid, rep in s.execute(select(LatencySample.run_id, LatencySample.repeat)
                                  .where(LatencySample.run_id.in_(ids)).distinct()).all():
            out[int(rid)] = out.get(int(rid), 0) + 1
        per_level: dict[tuple[int, str], set[int]] = {}
        for p in s.execute(select(LoadPoint).where(LoadPoint.run_id.in_(ids))).scalars():
            per_level.setdefault((int(p.run_id), f"{p.mode}={p.level}"), set()).add(int(p.repeat or 0))
        for (rid, _), reps in per_level.items():
            out[rid] = max(out.get(rid, 0), len(reps))
    return out


def report_verdicts(report: Mapping[str, Any], url: str | None = None, n_boot: int | None = None) -> list[Verdict]:
    """The verdicts of a report (:func:`get_report` dict): :func:`db.verdicts.verdict_table` of its runs that
    still exist against its baseline, on its metric, with its ``allow_different`` option. Empty when the
    baseline was deleted.

    Raises:
        InputError: as :func:`db.verdicts.compare_runs` (e.g. the metric does not fit the runs).
    """
    from db.verdicts import verdict_table

    base = report.get("baseline_run_id")
    missing = set(report.get("missing_runs") or [])
    if base is None or int(base) in missing:
        return []
    ids = [int(i) for i in report["run_ids"] if int(i) not in missing]
    return verdict_table(ids, int(base), report.get("metric"), url=url,
                         allow_different=bool((report.get("options") or {}).get("allow_different")), n_boot=n_boot)


def verdict_word(v: Verdict) -> str:
    """The word shown for a verdict: the verdict's word, except that an invalid candidate's "faster" reads
    "faster, but numerically invalid (not a win)" (an invalid candidate is never shown as a win)."""
    invalid = bool(v.accuracy) and (v.accuracy or {}).get("valid") is False
    if v.verdict == FASTER and invalid:
        return "faster, but numerically invalid (not a win)"
    return v.verdict


def verdict_row(v: Verdict, labels: Mapping[int, str] | None = None) -> dict[str, Any]:
    """One flat, JSON-safe row of the verdict table (also the CSV columns): ``run``, ``label``, ``baseline``,
    ``baseline_label``, ``level``, ``metric``, ``unit``, ``baseline_value``, ``candidate_value``, ``ratio``,
    ``ci95_low``, ``ci95_high``, ``verdict`` (:func:`verdict_word`), ``win``, ``comparable``,
    ``within_run_only``, ``repeats_baseline``, ``repeats_candidate``, ``accuracy_valid``, ``cosine_min``,
    ``max_abs_err``, ``blocking_differences``, ``differences``, ``notes``."""
    lab = labels or {}
    acc = v.accuracy or {}
    return {
        "run": v.candidate, "label": lab.get(v.candidate, f"run {v.candidate}"),
        "baseline": v.baseline, "baseline_label": lab.get(v.baseline, f"run {v.baseline}"),
        "level": v.level, "metric": v.metric, "unit": v.unit,
        "baseline_value": v.baseline_value, "candidate_value": v.candidate_value, "ratio": v.ratio,
        "ci95_low": v.ci95[0] if v.ci95 else None, "ci95_high": v.ci95[1] if v.ci95 else None,
        "verdict": verdict_word(v), "win": bool(v.win), "comparable": bool(v.comparable),
        "within_run_only": bool(v.within_run_only),
        "repeats_baseline": int(v.repeats[0]), "repeats_candidate": int(v.repeats[1]),
        "accuracy_valid": acc.get("valid") if v.accuracy is not None else None,
        "cosine_min": acc.get("cosine_min"), "max_abs_err": acc.get("max_abs_err"),
        "blocking_differences": sum(1 for d in v.differences if d.blocking),
        "differences": len(v.differences),
        "notes": "; ".join(v.notes),
    }


def difference_rows(verdicts: Sequence[Verdict], labels: Mapping[int, str] | None = None) -> list[dict[str, Any]]:
    """The comparability list: one row per fingerprint difference of each candidate vs the baseline (``run``,
    ``label``, ``level``, ``field``, ``baseline_value``, ``candidate_value``, ``blocking``, ``note``); a
    candidate compared at several LLM levels is listed once."""
    lab = labels or {}
    seen: set[int] = set()
    out: list[dict[str, Any]] = []
    for v in verdicts:
        if v.candidate in seen:
            continue
        seen.add(v.candidate)
        for d in v.differences:
            out.append({"run": v.candidate, "label": lab.get(v.candidate, f"run {v.candidate}"), "field": d.field,
                        "baseline_value": d.baseline, "candidate_value": d.candidate, "blocking": bool(d.blocking),
                        "note": d.note})
    return out
