#!/usr/bin/env python3
"""Markdown table of the `dino-ar eval --json` files written by tools/results.sh.

    python3 tools/results_table.py /tmp/dino-ar-results
"""
import json
import os
import sys

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/dino-ar-results"
times = {}
if os.path.exists(os.path.join(out, "times.txt")):
    for line in open(os.path.join(out, "times.txt")):
        ds, method, fit_s, eval_s = line.split()
        times[(ds, method)] = (int(fit_s.split("=")[1]), int(eval_s.split("=")[1]))
print("| dataset | method | pixel AUROC | pixel AP | image AUROC | pixel F1-max | PRO (FPR ≤ 0.3) | fit s | eval s |")
print("|---|---|---|---|---|---|---|---|---|")
for ds in ["lgg_brain_mri", "kolektorsdd"]:
    for method in ["dilated", "standard", "knn"]:
        path = os.path.join(out, f"{ds}_{method}.json")
        if not os.path.exists(path):
            continue
        m = json.load(open(path))
        fit_s, eval_s = times.get((ds, method), ("?", "?"))
        name = {"dilated": "AR dilated", "standard": "AR standard", "knn": "kNN"}[method]
        print(f"| {ds} | {name} | {m['pixel_auroc']:.3f} | {m['pixel_ap']:.3f} | {m['image_auroc']:.3f} | "
              f"{m['f1_max']:.3f} | {m['pro']:.3f} | {fit_s} | {eval_s} |")
