"""``enginescope db copy --from URL --to URL``: move one database's results into another (an engineer's
local SQLite into the team's PostgreSQL) without duplicates.

Rules (one pass over the tables in foreign-key order, every row's ids remapped to the target's):

- **models** are the same model when their ``content_hash`` is equal: a model already in the target is not
  copied; rows pointing at it point at the target's row.
- **jobs** are the same job when ``(kind, created_at, spec)`` are equal (``created_at`` in UTC to the
  microsecond, ``spec`` as canonical JSON). Only ended jobs are copied (succeeded, failed, cancelled): a
  queued or running job of a local queue would otherwise be claimed by the team's workers; such jobs and
  the rows they own are skipped and counted.
- **runs** are the same run when ``(source, engine, created_at, config)`` are equal (``config`` as canonical
  JSON without ``profiler.of_run_id``, which is an id and is remapped).
- **reports** are the same report when ``(title, created_at)`` are equal; ``run_ids`` are remapped.
- **artifacts** of a model alone (no run, no job) are the same when ``(model, kind, content_hash)`` are equal.
- Every other row belongs to its owner (a job, run or load point, by its ``ON DELETE CASCADE`` key): it is
  copied exactly when its owner was copied, and skipped when its owner was already present (the owner's
  rows came with it the first time).

So copying the same source twice adds nothing the second time. Everything happens in ONE transaction on the
target (on PostgreSQL under the same advisory lock key family as the job claim, so two copies do not
interleave); the source is only read. The target is migrated to the latest revision first; the source must
already be at it (``enginescope migrate --db-url SRC``). File paths (``models.path``, ``artifacts.path``)
are copied as written: put the files where the team's nodes see them (the shared artifact store, docs/fleet.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Table, insert, select, text

from db.models import TERMINAL_STATUSES, Base
from db.session import make_engine, migrate
from profiles.errors import InputError

#: Advisory lock key of a copy on PostgreSQL ("ESCOPY" in ASCII).
_PG_COPY_LOCK_KEY = 0x4553434F5059

#: Tables whose CASCADE parent is not an owner (a model has artifacts and runs of its own jobs).
_NOT_OWNERS = {"models"}

_BATCH = 5000


def _utc(t: Any) -> Any:
    if isinstance(t, dt.datetime):
        return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)
    return t


def _canon(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def _iso(t: Any) -> str:
    t = _utc(t)
    return t.isoformat() if isinstance(t, dt.datetime) else str(t)


def _run_config_key(config: dict[str, Any] | None) -> str:
    cfg = json.loads(json.dumps(config or {}, default=str))
    prof = cfg.get("profiler")
    if isinstance(prof, dict):
        prof.pop("of_run_id", None)
    return _canon(cfg)


def _key(table: str, row: dict[str, Any]) -> tuple[Any, ...] | None:
    """Natural key of a row of ``table`` (ids already in the target's numbering), or None (owned rows)."""
    if table == "models":
        return (row["content_hash"],)
    if table == "jobs":
        return (row["kind"], _iso(row["created_at"]), _canon(row["spec"] or {}))
    if table == "runs":
        return (row["source"], row["engine"], _iso(row["created_at"]), _run_config_key(row["config"]))
    if table == "reports":
        return (row["title"], _iso(row["created_at"]))
    if table == "artifacts" and row["run_id"] is None and row["job_id"] is None:
        return (row["model_id"], row["kind"], row["content_hash"])
    return None


def _revision(conn: Connection) -> str | None:
    try:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception:  # noqa: BLE001 - no alembic_version table: not an EngineScope database
        return None


def _head() -> str:
    from alembic.script import ScriptDirectory

    from db.session import alembic_config

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def copy_database(src_url: str, dst_url: str, *, progress: Callable[[str], None] = _stderr) -> dict[str, dict[str, int]]:
    """Copy every table of ``src_url`` into ``dst_url`` (rules in the module doc).

    Returns ``{table: {"copied": n, "present": n, "skipped": n}}`` ("present": found in the target and not
    copied again; "skipped": active jobs and the rows they own).

    Raises:
        InputError: the same URL twice, or the source is not an EngineScope database at the latest revision.
    """
    if src_url == dst_url:
        raise InputError("db copy: --from and --to name the same database")
    head = _head()
    src = make_engine(src_url)
    try:
        with src.connect() as sc:
            rev = _revision(sc)
        if rev != head:
            raise InputError(f"db copy: the source {src_url} is at revision {rev or '(none: not an EngineScope database)'}, "
                             f"not {head}; run `enginescope migrate --db-url {src_url}` first")
        migrate(dst_url)
        dst = make_engine(dst_url)
        try:
            return _copy(src, dst, progress)
        finally:
            dst.dispose()
    finally:
        src.dispose()


def _copy(src: Any, dst: Any, progress: Callable[[str], None]) -> dict[str, dict[str, int]]:
    tables: list[Table] = list(Base.metadata.sorted_tables)
    referenced = {fk.column.table.name for t in tables for fk in t.foreign_keys}
    idmap: dict[str, dict[int, int]] = {t.name: {} for t in tables}
    present: dict[str, set[int]] = {t.name: set() for t in tables}   # source ids found in the target
    dropped: dict[str, set[int]] = {t.name: set() for t in tables}   # source ids not copied (active jobs ...)
    report: dict[str, dict[str, int]] = {}
    with src.connect() as sc, dst.begin() as dc:
        if dst.dialect.name == "postgresql":
            dc.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_COPY_LOCK_KEY})
        for table in tables:
            name = table.name
            counts = {"copied": 0, "present": 0, "skipped": 0}
            existing: dict[tuple[Any, ...], int] = {}
            if name in ("models", "jobs", "runs", "reports", "artifacts"):
                for r in dc.execute(select(table)).mappings():
                    k = _key(name, dict(r))
                    if k is not None:
                        existing.setdefault(k, int(r["id"]))
            owner_fks = [fk for fk in table.foreign_keys
                         if fk.ondelete == "CASCADE" and fk.column.table.name not in _NOT_OWNERS]
            batch: list[dict[str, Any]] = []
            for r in sc.execution_options(yield_per=_BATCH).execute(select(table).order_by(table.c.id)).mappings():
                row = {k: _utc(v) for k, v in r.items()}
                src_id = int(row.pop("id"))
                owners = [(fk.column.table.name, row[fk.parent.name]) for fk in owner_fks if row[fk.parent.name] is not None]
                if any(v in dropped[p] for p, v in owners):
                    dropped[name].add(src_id)
                    counts["skipped"] += 1
                    continue
                if name == "jobs" and row["status"] not in TERMINAL_STATUSES:
                    dropped[name].add(src_id)
                    counts["skipped"] += 1
                    continue
                for fk in table.foreign_keys:
                    col, parent = fk.parent.name, fk.column.table.name
                    if row[col] is not None:
                        row[col] = idmap[parent].get(row[col])  # None: the parent was not copied (SET NULL)
                if name == "jobs" and isinstance((row.get("spec") or {}).get("model_id"), int):
                    row["spec"] = {**row["spec"], "model_id": idmap["models"].get(row["spec"]["model_id"],
                                                                                  row["spec"]["model_id"])}
                if name == "runs":
                    prof = (row.get("config") or {}).get("profiler")
                    if isinstance(prof, dict) and isinstance(prof.get("of_run_id"), int):
                        row["config"] = {**row["config"], "profiler": {**prof, "of_run_id": idmap["runs"].get(
                            prof["of_run_id"], prof["of_run_id"])}}
                if name == "reports":
                    row["run_ids"] = [idmap["runs"][i] for i in (row.get("run_ids") or []) if i in idmap["runs"]]
                if any(v in present[p] for p, v in owners):
                    # owned by a row already in the target: it came with its owner the first time
                    present[name].add(src_id)
                    counts["present"] += 1
                    k = _key(name, row)
                    if k is not None and k in existing:
                        idmap[name][src_id] = existing[k]
                    continue
                k = _key(name, row)
                if k is not None and k in existing:
                    idmap[name][src_id] = existing[k]
                    present[name].add(src_id)
                    counts["present"] += 1
                    continue
                counts["copied"] += 1
                if name in referenced:
                    new_id = int(dc.execute(insert(table).values(**row).returning(table.c.id)).scalar_one())
                    idmap[name][src_id] = new_id
                    if k is not None:
                        existing[k] = new_id
                else:
                    batch.append(row)
                    if len(batch) >= _BATCH:
                        dc.execute(insert(table), batch)
                        batch = []
            if batch:
                dc.execute(insert(table), batch)
            report[name] = counts
            if any(counts.values()):
                progress(f"db copy: {name}: {counts['copied']} copied, {counts['present']} already present"
                         + (f", {counts['skipped']} skipped (queued/running jobs and their rows)" if counts["skipped"] else ""))
    return report
