"""The ``enginescope`` command line (Typer).

Each module in ``engine_runner.commands`` defines ``register(app: typer.Typer) -> None`` and adds its
commands; this file only assembles them, so commands stay independent and import their engines lazily.

Exit codes: 0 success, 1 a run/job failed, 2 bad input (message on stderr).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from profiles.errors import EngineScopeError, exit_code_for

app = typer.Typer(
    name="enginescope",
    help="Benchmark and profile inference engines. Data: $ENGINESCOPE_HOME (default ~/.enginescope).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Benchmark and profile inference engines. Data: $ENGINESCOPE_HOME (default ~/.enginescope)."""


def _register_all() -> None:
    import engine_runner.commands as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
        register = getattr(mod, "register", None)
        if register is not None:
            register(app)


_register_all()


def fail(exc: BaseException) -> None:
    """Print ``exc`` on stderr and exit with its code (2 bad input, 1 otherwise)."""
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(exit_code_for(exc))


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except EngineScopeError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exit_code_for(exc))


if __name__ == "__main__":
    main()
