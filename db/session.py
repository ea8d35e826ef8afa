"""Engines, sessions and migrations.

SQLite connections get ``journal_mode=WAL``, ``busy_timeout`` (``ENGINESCOPE_SQLITE_BUSY_TIMEOUT_MS``,
default 30000 ms: how long a write waits for another writer's lock before it fails with "database is
locked") and ``foreign_keys=ON``. Before the first connection to an existing SQLite file,
:func:`check_sqlite_file` makes sure it is an EngineScope database: a corrupted file or another
application's SQLite database raises :class:`~profiles.errors.InputError` naming the path, and the file
is left byte-identical (no WAL switch, no migration into someone else's schema). A server
database (PostgreSQL) gets a pre-pinged pool of ``ENGINESCOPE_DB_POOL_SIZE`` connections plus
``ENGINESCOPE_DB_MAX_OVERFLOW`` (see :mod:`db.config`).
Keep write transactions short: open a session with :func:`session_scope`, write, leave.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import os
import sqlite3
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from db.config import db_max_overflow, db_pool_size, db_url
from profiles.errors import InputError

SQLITE_BUSY_TIMEOUT_MS = 30_000

#: The 16 bytes every SQLite 3 database file starts with.
SQLITE_HEADER = b"SQLite format 3\x00"

#: Tables an EngineScope database always has (any revision); a non-empty SQLite file without them is foreign.
OUR_TABLES = frozenset({"alembic_version", "jobs"})


def sqlite_busy_timeout_ms() -> int:
    """``ENGINESCOPE_SQLITE_BUSY_TIMEOUT_MS`` (default 30000): how long a SQLite statement waits for a lock."""
    raw = os.environ.get("ENGINESCOPE_SQLITE_BUSY_TIMEOUT_MS", "").strip()
    if not raw:
        return SQLITE_BUSY_TIMEOUT_MS
    if not raw.isdigit():
        raise InputError(f"ENGINESCOPE_SQLITE_BUSY_TIMEOUT_MS={raw!r} must be a non-negative integer (milliseconds)")
    return int(raw)


def sqlite_path(url: str) -> str | None:
    """The file path of a SQLite URL, or None (another database, ``:memory:``, an empty path)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:" or u.database.startswith("file:"):
        return None
    return u.database


def check_sqlite_file(url: str) -> None:
    """Refuse an existing file at a SQLite URL's path that is not an EngineScope database, touching nothing.

    A missing or empty file is fine (migrations create the schema). Otherwise the first 16 bytes must be
    SQLite's header and, opened read-only, the schema must be empty or contain ``alembic_version`` and
    ``jobs``. Nothing is written: the check runs before SQLAlchemy's first connection (which would switch
    the file to WAL) and before any migration.

    Raises:
        InputError: the file is not SQLite (corrupted, truncated, another format), its schema cannot be read
            (a damaged database), or it is another application's SQLite database. The message names the path.
    """
    path = sqlite_path(url)
    if path is None or not os.path.exists(path):
        return
    hint = ("EngineScope leaves it untouched; move it away or point ENGINESCOPE_DB_URL / ENGINESCOPE_HOME at "
            "another database")
    try:
        size = os.path.getsize(path)
        if size == 0:
            return
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise InputError(f"database file {path}: cannot be read: {exc}") from None
    if head != SQLITE_HEADER:
        raise InputError(f"database file {path}: not a SQLite database (it starts with {head[:16]!r}, {size} bytes); "
                         f"it is corrupted or another kind of file. {hint}")
    try:
        conn = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True, timeout=sqlite_busy_timeout_ms() / 1000)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise InputError(f"database file {path}: a damaged SQLite database ({exc}). {hint}") from None
    if tables and not OUR_TABLES <= tables:
        shown = ", ".join(sorted(tables)[:8]) + (" ..." if len(tables) > 8 else "")
        raise InputError(f"database file {path}: a SQLite database of another application (tables: {shown}; no "
                         f"EngineScope tables {sorted(OUR_TABLES)}). {hint}")


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={sqlite_busy_timeout_ms()}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str | None = None) -> Engine:
    """A new SQLAlchemy engine for ``url`` (default :func:`db.config.db_url`), SQLite pragmas applied.

    Raises:
        InputError: the SQLite file at the URL's path is not an EngineScope database (:func:`check_sqlite_file`).
    """
    url = url or db_url()
    if url.startswith("sqlite"):
        check_sqlite_file(url)
        eng = create_engine(url, connect_args={"timeout": sqlite_busy_timeout_ms() / 1000, "check_same_thread": False})
        event.listen(eng, "connect", _sqlite_pragmas)
    else:
        # a server database (PostgreSQL): a pool per process sized by ENGINESCOPE_DB_POOL_SIZE / _MAX_OVERFLOW
        eng = create_engine(url, pool_pre_ping=True, pool_size=db_pool_size(), max_overflow=db_max_overflow(),
                            pool_recycle=1800)
    return eng


@lru_cache(maxsize=8)
def get_engine(url: str | None = None) -> Engine:
    """Process-wide cached engine per URL."""
    return make_engine(url or db_url())


def session_factory(url: str | None = None) -> sessionmaker[Session]:
    """A ``sessionmaker`` bound to the cached engine for ``url`` (``expire_on_commit=False``)."""
    return sessionmaker(bind=get_engine(url or db_url()), expire_on_commit=False)


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """Transaction scope: commit on success, roll back on error."""
    s = session_factory(url)()
    try:
        yield s
        s.commit()
    except BaseException:
        s.rollback()
        raise
    finally:
        s.close()


def alembic_config(url: str | None = None):  # type: ignore[no-untyped-def]
    """Alembic ``Config`` pointing at ``db/migrations`` and ``url``."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", (url or db_url()).replace("%", "%%"))
    return cfg


def migrate(url: str | None = None) -> None:
    """Apply all Alembic migrations (``upgrade head``) to the database at ``url``."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")
