#!/usr/bin/env bash
# Rebuild the page's built-in sample (www/sample/): images from the CC0 brick texture with synthetic
# defects, the tiny random-weight ViT from the test fixtures as its backbone, and an AR head fit on
# the sample's normal images with the CLI. The backbone is NOT DINOv3: see www/sample/README.md.
#   tools/sample/make_sample.sh [path/to/brick.png]     (default: ../shared/data/samples/brick.png)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env.sh"
cd "$ROOT"
texture="${1:-$ROOT/../shared/data/samples/brick.png}"
out="$ROOT/www/sample"
rm -rf "$out/normal" "$out/test" "$out/masks"
python3 tools/sample/make_images.py "$texture" --out "$out"
mkdir -p "$out/backbone"
cp tests/fixtures/tiny/hf.safetensors "$out/backbone/model.safetensors"
cp tests/fixtures/tiny/config.json "$out/backbone/config.json"
# A small head (hidden 128, 2.4 MB) on 40 images; what was tried and measured: www/sample/README.md.
cargo run --quiet -- fit --backbone "$out/backbone/model.safetensors" \
  --normal "$out/normal" --out "$out/model.safetensors" --size 224 --method ar \
  --variant standard --hidden 128 --epochs 40 --holdout 0.25 --seed 42 --no-cache
