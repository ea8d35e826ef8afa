"""Build the ResNet-50 of the H200 GPU-engine run (random weights, seed 0): an ONNX export and, for the torch
engine, a Hugging Face folder.

- ONNX (``OUT_DIR/resnet50.onnx``): torchvision's ``resnet50()`` when torchvision imports (the network the
  ort-gpu-on-h200 recipe's bare probe measured), else transformers' ``ResNetForImageClassification`` with
  the default ``ResNetConfig`` (ResNet-50: bottleneck blocks, depths 3/4/6/3, widths 256..2048) returning
  its logits; exported by ``torch.onnx.export`` (TorchScript exporter, ``dynamo=False``), opset 17, input
  ``input`` ``[batch, 3, 224, 224]`` float32 with a dynamic batch axis, output ``logits`` ``[batch, 1000]``.
- Hugging Face folder (``OUT_DIR/hf_resnet50``, safetensors) of the transformers model when transformers
  imports: the input of ``--engine torch`` (a different random network from torchvision's when the ONNX
  came from torchvision: compare torch with ORT only when ``meta.json`` says both are ``transformers``).

``--tiny`` builds a 2-stage, narrow transformers ResNet instead (for a smoke test on a CPU machine).
Writes ``OUT_DIR/meta.json`` (which source, parameter count, export seconds, versions) and prints it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def _hf_model(tiny: bool) -> Any:
    from transformers import ResNetConfig, ResNetForImageClassification

    cfg = ResNetConfig(depths=[1, 1], hidden_sizes=[32, 64], embedding_size=16) if tiny else ResNetConfig()
    return ResNetForImageClassification(cfg).eval()


class _Logits:
    """Wrap a transformers classifier so that export sees one tensor output."""

    def __new__(cls, model: Any) -> Any:
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, x: Any) -> Any:
                return self.model(pixel_values=x).logits

        return Wrapped().eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--arch", choices=["auto", "torchvision", "transformers"], default="auto")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--tiny", action="store_true", help="a small transformers ResNet (smoke test)")
    args = ap.parse_args(argv)
    import torch

    torch.manual_seed(0)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"torch": torch.__version__, "opset": args.opset, "weights": "random (torch.manual_seed(0))"}
    source = args.arch
    if source == "auto":
        try:
            import torchvision  # noqa: F401

            source = "transformers" if args.tiny else "torchvision"
        except Exception:  # noqa: BLE001 - absent, or broken beside this torch (operator torchvision::nms...)
            source = "transformers"
    if source == "torchvision":
        import torchvision

        net = torchvision.models.resnet50().eval()
        meta["torchvision"] = torchvision.__version__
    else:
        net = _Logits(_hf_model(args.tiny))
    meta["onnx_source"] = source
    meta["params"] = int(sum(p.numel() for p in net.parameters()))
    x = torch.randn(1, 3, 224, 224)
    onnx_path = args.out_dir / "resnet50.onnx"
    t0 = time.time()
    with torch.no_grad():
        torch.onnx.export(net, (x,), str(onnx_path), input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=args.opset,
                          dynamo=False)
    meta["export_s"] = round(time.time() - t0, 1)
    meta["onnx"] = str(onnx_path)
    meta["onnx_bytes"] = onnx_path.stat().st_size
    try:
        import transformers

        hf = _hf_model(args.tiny) if source != "transformers" else net.model
        hf_dir = args.out_dir / "hf_resnet50"
        hf.save_pretrained(str(hf_dir), safe_serialization=True)
        meta["hf_folder"] = str(hf_dir)
        meta["hf_source"] = "transformers"
        meta["transformers"] = transformers.__version__
        meta["same_network_for_onnx_and_torch"] = source == "transformers"
    except Exception as exc:  # noqa: BLE001 - the torch engine's folder is optional
        meta["hf_folder"] = None
        meta["hf_error"] = f"{type(exc).__name__}: {exc}"
    (args.out_dir / "meta.json").write_text(json.dumps(meta, indent=1))
    print(json.dumps(meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
