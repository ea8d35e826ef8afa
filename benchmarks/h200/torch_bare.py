"""The bare PyTorch loop beside EngineScope's `--engine torch` runs, and an in-process A/B of the two.

For a Hugging Face folder, load the model as the torch engine does (``hf_model_class`` of its config,
``from_pretrained`` with the precision's weights dtype, ``eval()``, on the device), build inputs of the same
shapes (vision: ``pixel_values`` (B, C, H, W) from the config; text: ``input_ids`` + ``attention_mask``
(B, --seq-len)), then under ``torch.inference_mode()`` run the same warm-up count and time the same number of
calls, each between a pair of CUDA events (as the engine times; ``perf_counter_ns`` on CPU), and print
p50/p99 per batch. Also ``back_to_back_mean_ms``: the mean of N calls between one event pair (no per-call
synchronisation), to show what the per-call sync costs. Nothing of EngineScope's timing code is used.

``--ab-rounds N``: in this same process, per precision and batch, N rounds alternating (A B, B A, ...) between
the bare loop above and a real EngineScope ``model_bench`` job on the same folder (``benchmarks/ort_overhead.py``'s
``enginescope_median_ns``: spec validation, plan, the torch engine, its timing loop with cancellation and
progress hooks, the GPU telemetry sampler, storage; eager, weights cast, no layer profile), each side timing the
same number of calls; overhead per round = EngineScope's stored p50 / the bare p50 - 1. The goal of issue 9 is
<= 2% at batch 1; a spread over rounds wider than that cannot resolve it.

Usage (device): python3 benchmarks/h200/torch_bare.py --folder /tmp/r50/hf_resnet50 --precision fp16 \
    --batch 1 --batch 8 --batch 64 --iterations 300 --warmup 50 [--ab-rounds 4] --out "$OUT/torch_bare_r50.json"
(CPU: --device cpu, e.g. on a tiny BERT folder, to check the script.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

DTYPES = ("fp32", "fp16", "bf16")


def load_model(folder: Path, precision: str, device: str) -> tuple[Any, dict[str, Any]]:
    """``(module, config dict)``: the folder's model class, weights in the precision's dtype, eval, on ``device``."""
    import torch
    import transformers

    from engine_runner.torch_models import hf_model_class, read_hf_config

    cfg = read_hf_config(folder)
    dtype = getattr(torch, {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}[precision])
    key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    model = hf_model_class(cfg).from_pretrained(str(folder), local_files_only=True, **{key: dtype})
    return model.to(device).eval(), cfg


def make_feeds(cfg: dict[str, Any], batch: int, seq_len: int, device: str, precision: str) -> dict[str, Any]:
    """Random inputs of the engine's shapes: vision ``pixel_values`` (B, C, H, W) in the weights' dtype; text
    ``input_ids`` (B, seq_len) int64 below the vocabulary and an all-ones ``attention_mask``."""
    import torch

    dtype = getattr(torch, {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}[precision])
    if "num_channels" in cfg:
        size = cfg.get("image_size", 224)
        return {"pixel_values": torch.randn(batch, cfg["num_channels"], size, size, device=device, dtype=dtype)}
    ids = torch.randint(0, cfg.get("vocab_size", 1000), (batch, seq_len), device=device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def bare_loop(model: Any, feeds: dict[str, Any], warmup: int, iterations: int, device: str,
              cuda_graph: bool = False) -> dict[str, Any]:
    """Warm-up, then ``iterations`` timed calls (CUDA: event pair per call; CPU: perf_counter_ns); then the
    back-to-back mean (CUDA only). With ``cuda_graph`` the call is the replay of one ``torch.cuda.CUDAGraph``
    captured after 3 warm-up calls on a side stream (PyTorch's documented capture recipe). Returns samples in
    ms, p50/p99 ms and the back-to-back mean ms."""
    import torch

    on_cuda = device.startswith("cuda")
    ms: list[float] = []
    back_to_back = None
    with torch.inference_mode():
        if cuda_graph:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    model(**feeds)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                model(**feeds)

            def call(**_f: Any) -> None:
                graph.replay()
            model = call
        for _ in range(warmup):
            model(**feeds)
        if on_cuda:
            torch.cuda.synchronize(device)
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            for _ in range(iterations):
                start.record()
                model(**feeds)
                stop.record()
                stop.synchronize()
                ms.append(start.elapsed_time(stop))
            start.record()
            for _ in range(iterations):
                model(**feeds)
            stop.record()
            stop.synchronize()
            back_to_back = start.elapsed_time(stop) / iterations
        else:
            for _ in range(iterations):
                t = time.perf_counter_ns()
                model(**feeds)
                ms.append((time.perf_counter_ns() - t) / 1e6)
    arr = np.asarray(ms)
    return {"samples_ms": ms, "p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99)),
            "back_to_back_mean_ms": back_to_back}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folder", type=Path, required=True)
    ap.add_argument("--precision", action="append", required=True, choices=DTYPES, help="weights cast")
    ap.add_argument("--batch", type=int, action="append", required=True)
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--cuda-graph", action="store_true", help="time CUDA-graph replays (both sides of an A/B)")
    ap.add_argument("--ab-rounds", type=int, default=0, help="in-process A/B rounds against EngineScope's job")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    import torch

    url = model_id = None
    if a.ab_rounds:
        if not os.environ.get("ENGINESCOPE_HOME"):
            os.environ["ENGINESCOPE_HOME"] = tempfile.mkdtemp(prefix="es_torch_ab_")
        from db.config import db_url
        from db.session import migrate
        from engine_runner.torch_models import register_source

        url = db_url()
        migrate(url)
        model_id = register_source(str(a.folder), url=url)
    from ort_overhead import enginescope_median_ns

    rows, rounds = [], []
    for prec in a.precision:
        model, cfg = load_model(a.folder, prec, a.device)
        for b in a.batch:
            feeds = make_feeds(cfg, b, a.seq_len, a.device, prec)
            res = bare_loop(model, feeds, a.warmup, a.iterations, a.device, a.cuda_graph)
            row = {"precision": prec, "batch": b, "cuda_graph": a.cuda_graph, "p50_ms": res["p50_ms"], "p99_ms": res["p99_ms"],
                   "items_per_s": b * 1e3 / res["p50_ms"], "back_to_back_mean_ms": res["back_to_back_mean_ms"],
                   "calls": a.iterations, "warmup": a.warmup}
            rows.append(row)
            print(json.dumps(row), flush=True)
            extra = {"engine": "torch", "torch": {"seq_len": a.seq_len} if "num_channels" not in cfg else {}}
            for r in range(a.ab_rounds):
                order = ["enginescope", "bare"] if r % 2 == 0 else ["bare", "enginescope"]
                one: dict[str, Any] = {"precision": prec, "batch": b, "round": r, "order": order}
                for side in order:
                    if side == "bare":
                        one["bare_p50_ms"] = bare_loop(model, feeds, a.warmup, a.iterations, a.device,
                                                       a.cuda_graph)["p50_ms"]
                    else:
                        p50_ns, run = enginescope_median_ns(url, model_id, b, a.device, a.cuda_graph, prec, a.warmup,
                                                            a.iterations, None, extra)
                        one["enginescope_p50_ms"] = p50_ns / 1e6
                        one["timing_window"] = run.get("timing_window")
                one["overhead_pct"] = 100 * (one["enginescope_p50_ms"] / one["bare_p50_ms"] - 1)
                rounds.append(one)
                print(f"A/B {prec} batch {b} round {r}: EngineScope {one['enginescope_p50_ms']:.3f} ms, bare "
                      f"{one['bare_p50_ms']:.3f} ms, {one['overhead_pct']:+.1f}% ({'/'.join(order)})", flush=True)
        del model
        if a.device.startswith("cuda"):
            torch.cuda.empty_cache()
    summary = []
    for prec in a.precision:
        for b in a.batch:
            ov = [x["overhead_pct"] for x in rounds if x["precision"] == prec and x["batch"] == b]
            if ov:
                summary.append({"precision": prec, "batch": b, "rounds": len(ov), "overhead_pct_median": float(np.median(ov)),
                                "overhead_pct_min": float(min(ov)), "overhead_pct_max": float(max(ov))})
                print(f"A/B {prec} batch {b}: median {summary[-1]['overhead_pct_median']:+.1f}% "
                      f"(rounds {min(ov):+.1f}..{max(ov):+.1f}%)", flush=True)
    a.out.write_text(json.dumps({"script": "benchmarks/h200/torch_bare.py", "command": " ".join(sys.argv),
                                 "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
                                 "folder": str(a.folder), "device": a.device, "torch": torch.__version__,
                                 "rows": rows, "ab_rounds": rounds, "ab_summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
