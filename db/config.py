"""Where EngineScope keeps its data.

Environment:
- ``ENGINESCOPE_HOME``: data folder (database, uploads, artifacts, logs). Default ``~/.enginescope``.
- ``ENGINESCOPE_DB_URL``: any SQLAlchemy URL. Default ``sqlite:///$ENGINESCOPE_HOME/enginescope.db``.
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
