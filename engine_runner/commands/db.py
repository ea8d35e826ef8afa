"""``enginescope migrate``: apply database migrations."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add ``migrate``."""

    @app.command("migrate")
    def migrate_cmd(db_url: str = typer.Option(None, "--db-url", help="SQLAlchemy URL (default: $ENGINESCOPE_DB_URL or SQLite in $ENGINESCOPE_HOME)")) -> None:
        """Apply all Alembic migrations to the database."""
        from db.config import db_url as default_url
        from db.session import migrate

        url = db_url or default_url()
        migrate(url)
        typer.echo(f"database at {url} is at the latest revision")
