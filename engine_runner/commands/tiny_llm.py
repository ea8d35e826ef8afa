"""``enginescope tiny-llm OUT_DIR``: write a tiny random-weight Llama that vLLM can serve (test model)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add ``tiny-llm``."""

    @app.command("tiny-llm")
    def tiny_llm_cmd(
        out_dir: Path = typer.Argument(..., help="Folder to create (must be absent or empty)."),
        seed: int = typer.Option(0, "--seed", help="Seeds the tokenizer corpus and the weights (deterministic)."),
        vocab_size: int = typer.Option(1024, "--vocab-size", help="BPE vocabulary size (256..32000)."),
    ) -> None:
        """Write a 2-layer, hidden-256, 4-head Llama with random weights and a locally trained byte-level
        BPE tokenizer (with a chat template) into OUT_DIR. Outputs are gibberish: benchmark it with fixed
        output lengths."""
        from engine_runner.cli import fail
        from engine_runner.tiny_llm import write_tiny_llm
        from profiles.errors import EngineScopeError

        try:
            path = write_tiny_llm(out_dir, seed=seed, vocab_size=vocab_size)
        except EngineScopeError as exc:
            fail(exc)
        typer.echo(f"wrote a tiny Llama to {path}")
