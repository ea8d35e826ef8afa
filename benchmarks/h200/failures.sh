#!/bin/bash
# Two start-up failures that differ on a GPU; each must fail fast with the reason and the number.
# 1) --gpu-memory-utilization too low for the weights; 2) --max-model-len larger than the KV cache holds.
source "$(dirname "$0")/common.sh"
run_case() {  # name, extra serve-bench flags...
  local name=$1; shift
  local t0=$(date +%s)
  "${ES[@]}" serve-bench --model "$MODEL" --dtype bfloat16 --load-format dummy --concurrency 1 \
    --input-len 128 --output-len 16 --num-prompts 4 --device cuda:0 --json "$@" > "$OUT/$name.json" 2> "$OUT/$name.log"
  echo "$name: exit $? after $(( $(date +%s) - t0 )) s; GPU memory now $(gpu_mem) MiB"
  python3 -c "import json,sys; d=json.load(open('$OUT/$name.json')); r=d['runs'][0]; print('  error:', (r['error'] or d['error'] or '')[:600])"
}
echo "GPU memory before: $(gpu_mem) MiB"
run_case low_gpu_mem --gpu-memory-utilization 0.05 --max-model-len 4096
run_case max_len_too_big --max-model-len 8192 --kv-cache-memory-bytes 536870912
