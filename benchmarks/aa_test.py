"""The A/A test of EngineScope's verdicts on this machine, and the real-difference check, with results.

Two parts, both on all-MiniLM-L6-v2 (exported by ``engine_runner.minilm.export_minilm``, real tokenized
sentences, batch 1, sequence ``--sequence``) on ONNX Runtime's CPU provider:

1. **A/A** (``--trials`` times, default 20): the same configuration against itself. Each trial opens two
   fresh ``InferenceSession`` of the same fp32 file with the options ``enginescope bench`` uses
   (ORT_ENABLE_ALL, ``--threads`` intra-op threads), and measures them in ``--repeats`` interleaved rounds
   (A B A B ..., as ``bench --repeats`` interleaves configurations) with ``engine_runner.timing.time_calls``,
   the job's own timed loop (one sample = one synchronous ``session.run``). The two sample sets, grouped by
   repeat, go through ``profiles.verdict.judge`` for latency p50, latency p99 and throughput. The target:
   "no significant difference" at least 19 times in 20 on each metric.
2. **Real difference, end to end** (``--jobs`` times, default 3): ``model_bench`` jobs run in-process (the
   code of ``enginescope bench``) with precisions fp32 and int8-dynamic, ``--repeats`` repeats each, then
   ``db.verdicts.compare_runs`` (the code of ``enginescope compare``) of int8-dynamic against fp32. The
   target: "faster" every time. The fp32 runs of consecutive jobs are also compared with each other
   (a cross-job A/A: minutes apart, reported as measured).

Writes a section into ``benchmarks/RESULTS.md`` between ``<!-- aa_test:start -->`` and ``<!-- aa_test:end -->``
(replaced on re-run) unless ``--no-write``: machine, date, versions, load averages, per-trial rows.

Usage: ``.venv/bin/python benchmarks/aa_test.py [--home DIR] [--trials 20] [--repeats 3] [--jobs 3]
[--iterations 30] [--min-duration 1.0] [--sequence 128] [--threads 1] [--results FILE] [--no-write]``.
A quick check that it works: ``--trials 2 --jobs 1 --iterations 3 --min-duration 0 --sequence 16 --no-write``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RESULTS = REPO / "benchmarks" / "RESULTS.md"
START, END = "<!-- aa_test:start -->", "<!-- aa_test:end -->"
METRIC_KEYS = ("latency_p50", "latency_p99", "throughput")


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def aa_trials(onnx_path: Path, feeds: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Part 1 (module doc): one row per trial with each metric's ratio, interval and word."""
    import numpy as np

    from engine_runner.timing import TimingPolicy, time_calls
    from profiles.verdict import judge

    policy = TimingPolicy(warmup_iterations=5, warmup_s=0.3, iterations=args.iterations,
                          min_duration_s=args.min_duration, max_duration_s=60.0)
    rows = []
    for t in range(args.trials):
        sessions = [_session(onnx_path, args.threads), _session(onnx_path, args.threads)]
        groups: list[list[np.ndarray]] = [[], []]
        for _ in range(args.repeats):
            for k, sess in enumerate(sessions):
                res = time_calls(lambda sess=sess: sess.run(None, feeds), policy)
                groups[k].append(np.asarray(res.samples_ns, dtype=np.float64) / 1e6)
        row: dict[str, Any] = {"trial": t + 1, "samples": [sum(g.size for g in gr) for gr in groups],
                               "load": os.getloadavg()[0]}
        for key in METRIC_KEYS:
            v = judge(key, 1, 2, groups[0], groups[1])
            row[key] = v
        rows.append(row)
        print(f"A/A trial {t + 1}/{args.trials}: " + "; ".join(f"{k} {row[k].summary}" for k in METRIC_KEYS),
              file=sys.stderr, flush=True)
    return rows


def real_difference(model_id: int, url: str, feeds_npz: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Part 2 (module doc): one row per job with the int8-dynamic vs fp32 verdicts and the cross-job A/A."""
    from db.jobs import start_inline_job
    from db.verdicts import compare_runs
    from engine_runner.commands.bench import collect_results
    from engine_runner.jobctx import JobContext
    from engine_runner.jobs import execute

    rows: list[dict[str, Any]] = []
    prev_fp32: int | None = None
    for j in range(args.jobs):
        spec = {"model_id": model_id, "precisions": ["fp32", "int8-dynamic"], "batch_sizes": [1],
                "dim_values": {"sequence": args.sequence}, "warmup_iterations": 5, "warmup_s": 0.3,
                "iterations": args.iterations, "min_duration_s": args.min_duration, "max_duration_s": 60.0,
                "inputs_npz": str(feeds_npz.resolve()), "profile_layers": False, "repeats": args.repeats,
                "intra_op_threads": args.threads}
        job_id = start_inline_job("model_bench", spec, model_id=model_id, url=url)
        status = execute(JobContext(job_id=job_id, kind="model_bench", spec=spec, db_url=url, hooks=[]))
        doc = collect_results(job_id, url)
        runs = {r["precision"]: r for r in doc["runs"]}
        if status != "succeeded" or set(runs) != {"fp32", "int8-dynamic"}:
            raise SystemExit(f"job {job_id} ended {status}: {doc.get('error')}")
        fp32, int8 = runs["fp32"]["run_id"], runs["int8-dynamic"]["run_id"]
        row: dict[str, Any] = {"job": job_id, "fp32": fp32, "int8": int8,
                               "positions": (runs["fp32"]["repeats"]["positions"],
                                             runs["int8-dynamic"]["repeats"]["positions"]),
                               "accuracy": runs["int8-dynamic"]["accuracy"]}
        for key in METRIC_KEYS:
            row[key] = compare_runs(fp32, int8, key, url=url)
        row["cross"] = compare_runs(prev_fp32, fp32, "latency_p50", url=url) if prev_fp32 is not None else None
        prev_fp32 = fp32
        rows.append(row)
        print(f"job {job_id}: int8-dynamic vs fp32 " + "; ".join(f"{k} {row[k].summary}" for k in METRIC_KEYS),
              file=sys.stderr, flush=True)
    return rows


def _cell(v: Any) -> str:
    if v.ci95 is None:
        return f"{v.verdict}"
    return f"{v.ratio:.3f} [{v.ci95[0]:.3f}, {v.ci95[1]:.3f}] {v.verdict}"


def render(aa: list[dict[str, Any]], real: list[dict[str, Any]], ctx: dict[str, Any]) -> str:
    """The RESULTS.md section (markdown)."""
    from profiles.verdict import FASTER, NO_DIFFERENCE

    a = ctx["args"]
    lines = [START, "## Verdicts: A/A test and a real difference (MiniLM, ONNX Runtime CPU)", "",
             f"- Date: {ctx['date']}; script `benchmarks/aa_test.py --trials {a.trials} --repeats {a.repeats} "
             f"--jobs {a.jobs} --iterations {a.iterations} --min-duration {a.min_duration} --sequence {a.sequence} "
             f"--threads {a.threads}`.",
             f"- Machine: {ctx['cpu']}, {os.cpu_count()} logical cores, no GPU; {platform.platform()}; Python "
             f"{platform.python_version()}; onnxruntime {ctx['ort']}, numpy {ctx['numpy']}, scipy {ctx['scipy']}.",
             f"- Load average (1 min) before / after: {ctx['load'][0]:.2f} / {ctx['load'][1]:.2f}. The machine is "
             "shared (other processes ran tests beside it), which is the condition the interval must survive.",
             "- Method: `profiles.verdict` (docs/metrics.md, \"Verdicts\"): ratio of pooled statistics, 95% interval "
             "from a hierarchical bootstrap over repeats then samples, spread scaled for few repeats "
             "(sqrt(R/(R-1)) * t(0.975, Welch df) / z(0.975)); 2000 replicates, fixed seed.", ""]
    counts = {k: sum(1 for r in aa if r[k].verdict == NO_DIFFERENCE) for k in METRIC_KEYS}
    lines += [f"### A/A: fp32 against itself, {len(aa)} trials, {a.repeats} interleaved repeats each", "",
              "Each trial: two fresh sessions of the same fp32 file, A B A B ... rounds of the job's timed loop. "
              "Target: \"no significant difference\" >= 19 of 20 per metric.", "",
              "| metric | no significant difference | target met |", "|---|---:|---|"]
    for k in METRIC_KEYS:
        need = int(len(aa) * 19 / 20 + 0.999)
        lines.append(f"| {k} | {counts[k]} / {len(aa)} | {'yes' if counts[k] >= need else 'NO'} |")
    lines += ["", "| trial | samples A / B | load 1 min | latency p50 ratio [95% CI] | latency p99 | throughput |",
              "|---:|---|---:|---|---|---|"]
    for r in aa:
        lines.append(f"| {r['trial']} | {r['samples'][0]} / {r['samples'][1]} | {r['load']:.2f} | "
                     + " | ".join(_cell(r[k]) for k in METRIC_KEYS) + " |")
    found = {k: sum(1 for r in real if r[k].verdict == FASTER) for k in METRIC_KEYS}
    lines += ["", f"### Real difference: int8-dynamic vs fp32, {len(real)} `model_bench` jobs with --repeats {a.repeats}",
              "", "Each job measures fp32 and int8-dynamic in interleaved rounds (positions below); the verdict is "
              "`enginescope compare`'s code on the stored runs. Target: \"faster\" every time.", "",
              "| metric | faster | target met |", "|---|---:|---|"]
    for k in METRIC_KEYS:
        lines.append(f"| {k} | {found[k]} / {len(real)} | {'yes' if found[k] == len(real) else 'NO'} |")
    lines += ["", "| job | runs fp32 / int8 | positions fp32 / int8 | latency p50 ratio [95% CI] | latency p99 | "
              "throughput | int8 cosine vs fp32 | fp32 vs previous job's fp32 (p50) |", "|---|---|---|---|---|---|---|---|"]
    for r in real:
        acc = r["accuracy"] or {}
        cos = f"{acc['cosine']:.4f}" if acc.get("cosine") is not None else "-"
        lines.append(f"| {r['job']} | {r['fp32']} / {r['int8']} | {r['positions'][0]} / {r['positions'][1]} | "
                     + " | ".join(_cell(r[k]) for k in METRIC_KEYS)
                     + f" | {cos} | {_cell(r['cross']) if r['cross'] is not None else '-'} |")
    lines += ["", "The last column compares fp32 runs of consecutive jobs (sequential, not interleaved): each "
              "interval uses only its own job's repeats, so drift between jobs larger than drift between "
              "repeats shows there; it is reported as measured.", END]
    return "\n".join(lines) + "\n"


def write_section(text: str, path: Path) -> None:
    """Replace (or append) the section between the markers in ``path``."""
    old = path.read_text() if path.exists() else "# EngineScope benchmark results\n"
    pat = re.compile(re.escape(START) + r".*?" + re.escape(END) + r"\n?", re.S)
    path.write_text(pat.sub(lambda _: text, old) if pat.search(old) else old.rstrip("\n") + "\n\n" + text)


def main() -> None:
    """Command line (module doc)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--home", default=str(REPO / ".bench-aa"))
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--jobs", type=int, default=3)
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--min-duration", type=float, default=1.0)
    p.add_argument("--sequence", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", default=str(RESULTS))
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    if args.trials < 1 or args.repeats < 2 or args.jobs < 1:
        p.error("--trials >= 1, --repeats >= 2 and --jobs >= 1")

    home = Path(args.home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["ENGINESCOPE_HOME"] = str(home)
    os.environ.pop("ENGINESCOPE_DB_URL", None)
    import numpy as np
    import onnxruntime
    import scipy

    from db.config import db_url
    from db.session import migrate
    from db.store import add_model
    from engine_runner.environment import fingerprint
    from engine_runner.minilm import export_minilm, write_real_inputs

    url = db_url()
    migrate(url)
    onnx_path = home / "minilm.onnx"
    if not onnx_path.exists():
        print(f"exporting all-MiniLM-L6-v2 to {onnx_path}", file=sys.stderr)
        export_minilm(onnx_path)
    _, heldout = write_real_inputs(home / f"inputs_seq{args.sequence}", seq_len=args.sequence)
    with np.load(heldout) as z:
        feeds = {k: z[k][:1] for k in z.files}
    first = home / f"first_seq{args.sequence}.npz"
    np.savez(first, **feeds)
    model = add_model(onnx_path, "all-MiniLM-L6-v2.onnx", url=url)

    load0 = os.getloadavg()[0]
    aa = aa_trials(onnx_path, feeds, args)
    real = real_difference(int(model.id), url, first, args)
    load1 = os.getloadavg()[0]
    ctx = {"args": args, "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "cpu": (fingerprint().get("cpu") or {}).get("model", platform.processor()), "ort": onnxruntime.__version__,
           "numpy": np.__version__, "scipy": scipy.__version__, "load": (load0, load1)}
    text = render(aa, real, ctx)
    print(text)
    if not args.no_write:
        write_section(text, Path(args.results))


if __name__ == "__main__":
    main()
