"""The ``enginescope`` command line (Typer).

Each module in ``engine_runner.commands`` defines ``register(app: typer.Typer) -> None`` and adds its
commands; this file only assembles them, so commands stay independent and import their engines lazily.

Exit codes: 0 success, 1 a run/job failed, 2 bad input (message on stderr).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import os
import shutil

import typer

from profiles.errors import EngineScopeError, exit_code_for

HELP_WIDTH = 120
"""Help texts are laid out at least this many columns wide (more on a wider terminal), so long option
names such as ``--gpu-memory-utilization`` are not cut; ``$TERMINAL_WIDTH`` overrides it."""

app = typer.Typer(
    name="enginescope",
    help="Benchmark and profile inference engines. Data: $ENGINESCOPE_HOME (default ~/.enginescope).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"max_content_width": HELP_WIDTH},
)

if not os.environ.get("TERMINAL_WIDTH"):
    try:  # Typer's rich help ignores max_content_width and uses its own width (80 when not a terminal)
        import typer.rich_utils as _rich_utils

        _rich_utils.MAX_WIDTH = max(HELP_WIDTH, shutil.get_terminal_size((HELP_WIDTH, 24)).columns)
    except ImportError:  # rich not installed: click's formatter honours max_content_width
        pass


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
    """Print ``exc`` on stderr and exit with its code (2 bad input, 1 otherwise); stdout stays empty."""
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(exit_code_for(exc))


def exit_for_job_error(error: str | None) -> int:
    """Exit status of a failed job from its recorded error (``"<ExceptionClass>: message"``, as
    ``engine_runner.jobs.execute`` writes it): 2 when the class is ``InputError`` or a subclass (bad input
    found inside the job, e.g. pickled weights without --allow-pickle, a model the endpoint does not serve),
    else 1."""
    from profiles.errors import InputError

    def family(cls: type) -> list[type]:
        subs: list[type] = cls.__subclasses__()
        return [cls] + [c for sub in subs for c in family(sub)]

    names = {c.__name__ for c in family(InputError)}
    head = (error or "").split(":", 1)[0].strip()
    return 2 if head in names else 1


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except EngineScopeError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exit_code_for(exc))


if __name__ == "__main__":
    main()
