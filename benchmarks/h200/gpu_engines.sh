#!/bin/bash
# GPU engines on the lent H200, in ONE device call (about 4-6 minutes): EngineScope's ONNX Runtime CUDA runs on a
# ResNet-50 (random weights) at batch 1, 8, 64 (fp32, fp16, fp16 + CUDA graph), the bare onnxruntime loop on the
# same files and cases right after them (benchmarks/h200/ort_bare.py), the harness-overhead script at batch 1 on
# the GPU, and [TORCH] lines for `--engine torch` when this checkout has it. Everything lands under $OUT.
#
# Before the call (see README.md here): ../shared/tools/ort-gpu-on-h200 staged onnxruntime-gpu into /tmp/ortstage
# (five warm device calls), and benchmarks/h200/prepare_gpu_engines.sh filled .whl/ here. The call itself
# (carry [".whl"]):   bash benchmarks/h200/gpu_engines.sh
# Optional: WITH_COMPILE=1 adds torch.compile cases (slow: minutes); WITH_TESTS=0 skips the GPU tests;
# PARTS="ort torch bert compile" (default "ort torch bert", plus compile with WITH_COMPILE=1) picks the parts, so
# that a run that hit the call limit can be finished in a second call on the same warm machine.
set -u
PARTS=${PARTS:-"ort torch bert$([[ ${WITH_COMPILE:-0} == 1 ]] && echo " compile")"}
has() { [[ " $PARTS " == *" $1 "* ]]; }
AB_ROUNDS=${AB_ROUNDS:-4}
cd "$(dirname "$0")/../.."
: "${OUT:?set OUT (the device tool sets it)}"
source benchmarks/h200/ort_env.sh || { echo "environment not ready (see above)"; exit 3; }
rm -rf "$ENGINESCOPE_HOME"; mkdir -p "$ENGINESCOPE_HOME"
T0=$(date +%s)
step() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
# "--job N --job M" for ort_bare.py from bench JSON files (a file that is missing or has no job_id is skipped)
job_args() { python3 -c "
import json, sys
ids = []
for f in sys.argv[1:]:
    try:
        ids.append(json.load(open(f))['job_id'])
    except (OSError, ValueError, KeyError):
        pass
print(' '.join(f'--job {i}' for i in ids))" "$@"; }

step "preflight"
python3 - <<'PY' | tee "$OUT/preflight.json" || exit 3
import importlib, json, sys
out = {"python": sys.version.split()[0], "missing": []}
for mod in ("numpy", "onnx", "onnxruntime", "onnxconverter_common", "sqlalchemy", "alembic", "pydantic", "typer",
            "psutil", "pynvml", "torch"):
    try:
        m = importlib.import_module(mod)
        out[mod] = getattr(m, "__version__", "?")
    except Exception as exc:  # noqa: BLE001
        out["missing"].append(f"{mod}: {type(exc).__name__}: {exc}")
import onnxruntime as ort
ort.preload_dlls()
out["onnxruntime_file"] = ort.__file__
out["providers"] = ort.get_available_providers()
print(json.dumps(out))
sys.exit(1 if out["missing"] or "CUDAExecutionProvider" not in out["providers"] else 0)
PY
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.draw,power.limit,temperature.gpu,memory.used \
  --format=csv > "$OUT/nvidia_smi_before.csv"
nvidia-smi --query-gpu=timestamp,power.draw,clocks.sm,clocks.mem,utilization.gpu,temperature.gpu,clocks_event_reasons.active \
  --format=csv -lms 500 > "$OUT/nvidia_smi_during.csv" 2>/dev/null &
SMI=$!

step "ResNet-50 (random weights) -> /tmp/r50 (parts: $PARTS)"
if [[ -f /tmp/r50/model_meta.json ]]; then cp /tmp/r50/model_meta.json "$OUT/model_meta.json"  # same warm machine
else
  timeout 180 python3 benchmarks/h200/make_resnet50.py --out-dir /tmp/r50 > "$OUT/model_meta.json" 2> "$OUT/model_meta.log" \
    || { echo "model build failed"; tail -20 "$OUT/model_meta.log"; kill $SMI; exit 4; }
  cp "$OUT/model_meta.json" /tmp/r50/model_meta.json
fi
cat "$OUT/model_meta.json"
MODEL=/tmp/r50/resnet50.onnx
TIMING=(--iterations 300 --min-duration 2 --warmup 50 --warmup-s 1 --batch 1 --batch 8 --batch 64)

if has ort; then
step "EngineScope: onnxruntime CUDA fp32 + fp16 (io_binding, no CUDA graph)"
timeout 240 "${ES[@]}" bench "$MODEL" --engine onnxruntime --device cuda:0 --precision fp32 --precision fp16 "${TIMING[@]}" \
  --json > "$OUT/bench_ort_cuda.json" 2> "$OUT/bench_ort_cuda.log"; echo "exit $?"
step "EngineScope: onnxruntime CUDA fp16 + CUDA graph"
timeout 180 "${ES[@]}" bench "$MODEL" --engine onnxruntime --device cuda:0 --precision fp16 --cuda-graph "${TIMING[@]}" \
  --json > "$OUT/bench_ort_cuda_graph.json" 2> "$OUT/bench_ort_cuda_graph.log"; echo "exit $?"

step "bare onnxruntime loop on the same files and cases"
JOBS=$(job_args "$OUT/bench_ort_cuda.json" "$OUT/bench_ort_cuda_graph.json")
[[ -n "$JOBS" ]] && timeout 150 python3 benchmarks/h200/ort_bare.py $JOBS --out "$OUT/ort_bare.json" 2>&1 | tee "$OUT/ort_bare.log"

step "harness overhead, fp16 at batch 1 and 8 (EngineScope job vs bare run_with_iobinding loop, alternating in one process)"
timeout 150 python3 benchmarks/ort_overhead.py --model "$MODEL" --device cuda:0 --precision fp16 --batch 1 --batch 8 --rounds 4 --target-s 1 \
  --out "$OUT/ort_overhead_cuda.json" > "$OUT/ort_overhead_cuda.log" 2>&1; tail -4 "$OUT/ort_overhead_cuda.log"
fi

# ---------------------------------------------------------------- [TORCH] only when `--engine torch` exists here
if (has torch || has compile) && python3 -c "import json,sys; sys.exit(0 if json.load(open('$OUT/model_meta.json')).get('hf_folder') else 1)"; then
  if has torch; then
  step "[TORCH] EngineScope: torch eager fp16 + bf16 on the Hugging Face ResNet-50 folder"
  timeout 200 "${ES[@]}" bench /tmp/r50/hf_resnet50 --engine torch --device cuda:0 --precision fp16 --precision bf16 \
    "${TIMING[@]}" --json > "$OUT/bench_torch_eager.json" 2> "$OUT/bench_torch_eager.log"; echo "exit $?"
  step "[TORCH] bare torch loop on the same folder, precisions and batches, then $AB_ROUNDS in-process A/B rounds (fp16)"
  timeout 200 python3 benchmarks/h200/torch_bare.py --folder /tmp/r50/hf_resnet50 --precision fp16 --precision bf16 \
    --batch 1 --batch 8 --batch 64 --iterations 300 --warmup 50 --out "$OUT/torch_bare_r50.json" 2>&1 | grep -v Loading | tail -8
  ENGINESCOPE_HOME=/tmp/es_torch_ab timeout 200 python3 benchmarks/h200/torch_bare.py --folder /tmp/r50/hf_resnet50 \
    --precision fp16 --batch 1 --batch 64 --iterations 300 --warmup 50 --ab-rounds "$AB_ROUNDS" \
    --out "$OUT/torch_ab_r50.json" 2>&1 | grep "^A/B" | tail -12
  fi
  if has compile; then
    step "[TORCH] EngineScope: torch.compile fp16 + bf16"
    timeout ${COMPILE_TIMEOUT:-480} "${ES[@]}" bench /tmp/r50/hf_resnet50 --engine torch --device cuda:0 --precision fp16 --precision bf16 \
      --compile "${TIMING[@]}" --json > "$OUT/bench_torch_compile.json" 2> "$OUT/bench_torch_compile.log"; echo "exit $?"
  fi
else
  step "[TORCH] skipped: this checkout has no --engine torch bench options yet (or no HF folder was built)"
fi
# ---------------------------------------------------------------- [/TORCH]

if has bert; then
step "BERT-base-shaped encoder, sequence 128: ORT CUDA fp16 (+ CUDA graph) and torch eager fp16"
BT=(--iterations 200 --min-duration 1 --warmup 30 --warmup-s 0.5 --batch 1 --batch 8 --batch 64)
if timeout 120 python3 benchmarks/h200/make_bert.py /tmp/bert > "$OUT/bert_meta.json" 2> "$OUT/bert_meta.log"; then
  timeout 200 "${ES[@]}" bench /tmp/bert/bert_base.onnx --engine onnxruntime --device cuda:0 --precision fp16 --dim seq=128 \
    "${BT[@]}" --json > "$OUT/bench_bert_ort.json" 2> "$OUT/bench_bert_ort.log"; echo "exit $?"
  timeout 150 "${ES[@]}" bench /tmp/bert/bert_base.onnx --engine onnxruntime --device cuda:0 --precision fp16 --dim seq=128 \
    --cuda-graph --no-layers "${BT[@]}" --json > "$OUT/bench_bert_ort_graph.json" 2> "$OUT/bench_bert_ort_graph.log"; echo "exit $?"
  timeout 200 "${ES[@]}" bench /tmp/bert/hf_bert_base --engine torch --device cuda:0 --precision fp16 --precision bf16 --seq-len 128 \
    "${BT[@]}" --json > "$OUT/bench_bert_torch.json" 2> "$OUT/bench_bert_torch.log"; echo "exit $?"
  step "bare loops for BERT: onnxruntime (same variant files) and torch (same folder)"
  JOBS=$(job_args "$OUT/bench_bert_ort.json" "$OUT/bench_bert_ort_graph.json")
  [[ -n "$JOBS" ]] && timeout 120 python3 benchmarks/h200/ort_bare.py $JOBS --out "$OUT/ort_bare_bert.json" 2>&1 | tail -8
  timeout 120 python3 benchmarks/h200/torch_bare.py --folder /tmp/bert/hf_bert_base --precision fp16 --precision bf16 \
    --batch 1 --batch 8 --batch 64 --seq-len 128 --iterations 200 --warmup 30 --out "$OUT/torch_bare_bert.json" 2>&1 | tail -8
else
  tail -5 "$OUT/bert_meta.log"
fi
fi

if [[ ${WITH_TESTS:-1} == 1 ]] && python3 -c "import pytest" 2>/dev/null; then
  step "GPU tests (tests/gpu)"
  timeout 200 python3 -m pytest tests/gpu tests/integration/test_torch_bench.py -k "gpu or cuda or GPU" -q -p no:cacheprovider > "$OUT/pytest_gpu.log" 2>&1; tail -3 "$OUT/pytest_gpu.log"
fi

kill $SMI 2>/dev/null
nvidia-smi --query-gpu=memory.used,power.draw,clocks.sm --format=csv > "$OUT/nvidia_smi_after.csv"
python3 - <<'PY'
import os, shutil, sqlite3
db = os.path.join(os.environ["ENGINESCOPE_HOME"], "enginescope.db")
c = sqlite3.connect(db); c.execute("PRAGMA wal_checkpoint(TRUNCATE)"); c.close()
shutil.copy(db, os.path.join(os.environ["OUT"], "enginescope_gpu.db"))
PY
python3 benchmarks/h200/gpu_summary.py "$OUT" | tee "$OUT/summary.md"
# the device tool brings back only a few files: everything in one archive beside the summary
(cd "$OUT" && tar czf /tmp/gpu_engines_out.tgz --exclude=summary.md . && mv /tmp/gpu_engines_out.tgz . \
  && find . -type f ! -name gpu_engines_out.tgz ! -name summary.md -delete)
step "done"
