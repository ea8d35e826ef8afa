"""Record the profiler outputs EngineScope's kernel timelines are built from, on the H200 (one device call).

Writes under ``$OUT/probe`` (then archived by the caller):

- ``torch_eager.json`` / ``torch_graph.json``: torch.profiler (Kineto/CUPTI) Chrome traces of 3 iterations of a
  small conv + attention network in fp16, eager and replayed as a CUDA graph, each iteration inside
  ``record_function("iteration N")``;
- ``ort_profile.json`` + ``ort_kineto.json``: ONNX Runtime's own profiler trace (CUDA provider) and the Kineto
  trace of the same 3 ``session.run`` calls (CUPTI sees every kernel of the process, ONNX Runtime's too), plus
  ``ort_clock.json`` (ONNX Runtime's profiling start and our clocks, to check the alignment);
- ``ncu_raw.csv``: ``ncu --clock-control none --csv --page raw`` with the SpeedOfLight, Occupancy and roofline
  sections on the first kernels of one fp16 iteration (``--ncu-child`` is that child);
- ``ceilings.json``: bf16 matmul FLOP/s and device copy bytes/s measured with CUDA events;
- ``tools.txt``: what ``nsys`` and ``ncu`` are there and what a plain ``nsys profile`` made.

Not a benchmark: its numbers are leads, its files are test inputs (tests/data/kernels/).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def net():
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Sequential(nn.Conv2d(3, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                                      nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.BatchNorm2d(128), nn.ReLU())
            self.qkv = nn.Linear(128, 384)
            self.norm = nn.LayerNorm(128)
            self.mlp = nn.Sequential(nn.Linear(128, 512), nn.GELU(), nn.Linear(512, 128))
            self.head = nn.Linear(128, 10)

        def forward(self, x):
            y = self.conv(x)                                   # [B, 128, 16, 16]
            t = y.flatten(2).transpose(1, 2)                   # [B, 256, 128]
            q, k, v = self.qkv(t).chunk(3, dim=-1)
            b, n, _ = q.shape
            q, k, v = (z.reshape(b, n, 4, 32).transpose(1, 2) for z in (q, k, v))
            a = torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, 128)
            t = self.norm(t + a)
            t = t + self.mlp(t)
            return self.head(t.mean(dim=1))

    torch.manual_seed(0)
    return Net().eval()


def ncu_child() -> None:
    import torch
    m = net().cuda().half()
    x = torch.randn(8, 3, 64, 64, device="cuda", dtype=torch.half)
    with torch.no_grad():
        m(x)
        torch.cuda.synchronize()


def main() -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    out = Path(os.environ["OUT"]) / "probe"
    out.mkdir(parents=True, exist_ok=True)
    tools = []
    dev = torch.device("cuda")
    m = net().to(dev).half()
    x = torch.randn(8, 3, 64, 64, device=dev, dtype=torch.half)
    acts = [ProfilerActivity.CPU, ProfilerActivity.CUDA]
    with torch.no_grad():
        for _ in range(10):
            m(x)
        torch.cuda.synchronize()
        with profile(activities=acts, record_shapes=True) as prof:
            for i in range(3):
                with record_function(f"iteration {i}"):
                    m(x)
                    torch.cuda.synchronize()
        prof.export_chrome_trace(str(out / "torch_eager.json"))
        (out / "torch_eager_table.txt").write_text(prof.key_averages().table(sort_by="cuda_time_total", row_limit=40))
        # CUDA graph
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                m(x)
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            y = m(x)
        g.replay()
        torch.cuda.synchronize()
        with profile(activities=acts) as prof:
            for i in range(3):
                with record_function(f"iteration {i}"):
                    g.replay()
                    torch.cuda.synchronize()
        prof.export_chrome_trace(str(out / "torch_graph.json"))
        del y

    # ONNX Runtime on CUDA, its profiler and Kineto around the same calls
    try:
        import numpy as np
        import onnxruntime as ort
        ort.preload_dlls()
        onnx_path = out / "probe_net.onnx"
        m32 = net().eval()
        torch.onnx.export(m32, torch.randn(8, 3, 64, 64), str(onnx_path), opset_version=17, dynamo=False,
                          input_names=["input"], output_names=["logits"])
        so = ort.SessionOptions()
        so.enable_profiling = True
        so.profile_file_prefix = str(out / "ort_prof")
        sess = ort.InferenceSession(str(onnx_path), so, providers=["CUDAExecutionProvider"])
        feed = {"input": np.random.default_rng(0).standard_normal((8, 3, 64, 64), dtype=np.float32)}
        for _ in range(10):
            sess.run(None, feed)
        clock = {"ort_profiling_start_ns": sess.get_profiling_start_time_ns(), "time_ns": time.time_ns(),
                 "perf_counter_ns": time.perf_counter_ns(), "monotonic_ns": time.monotonic_ns()}
        marks = []
        with profile(activities=acts) as prof:
            for i in range(3):
                with record_function(f"iteration {i}"):
                    marks.append({"i": i, "time_ns": time.time_ns(), "perf_counter_ns": time.perf_counter_ns()})
                    sess.run(None, feed)
        prof.export_chrome_trace(str(out / "ort_kineto.json"))
        prof_file = sess.end_profiling()
        shutil.move(prof_file, out / "ort_profile.json")
        clock["marks"] = marks
        clock["providers"] = sess.get_providers()
        clock["ort_version"] = ort.__version__
        (out / "ort_clock.json").write_text(json.dumps(clock, indent=1))
    except Exception as exc:  # noqa: BLE001 - a probe records what failed
        tools.append(f"ORT part failed: {type(exc).__name__}: {exc}")

    # ceilings: bf16 matmul and device-to-device copy, CUDA events
    ceil = {}
    a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    for _ in range(5):
        a @ b
    torch.cuda.synchronize()
    best = []
    for _ in range(5):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        for _ in range(20):
            a @ b
        e1.record()
        e1.synchronize()
        best.append(e0.elapsed_time(e1) / 1e3 / 20)
    ceil["bf16_matmul_flop_per_s"] = 2 * 8192 ** 3 / min(best)
    ceil["bf16_matmul_s"] = best
    del a, b
    src = torch.empty(2 * 1024 ** 3, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    dst.copy_(src)
    torch.cuda.synchronize()
    best = []
    for _ in range(5):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        for _ in range(10):
            dst.copy_(src)
        e1.record()
        e1.synchronize()
        best.append(e0.elapsed_time(e1) / 1e3 / 10)
    ceil["copy_bytes_per_s"] = 2 * src.numel() / min(best)  # read + write
    ceil["copy_s"] = best
    ceil["gpu"] = torch.cuda.get_device_name(0)
    (out / "ceilings.json").write_text(json.dumps(ceil, indent=1))
    del src, dst
    torch.cuda.empty_cache()

    # tools
    for tool in ("nsys", "ncu"):
        path = shutil.which(tool)
        tools.append(f"{tool}: {path}")
        if path:
            r = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
            tools.append(r.stdout.strip() + r.stderr.strip())
    ncu = shutil.which("ncu")
    if ncu:
        t0 = time.time()
        cmd = [ncu, "--clock-control", "none", "--target-processes", "all", "--csv", "--page", "raw",
               "--section", "SpeedOfLight", "--section", "Occupancy", "--section", "SpeedOfLight_RooflineChart",
               "--section", "SpeedOfLight_HierarchicalTensorRooflineChart", "--launch-skip", "0", "--launch-count", "12",
               sys.executable, __file__, "--ncu-child"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
        (out / "ncu_raw.csv").write_text(r.stdout)
        tools.append(f"ncu rc={r.returncode} {time.time() - t0:.1f}s stderr: {r.stderr[-3000:]}")
    nsys = shutil.which("nsys")
    if nsys:
        t0 = time.time()
        r = subprocess.run([nsys, "profile", "-t", "cuda,nvtx", "-o", "/tmp/nsys_probe", "--force-overwrite", "true",
                            sys.executable, __file__, "--ncu-child"], capture_output=True, text=True, timeout=120)
        tools.append(f"nsys profile rc={r.returncode} {time.time() - t0:.1f}s out: {r.stdout[-2000:]} err: {r.stderr[-2000:]}")
        tools.append("files: " + " ".join(sorted(os.listdir("/tmp"))))
        nsdir = Path(nsys).resolve().parent.parent
        tools.append(f"nsys tree {nsdir}: " + " ".join(sorted(p.name for p in nsdir.glob("*"))))
        tools.append("host dirs: " + " ".join(sorted(p.name for p in nsdir.glob("host*/*")))[:3000])
    (out / "tools.txt").write_text("\n".join(tools))
    print("\n".join(tools)[:6000])


def nsys_child() -> None:
    """3 warm-up and 3 measured fp16 iterations, the measured ones inside cudaProfilerStart/Stop and NVTX ranges
    (what ``nsys --capture-range=cudaProfilerApi`` records)."""
    import torch
    m = net().cuda().half()
    x = torch.randn(8, 3, 64, 64, device="cuda", dtype=torch.half)
    with torch.no_grad():
        for _ in range(3):
            m(x)
        torch.cuda.synchronize()
        torch.cuda.profiler.start()
        for i in range(3):
            torch.cuda.nvtx.range_push(f"iteration {i}")
            m(x)
            torch.cuda.synchronize()
            torch.cuda.nvtx.range_pop()
        torch.cuda.profiler.stop()


if __name__ == "__main__":
    if "--nsys-child" in sys.argv:
        nsys_child()
    elif "--ncu-child" in sys.argv:
        ncu_child()
    else:
        main()
