"""Markdown summary of a gpu_engines.sh output folder: one table row per EngineScope run (p50/p99, items/s,
energy per inference and per item, average power, SM/memory clocks over the measured window, the bare loop's
p50 on the same case and the gap), then the overhead result, the warnings and the machine. For
benchmarks/RESULTS.md.

Usage: ``python3 benchmarks/h200/gpu_summary.py OUT_DIR``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _f(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def summarize(out: Path) -> str:
    """The markdown text (module doc)."""
    bare = {c["run_id"]: c for f in ("ort_bare.json", "ort_bare_bert.json")
            for c in (_load(out / f) or {}).get("cases", [])}
    # the bare torch loop on the same folder: keyed by (bench file, precision, batch)
    torch_bare = {(bench, r["precision"], r["batch"]): r for bench, f in (("bench_torch_eager.json", "torch_bare_r50.json"),
                                                                          ("bench_bert_torch.json", "torch_bare_bert.json"))
                  for r in (_load(out / f) or {}).get("rows", [])}
    lines = ["| engine | precision | CUDA graph | batch | p50 ms | p99 ms | items/s | J/inference | mJ/item | avg W | "
             "SM MHz median (min) | mem MHz | energy method | bare p50 ms | gap p50 | warnings |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---:|---:|---:|"]
    warnings: list[str] = []
    for name in ("bench_ort_cuda.json", "bench_ort_cuda_graph.json", "bench_torch_eager.json", "bench_torch_compile.json",
                 "bench_bert_ort.json", "bench_bert_ort_graph.json", "bench_bert_torch.json"):
        doc = _load(out / name)
        if not doc:
            continue
        for r in doc.get("runs", []):
            lat, gpu = r.get("latency_ms") or {}, r.get("gpu") or {}
            b = bare.get(r["run_id"], {})
            tb = torch_bare.get((name, r["precision"], r["batch_size"]))
            if tb and lat.get("p50"):
                b = {"bare_p50_ms": tb["p50_ms"], "gap_p50_pct": 100 * (lat["p50"] / tb["p50_ms"] - 1)}
            if r["status"] != "succeeded":
                lines.append(f"| {r['engine']} | {r['precision']} | {'yes' if r.get('cuda_graph') else ''} | "
                             f"{r['batch_size']} | failed: {(r.get('error') or '').splitlines()[0][:120]} |")
                continue
            per_item = gpu.get("energy_per_item_j")
            model = "BERT-base s128" if "bert" in name else "ResNet-50"
            lines.append(
                f"| {model} {r['engine']} {r.get('mode') or ''} | {r['precision']} | {'yes' if r.get('cuda_graph') else ''} | {r['batch_size']} | "
                f"{_f(lat.get('p50'), '.3f')} | {_f(lat.get('p99'), '.3f')} | {_f(r.get('items_per_s'), ',.0f')} | "
                f"{_f(gpu.get('energy_per_inference_j'), '.4f')} | {_f(per_item * 1e3 if per_item else None, '.3f')} | "
                f"{_f(gpu.get('avg_power_w'), '.0f')} | {_f(gpu.get('sm_clock_median_mhz'), '.0f')} "
                f"({_f(gpu.get('sm_clock_min_mhz'), '.0f')}) | {_f(gpu.get('mem_clock_median_mhz'), '.0f')} | "
                f"{gpu.get('energy_method') or '-'} | {_f(b.get('bare_p50_ms'), '.3f')} | "
                f"{_f(b.get('gap_p50_pct'), '+.2f')}{'%' if b else ''} | {len(r.get('warnings') or [])} |")
            warnings += [f"run {r['run_id']} ({r['engine']} {r['precision']} b{r['batch_size']}): {w}"
                         for w in r.get("warnings") or []]
    text = ["\n".join(lines)]
    ovh = _load(out / "ort_overhead_cuda.json")
    if ovh:
        for s in ovh.get("summary", []):
            text.append(f"Harness overhead (benchmarks/ort_overhead.py, {ovh.get('device')}, batch {s['batch']}, "
                        f"{s['rounds']} alternating rounds): EngineScope p50 {s['enginescope_p50_ms']:.4f} ms vs bare "
                        f"{s['bare_p50_ms']:.4f} ms, overhead median {s['overhead_pct_median']:+.2f}% (IQR "
                        f"{s.get('overhead_pct_iqr', float('nan')):.2f} points, range {s['overhead_pct_min']:+.2f}.."
                        f"{s['overhead_pct_max']:+.2f}%)")
    ab = _load(out / "torch_ab_r50.json")
    if ab:
        for s in ab.get("ab_summary", []):
            text.append(f"torch in-process A/B (benchmarks/h200/torch_bare.py --ab-rounds, {ab.get('device')}, "
                        f"{s['precision']} batch {s['batch']}, {s['rounds']} alternating rounds): EngineScope vs bare "
                        f"p50 median {s['overhead_pct_median']:+.2f}% (rounds {s['overhead_pct_min']:+.2f}.."
                        f"{s['overhead_pct_max']:+.2f}%)")
    if warnings:
        text.append("Warnings:\n" + "\n".join(f"- {w}" for w in warnings))
    pre = _load(out / "preflight.json") or {}
    meta = _load(out / "model_meta.json") or {}
    text.append(f"onnxruntime {pre.get('onnxruntime')} ({pre.get('onnxruntime_file')}), torch {pre.get('torch')}, "
                f"model {meta.get('onnx_source')} ResNet-50 ({meta.get('params')} parameters, opset {meta.get('opset')}).")
    smi = out / "nvidia_smi_before.csv"
    if smi.exists():
        text.append("nvidia-smi before: " + " / ".join(smi.read_text().strip().splitlines()))
    return "\n\n".join(text)


if __name__ == "__main__":
    print(summarize(Path(sys.argv[1])))
