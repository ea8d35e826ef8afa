"""``enginescope users grant|revoke|list``: dashboard roles (``db.access``), for whoever runs the server.

Whoever can run the CLI on the server can already open the database, so the CLI needs no login: it is
how the first editor (or a replacement for a departed one) is made. ``granted_by`` records
``cli:<OS user>``.
"""

from __future__ import annotations

import json

import typer

from engine_runner.commands import DB_URL_HELP


def register(app: typer.Typer) -> None:
    """Add the ``users`` command group."""
    users = typer.Typer(help="Dashboard roles: viewer (reads) and editor (uploads, starts, cancels, imports, "
                             "deletes). Used when ENGINESCOPE_AUTH is oidc or proxy.", no_args_is_help=True)
    app.add_typer(users, name="users")

    db_opt = typer.Option(None, "--db-url", help=DB_URL_HELP)

    @users.command("grant")
    def grant_cmd(name: str = typer.Argument(..., metavar="NAME", help="the user as the login names them (OIDC "
                                             "e-mail or the proxy's X-Forwarded-User)"),
                  role: str = typer.Option("editor", "--role", help="viewer | editor"),
                  db_url: str = db_opt) -> None:
        """Give NAME a role (creates the user)."""
        from db import access
        from db.jobs import cli_user
        from db.session import migrate
        from engine_runner.cli import fail
        from profiles.errors import EngineScopeError

        try:
            migrate(db_url)
            access.grant(name, role, by=cli_user(), url=db_url)
        except EngineScopeError as exc:
            fail(exc)
            return
        typer.echo(f"{access.normalize_name(name)} is now {'an' if role == 'editor' else 'a'} {role}")

    @users.command("revoke")
    def revoke_cmd(name: str = typer.Argument(..., metavar="NAME"), db_url: str = db_opt) -> None:
        """Remove NAME's role (the user becomes a viewer when they sign in again)."""
        from db import access
        from db.session import migrate
        from engine_runner.cli import fail
        from profiles.errors import EngineScopeError, InputError

        try:
            migrate(db_url)
            if not access.revoke(name, url=db_url):
                raise InputError(f"NAME: no user {name!r} (users list prints them)")
        except EngineScopeError as exc:
            fail(exc)
            return
        typer.echo(f"{name}: role removed")

    @users.command("list")
    def list_cmd(as_json: bool = typer.Option(False, "--json", help="print a JSON list"), db_url: str = db_opt) -> None:
        """Every user with a role."""
        from db import access
        from db.session import migrate

        migrate(db_url)
        rows = access.list_users(db_url)
        if as_json:
            typer.echo(json.dumps(rows, default=str, indent=2))
            return
        if not rows:
            typer.echo("no users (the first to sign in becomes an editor)")
        for r in rows:
            typer.echo(f"{r['name']}\t{r['role']}\tgranted by {r['granted_by'] or '-'}")
