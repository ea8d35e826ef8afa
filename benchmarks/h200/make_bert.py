"""A BERT-base-shaped encoder (transformers BertConfig defaults: 12 layers, hidden 768, 12 heads; random weights)
as a Hugging Face folder (safetensors) for `--engine torch` and as ONNX (torch.onnx.export, opset 17, dynamic
batch and sequence axes named `batch` and `seq`) for ONNX Runtime. Prints a JSON line with both paths."""
import json
import sys
from pathlib import Path

import torch
from transformers import BertConfig, BertModel

out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/bert")
out.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
model = BertModel(BertConfig(**json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})).eval()
model.save_pretrained(out / "hf_bert_base", safe_serialization=True)
ids = torch.randint(0, 30522, (1, 128))
mask = torch.ones_like(ids)
onnx_path = out / "bert_base.onnx"


class _Positional(torch.nn.Module):
    """BertModel called by keyword (transformers 5 reorders forward's positional parameters: the tracing exporter
    passes kwargs positionally and hits `use_cache`)."""

    def __init__(self, m: torch.nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):  # noqa: D102
        o = self.m(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        return o.last_hidden_state, o.pooler_output


with torch.inference_mode():
    torch.onnx.export(_Positional(model), (ids, mask), str(onnx_path), input_names=["input_ids", "attention_mask"],
                      output_names=["last_hidden_state", "pooler_output"], opset_version=17, dynamo=False,
                      dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                    "last_hidden_state": {0: "batch", 1: "seq"}, "pooler_output": {0: "batch"}})
print(json.dumps({"hf_folder": str(out / "hf_bert_base"), "onnx": str(onnx_path),
                  "params": sum(p.numel() for p in model.parameters())}))
