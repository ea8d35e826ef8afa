"""The local ``nsys`` binary: find it, read its version, convert a report (``.nsys-rep`` / ``.qdrep``) to SQLite.

It lives on the ``db`` side (beside :mod:`db.nsys_import`, its only caller) rather than in ``engine_runner``,
so that both the CLI and the dashboard's import page can convert a report: the dashboard may import ``db`` and
``profiles`` only. It starts one short subprocess per report (argv lists, never a shell) and runs no engine.

Where nsys comes from: ``$ENGINESCOPE_NSYS`` (a path to the binary), else ``nsys`` on ``PATH``.

Report newer than the local nsys: nsys cannot open a report written by a newer nsys. Before converting,
:func:`report_version` looks for the capturing version in the report's bytes (the ``nsight-systems/<version>``
install path that reports carry, as the export's ``TargetInstallDir`` shows; best effort: parts of a report
are compressed, so it may find nothing); a report that says it is newer than ``nsys --version`` is refused naming
both. When the conversion itself fails, the versions nsys's error output names are compared the same way, so
a refusal still names both versions when nsys says which one it needed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from profiles.errors import EngineError, InputError

ENV_VAR = "ENGINESCOPE_NSYS"

#: Seconds one ``nsys export`` may take (large reports take minutes).
EXPORT_TIMEOUT_S = 1800.0

_VERSION = re.compile(r"(20\d\d\.\d+(?:\.\d+)*)")
_REPORT_VERSION = re.compile(rb"nsight[-_ ]systems[/\\ -]+(20\d\d\.\d+\.\d+)", re.I)
_SCAN_BYTES = 64 << 20


def _no_nsys(report: Path) -> InputError:
    return InputError(f"{report}: an Nsight Systems report needs the nsys binary to be read, and none was found "
                      f"(${ENV_VAR} is unset and no nsys on PATH). Export it on a machine that has nsys with "
                      f"`nsys export --type sqlite --output {report.stem}.sqlite {report.name}` and import the "
                      f".sqlite file, or set {ENV_VAR} to the nsys binary.")


def find_nsys() -> str | None:
    """Path of the nsys binary: ``$ENGINESCOPE_NSYS`` when set (used even if it does not exist, so the error
    names it), else ``nsys`` on PATH, else None."""
    env = os.environ.get(ENV_VAR)
    if env:
        return env
    return shutil.which("nsys")


def version_tuple(version: str | None) -> tuple[int, ...]:
    """``"2025.5.2.266"`` -> ``(2025, 5, 2, 266)``; ``()`` for None or no digits."""
    m = re.match(r"\d+(?:\.\d+)*", version or "")
    return tuple(int(x) for x in m.group(0).split(".")) if m else ()


def is_newer(report_version: str | None, local_version: str | None) -> bool:
    """True when ``report_version`` is a later nsys release than ``local_version`` (year.release.patch
    compared; the build number after them is ignored, and an unknown version is never newer)."""
    a, b = version_tuple(report_version)[:3], version_tuple(local_version)[:3]
    return bool(a and b) and a > b


def nsys_version(nsys: str | None = None, timeout_s: float = 60.0) -> str:
    """The version ``nsys --version`` prints (``NVIDIA Nsight Systems version 2025.5.2.266-...`` -> ``2025.5.2.266``).

    Raises:
        InputError: no nsys (see :func:`find_nsys`), or the configured path cannot be run.
        EngineError: ``nsys --version`` failed or printed no version.
    """
    exe = nsys or find_nsys()
    if not exe:
        raise InputError(f"no nsys binary (${ENV_VAR} is unset and no nsys on PATH)")
    try:
        proc = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=timeout_s, check=False)
    except OSError as exc:
        raise InputError(f"{exe}: cannot run nsys ({exc}); check ${ENV_VAR}") from None
    except subprocess.TimeoutExpired:
        raise EngineError(f"{exe} --version did not answer within {timeout_s:g} s") from None
    out = (proc.stdout or "") + (proc.stderr or "")
    m = _VERSION.search(out)
    if proc.returncode != 0 or not m:
        raise EngineError(f"{exe} --version failed (exit {proc.returncode}): {out.strip()[-300:] or 'no output'}")
    return m.group(1)


def report_version(report: str | Path, scan_bytes: int = _SCAN_BYTES) -> str | None:
    """Best-effort version of the nsys that wrote ``report``: the first ``nsight-systems/<year.release.patch>``
    in its first ``scan_bytes`` bytes, else None (compressed sections hide it)."""
    p = Path(report)
    tail = b""
    read = 0
    with p.open("rb") as fh:
        while read < scan_bytes:
            chunk = fh.read(1 << 20)
            if not chunk:
                break
            read += len(chunk)
            m = _REPORT_VERSION.search(tail + chunk)
            if m:
                return m.group(1).decode()
            tail = chunk[-64:]
    return None


def _refuse_newer(report: Path, found: str, local: str) -> InputError:
    return InputError(f"{report}: the report was written by Nsight Systems {found}, newer than this machine's nsys "
                      f"{local}; export it with nsys {found} or later (`nsys export --type sqlite "
                      f"--output {report.stem}.sqlite {report.name}`) and import the .sqlite file")


def export_sqlite(report: str | Path, out_dir: str | Path, *, nsys: str | None = None,
                  timeout_s: float = EXPORT_TIMEOUT_S) -> Path:
    """Convert a report to ``<out_dir>/<report stem>.sqlite`` with
    ``nsys export --type sqlite --output <out>.sqlite <report>`` and return that path.

    Raises:
        InputError: no nsys (the message says how to export elsewhere), or the report is newer than the local nsys
            (names both versions).
        EngineError: nsys failed or timed out (quotes the end of its output), or wrote no file.
    """
    report = Path(report)
    exe = nsys or find_nsys()
    if not exe:
        raise _no_nsys(report)
    if not Path(exe).exists() and shutil.which(exe) is None:
        raise InputError(f"{report}: nsys binary {exe} does not exist (from ${ENV_VAR} or PATH); set {ENV_VAR} to "
                         "the nsys binary, or export the report with `nsys export --type sqlite` where nsys is "
                         "installed and import the .sqlite file")
    local = nsys_version(exe)
    found = report_version(report)
    if found and is_newer(found, local):
        raise _refuse_newer(report, found, local)
    out = Path(out_dir) / f"{report.stem}.sqlite"
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [exe, "export", "--type", "sqlite", "--output", str(out), str(report)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except OSError as exc:
        raise InputError(f"{report}: cannot run {exe} ({exc}); check ${ENV_VAR}") from None
    except subprocess.TimeoutExpired:
        raise EngineError(f"{report}: nsys export did not finish within {timeout_s:g} s") from None
    text = (proc.stdout or "") + "\n" + (proc.stderr or "")
    if proc.returncode != 0 or not out.is_file():
        newer = [v for v in _VERSION.findall(text) if is_newer(v, local)]
        if newer:
            raise _refuse_newer(report, max(newer, key=version_tuple), local)
        last = " | ".join(ln.strip() for ln in text.strip().splitlines()[-4:] if ln.strip())
        what = f"exit {proc.returncode}" if proc.returncode != 0 else "no output file"
        raise EngineError(f"{report}: `nsys export --type sqlite` failed ({what}, nsys {local}): {last or 'no output'}")
    return out
