"""Test helpers of the LLM serving tests: the scripted mock server in a background thread, the tiny
Llama written once per session, and an ``llm_serve`` job run in-process."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def mock_server(**cfg: Any) -> Iterator[str]:
    """Run ``engine_runner.mock_server`` (aiohttp) on a free port in a thread; yield its base URL."""
    from engine_runner.mock_server import MockConfig, start

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, Any] = {}

    def main() -> None:
        asyncio.set_event_loop(loop)
        box["runner"], box["url"] = loop.run_until_complete(start(MockConfig(**cfg)))
        ready.set()
        loop.run_forever()

    t = threading.Thread(target=main, daemon=True)
    t.start()
    if not ready.wait(30):
        raise RuntimeError("mock server did not start")
    try:
        yield box["url"]
    finally:
        asyncio.run_coroutine_threadsafe(box["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        t.join(10)


def tiny_llm(root: Path) -> Path:
    """``enginescope tiny-llm`` output under ``root`` (written once; reused when present)."""
    from engine_runner.tiny_llm import write_tiny_llm

    out = root / "tiny-llm"
    if not (out / "config.json").is_file():
        write_tiny_llm(out, seed=0)
    return out


def tiny_tokenizer(root: Path) -> Path:
    """Only the tiny model's tokenizer (no weights, no torch import) under ``root``: enough for an
    ``endpoint`` job against the mock server."""
    from engine_runner.tiny_llm import write_tokenizer

    out = root / "tiny-tokenizer"
    if not (out / "tokenizer.json").is_file():
        write_tokenizer(out, seed=0)
    return out


def run_llm_job(url: str, spec: dict[str, Any], events: list | None = None) -> tuple[int, str]:
    """Insert and execute an ``llm_serve`` job in-process (as the CLI does); return (job id, status)."""
    from db.jobs import start_inline_job
    from engine_runner.jobctx import JobContext
    from engine_runner.jobs import execute

    job_id = start_inline_job("llm_serve", spec, device="test", url=url)
    hooks = [lambda k, m, p, d: events.append((k, m, p))] if events is not None else []
    ctx = JobContext(job_id=job_id, kind="llm_serve", spec=spec, db_url=url, hooks=hooks)
    return job_id, execute(ctx)
