#!/bin/bash
# EngineScope launches vLLM on the 8B-shaped dummy-weight model, sweeps concurrency 1/16/64/256 at
# 128 in / 128 out, runs vLLM's own client with the same load on the same server after each level
# (--peer vllm-bench), and stops the server. Results: $OUT/sweep.json, $OUT/sweep.log, $OUT/nvsmi.csv,
# $OUT/enginescope.db (the job's database).
source "$(dirname "$0")/common.sh"
echo "GPU memory before launch: $(gpu_mem) MiB"
nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu,power.draw --format=csv -lms 1000 > "$OUT/nvsmi.csv" &
SMI=$!
"${ES[@]}" serve-bench --model "$MODEL" --dtype bfloat16 --load-format dummy --max-model-len 4096 \
  --concurrency 1,16,64,256 --input-len 128 --output-len 128 --num-prompts 32 --prompts-per-concurrency 4 \
  --warmup 4 --peer vllm-bench --device cuda:0 --json > "$OUT/sweep.json" 2> "$OUT/sweep.log"
echo "serve-bench exit $?"
sleep 2; kill $SMI
echo "GPU memory after stop: $(gpu_mem) MiB"
python3 - <<'PY'
import sqlite3, shutil, os
c = sqlite3.connect("/tmp/eshome/enginescope.db"); c.execute("PRAGMA wal_checkpoint(TRUNCATE)"); c.close()
shutil.copy("/tmp/eshome/enginescope.db", os.path.join(os.environ["OUT"], "enginescope.db"))
PY
tail -5 "$OUT/sweep.log"
