"""The bare PyTorch loop beside EngineScope's `--engine torch` runs, in the same device call.

For a Hugging Face folder, load the model as the torch engine does (``hf_model_class`` of its config,
``from_pretrained`` with the precision's weights dtype, ``eval()``, on the device), build inputs of the same
shapes (vision: ``pixel_values`` (B, C, H, W) from the config; text: ``input_ids`` + ``attention_mask``
(B, --seq-len)), then under ``torch.inference_mode()`` run the same warm-up count and time the same number of
calls, each between a pair of CUDA events (as the engine times), and print p50/p99 per batch. Also
``graph-free back-to-back``: the mean of N calls between one event pair (no per-call synchronisation), to show
what the per-call sync costs. Nothing of EngineScope's timing code is used.

Usage (device): python3 benchmarks/h200/torch_bare.py --folder /tmp/r50/hf_resnet50 --precision fp16 \
    --batch 1 --batch 8 --batch 64 --iterations 300 --warmup 50 --out "$OUT/torch_bare_r50.json"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folder", type=Path, required=True)
    ap.add_argument("--precision", action="append", required=True, help="fp32, fp16 or bf16 (weights cast)")
    ap.add_argument("--batch", type=int, action="append", required=True)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    import torch

    from engine_runner.torch_models import hf_model_class, read_hf_config

    cfg = read_hf_config(a.folder)
    rows = []
    for prec in a.precision:
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[prec]
        import transformers

        key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
        model = hf_model_class(cfg).from_pretrained(str(a.folder), local_files_only=True, **{key: dtype})
        model = model.to("cuda:0").eval()
        for b in a.batch:
            if "num_channels" in cfg:
                size = cfg.get("image_size", 224)
                feeds = {"pixel_values": torch.randn(b, cfg["num_channels"], size, size, device="cuda:0", dtype=dtype)}
            else:
                ids = torch.randint(0, cfg.get("vocab_size", 1000), (b, a.seq_len), device="cuda:0")
                feeds = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            with torch.inference_mode():
                for _ in range(a.warmup):
                    model(**feeds)
                torch.cuda.synchronize()
                ms = []
                for _ in range(a.iterations):
                    start.record()
                    model(**feeds)
                    stop.record()
                    stop.synchronize()
                    ms.append(start.elapsed_time(stop))
                start.record()
                for _ in range(a.iterations):
                    model(**feeds)
                stop.record()
                stop.synchronize()
                back_to_back = start.elapsed_time(stop) / a.iterations
            arr = np.asarray(ms)
            row = {"precision": prec, "batch": b, "p50_ms": float(np.percentile(arr, 50)),
                   "p99_ms": float(np.percentile(arr, 99)), "items_per_s": b * 1e3 / float(np.percentile(arr, 50)),
                   "back_to_back_mean_ms": back_to_back, "calls": a.iterations, "warmup": a.warmup}
            rows.append(row)
            print(json.dumps(row), flush=True)
        del model
        torch.cuda.empty_cache()
    a.out.write_text(json.dumps({"folder": str(a.folder), "torch": torch.__version__, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
