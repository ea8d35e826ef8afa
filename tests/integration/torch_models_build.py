"""Tiny Hugging Face models and torch.export programs built at test time for the torch engine tests
(random weights, seeded; no download, no ../shared)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def build_bert(out: Path, *, safetensors: bool = True, max_positions: int = 64) -> Path:
    """BertModel: hidden 32, 2 layers, 2 heads, intermediate 64, vocab 100, no tokenizer. With
    ``safetensors=False`` the weights are a pickle, ``pytorch_model.bin`` (``torch.save`` of the state dict;
    transformers 5 writes safetensors only)."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     vocab_size=100, max_position_embeddings=max_positions)
    model = BertModel(cfg).eval()
    if safetensors:
        model.save_pretrained(out)
    else:
        out.mkdir(parents=True, exist_ok=True)
        cfg.architectures = ["BertModel"]
        cfg.save_pretrained(out)
        torch.save(model.state_dict(), out / "pytorch_model.bin")
    return out


def build_gpt2(out: Path) -> Path:
    """GPT2LMHeadModel: n_embd 32, 2 layers, 2 heads, vocab 100, 64 positions, no tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=100, n_positions=64, bos_token_id=0,
                     eos_token_id=0)
    GPT2LMHeadModel(cfg).eval().save_pretrained(out)
    return out


def build_vit(out: Path) -> Path:
    """ViTModel: image 32x32x3, patch 8, hidden 32, 2 layers."""
    import torch
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    cfg = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                    image_size=32, patch_size=8, num_channels=3)
    ViTModel(cfg).eval().save_pretrained(out)
    return out


def build_resnet(out: Path) -> Path:
    """ResNetModel: embedding 8, stages [8, 16], depths [1, 1] (its config has no image_size)."""
    import torch
    from transformers import ResNetConfig, ResNetModel

    torch.manual_seed(0)
    cfg = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_channels=3)
    ResNetModel(cfg).eval().save_pretrained(out)
    return out


def export_bert_pt2(folder: Path, out: Path, *, max_batch: int = 8) -> Path:
    """torch.export of the BERT folder's last_hidden_state: inputs input_ids/attention_mask int64
    [batch, sequence], batch dynamic in 1..max_batch, sequence in 2..64; example 2x16."""
    import torch
    from transformers import BertModel

    model = BertModel.from_pretrained(str(folder), local_files_only=True).eval()

    class Wrapped(torch.nn.Module):
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    ids = torch.randint(0, 100, (2, 16))
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    seq = torch.export.Dim("sequence", min=2, max=64)
    ep = torch.export.export(Wrapped(model).eval(), (ids, torch.ones_like(ids)),
                             dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}})
    torch.export.save(ep, str(out))
    return out
