#!/usr/bin/env python3
"""Max-abs difference between two embedding files (`dino-ar embed` output or a reference from
tools/fixtures/make_fixtures.py): `patch_tokens` and `cls_token`. Exits 1 above --tolerance.

    python tools/bench/compare_embeddings.py ref_448x448.safetensors ours.safetensors --tolerance 1e-4
"""
import argparse
import sys

import numpy as np
from safetensors.numpy import load_file


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reference")
    p.add_argument("ours")
    p.add_argument("--tolerance", type=float, default=1e-4)
    p.add_argument("--label", default="")
    a = p.parse_args()
    ref, ours = load_file(a.reference), load_file(a.ours)
    worst = 0.0
    parts = []
    for name in ("patch_tokens", "cls_token"):
        r, o = ref[name].astype(np.float64), ours[name].astype(np.float64)
        if r.shape != o.shape:
            sys.exit(f"{name}: shape {o.shape}, reference {r.shape}")
        d = float(np.abs(r - o).max())
        worst = max(worst, d)
        parts.append(f"{name} {d:.2e}")
    verdict = "ok" if worst <= a.tolerance else "FAIL"
    print(f"{verdict} {a.label} max-abs difference: {', '.join(parts)} (tolerance {a.tolerance:.0e})")
    sys.exit(0 if verdict == "ok" else 1)


if __name__ == "__main__":
    main()
