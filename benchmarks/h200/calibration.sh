#!/bin/bash
# Issue 8 part 4 on the H200's 16 cores: the load generator's own delay with the mock server pinned away
# from the clients (server on CPUs 0-1, clients on 2-3; vLLM, if it is starting, is on 4-15).
# Levels c64/c256/c1024 (ours, raw transport) and vLLM's client at the same levels on the same mock server.
source "$(dirname "$0")/common.sh"
python3 benchmarks/loadgen_overhead.py --levels c64,c256,c1024 --transports raw --peers vllm \
  --server-cpus 0-1 --client-cpus 2-3 --server-uvloop --out "$OUT/calibration_h200.json" 2>&1 | tail -30
