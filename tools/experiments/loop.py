#!/usr/bin/env python3
"""The screening loop, measured (docs/results.md): start from a model fit on a few normal images,
mark the false alarms of one batch, learn from them (`dino-ar fit --resume`), and compare the
false-alarm rate and recall on a held-out split before and after; then the threshold rules
(`dino-ar calibrate`) side by side against the held-out quantile of `fit`.

Usage: tools/experiments/loop.py --data ../shared/data/lgg_brain_mri --backbone vit.safetensors
       [--seeds 1,2,3] [--normals 20] [--size 224] [--bin target/release/dino-ar] [--work DIR]

Everything goes through the CLI: no rule is restated here. With a random backbone the numbers show
that the loop works end to end, not how well the method does.
"""
import argparse
import csv
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{r.stderr}")
    return r.stderr


def link(files, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        os.symlink(f.resolve(), folder / f.name)
    return folder


def images(folder):
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".bmp"))


def scores(args, model, folder, out):
    run([args.bin, "score", "--backbone", args.backbone, "--model", model, folder, "--out", out, "--cache", args.cache])
    with open(out / "scores.csv") as f:
        return {Path(r["file"]).name: (float(r["score"]), r["verdict"] == "anomalous") for r in csv.DictReader(f)}


def rates(model_scores_good, model_scores_bad):
    """False-alarm rate and recall of the verdicts, and the image AUROC of the scores (how well
    they rank anomalous above normal, whatever the threshold; ties count half)."""
    fpr = sum(v for _, v in model_scores_good.values()) / max(1, len(model_scores_good))
    recall = sum(v for _, v in model_scores_bad.values()) / max(1, len(model_scores_bad))
    good = [s for s, _ in model_scores_good.values()]
    bad = [s for s, _ in model_scores_bad.values()]
    pairs = sum((b > g) + 0.5 * (b == g) for b in bad for g in good)
    return fpr, recall, pairs / max(1, len(good) * len(bad))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--backbone", required=True)
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--normals", type=int, default=20)
    p.add_argument("--size", default="224")
    p.add_argument("--epochs", default="20")
    p.add_argument("--learn-epochs", default="10")
    p.add_argument("--bin", default=os.environ.get("DINO_AR_BIN", "target/release/dino-ar"))
    p.add_argument("--work", type=Path, default=None)
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="dino-ar-loop-"))
    # Every image is embedded once: scoring again after learning, and calibrating, run the head.
    args.cache = str(work / "features")
    train = images(args.data / "train" / "good")
    good = images(args.data / "test" / "good")
    bad = [f for d in sorted((args.data / "test").iterdir()) if d.name != "good" for f in images(d)]
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        rng = random.Random(seed)
        w = work / f"seed{seed}"
        shutil.rmtree(w, ignore_errors=True)
        few = link(rng.sample(train, args.normals), w / "few")
        g, b = good[:], bad[:]
        rng.shuffle(g)
        rng.shuffle(b)
        batch_good = link(g[: len(g) // 2], w / "batch_good")
        batch_bad = link(b[: len(b) // 2], w / "batch_bad")
        held_good = link(g[len(g) // 2 :], w / "held_good")
        held_bad = link(b[len(b) // 2 :], w / "held_bad")
        common = ["--backbone", args.backbone, "--size", args.size, "--seed", str(seed), "--cache", args.cache]
        m0 = w / "start.safetensors"
        run([args.bin, "fit", *common, "--normal", few, "--epochs", args.epochs, "--out", m0])
        # One batch scored; its flagged normal images are the false alarms a person marks.
        batch = scores(args, m0, batch_good, w / "s_batch")
        alarms = [f for f in images(batch_good) if batch[f.name][1]]
        marked = link(alarms, w / "marked")
        m1 = w / "learned.safetensors"
        if alarms:
            run([args.bin, "fit", "--backbone", args.backbone, "--resume", m0, "--normal", few,
                 "--normal", marked, "--epochs", args.learn_epochs, "--seed", str(seed), "--cache", args.cache, "--out", m1])
        else:
            shutil.copy(m0, m1)
        for name, model in [("start (fit on %d normals)" % args.normals, m0),
                            ("after learning the batch's %d false alarms" % len(alarms), m1)]:
            fpr, recall, auroc = rates(scores(args, model, held_good, w / f"h_good_{model.stem}"),
                                       scores(args, model, held_bad, w / f"h_bad_{model.stem}"))
            rows.append((seed, name, "fit's quantile:0.99", fpr, recall, auroc))
        # The threshold rules on the learned model, set on the batch (its normal and anomalous
        # images, as a person would mark them), judged on the held-out split.
        for rule in ["fpr:0.05", "f1", "recall:0.9"]:
            m2 = w / f"rule_{rule.replace(':', '_')}.safetensors"
            run([args.bin, "calibrate", "--backbone", args.backbone, "--model", m1, "--normal", batch_good,
                 "--anomalous", batch_bad, "--rule", rule, "--cache", args.cache, "--out", m2])
            fpr, recall, auroc = rates(scores(args, m2, held_good, w / f"hg_{m2.stem}"),
                                       scores(args, m2, held_bad, w / f"hb_{m2.stem}"))
            rows.append((seed, "learned", rule, fpr, recall, auroc))
        print(f"seed {seed}: {len(alarms)} false alarms in a batch of {len(images(batch_good))} normal images",
              file=sys.stderr)
    print("| seed | model | threshold rule | false-alarm rate (held-out normals) | recall (held-out anomalous) | image AUROC (held-out) |")
    print("|---|---|---|---|---|---|")
    for seed, name, rule, fpr, recall, auroc in rows:
        print(f"| {seed} | {name} | {rule} | {100 * fpr:.1f} % | {100 * recall:.1f} % | {auroc:.3f} |")


if __name__ == "__main__":
    main()
