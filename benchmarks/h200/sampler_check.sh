#!/bin/bash
# After the NVML sampler moved out of the measured process: ORT CUDA ResNet-50 fp32/fp16 at batch 1 and 8 (the
# launch-bound cases that were 35-50% slower than the bare loop), then the bare loop on the same files and cases.
# Needs onnxruntime-gpu staged in /tmp/ortstage (../shared/tools/ort-gpu-on-h200) and .whl carried.
set -u
cd "$(dirname "$0")/../.."
[[ -d /tmp/ortsite/onnxruntime ]] || bash /tmp/ortstage/on_device.sh >/dev/null 2>&1
source benchmarks/h200/ort_env.sh || exit 3
rm -rf "$ENGINESCOPE_HOME"; mkdir -p "$ENGINESCOPE_HOME"
timeout 180 python3 benchmarks/h200/make_resnet50.py --out-dir /tmp/r50 > "$OUT/model_meta.json" 2>/dev/null || exit 4
timeout 200 "${ES[@]}" bench /tmp/r50/resnet50.onnx --engine onnxruntime --device cuda:0 --precision fp32 --precision fp16 \
  --batch 1 --batch 8 --iterations 300 --min-duration 2 --warmup 50 --warmup-s 1 --no-layers --json \
  > "$OUT/bench_sampler_out_of_process.json" 2> "$OUT/bench_sampler_out_of_process.log"; echo "bench exit $?"
JOB=$(python3 -c "import json; print(json.load(open('$OUT/bench_sampler_out_of_process.json'))['job_id'])")
timeout 150 python3 benchmarks/h200/ort_bare.py --job "$JOB" --out "$OUT/ort_bare_sampler_check.json" 2>&1 | grep -v "^.\[0;93m"
python3 - "$OUT/bench_sampler_out_of_process.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for r in d["runs"]:
    g = r.get("gpu") or {}
    print(r["precision"], "b", r["batch"], "p50", r["latency_ms"]["p50"], "J/inf", g.get("energy_per_inference_j"),
          "samples in window", g.get("samples_in_window"), "rate", g.get("sample_rate_hz"), "warnings", r.get("warnings"))
PY
