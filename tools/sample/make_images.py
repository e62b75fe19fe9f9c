#!/usr/bin/env python3
"""Make the page's built-in sample from the CC0 brick texture (scikit-image's `brick.png`).

Writes www/sample/: `manifest.json` (what the page reads), `normal/` (defect-free crops, what the bundled model was fit on),
`test/` (held-out crops, some with a planted synthetic defect) and `masks/` (the defects' pixel
masks, `<name>_mask.png`, 255 inside). Deterministic: the same texture gives the same files.

    python tools/sample/make_images.py ../shared/data/samples/brick.png

Needs numpy and pillow only. The defects are synthetic (efflorescence, a scratch, a crack, paint): they are there to show the pipeline end to end, not to stand for real damage.
"""
import argparse
import json
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIDE = 224


def crops(texture, n, rng, avoid=None):
    """n SIDE×SIDE crops at random offsets, some flipped left-right (bricks stay upright)."""
    h, w = texture.shape
    out = []
    while len(out) < n:
        y, x = rng.integers(0, h - SIDE + 1), rng.integers(0, w - SIDE + 1)
        if avoid is not None and not avoid(y, x):
            continue
        c = texture[y:y + SIDE, x:x + SIDE]
        out.append(c[:, ::-1].copy() if rng.random() < 0.5 else c.copy())
    return out


def blob_mask(rng, radius):
    """A soft irregular blob: an ellipse whose edge is roughened, blurred a little."""
    m = Image.new("L", (SIDE, SIDE), 0)
    cy, cx = rng.integers(radius + 20, SIDE - radius - 20, size=2)
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    r = radius * (0.7 + 0.6 * rng.random(24))
    pts = [(cx + ri * np.cos(a) * 1.3, cy + ri * np.sin(a)) for a, ri in zip(angles, r)]
    ImageDraw.Draw(m).polygon(pts, fill=255)
    return np.asarray(m.filter(ImageFilter.GaussianBlur(1.5)), dtype=np.float32) / 255


def line_masks(rng, widths, wobble):
    """A crack or scratch: a random walk across a good part of the image, drawn at each width."""
    y, x = rng.uniform(70, SIDE - 70, size=2)
    angle = rng.uniform(0, np.pi)
    pts = [(x, y)]
    for _ in range(18):
        angle += rng.normal(0, wobble)
        x, y = x + 7 * np.cos(angle), y + 7 * np.sin(angle)
        pts.append((float(np.clip(x, 4, SIDE - 4)), float(np.clip(y, 4, SIDE - 4))))
    masks = []
    for width in widths:
        m = Image.new("L", (SIDE, SIDE), 0)
        ImageDraw.Draw(m).line(pts, fill=255, width=width, joint="curve")
        masks.append(np.asarray(m, dtype=np.float32) / 255)
    return masks


def plant(img, kind, rng):
    """Return (defective image, binary mask)."""
    f = img.astype(np.float32)
    # A random backbone barely sees darkening alone: its LayerNorms remove most of a patch's
    # brightness. So the crack, a dark defect, has chipped light edges as real ones do, and the
    # blotch is efflorescence (white salt deposits, a common brick defect) rather than a dark stain.
    if kind == "efflorescence":
        m = blob_mask(rng, 22)
        grain = rng.normal(0, 30, (SIDE, SIDE)).astype(np.float32)
        out = f * (1 - 0.8 * m) + m * (190 + grain)
    elif kind == "paint":
        m = blob_mask(rng, 18)
        out = f * (1 - m) + 235 * m
    elif kind == "scratch":
        (m,) = line_masks(rng, [3], 0.05)
        out = f * (1 - m) + 250 * m
    elif kind == "crack":
        inner, m = line_masks(rng, [5, 11], 0.5)
        out = f * (1 - m) + 215 * m
        out = out * (1 - inner) + 20 * inner
    else:
        raise ValueError(kind)
    return np.clip(out, 0, 255).astype(np.uint8), (m > 0.5).astype(np.uint8) * 255


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("texture", help="the CC0 brick.png from ../shared/data/samples")
    p.add_argument("--out", default=os.path.join(ROOT, "www", "sample"))
    p.add_argument("--normal", type=int, default=40)
    a = p.parse_args()

    tex = np.asarray(Image.open(a.texture).convert("L"))
    # Train on the left half of the texture, test on the right half: no test pixel was seen. The
    # photo is in perspective (bricks shrink towards the top), so a top/bottom split would test on
    # bricks of another size than the normal ones; left and right differ only in their tilt, which
    # the random left-right flips cover. Two generators: the test images do not change with the
    # number of normal ones.
    w = tex.shape[1]
    rng = np.random.default_rng(7)
    normal = crops(tex, a.normal, rng, avoid=lambda y, x: x + SIDE <= w // 2)
    rng = np.random.default_rng(8)
    test = crops(tex, 6, rng, avoid=lambda y, x: x >= w // 2)

    for sub in ("normal", "test", "masks"):
        os.makedirs(os.path.join(a.out, sub), exist_ok=True)
    for k, c in enumerate(normal):
        Image.fromarray(c).save(os.path.join(a.out, "normal", f"brick_{k:02d}.png"), optimize=True)
    names = []
    for k, (c, kind) in enumerate(zip(test, ["good", "good", "efflorescence", "scratch", "crack", "paint"])):
        name = f"{kind}_{k}.png"
        if kind == "good":
            Image.fromarray(c).save(os.path.join(a.out, "test", name), optimize=True)
        else:
            img, mask = plant(c, kind, rng)
            Image.fromarray(img).save(os.path.join(a.out, "test", name), optimize=True)
            Image.fromarray(mask).save(os.path.join(a.out, "masks", name[:-4] + "_mask.png"), optimize=True)
        names.append(name)
    manifest = {
        "about": "Built-in sample: crops of the CC0 brick texture from scikit-image; defects are synthetic. "
                 "Made by tools/sample/make_sample.sh.",
        "backbone": {"weights": "backbone/model.safetensors", "config": "backbone/config.json"},
        "model": "model.safetensors",
        "normal": [f"normal/brick_{k:02d}.png" for k in range(len(normal))],
        "test": [{"image": f"test/{n}",
                  "mask": None if n.startswith("good") else f"masks/{n[:-4]}_mask.png"} for n in names],
    }
    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"wrote {len(normal)} normal and {len(names)} test images to {a.out}")


if __name__ == "__main__":
    main()
