"""Migrations build the schema the models describe; SQLite pragmas are on."""

from sqlalchemy import inspect, text

from db.models import Base
from db.session import get_engine


def test_migrated_schema_matches_models(es_env: str) -> None:
    eng = get_engine(es_env)
    insp = inspect(eng)
    for table in Base.metadata.tables.values():
        cols = {c["name"] for c in insp.get_columns(table.name)}
        assert cols == {c.name for c in table.columns}, table.name


def test_sqlite_pragmas(es_env: str) -> None:
    with get_engine(es_env).connect() as c:
        assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert c.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert c.execute(text("PRAGMA busy_timeout")).scalar() == 30000
