"""How many distinct prompts vLLM's own benchmark client sends with its random dataset (issue 8 part 2).

vLLM's ``RandomDataset`` builds each prompt from consecutive token ids starting at a random offset, modulo the
vocabulary size, then decodes and re-encodes it. With a small vocabulary (the H200 recipe's Llama-3-8B-shaped
model has a 327-token tokenizer) many of those prompts are identical, and a server with prefix caching (vLLM's
default) answers a repeated prompt without prefill: vLLM's client then measures a shorter TTFT than a client
whose prompts never repeat (EngineScope's synthetic prompts are random token sequences). This script counts the
repeats for the agreement benchmark's request counts (per level C: C warm-up + max(16, 4C) measured).

Run (vLLM's interpreter):  .venv-vllm/bin/python benchmarks/vllm_prompt_repeats.py --tokenizer ../shared/tools/vllm-on-h200/model
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--concurrency", default="1,16,64,256")
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    import vllm
    from transformers import AutoTokenizer
    from vllm.benchmarks.datasets import RandomDataset

    tok = AutoTokenizer.from_pretrained(a.tokenizer)
    rows = []
    for c in (int(x) for x in a.concurrency.split(",")):
        n = c + max(16, 4 * c)
        reqs = RandomDataset(random_seed=a.seed).sample(tokenizer=tok, num_requests=n, input_len=a.input_len,
                                                        output_len=a.input_len, range_ratio=0.0)
        prompts = [r.prompt for r in reqs]
        rows.append({"concurrency": c, "requests": n, "distinct_prompts": len(set(prompts)),
                     "repeated_share": 1 - len(set(prompts)) / n})
        print(json.dumps(rows[-1]), flush=True)
    doc = {"vllm": vllm.__version__, "tokenizer": a.tokenizer, "vocab_size": len(tok), "input_len": a.input_len,
           "seed": a.seed, "rows": rows}
    if a.out:
        a.out.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
