"""Benchmark all-MiniLM-L6-v2 on ONNX Runtime (CPU) at every ONNX precision, and record the results.

What it does:
1. exports all-MiniLM-L6-v2 (``engine_runner.minilm.export_minilm``) unless ``--onnx`` is given;
2. tokenizes the real English sentences of ``engine_runner.minilm.SENTENCES`` with the model's own
   tokenizer, padded/truncated to ``--sequence`` tokens (``write_real_inputs``): 32 sentences are the
   int8-qdq calibration data (``calibration_npz``), the 32 others are held out as the benchmark inputs
   (``inputs_npz``), so no variant is judged on the sentences it was calibrated on;
3. registers it and runs one ``model_bench`` job in-process (the same code as ``enginescope bench``):
   precisions fp32, fp16, int8-dynamic, int8-qdq, batch sizes 1 and 8 (``--batches``); timing uses the
   first batch of held-out sentences, accuracy every batch (all 32 held-out sentences);
4. writes a markdown section into ``benchmarks/RESULTS.md`` (or ``--results``) (between ``<!-- minilm_ort:start -->`` and
   ``<!-- minilm_ort:end -->``, replaced on re-run) with the machine (CPU model and cores from
   ``engine_runner.environment.fingerprint``), the date, library versions, the load average around
   the run, and per run: latency p50 (with its 95% bootstrap CI), p90, p99, mean, samples, throughput,
   and the accuracy of ``sentence_embedding`` against fp32 on the held-out sentences (max abs error,
   cosine over all of them, worst single sentence's cosine).

Usage: ``.venv/bin/python benchmarks/minilm_ort.py [--home DIR] [--onnx FILE] [--sequence N]
[--batches 1,8] [--iterations N] [--min-duration S] [--threads N] [--results FILE] [--no-write]``.
A quick check that it works: ``--sequence 32 --iterations 2 --min-duration 0 --results /tmp/r.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RESULTS = REPO / "benchmarks" / "RESULTS.md"


def markers(threads: int | None) -> tuple[str, str]:
    """Section markers; one section per intra-op thread setting."""
    tag = "minilm_ort" if threads is None else f"minilm_ort threads={threads}"
    return f"<!-- {tag}:start -->", f"<!-- {tag}:end -->"

HEADER = "# EngineScope benchmark results\n\nMeasured numbers only; each section says how, where and when.\n"


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Export (if needed), register, run the job; return the results and context."""
    os.environ["ENGINESCOPE_HOME"] = str(Path(args.home).resolve())
    os.environ.pop("ENGINESCOPE_DB_URL", None)
    from db.config import db_url
    from db.jobs import start_inline_job
    from db.session import migrate
    from db.store import add_model
    from engine_runner.commands.bench import collect_results
    from engine_runner.jobctx import JobContext
    from engine_runner.jobs import execute
    from engine_runner.minilm import export_minilm, write_real_inputs

    url = db_url()
    migrate(url)
    onnx_path = Path(args.onnx) if args.onnx else Path(args.home) / "minilm.onnx"
    if not onnx_path.exists():
        print(f"exporting all-MiniLM-L6-v2 to {onnx_path}", file=sys.stderr)
        export_minilm(onnx_path)
    model = add_model(onnx_path, "all-MiniLM-L6-v2.onnx", url=url)
    calibration, heldout = write_real_inputs(Path(args.home) / f"inputs_seq{args.sequence}", seq_len=args.sequence)
    spec = {"model_id": model.id, "precisions": ["fp32", "fp16", "int8-dynamic", "int8-qdq"],
            "batch_sizes": [int(b) for b in args.batches.split(",")],
            "dim_values": {"sequence": args.sequence}, "warmup_iterations": 10, "warmup_s": 1.0,
            "iterations": args.iterations, "min_duration_s": args.min_duration, "max_duration_s": 120.0,
            "calibration_npz": str(calibration.resolve()), "inputs_npz": str(heldout.resolve())}
    if args.threads:
        spec["intra_op_threads"] = args.threads
    load_before = os.getloadavg()
    job_id = start_inline_job("model_bench", spec, model_id=model.id, url=url)

    def printer(kind: str, message: str, progress: float | None, data: dict[str, Any]) -> None:
        if kind != "progress":
            print(f"{kind}: {message}", file=sys.stderr)

    status = execute(JobContext(job_id=job_id, kind="model_bench", spec=spec, db_url=url, hooks=[printer]))
    load_after = os.getloadavg()
    doc = collect_results(job_id, url)
    return {"doc": doc, "status": status, "url": url, "spec": spec, "load": (load_before, load_after),
            "threads": args.threads}


def _embedding_accuracy(url: str, run_id: int) -> tuple[float | None, float | None, float | None, int | None]:
    """``sentence_embedding`` row of a run: (max abs err, cosine over all samples, worst sample's cosine,
    samples compared)."""
    from sqlalchemy import select

    from db.models import AccuracyResult
    from db.session import session_scope

    with session_scope(url) as s:
        row = s.execute(select(AccuracyResult).where(AccuracyResult.run_id == run_id,
                                                     AccuracyResult.output_name == "sentence_embedding")).scalars().first()
        if row is None:
            return None, None, None, None
        d = row.details or {}
        return row.max_abs_err, row.cosine, d.get("cosine_min_over_samples"), d.get("samples")


def _environment(url: str, run_id: int) -> dict[str, Any]:
    from db.models import Run
    from db.session import session_scope

    with session_scope(url) as s:
        run = s.get(Run, run_id)
        return dict(run.environment or {}) if run is not None else {}


def _variant_notes(url: str, runs: list[dict[str, Any]]) -> list[str]:
    """One line per int8-qdq variant: calibration method and the nodes left float32
    (``runs.config["variant"]["quantization_exclusions"]``, from ``engine_runner.precision``)."""
    from db.models import Run
    from db.session import session_scope

    lines = []
    with session_scope(url) as s:
        for r in runs:
            if r["precision"] != "int8-qdq" or r["batch_size"] != runs[0]["batch_size"]:
                continue
            run = s.get(Run, r["run_id"])
            variant = ((run.config or {}).get("variant") or {}) if run is not None else {}
            ex = variant.get("quantization_exclusions")
            if not ex:
                continue
            flagged = ex.get("flagged_tensors") or {}
            mins = sorted({str(v.get("min")) for v in flagged.values()})
            lines.append(f"- int8-qdq variant (artifact {variant.get('artifact_id')}): calibration "
                         f"{variant.get('calibrate_method', '?')} over the 32 calibration sentences; {ex.get('summary')}"
                         + (f" (calibrated minima {', '.join(mins)}: the additive attention mask)" if flagged else "")
                         + f". Rule: {ex.get('rule')}.")
    return lines


def render(result: dict[str, Any]) -> str:
    """The markdown section (between the markers)."""
    doc, url, spec = result["doc"], result["url"], result["spec"]
    runs = doc["runs"]
    env = _environment(url, runs[0]["run_id"]) if runs else {}
    cpu = env.get("cpu", {})
    libs = env.get("libraries", {})
    versions = ", ".join(f"{k} {v}" for k, v in sorted(libs.items()) if v and k in
                         {"onnxruntime", "onnx", "onnxconverter_common", "onnxconverter-common", "numpy", "torch", "transformers"})
    (l1b, _, _), (l1a, _, _) = result["load"]
    start, end = markers(result["threads"])
    threads = f"intra_op_num_threads={result['threads']}" if result["threads"] else "default threads (one per core)"
    lines = [start, f"## all-MiniLM-L6-v2 on ONNX Runtime (CPU), every ONNX precision, {threads}", "",
             f"- Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; job {doc['job_id']} ({result['status']}); "
             f"script `benchmarks/minilm_ort.py`.",
             f"- Machine: {cpu.get('model', '?')}, {cpu.get('cores_physical', '?')} physical / "
             f"{cpu.get('cores_logical', '?')} logical cores, no GPU; {env.get('os', '')}; Python {env.get('python', '?')}.",
             f"- Versions: {versions or 'see runs.environment'}.",
             f"- Load average (1 min) before / after the run: {l1b:.2f} / {l1a:.2f}. This machine is shared with other "
             "processes, so absolute numbers are noisy; compare precisions within this table only.",
             f"- Workload: batch {' and '.join(map(str, spec['batch_sizes']))}, sequence {spec['dim_values']['sequence']}: "
             "real English sentences (`engine_runner.minilm.SENTENCES`) tokenized by the model's own tokenizer, "
             "padded/truncated to the sequence length; 32 held-out sentences are the inputs (timing: the first "
             "batch; accuracy: all 32), the other 32 calibrate int8-qdq. Outputs last_hidden_state and sentence_embedding.",
             f"- Timing: warm-up >= {spec['warmup_iterations']} iterations and >= {spec['warmup_s']} s, then >= "
             f"{spec['iterations']} iterations and >= {spec['min_duration_s']} s; each sample is one synchronous "
             f"`InferenceSession.run` (CPUExecutionProvider, ORT_ENABLE_ALL, {threads}); per-layer profiling ran "
             "in a separate session afterwards.",
             "- Accuracy: `sentence_embedding` of each variant against fp32 on the same held-out sentences: max abs "
             "error and cosine over all of them (flattened), and the worst single sentence's cosine.",
             *_variant_notes(url, runs),
             "",
             "| precision | batch | p50 ms [95% CI] | p90 ms | p99 ms | mean ms | n | inferences/s | sequences/s | "
             "emb. max abs err | emb. cosine | worst sentence cosine | sentences | status |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in runs:
        lat = r["latency_ms"] or {}
        ci = r.get("median_ci_ms") or [None, None]
        err, cos, worst, n_acc = _embedding_accuracy(url, r["run_id"]) if r["precision"] != "fp32" \
            else (None, None, None, (r.get("inputs") or {}).get("samples"))

        def f(v: float | None, spec_: str = ".2f") -> str:
            return "-" if v is None else format(v, spec_)

        status = r["status"] if r["status"] == "succeeded" else f"failed: {(r['error'] or '').splitlines()[0][:120]}"
        if r.get("numerically_valid") is False:
            status += " (NOT numerically valid)"
        lines.append(
            f"| {r['precision']} | {r['batch_size']} | {f(lat.get('p50'))} [{f(ci[0])}, {f(ci[1])}] | {f(lat.get('p90'))} | "
            f"{f(lat.get('p99'))} | {f(lat.get('mean'))} | {r['samples']} | {f(r['throughput_per_s'], '.1f')} | "
            f"{f(r['items_per_s'], '.1f')} | {f(err, '.2e') if err is not None else '(reference)' if r['precision'] == 'fp32' else '-'} | "
            f"{f(cos, '.6f') if cos is not None else '-'} | {f(worst, '.6f') if worst is not None else '-'} | "
            f"{n_acc if n_acc is not None else '-'} | {status} |")
    lines.append(end)
    return "\n".join(lines) + "\n"


def write_section(section: str, threads: int | None, path: Path = RESULTS) -> None:
    """Insert or replace the section in RESULTS.md (created with a header if missing)."""
    start, end = markers(threads)
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


def main() -> int:
    """Run, print the section, write it unless ``--no-write``; exit 1 if a run failed."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", default="/tmp/enginescope-bench-minilm", help="ENGINESCOPE_HOME for this benchmark")
    ap.add_argument("--onnx", default=None, help="an existing MiniLM ONNX export (default: export one into --home)")
    ap.add_argument("--sequence", type=int, default=128, help="tokens per sentence (padding/truncation)")
    ap.add_argument("--batches", default="1,8", help="comma-separated batch sizes (each must divide 32)")
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--min-duration", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads (default: ONNX Runtime's)")
    ap.add_argument("--results", default=str(RESULTS), help="markdown file to write the section into")
    ap.add_argument("--no-write", action="store_true", help="print the section, do not touch RESULTS.md")
    args = ap.parse_args()
    Path(args.home).mkdir(parents=True, exist_ok=True)
    result = run_benchmark(args)
    section = render(result)
    print(section)
    if not args.no_write:
        write_section(section, args.threads, Path(args.results))
        print(f"written to {args.results}", file=sys.stderr)
    return 0 if all(r["status"] == "succeeded" for r in result["doc"]["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
