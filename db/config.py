"""Where EngineScope keeps its data.

Environment:
- ``ENGINESCOPE_HOME``: data folder (database, uploads, artifacts, logs). Default ``~/.enginescope``.
- ``ENGINESCOPE_DB_URL``: any SQLAlchemy URL. Default ``sqlite:///$ENGINESCOPE_HOME/enginescope.db``.
  A team store is PostgreSQL: ``postgresql+psycopg2://user:pw@host/db`` (or ``postgresql+psycopg://`` with
  psycopg 3 installed).
- ``ENGINESCOPE_DB_POOL_SIZE`` (default 5) and ``ENGINESCOPE_DB_MAX_OVERFLOW`` (default 2 x pool size):
  SQLAlchemy's connection pool per process for a server database. Each process (dashboard, dispatcher,
  each running job's child and its node runner) holds its own pool and uses one or two connections at a
  time, so size the server's ``max_connections`` for about (2 x running jobs + dashboard sessions + 5) x
  (pool size + overflow) in the worst case; the defaults suit tens of workers on PostgreSQL's default 100.
- ``ENGINESCOPE_ARTIFACTS``: the artifact store (see :mod:`db.artifact_store`): a folder path, ``file://`` URL
  or any fsspec URL (``s3://bucket/prefix`` with s3fs installed); default ``$ENGINESCOPE_HOME/artifacts``.
  Today only a Ray node's job logs are put there (when it is not a local folder); models, variants, engines
  and captures stay under ``ENGINESCOPE_HOME``, which a fleet's nodes share (docs/fleet.md).
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The data folder (created if missing). Sub-folders: ``models/``, ``artifacts/``, ``logs/``."""
    p = Path(os.environ.get("ENGINESCOPE_HOME") or Path.home() / ".enginescope").expanduser().resolve()
    for sub in ("models", "artifacts", "logs", "uploads"):
        (p / sub).mkdir(parents=True, exist_ok=True)
    return p


def db_url() -> str:
    """The SQLAlchemy URL from ``ENGINESCOPE_DB_URL``, else SQLite inside :func:`home`."""
    url = os.environ.get("ENGINESCOPE_DB_URL")
    if url:
        return url
    return f"sqlite:///{home() / 'enginescope.db'}"


def _positive_int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        v = int(raw)
    except ValueError:
        v = -1
    if v < 0 or (name.endswith("POOL_SIZE") and v == 0):
        from profiles.errors import InputError

        raise InputError(f"{name}={raw!r} must be a {'positive' if name.endswith('POOL_SIZE') else 'non-negative'} integer")
    return v


def db_pool_size() -> int:
    """``ENGINESCOPE_DB_POOL_SIZE`` (default 5): connections kept open per process to a server database."""
    return _positive_int_env("ENGINESCOPE_DB_POOL_SIZE", 5)


def db_max_overflow() -> int:
    """``ENGINESCOPE_DB_MAX_OVERFLOW`` (default 2 x the pool size): extra connections opened under load."""
    return _positive_int_env("ENGINESCOPE_DB_MAX_OVERFLOW", 2 * db_pool_size())


def artifacts_url() -> str:
    """``ENGINESCOPE_ARTIFACTS``, else the ``artifacts/`` folder of :func:`home` (as a path)."""
    return os.environ.get("ENGINESCOPE_ARTIFACTS") or str(home() / "artifacts")
