#!/usr/bin/env python3
"""Markdown table of the `dino-ar eval --json` reports written by tools/results.sh.

    python3 tools/results_table.py /tmp/dino-ar-results

The columns are the report's own metrics (key, label, value), in its order: a metric added to
the library's evaluation shows up here without touching this script.
"""
import glob
import json
import os
import sys

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/dino-ar-results"
times = {}
if os.path.exists(os.path.join(out, "times.txt")):
    for line in open(os.path.join(out, "times.txt")):
        ds, method, fit_s, eval_s = line.split()
        times[(ds, method)] = (int(fit_s.split("=")[1]), int(eval_s.split("=")[1]))

reports = []
for path in sorted(glob.glob(os.path.join(out, "*.json"))):
    ds, _, method = os.path.basename(path)[: -len(".json")].rpartition("_")
    reports.append((ds, method, json.load(open(path))))
if not reports:
    sys.exit(f"no eval reports (*.json) in {out}")

labels = [m["label"] for m in reports[0][2]["metrics"]]
print("| dataset | method | " + " | ".join(labels) + " | fit s | eval s |")
print("|---|---|" + "---|" * len(labels) + "---|---|")
for ds, method, report in reports:
    fit_s, eval_s = times.get((ds, method), ("?", "?"))
    values = " | ".join(f"{m['value']:.3f}" for m in report["metrics"])
    print(f"| {ds} | {method} | {values} | {fit_s} | {eval_s} |")
