#!/bin/bash
# torch with CUDA graphs on the lent H200, one device call (no ONNX Runtime staging needed; carry [".whl"]):
# EngineScope `bench --engine torch --cuda-graph` fp16 on the Hugging Face ResNet-50 folder at batch 1/8/64, the
# bare torch.cuda.CUDAGraph replay loop on the same folder (torch_bare.py --cuda-graph) and 3 in-process A/B
# rounds at batch 1 and 64. Launch overhead is what made the eager cases noise-limited on this machine; a graph
# replay removes it, so the comparison with the bare loop can resolve 3%.
set -u
cd "$(dirname "$0")/../.."
: "${OUT:?set OUT (the device tool sets it)}"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
mkdir -p /tmp/eswhl
[[ -f /tmp/eswhl/.done ]] || { python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/eswhl \
  .whl/sqlalchemy-*.whl .whl/alembic-*.whl .whl/mako-*.whl .whl/pydantic-*.whl .whl/pydantic_core-*.whl \
  .whl/typing_inspection-*.whl .whl/annotated_types-*.whl && touch /tmp/eswhl/.done; }
export PYTHONPATH="$PWD:/tmp/eswhl" ENGINESCOPE_HOME=/tmp/esgraph
rm -rf "$ENGINESCOPE_HOME"; mkdir -p "$ENGINESCOPE_HOME"
[[ -d /tmp/r50/hf_resnet50 ]] || timeout 120 python3 benchmarks/h200/make_resnet50.py --out-dir /tmp/r50 > "$OUT/model_meta.json" 2>/dev/null
timeout 150 python3 -m engine_runner.cli bench /tmp/r50/hf_resnet50 --engine torch --device cuda:0 --precision fp16 \
  --cuda-graph --no-layers --iterations 300 --min-duration 1 --warmup 50 --warmup-s 0.5 --batch 1 --batch 8 --batch 64 \
  --json > "$OUT/bench_torch_graph.json" 2> "$OUT/bench_torch_graph.log"; echo "bench exit $?"
python3 -c "
import json; d = json.load(open('$OUT/bench_torch_graph.json'))
for r in d['runs']:
    l, g = r.get('latency_ms') or {}, r.get('gpu') or {}
    print(r['precision'], r['batch_size'], r['status'], r.get('mode'), l.get('p50'), l.get('p99'), r.get('items_per_s'),
          g.get('energy_per_inference_j'), g.get('sm_clock_median_mhz'), (r.get('error') or '')[:300])"
timeout 100 python3 benchmarks/h200/torch_bare.py --folder /tmp/r50/hf_resnet50 --precision fp16 --cuda-graph \
  --batch 1 --batch 8 --batch 64 --iterations 300 --warmup 50 --out "$OUT/torch_bare_graph.json" 2>&1 | grep '^{'
ENGINESCOPE_HOME=/tmp/esgraph_ab timeout 150 python3 benchmarks/h200/torch_bare.py --folder /tmp/r50/hf_resnet50 \
  --precision fp16 --cuda-graph --batch 1 --batch 64 --iterations 300 --warmup 50 --ab-rounds 3 \
  --out "$OUT/torch_ab_graph.json" 2>&1 | grep '^A/B'
