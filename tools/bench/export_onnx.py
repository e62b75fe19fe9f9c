#!/usr/bin/env python3
"""Export a DINOv3 fixture (HF layout: hf.safetensors + config.json) to ONNX for the in-browser comparison with onnxruntime-web
(BENCHMARKS.md, table 3). Output: `<model_dir>/model.onnx`, input `pixel_values` [1, 3, S, S]
(fixed size: the benchmark's), output `last_hidden_state`.

    python tools/bench/export_onnx.py tests/fixtures/full --size 224
    python tools/bench/export_onnx.py tests/fixtures/tiny --size 64 --out tests/fixtures/tiny/model_64.onnx

The tiny one is committed: CI runs the browser benchmark on it at its smallest size.

Needs the fixture venv plus `onnx` and `onnxscript` (`pip install onnx==1.23.2 onnxscript==0.7.2`).
"""
import argparse
import os

import torch
from safetensors.torch import load_file
from transformers import DINOv3ViTConfig, DINOv3ViTModel


class Hidden(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return self.model(pixel_values=pixel_values).last_hidden_state


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--out", help="default: <model_dir>/model.onnx")
    a = p.parse_args()
    config = DINOv3ViTConfig.from_pretrained(a.model_dir)
    config._attn_implementation = "eager"
    model = DINOv3ViTModel(config).eval()
    state = load_file(os.path.join(a.model_dir, "hf.safetensors"))
    want = set(model.state_dict())
    missing, _ = model.load_state_dict({(k if k in want else f"model.{k}"): v for k, v in state.items()}, strict=False)
    if missing:
        raise SystemExit(f"weights lack {missing[:3]}…")
    x = torch.zeros(1, 3, a.size, a.size)
    out = a.out or os.path.join(a.model_dir, "model.onnx")
    torch.onnx.export(Hidden(model), (x,), out, input_names=["pixel_values"],
                      output_names=["last_hidden_state"], opset_version=18, dynamo=True, external_data=False)
    print(f"wrote {out} ({os.path.getsize(out) / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
