#!/usr/bin/env bash
# On the H200 device (see README.md here; carry .whl): the torch engine's GPU tests, then
# `enginescope bench --engine torch` on a BERT-base-shaped encoder (random weights, built here) at
# sequence 128: eager fp32/tf32/fp16/bf16, fp16 + CUDA graph, torch.compile bf16, batch 1 and 8.
# Everything it writes goes under $OUT (pytest log, JSON documents).
source benchmarks/h200/common.sh
python3 - <<'PY' > "$OUT/versions.txt"
import torch, transformers
print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)
print(torch.cuda.get_device_name(0))
PY
cat "$OUT/versions.txt"
python3 -m pytest -p no:cacheprovider tests/integration/test_torch_bench.py -k gpu -q -rs 2>&1 | tee "$OUT/pytest_gpu.txt" | tail -25
python3 - <<'PY'
import torch
from transformers import BertConfig, BertModel
torch.manual_seed(0)
BertModel(BertConfig()).eval().save_pretrained("/tmp/bert_base")  # BERT-base shape: 12 layers, hidden 768
PY
FAST=(--iterations 200 --min-duration 2 --warmup 20 --warmup-s 1)
run() { local name=$1; shift; "${ES[@]}" bench /tmp/bert_base --engine torch --device cuda:0 --seq-len 128 \
          --batch 1 --batch 8 --json --quiet "${FAST[@]}" "$@" > "$OUT/$name.json" 2> "$OUT/$name.err"; echo "$name rc=$?"; }
run eager --precision fp32 --precision tf32 --precision fp16 --precision bf16
run graph_fp16 --precision fp16 --cuda-graph --no-layers
run compile_bf16 --precision bf16 --compile --no-layers
