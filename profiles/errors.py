"""The one exception hierarchy of EngineScope.

Every error EngineScope raises on purpose derives from :class:`EngineScopeError`. It lives in
``profiles`` (the package with no dependencies of ours) so that ``db``, ``engine_runner`` and
``dashboard`` can all raise and catch it.

CLI exit codes follow the class: :class:`InputError` (and subclasses) -> 2, anything else -> 1.
"""

from __future__ import annotations


class EngineScopeError(Exception):
    """Root of all EngineScope errors. The message must name the offending input
    (file, tensor, node, flag or field)."""


class InputError(EngineScopeError):
    """Bad user input: a file, flag, shape or spec field that cannot be used. CLI exit code 2."""


class ModelError(InputError):
    """An uploaded or named model is unreadable, corrupt, or refers to missing/unsafe external data."""


class ParseError(InputError):
    """A tool output (trtexec log/JSON, profiler trace, benchmark export) could not be parsed."""


class EngineError(EngineScopeError):
    """An engine failed to set up or run (build failure, server start-up failure). CLI exit code 1."""


class EngineUnavailableError(EngineError):
    """The engine's package or executable is not installed on this machine; the message says how to install it."""


class ExportError(EngineError):
    """Exporting a PyTorch / Hugging Face model to ONNX failed. ``operator`` names the operator (or the
    data-dependent expression) at fault when the exporter's message says; ``kind`` is
    ``profiles.onnx_export.FAILURE_KINDS``; the message quotes the exporter. CLI exit code 1."""

    def __init__(self, message: str, *, operator: str | None = None, kind: str = "other") -> None:
        super().__init__(message)
        self.operator = operator
        self.kind = kind


class JobCancelled(EngineScopeError):
    """Raised inside a job when the user asked to cancel it."""


def exit_code_for(exc: BaseException) -> int:
    """CLI exit status for an exception: 2 for bad input, 1 for everything else."""
    return 2 if isinstance(exc, InputError) else 1
