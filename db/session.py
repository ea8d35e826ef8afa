"""Engines, sessions and migrations.

SQLite connections get ``journal_mode=WAL``, ``busy_timeout=30000`` ms and ``foreign_keys=ON``; a server
database (PostgreSQL) gets a pre-pinged pool of ``ENGINESCOPE_DB_POOL_SIZE`` connections plus
``ENGINESCOPE_DB_MAX_OVERFLOW`` (see :mod:`db.config`).
Keep write transactions short: open a session with :func:`session_scope`, write, leave.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from db.config import db_max_overflow, db_pool_size, db_url

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str | None = None) -> Engine:
    """A new SQLAlchemy engine for ``url`` (default :func:`db.config.db_url`), SQLite pragmas applied."""
    url = url or db_url()
    if url.startswith("sqlite"):
        eng = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})
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
