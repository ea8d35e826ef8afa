"""The bare loop beside EngineScope's GPU runs, in the same device call: for every succeeded ONNX Runtime run of
the given jobs, time the same ONNX file (the precision variant EngineScope made), batch, device and CUDA-graph
setting with onnxruntime alone (``benchmarks/ort_overhead.bare_median_ns``: same session options, same
generated inputs, io_binding on the device, ``run_with_iobinding`` timed with ``perf_counter_ns``), the same
warm-up count and the same number of timed calls, and write EngineScope's and the bare loop's p50/p99 side by
side with the gap (``enginescope / bare - 1``). The issue asks EngineScope's figures to be within 3 % of the
bare loop.

Usage (on the device, after ``benchmarks/h200/gpu_engines.sh`` ran the jobs; ENGINESCOPE_HOME as there)::

    python3 benchmarks/h200/ort_bare.py --job 1 --job 2 --out "$OUT/ort_bare.json"
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--job", type=int, action="append", required=True, help="model_bench job id (repeatable)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    from sqlalchemy import select

    from db.config import db_url, home
    from db.models import Model, Run, Summary
    from db.session import session_scope
    from db.store import model_file
    from engine_runner.inputs import generate_inputs, read_input_specs
    from ort_overhead import bare_median_ns

    url = db_url()
    cases: list[dict[str, Any]] = []
    with session_scope(url) as s:
        runs = list(s.execute(select(Run).where(Run.job_id.in_(args.job), Run.engine == "onnxruntime",
                                                Run.status == "succeeded").order_by(Run.id)).scalars())
        for r in runs:
            summ = s.execute(select(Summary).where(Summary.run_id == r.id, Summary.metric == "latency_ms")).scalar_one()
            cfg = r.config or {}
            rel = (cfg.get("variant") or {}).get("path")
            model = s.get(Model, r.model_id)
            if rel:
                path = Path(rel) if Path(rel).is_absolute() else home() / rel
            elif model is not None:
                path = model_file(model)
            else:
                raise SystemExit(f"run {r.id}: neither a variant path nor a model row")
            cases.append({"run_id": r.id, "job_id": r.job_id, "precision": r.precision, "batch": r.batch_size,
                          "shapes": r.shapes, "device": cfg.get("device", "cpu"), "cuda_graph": bool(cfg.get("cuda_graph")),
                          "warmup": int(cfg.get("warmup_iterations_done") or 10), "iterations": int(summ.count),
                          "seed": int((cfg.get("requested") or {}).get("seed", 0)), "threads": None,
                          "variant": str(path), "es_p50_ms": summ.p50, "es_p99_ms": summ.p99,
                          "timing_window": r.timing_window})
    for c in cases:
        specs = read_input_specs(Path(c["variant"]))
        feeds = generate_inputs(specs, c["shapes"], seed=c["seed"])
        med_ns, samples = bare_median_ns(Path(c["variant"]), feeds, c["device"], c["cuda_graph"], c["warmup"],
                                         c["iterations"], c["threads"])
        arr = np.asarray(samples, dtype=np.float64) / 1e6
        c["bare_p50_ms"] = float(np.percentile(arr, 50))
        c["bare_p99_ms"] = float(np.percentile(arr, 99))
        c["gap_p50_pct"] = 100 * (c["es_p50_ms"] / c["bare_p50_ms"] - 1)
        c["gap_p99_pct"] = 100 * (c["es_p99_ms"] / c["bare_p99_ms"] - 1)
        c["within_3pct_p50"] = abs(c["gap_p50_pct"]) <= 3.0
        print(f"run {c['run_id']:>3} {c['precision']:<9} b{c['batch']:<3} graph={int(c['cuda_graph'])} "
              f"EngineScope p50 {c['es_p50_ms']:.4f} p99 {c['es_p99_ms']:.4f} | bare p50 {c['bare_p50_ms']:.4f} "
              f"p99 {c['bare_p99_ms']:.4f} ms | gap p50 {c['gap_p50_pct']:+.2f}% ({c['iterations']} calls)", flush=True)
    import onnxruntime

    doc = {"script": "benchmarks/h200/ort_bare.py", "jobs": args.job, "onnxruntime": onnxruntime.__version__,
           "onnxruntime_file": onnxruntime.__file__, "enginescope_home": os.environ.get("ENGINESCOPE_HOME"),
           "order": "EngineScope jobs first, then the bare loops, in one process call on the same GPU",
           "cases": cases}
    args.out.write_text(json.dumps(doc, indent=1, default=str))
    print(f"wrote {args.out}; within 3% at p50: {sum(c['within_3pct_p50'] for c in cases)} of {len(cases)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
