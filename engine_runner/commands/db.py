"""``enginescope migrate`` (apply database migrations) and ``enginescope db copy``."""

from __future__ import annotations

import typer

from engine_runner.commands import DB_URL_HELP

db_app = typer.Typer(help="Database tools.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``migrate`` and the ``db`` group."""

    @app.command("migrate")
    def migrate_cmd(db_url: str = typer.Option(None, "--db-url", help=DB_URL_HELP)) -> None:
        """Apply all Alembic migrations to the database."""
        from db.config import db_url as default_url
        from db.session import migrate

        url = db_url or default_url()
        migrate(url)
        typer.echo(f"database at {url} is at the latest revision")

    @db_app.command("copy")
    def copy_cmd(
        src: str = typer.Option(..., "--from", help="Source SQLAlchemy URL, e.g. sqlite:////home/me/.enginescope/enginescope.db"),
        dst: str = typer.Option(..., "--to", help="Target SQLAlchemy URL, e.g. postgresql+psycopg2://user@host/enginescope"),
    ) -> None:
        """Copy every result of one database into another without duplicates (models by content hash, jobs,
        runs and reports by their natural keys; see db/copy.py), in one transaction on the target; progress
        on stderr, a summary on stdout. Running it again adds nothing."""
        from db.copy import copy_database

        report = copy_database(src, dst)
        copied = sum(c["copied"] for c in report.values())
        present = sum(c["present"] for c in report.values())
        skipped = sum(c["skipped"] for c in report.values())
        typer.echo(f"copied {copied} row(s); {present} already present; {skipped} skipped (queued/running jobs and their rows)")

    app.add_typer(db_app, name="db")
