"""Nsight Systems captures: run one measured configuration under ``nsys profile`` in a child process, export the
report to SQLite and parse it (``profiles.nsys_export``).

``nsys`` is found as ``$ENGINESCOPE_NSYS`` or on PATH (``db.nsys_tool.find_nsys``). The command (argv list, never a
shell)::

    nsys profile -t cuda,nvtx,osrt --capture-range=cudaProfilerApi --capture-range-end=stop
        --cuda-graph-trace=node --force-overwrite true -o <workdir>/capture
        <python> -m engine_runner.profile_child <request.json>

The child (``engine_runner.profile_child``) calls cudaProfilerStart/Stop around its measured iterations and puts
each in an NVTX range ``iteration N``, so the report holds those iterations only (CUDA graphs traced per node), and
the parsed kernels get their iteration. A capture changes timing: the job stores it as its own profiled run.

An ``nsys`` that cannot make a report (the H200 image's, Debian's 2022.4 target package without its host importer:
it writes a ``.qdstrm`` and says "The importer binary and its dependencies were not found") is an
:class:`~profiles.errors.EngineError` that says so; the ``.qdstrm`` stays in the job's folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from profiles.errors import EngineError, EngineUnavailableError
from profiles.kernels import KernelTrace


def nsys_command(nsys: str, request: Path, out_base: Path, python: str | None = None) -> list[str]:
    """The argv of a capture (see the module doc)."""
    return [nsys, "profile", "-t", "cuda,nvtx,osrt", "--capture-range=cudaProfilerApi", "--capture-range-end=stop",
            "--cuda-graph-trace=node", "--force-overwrite", "true", "-o", str(out_base),
            python or sys.executable, "-m", "engine_runner.profile_child", str(request)]


@dataclass
class NsysRun:
    """Result of :func:`run_nsys`: the parsed trace, the report and its SQLite export, the command and nsys's
    version."""

    trace: KernelTrace
    report: Path
    sqlite: Path
    command: list[str]
    version: str


def run_nsys(request: Path, workdir: Path, timeout_s: float = 900.0, nsys: str | None = None) -> NsysRun:
    """Capture the request's iterations under nsys, export and parse the report.

    Raises:
        EngineUnavailableError: no nsys here (the message names ``ENGINESCOPE_NSYS``).
        EngineError: nsys failed, timed out, or wrote no report (a ``.qdstrm`` only: its importer is missing).
        ParseError / InputError: from the export or the parser, naming the file.
    """
    from db.nsys_tool import export_sqlite, find_nsys, nsys_version
    from profiles.nsys_export import parse_nsys_sqlite

    exe = nsys or find_nsys()
    if exe is None:
        raise EngineUnavailableError("--nsys: Nsight Systems (nsys) is not installed here; put nsys on PATH or set "
                                     "ENGINESCOPE_NSYS to its path")
    workdir.mkdir(parents=True, exist_ok=True)
    base = workdir / "capture"
    cmd = nsys_command(exe, request, base)
    log_path = workdir / "nsys.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(Path(__file__).resolve().parent.parent),
                                                                   os.environ.get("PYTHONPATH", "")] if p)}
    try:
        with open(log_path, "w") as log:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s, env=env,
                                  start_new_session=True)
    except subprocess.TimeoutExpired:
        raise EngineError(f"--nsys: nsys did not finish within {timeout_s:g} s ({log_path})") from None
    except OSError as exc:
        raise EngineError(f"--nsys: cannot run {exe}: {exc}") from exc
    said = log_path.read_text(errors="replace")
    if proc.returncode != 0:
        raise EngineError(f"--nsys: nsys exited with {proc.returncode}: {said.strip()[-800:]}")
    reports = [p for p in (base.with_suffix(".nsys-rep"), base.with_suffix(".qdrep")) if p.is_file()]
    if not reports:
        qdstrm = sorted(workdir.glob("*.qdstrm"))
        hint = (f"; nsys wrote only {qdstrm[0].name} (raw stream): this nsys has no QdstrmImporter to turn it into a "
                f"report" if qdstrm or "importer" in said.lower() else "")
        raise EngineError(f"--nsys: nsys made no report in {workdir}{hint}; nsys said: {said.strip()[-600:]}")
    sqlite = export_sqlite(reports[0], workdir, nsys=exe)
    trace = parse_nsys_sqlite(sqlite)
    return NsysRun(trace=trace, report=reports[0], sqlite=sqlite, command=cmd, version=nsys_version(exe))
