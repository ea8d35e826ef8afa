"""``enginescope bench --profile-kernels 3`` on a real NVIDIA GPU: PyTorch (eager and CUDA graph) and ONNX Runtime
CUDA (with its node attribution, and CUDA graph) on tiny models built here. Each measured run gets one profiled
run whose kernels fall into the 3 iteration ranges, the same number in each. Skips without CUDA (torch) or,
for ONNX Runtime, without CUDAExecutionProvider."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

FAST = ["--iterations", "20", "--min-duration", "0.2", "--warmup", "3", "--warmup-s", "0.05", "--no-layers", "--quiet"]


def _torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _ort_cuda() -> bool:
    try:
        import onnxruntime as ort

        if hasattr(ort, "preload_dlls"):
            ort.preload_dlls()
        return "CUDAExecutionProvider" in ort.get_available_providers()
    except Exception:  # noqa: BLE001 - no package or no library: not a GPU machine for ONNX Runtime
        return False


pytestmark = pytest.mark.skipif(not _torch_cuda(), reason="needs an NVIDIA GPU with CUDA torch (torch.profiler/CUPTI)")
needs_ort_cuda = pytest.mark.skipif(not _ort_cuda(), reason="needs onnxruntime-gpu (CUDAExecutionProvider)")


def tiny_pt2(path: Path) -> Path:
    """torch.export of Conv(3->16) -> ReLU -> Conv(16->16) -> ReLU -> mean -> Linear(16->10), x float32
    [4, 3, 32, 32] (fixed shapes: CUDA graphs replay them)."""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
            self.head = nn.Linear(16, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.body(x).mean(dim=(2, 3)))

    torch.manual_seed(0)
    torch.export.save(torch.export.export(Net().eval(), (torch.randn(4, 3, 32, 32),)), str(path))
    return path


def bench(args: list[str]) -> dict[str, Any]:
    from typer.testing import CliRunner

    from engine_runner.cli import app

    res = CliRunner().invoke(app, ["bench", *args, "--profile-kernels", "3", "--json", *FAST])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout.strip().splitlines()[-1])


def check_profiled(doc: dict[str, Any], url: str) -> list[Any]:
    """Every measured run has one succeeded profiled run with kernels in 3 equal iterations; returns the traces."""
    from db.kernels import load_trace

    assert doc["runs"] and all(r["status"] == "succeeded" for r in doc["runs"]), doc["runs"]
    assert not [w for r in doc["runs"] for w in r["warnings"] if "kernel timeline" in w]
    by_of = {p["of_run_id"]: p for p in doc["profiled_runs"]}
    traces = []
    for r in doc["runs"]:
        p = by_of[r["run_id"]]
        assert r["profiled_run_id"] == p["run_id"] and p["status"] == "succeeded" and p["iterations"] == 3
        assert p["kernels"] > 0 and r["samples"] >= 20
        t = load_trace(p["run_id"], url)
        per = Counter(a.iteration for a in t.kernels())
        assert set(per) == {0, 1, 2} and per[0] == per[1] == per[2], per
        assert all(a.duration_ns > 0 and a.launch_ns is not None for a in t.kernels())
        traces.append(t)
    return traces


def test_torch_eager_and_cuda_graph_kernel_timelines(es_env: str, tmp_path: Path) -> None:
    model = tiny_pt2(tmp_path / "net.pt2")
    doc = bench([str(model), "--engine", "torch", "--device", "cuda:0", "--precision", "fp16"])
    (t,) = check_profiled(doc, es_env)
    assert t.source_tool == "torch.profiler" and t.tool_version.startswith("torch ")
    assert any(a.op and a.op.startswith("aten::") for a in t.kernels())
    assert t.origin_ns is not None and t.devices and "cupti_version" in t.meta
    graph = bench([str(model), "--engine", "torch", "--device", "cuda:0", "--precision", "fp16", "--cuda-graph"])
    (g,) = check_profiled(graph, es_env)
    assert {a.op for a in g.kernels()} == {"cudaGraphLaunch"}
    assert sorted(a.name for a in g.kernels() if a.iteration == 0) == sorted(a.name for a in t.kernels() if a.iteration == 0)


@needs_ort_cuda
def test_onnxruntime_cuda_kernels_attributed_to_nodes(es_env: str, tmp_path: Path) -> None:
    from test_ort_cuda import build_cnn  # tests/gpu on sys.path

    model = build_cnn(tmp_path / "cnn.onnx", channels=32)
    doc = bench([str(model), "--engine", "onnxruntime", "--device", "cuda:0", "--batch", "8"])
    (t,) = check_profiled(doc, es_env)
    (p,) = doc["profiled_runs"]
    assert p["tool"] == "onnxruntime+kineto" and p["kernels_attributed"] >= 0.8 * p["kernels"], p
    ops = {a.op for a in t.kernels() if a.op}
    assert "conv1 (Conv)" in ops and "fc (Gemm)" in ops, ops
    graph = bench([str(model), "--engine", "onnxruntime", "--device", "cuda:0", "--batch", "8", "--cuda-graph"])
    (g,) = check_profiled(graph, es_env)
    assert {a.op for a in g.kernels()} == {"cudaGraphLaunch"}
