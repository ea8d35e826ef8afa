#!/bin/bash
# Issue 8 part 4 on the H200's 16 cores: the load generator's own delay with the mock server pinned away
# from the clients (server on CPUs 0-3, clients on 4-7; vLLM, if it is starting, is on 8-15:
# SERVER_CPUS=8-15 bash benchmarks/h200/agreement.sh start).
# Levels c64/c256/c1024: ours (raw transport) from one process and from 4 client processes (one per client
# CPU, engine_runner.loadgen.shards), and vLLM's client at the same levels on the same mock server.
source "$(dirname "$0")/common.sh"
python3 benchmarks/loadgen_overhead.py --levels c64,c256,c1024 --transports raw --peers vllm \
  --client-processes 1,4 --server-cpus 0-3 --client-cpus 4-7 --server-uvloop \
  --out "$OUT/calibration_h200.json" 2>&1 | tail -30
