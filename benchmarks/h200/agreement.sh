#!/bin/bash
# Issue 8 part 2 on the H200: EngineScope vs vLLM's own client on ONE vLLM server (8B-shaped model, dummy
# weights, 128 in / 128 out), per concurrency level: a warm-up of C requests in each client, 3 rounds with the
# order alternating, means and spreads (benchmarks/vllm_agreement.py --targets h200).
# Usage (device, after /tmp/stage/on_device.sh):  bash benchmarks/h200/agreement.sh start|LEVELS|stop
#   start: launch vLLM in its own session (it outlives this call; pinned to CPUs $SERVER_CPUS, default 4-15, so a pinned calibration
#          run can use the others); with PREFIX_CACHING=0 the server runs with --no-enable-prefix-caching (vLLM's random
#          dataset on this 327-token vocabulary repeats prompts, which a prefix cache then serves without prefill:
#          see c64_diag.py);  wait: wait for /health;  LEVELS e.g. 1,16,64: run those levels;  stop: stop it.
source "$(dirname "$0")/common.sh"
PORT=8000
URL="http://127.0.0.1:$PORT"
case "${1:-}" in
  start)
    echo "GPU memory before launch: $(gpu_mem) MiB"
    setsid taskset -c "${SERVER_CPUS:-4-15}" env PYTHONPATH=/tmp/site VLLM_USE_FLASHINFER_SAMPLER=0 python3 -m vllm.entrypoints.openai.api_server \
      --model "$MODEL" --served-model-name llama8b --load-format dummy --dtype bfloat16 --max-model-len 4096 \
      --port $PORT $([[ ${PREFIX_CACHING:-1} == 0 ]] && echo --no-enable-prefix-caching) > /tmp/vllm_server.log 2>&1 < /dev/null &
    echo "vLLM starting (log /tmp/vllm_server.log; prefix caching ${PREFIX_CACHING:-1})"
    ;;
  wait)
    for i in $(seq 1 300); do curl -sf "$URL/health" >/dev/null && { echo "healthy after ~${i}s more"; exit 0; }; sleep 1; done
    tail -20 /tmp/vllm_server.log; exit 1
    ;;
  stop)
    pkill -TERM -f "vllm.entrypoints.openai.api_server" ; sleep 8
    pkill -KILL -f "vllm.entrypoints.openai.api_server" 2>/dev/null
    sleep 2; echo "GPU memory after stop: $(gpu_mem) MiB"
    cp /tmp/vllm_server.log "$OUT/vllm_server_$(date +%H%M%S).log" 2>/dev/null
    ;;
  *)
    curl -sf "$URL/health" >/dev/null || { echo "server not healthy"; tail -20 /tmp/vllm_server.log; exit 1; }
    nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu,power.draw,clocks.sm --format=csv -lms 1000 > "$OUT/nvsmi_${1//,/_}.csv" &
    SMI=$!
    taskset -c 0-3 python3 benchmarks/vllm_agreement.py --endpoint "$URL" --model llama8b --tokenizer "$MODEL" \
      --concurrency "$1" --rounds 3 --warmup-per-concurrency 1 --prompts-per-concurrency 4 --num-prompts 16 \
      --input-len 128 --output-len 128 --targets h200 --out "$OUT/agreement_${1//,/_}.json"
    echo "exit $?"; kill $SMI
    ;;
esac
