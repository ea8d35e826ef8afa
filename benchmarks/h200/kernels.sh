#!/bin/bash
# Kernel timelines and Nsight Compute metrics on the lent H200, in ONE device call (about 5-8 minutes):
#   - EngineScope's ONNX Runtime CUDA and PyTorch runs of a ResNet-50 (random weights), fp32 and fp16, batch 8,
#     each with --profile-kernels 3 (a profiled run with the Kineto/CUPTI kernel timeline) and --ncu-top 8 (an ncu
#     run with the top kernels' metrics and the ceilings measured in the job); the database lands in $OUT as
#     h200_kernels.db (tests/data/h200_kernels.db is that file; tests/dashboard/test_kernels_h200_db.py opens it);
#   - benchmarks/h200/ncu_check.py: ncu's FLOP and byte counters against kernels of known work;
#   - one try of Debian's Nsight Systems 2022.4 (target part, carried in .nsys-stage/): `nsys profile` of the capture
#     child, its output recorded as it came.
# Before the call: ORT staged (../shared/tools/ort-gpu-on-h200, five warm calls), .whl/ filled
# (prepare_gpu_engines.sh), .nsys-stage/nsys2022_target.tar.xz made from Debian's nsight-systems-target .deb.
# The call (carry [".whl", ".nsys-stage"]):   bash benchmarks/h200/kernels.sh
set -u
cd "$(dirname "$0")/../.."
: "${OUT:?set OUT (the device tool sets it)}"
source benchmarks/h200/ort_env.sh || { echo "environment not ready (see above)"; exit 3; }
rm -rf "$ENGINESCOPE_HOME"; mkdir -p "$ENGINESCOPE_HOME" "$OUT/logs"
T0=$(date +%s)
step() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv > "$OUT/logs/nvidia_smi.csv"

step "ResNet-50 (random weights) -> /tmp/r50"
if [[ ! -f /tmp/r50/model_meta.json ]]; then
  timeout 180 python3 benchmarks/h200/make_resnet50.py --out-dir /tmp/r50 > /tmp/r50_meta.json 2> "$OUT/logs/model_meta.log" \
    || { echo "model build failed"; tail -20 "$OUT/logs/model_meta.log"; exit 4; }
  cp /tmp/r50_meta.json /tmp/r50/model_meta.json
fi
cp /tmp/r50/model_meta.json "$OUT/logs/"
COMMON=(--device cuda:0 --precision fp32 --precision fp16 --batch 8 --iterations 100 --min-duration 1 --warmup 20
        --profile-kernels 3 --ncu-top 8 --json)

step "EngineScope: onnxruntime CUDA fp32 + fp16, kernel timeline + ncu"
timeout 300 "${ES[@]}" bench /tmp/r50/resnet50.onnx --engine onnxruntime "${COMMON[@]}" \
  > "$OUT/logs/bench_ort.json" 2> "$OUT/logs/bench_ort.log"; echo "exit $?"; tail -5 "$OUT/logs/bench_ort.log"
if [[ -d /tmp/r50/hf_resnet50 ]]; then
  step "EngineScope: torch fp32 + fp16, kernel timeline + ncu"
  timeout 300 "${ES[@]}" bench /tmp/r50/hf_resnet50 --engine torch "${COMMON[@]}" \
    > "$OUT/logs/bench_torch.json" 2> "$OUT/logs/bench_torch.log"; echo "exit $?"; tail -5 "$OUT/logs/bench_torch.log"
fi

step "ncu counters against known work"
timeout 240 python3 benchmarks/h200/ncu_check.py --out "$OUT/logs/ncu_check.csv" > "$OUT/logs/ncu_check.json" 2>&1
echo "exit $?"; head -c 1500 "$OUT/logs/ncu_check.json"

step "Debian Nsight Systems 2022.4 (target) try"
if [[ -f .nsys-stage/nsys2022_target.tar.xz ]]; then
  mkdir -p /tmp/nsys2022 && tar xJf .nsys-stage/nsys2022_target.tar.xz -C /tmp/nsys2022
  NSYS=/tmp/nsys2022/target-linux-x64/nsys
  { echo "== $NSYS --version"; timeout 60 "$NSYS" --version 2>&1
    echo "== nsys status -e"; timeout 60 "$NSYS" status -e 2>&1
    echo "== nsys profile (capture child of the probe network)"
    timeout 150 "$NSYS" profile -t cuda,nvtx,osrt --capture-range=cudaProfilerApi --capture-range-end=stop \
      -o /tmp/nsyscap --force-overwrite true python3 benchmarks/h200/kernel_probe.py --nsys-child 2>&1
    echo "exit $?"; ls -la /tmp/nsyscap* 2>&1; } > "$OUT/logs/nsys2022.txt" 2>&1
  cp /tmp/nsyscap.* "$OUT/logs/" 2>/dev/null
  tail -30 "$OUT/logs/nsys2022.txt"
else
  echo "no .nsys-stage/nsys2022_target.tar.xz carried" > "$OUT/logs/nsys2022.txt"
fi

step "database -> \$OUT/h200_kernels.db"
python3 - <<'PY'
import os, sqlite3
src = sqlite3.connect(os.path.join(os.environ["ENGINESCOPE_HOME"], "enginescope.db"))
dst = os.path.join(os.environ["OUT"], "h200_kernels.db")
src.execute(f"VACUUM INTO '{dst}'")
for t in ("runs", "gpu_activities", "cuda_api_calls", "trace_ranges", "kernel_metrics", "run_metrics"):
    print(t, src.execute(f"select count(*) from {t}").fetchone()[0])
PY
step "done"
cd "$OUT" && tar czf logs.tgz logs && rm -rf logs
