"""``enginescope mock-server``: a scripted OpenAI-compatible streaming server (see engine_runner/mock_server.py)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add ``mock-server``."""

    @app.command("mock-server")
    def mock_server_cmd(
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
        port: int = typer.Option(8000, "--port", help="TCP port (0 picks a free one; the URL is printed)."),
        ttft_ms: float = typer.Option(50.0, "--ttft-ms", help="Time to first token chunk, ms after the request body is read."),
        itl_ms: float = typer.Option(10.0, "--itl-ms", help="Per-token gap, ms (a K-token chunk follows the previous after K x this)."),
        tokens_per_chunk: int = typer.Option(1, "--tokens-per-chunk", help="Tokens carried by each streamed chunk."),
        reasoning_tokens: int = typer.Option(0, "--reasoning-tokens", help="Chat: the first R tokens stream as reasoning_content."),
        fail_rate: float = typer.Option(0.0, "--fail-rate", help="Probability (0..1, seeded) of answering HTTP 500."),
        seed: int = typer.Option(0, "--seed", help="Seed of the failure draws."),
        model: str = typer.Option("mock-llm", "--model", help="Model id served at /v1/models."),
        default_max_tokens: int = typer.Option(16, "--default-max-tokens", help="Output tokens when a request gives no max_tokens."),
        record_timeline: bool = typer.Option(False, "--record-timeline", help="Keep per-X-Request-Id server times at /mock/timeline."),
        uvloop: bool = typer.Option(False, "--uvloop/--no-uvloop", help="Serve on uvloop (more throughput, ~1 ms timer granularity)."),
    ) -> None:
        """Serve a scripted OpenAI-compatible streaming API (/v1/completions, /v1/chat/completions,
        /v1/models, /health, /metrics) with known TTFT and inter-token gaps, for calibration and tests."""
        from engine_runner.cli import fail
        from engine_runner.mock_server import MockConfig, serve_forever
        from profiles.errors import EngineScopeError

        cfg = MockConfig(
            ttft_ms=ttft_ms, itl_ms=itl_ms, tokens_per_chunk=tokens_per_chunk, reasoning_tokens=reasoning_tokens,
            fail_rate=fail_rate, seed=seed, model=model, default_max_tokens=default_max_tokens,
            record_timeline=record_timeline,
        )
        try:
            serve_forever(cfg, host, port, use_uvloop=uvloop)
        except EngineScopeError as exc:  # e.g. the port is in use: one line, exit 2
            fail(exc)
