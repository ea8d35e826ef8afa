"""``enginescope import PATH... [--json]``: ingest trtexec outputs, Nsight Systems captures and other LLM
benchmark tools' results produced elsewhere as Runs.

Routing per path: a folder, a ``.nsys-rep`` / ``.qdrep`` report or an SQLite file (magic bytes) goes to the nsys
import (:mod:`db.nsys_import`); a file whose content is a result of vLLM bench, AIPerf, GenAI-Perf, GuideLLM,
LLMPerf or Triton Model Analyzer (sniffed by :func:`profiles.llm_import.detect`, keys and CSV headers, not the
name) to the LLM import (:mod:`db.llm_import`); every other file to the trtexec import (:mod:`db.imports`). One
call may mix them. Every file is parsed before anything is written (nsys files, LLM results, then the trtexec
groups), so a bad file of any kind leaves the database unchanged.

``--json`` prints ``{"runs": [...]}``: trtexec and nsys entries as before, LLM entries in the shape of
``serve-bench --json`` runs (:func:`db.llm_import.serve_results`) with ``source_tool``, ``existing`` and ``file``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import typer

from engine_runner.commands import DB_URL_HELP


def split_paths(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """``(nsys paths, other paths)`` in the given order: folders, reports and SQLite files are nsys."""
    from profiles.nsys_export import is_nsys_file

    nsys = [p for p in paths if p.is_dir() or is_nsys_file(p)]
    return nsys, [p for p in paths if p not in nsys]


def split_llm(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """``(LLM benchmark results, trtexec paths)`` in the given order, by content (:func:`profiles.llm_import.detect`).

    Raises:
        ParseError: a file is clearly a supported tool's result but its JSON is broken (names line and column).
    """
    from profiles.llm_import import detect

    llm = [p for p in paths if p.is_file() and detect(p) is not None]
    return llm, [p for p in paths if p not in llm]


def _fmt(x: Any) -> str:
    return "-" if x is None else f"{x:.4g}"


def _llm_lines(r: dict[str, Any]) -> list[str]:
    imp = r.get("import") or {}
    head = (f"run {r['run_id']}: {r['label']} [{r['source_tool']} {r.get('tool_version') or ''}]".replace(" ]", "]")
            + f": {len(r['points'])} load point(s) from {Path(r['file']).name}" + (" (already imported)" if r["existing"] else ""))
    lines = [head]
    for p in r["points"]:
        if "concurrency" in p:
            lvl = f"c={p['concurrency'] if p['concurrency'] is not None else '?'}"
        else:
            lvl = f"rate={p['request_rate']}"
        parts = [f"{m.removesuffix('_ms').upper()} p50 {_fmt(p[m]['p50'])} ms" for m in ("ttft_ms", "tpot_ms", "e2e_ms")
                 if p.get(m)]
        if p.get("latency_ms"):
            parts.append(f"latency p99 {_fmt(p['latency_ms']['p99'])} ms")
        for k, name in (("request_throughput_per_s", "req/s"), ("output_token_throughput_per_s", "out tok/s"),
                        ("throughput_per_s", "infer/s")):
            if p.get(k) is not None:
                parts.append(f"{_fmt(p[k])} {name}")
        lines.append(f"  {lvl}: " + (", ".join(parts) or "no latency or throughput in the file"))
    lines += [f"  note: {n}" for n in imp.get("notes") or []]
    return lines


def _nsys_line(r: dict[str, Any]) -> str:
    head = (f"run {r['run_id']}: {r['label']} nsys {r['nsys_version'] or '?'} (schema {r['schema_version'] or '?'}): "
            f"{r['kernels']} kernels, {r['memcpy']} memcpy, {r['memset']} memset, {r['cuda_api_calls']} CUDA API calls, "
            f"{r['nvtx_ranges']} NVTX ranges")
    if r["existing"]:
        head += " (already imported)"
    return head + "".join(f"; note: {n}" for n in r["notes"])


def register(app: typer.Typer) -> None:
    """Add ``import``."""

    @app.command("import")
    def import_cmd(
        paths: list[Path] = typer.Argument(..., help="trtexec outputs (stdout logs, --exportTimes/--exportProfile/"
                                                     "--exportLayerInfo JSON, grouped into runs by common name prefix), "
                                                     "Nsight Systems captures (.sqlite exports, .nsys-rep/.qdrep "
                                                     "reports, folders of them) and/or LLM benchmark results (vLLM bench "
                                                     "--save-result JSON/JSONL, AIPerf/GenAI-Perf JSON/CSV/JSONL, GuideLLM "
                                                     "benchmarks.json, LLMPerf summary/individual JSON, Model Analyzer CSV)"),
        as_json: bool = typer.Option(False, "--json", help="print {\"runs\": [...]} as JSON"),
        db_url: str = typer.Option(None, "--db-url", help=DB_URL_HELP),
    ) -> None:
        """Import trtexec outputs as TensorRT runs, Nsight Systems captures as profiled runs and other LLM
        benchmark tools' results as LLM serving runs."""
        from db.imports import import_trtexec
        from db.llm_import import prepare_llm, with_results, write_llm
        from db.nsys_import import prepare_nsys, write_nsys
        from db.session import migrate
        from engine_runner.cli import fail
        from profiles.errors import EngineScopeError

        try:
            nsys_paths, other_paths = split_paths(list(paths))
            llm_paths, trt_paths = split_llm(other_paths)
            migrate(db_url)
            with tempfile.TemporaryDirectory(prefix="enginescope-nsys-") as tmp:
                captures = prepare_nsys(nsys_paths, Path(tmp), url=db_url) if nsys_paths else []
                llm_files = prepare_llm(llm_paths, url=db_url) if llm_paths else []
                runs = import_trtexec(trt_paths, url=db_url) if trt_paths else []
                nsys_runs = write_nsys(captures, url=db_url) if captures else []
                llm_runs = with_results(write_llm(llm_files, url=db_url), url=db_url) if llm_files else []
        except EngineScopeError as exc:
            fail(exc)
            return
        for r in runs:
            r.setdefault("timing_window", None)  # what one latency sample includes; null when unknown
        if as_json:
            typer.echo(json.dumps({"runs": runs + nsys_runs + llm_runs}, indent=2, default=str))
            return
        for r in runs:
            lat = r["latency_ms"]
            head = f"p50 {lat['p50']:.4g} ms" if lat["p50"] is not None else "no latency summary"
            typer.echo(f"run {r['run_id']}: {r['label']} [{r['status']}] TensorRT {r['engine_version'] or '?'} "
                       f"{r['precision'] or '?'}: {head}, {r['layers']} layers" + (f"; error: {r['error']}" if r["error"] else ""))
            typer.echo(f"  timing window: {r['timing_window'] or 'unknown'}")
        for r in nsys_runs:
            typer.echo(_nsys_line(r))
        for r in llm_runs:
            for line in _llm_lines(r):
                typer.echo(line)
