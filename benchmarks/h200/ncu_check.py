"""Check EngineScope's ncu FLOP and byte accounting (``profiles.ncu``) on kernels whose work is known, on the H200.

Under ``ncu`` with the metrics EngineScope collects (``profiles.ncu.NCU_METRICS``), inside the NVTX range the
captures use, the child runs:

- a bf16 matmul 4096 x 4096 x 4096: 2 * 4096**3 FLOP = 137.4 GFLOP of tensor-core work;
- an fp32 matmul 2048^3 with TF32 off (CUDA-core FMAs: 2 * 2048**3 FLOP);
- a 256 MiB device copy: 2 * 256 MiB of DRAM traffic (read + write).

It prints, per kernel, what ``profiles.ncu`` computed against the known value, so the tensor-op factor
(``TENSOR_OP_FLOP``) and the byte counters are checked, not assumed. ``python3 ncu_check.py [--out FILE]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

N_BF16, N_FP32, COPY_BYTES = 4096, 2048, 256 * 1024 ** 2


def child() -> None:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    a = torch.randn(N_BF16, N_BF16, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(N_BF16, N_BF16, device="cuda", dtype=torch.bfloat16)
    c = torch.randn(N_FP32, N_FP32, device="cuda")
    d = torch.randn(N_FP32, N_FP32, device="cuda")
    src = torch.empty(COPY_BYTES, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    a @ b, c @ d, dst.copy_(src)
    torch.cuda.synchronize()
    from engine_runner.profile_child import NVTX_RANGE
    torch.cuda.nvtx.range_push(NVTX_RANGE)
    a @ b
    c @ d
    dst.copy_(src)
    torch.cuda.synchronize()
    torch.cuda.nvtx.range_pop()


def main() -> None:
    from engine_runner.ncu_capture import find_ncu
    from engine_runner.profile_child import NVTX_RANGE
    from profiles.ncu import NCU_METRICS, parse_ncu_csv

    out = Path(sys.argv[sys.argv.index("--out") + 1]) if "--out" in sys.argv else None
    ncu = find_ncu()
    cmd = [ncu, "--clock-control", "none", "--csv", "--page", "raw", "--print-units", "base", "--metrics",
           ",".join(NCU_METRICS), "--nvtx", "--nvtx-include", f"{NVTX_RANGE}/", sys.executable, __file__, "--child"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]) + os.pathsep
                            + os.environ.get("PYTHONPATH", "")})
    if out:
        out.write_text(r.stdout)
    ks = parse_ncu_csv(r.stdout)
    known = {"bf16 gemm": 2 * N_BF16 ** 3, "fp32 gemm": 2 * N_FP32 ** 3}
    rows = []
    for k in ks:
        rows.append({"name": k.name[:120], "duration_ns": k.duration_ns, "flop": k.flop, "dram_bytes": k.dram_bytes,
                     "tensor_ops": {m: v for m, v in k.metrics.items() if "tensor" in m and v},
                     "fp_inst": {m: v for m, v in k.metrics.items() if "sass_thread" in m and v},
                     "occupancy_pct": k.achieved_occupancy_pct, "sm_pct": k.sm_throughput_pct,
                     "dram_pct": k.dram_throughput_pct})
    print(json.dumps({"rc": r.returncode, "stderr_tail": r.stderr[-1500:], "known_flop": known,
                      "known_copy_bytes": 2 * COPY_BYTES, "kernels": rows}, indent=1))


if __name__ == "__main__":
    child() if "--child" in sys.argv else main()
