#!/usr/bin/env python3
"""PyTorch side of the backbone benchmark (CPU, or CUDA with --device cuda): the same weights, sizes, runs and thread count
as `dino-ar bench backbone`, timed the same way (median, min, max in ms).

    python tools/bench/backbone_torch.py tests/fixtures/full --sizes 224,448 --runs 5 --warmup 1

Needs the pinned venv of tools/fixtures/requirements.txt (torch, transformers).
"""
import argparse
import os
import time

import torch
from transformers import DINOv3ViTConfig, DINOv3ViTModel


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", help="folder with config.json and model weights (HF layout)")
    p.add_argument("--sizes", default="224,448")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--device", default="cpu", help="cpu or cuda (timed to the end of the GPU work)")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    config = DINOv3ViTConfig.from_pretrained(a.model_dir)
    from safetensors.torch import load_file
    model = DINOv3ViTModel(config).eval()
    state = load_file(os.path.join(a.model_dir, "hf.safetensors"))
    # Hub files name blocks `layer.N`, transformers 5 modules `model.layer.N`.
    want = set(model.state_dict())
    state = {(k if k in want else f"model.{k}"): v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing:
        raise SystemExit(f"weights lack {missing[:3]}…")
    dev = torch.device(a.device)
    model = model.to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"# torch {torch.__version__} on {where}, "
          f"attention {config._attn_implementation}; ms: median, min, max of {a.runs} runs after {a.warmup} warm-up")
    print(f"{'size':<10} {'median_ms':>10} {'min_ms':>10} {'max_ms':>10}")
    g = torch.Generator().manual_seed(3)
    for s in a.sizes.split(","):
        h, w = (int(v) for v in s.split("x")) if "x" in s else (int(s), int(s))
        x = (torch.rand(1, 3, h, w, generator=g) * 4 - 2).to(dev)
        with torch.inference_mode():
            for _ in range(a.warmup):
                model(pixel_values=x)
            ms = []
            for _ in range(max(1, a.runs)):
                sync()
                t = time.perf_counter()
                model(pixel_values=x).last_hidden_state.contiguous().cpu()
                ms.append((time.perf_counter() - t) * 1e3)
        ms.sort()
        print(f"{h}x{w:<6} {ms[len(ms) // 2]:>10.2f} {ms[0]:>10.2f} {ms[-1]:>10.2f}")


if __name__ == "__main__":
    main()
