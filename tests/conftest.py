"""Shared fixtures.

- ``es_env``: a fresh ENGINESCOPE_HOME in tmp_path with a migrated SQLite database; yields its DB URL.
- ``shared``: the ../shared folder beside the checkout (real models and tool outputs); tests that need
  it skip with that reason where it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("ENGINESCOPE_SHARED", REPO.parent / "shared"))


@pytest.fixture
def es_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point EngineScope at a fresh data folder and migrated SQLite DB; return the DB URL."""
    from db.session import get_engine, migrate

    home = tmp_path / "es_home"
    url = f"sqlite:///{home / 'enginescope.db'}"
    monkeypatch.setenv("ENGINESCOPE_HOME", str(home))
    monkeypatch.setenv("ENGINESCOPE_DB_URL", url)
    home.mkdir()
    get_engine.cache_clear()
    migrate(url)
    yield url
    get_engine.cache_clear()


@pytest.fixture
def shared() -> Path:
    """../shared, or skip: the real models and tool outputs are not beside this checkout."""
    if not SHARED.is_dir():
        pytest.skip(f"../shared (real models and tool outputs) is absent at {SHARED}")
    return SHARED
