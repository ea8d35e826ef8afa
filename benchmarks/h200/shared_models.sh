#!/bin/bash
# The ../shared ONNX models on the lent H200 with ONNX Runtime's CUDA provider (`enginescope bench --device cuda:0`),
# then benchmarks/h200/torch_graph.sh. ../shared does not travel: copy the models into .shared-models/ (git-ignored)
# and carry it with .whl:  mkdir -p .shared-models && cp ../shared/models/onnx/{st_mobilenet_v2_128_0.5,
# super_resolution_pytorch_tutorial,mnist-8_model_zoo}.onnx .shared-models/ && cp -r ../shared/models/onnx/
# mnist_external_data .shared-models/. Needs onnxruntime-gpu staged (../shared/tools/ort-gpu-on-h200, five calls).
set -u
cd "$(dirname "$0")/../.."
: "${OUT:?set OUT (the device tool sets it)}"
source benchmarks/h200/ort_env.sh || { echo "environment not ready (see above)"; exit 3; }
rm -rf "$ENGINESCOPE_HOME"; mkdir -p "$ENGINESCOPE_HOME"
for m in st_mobilenet_v2_128_0.5.onnx super_resolution_pytorch_tutorial.onnx mnist-8_model_zoo.onnx mnist_external_data/model.onnx; do
  name=$(echo "$m" | tr '/' '_')
  timeout 90 "${ES[@]}" bench ".shared-models/$m" --engine onnxruntime --device cuda:0 --precision fp32 --precision fp16 \
    --batch 1 --iterations 200 --min-duration 0.5 --warmup 20 --warmup-s 0.2 --json > "$OUT/shared_$name.json" \
    2> "/tmp/shared_$name.log"; echo "$m exit $?"
  python3 -c "
import json, sys
d = json.load(open(sys.argv[1]))
for r in d.get('runs', []):
    l, g = r.get('latency_ms') or {}, r.get('gpu') or {}
    print('  ', r['precision'], r['batch_size'], r['status'], r.get('device'), l.get('p50'), l.get('p99'), g.get('energy_per_inference_j'),
          (r.get('accuracy') or {}).get('cosine'), len(r.get('warnings') or []), (r.get('error') or '')[:200])
if d.get('error'): print('   error:', d['error'][:300])" "$OUT/shared_$name.json" 2>&1 | tail -4
done
bash benchmarks/h200/torch_graph.sh
