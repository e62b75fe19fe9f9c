#!/usr/bin/env python3
"""Markdown table of tools/variants.sh's runs: per dataset and AR variant, mean ± standard
deviation over the seeds of every metric the eval reports carry, and the seconds per run.

    python3 tools/variants_table.py /tmp/dino-ar-variants

Runs are `DATASET_VARIANT_SEED.json` (`dino-ar eval --json`); times come from `times.txt`. The
metric columns are the reports' own (key, label), in their order.
"""
import glob
import json
import os
import statistics
import sys
from collections import defaultdict

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/dino-ar-variants"
times = defaultdict(list)
if os.path.exists(os.path.join(out, "times.txt")):
    for line in open(os.path.join(out, "times.txt")):
        ds, variant, seed, fit_s, eval_s = line.split()
        times[(ds, variant)].append((int(fit_s.split("=")[1]), int(eval_s.split("=")[1])))

runs = defaultdict(list)
for path in sorted(glob.glob(os.path.join(out, "*.json"))):
    ds_variant, _, seed = os.path.basename(path)[: -len(".json")].rpartition("_")
    ds, _, variant = ds_variant.rpartition("_")
    runs[(ds, variant)].append((int(seed), json.load(open(path))))
if not runs:
    sys.exit(f"no eval reports (DATASET_VARIANT_SEED.json) in {out}")


def cell(values, digits=3):
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


first = next(iter(runs.values()))[0][1]
labels = [m["label"] for m in first["metrics"]]
print("| dataset | variant | seeds | " + " | ".join(labels) + " | fit s | eval s |")
print("|---|---|---|" + "---|" * len(labels) + "---|---|")
for (ds, variant), reports in sorted(runs.items()):
    seeds = ",".join(str(s) for s, _ in sorted(reports))
    cols = []
    for i, _ in enumerate(labels):
        cols.append(cell([r["metrics"][i]["value"] for _, r in reports]))
    t = times.get((ds, variant), [])
    fit_s = cell([f for f, _ in t], 0) if t else "?"
    eval_s = cell([e for _, e in t], 0) if t else "?"
    print(f"| {ds} | {variant} | {seeds} | " + " | ".join(cols) + f" | {fit_s} | {eval_s} |")
