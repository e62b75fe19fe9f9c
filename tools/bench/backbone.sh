#!/usr/bin/env bash
# Backbone forward, native: dino-ar (burn-flex, release build) vs PyTorch on the CPU, same random
# ViT-S/16, same sizes, same thread count, back to back; prints both tables and the ratios.
#   tools/bench/backbone.sh [model_dir (default tests/fixtures/full)] [sizes (default 224,448)]
# Needs the random ViT-S/16 (`python tools/fixtures/make_fixtures.py --full`) and the fixture venv
# (tools/fixtures/requirements.txt) as `python3` or in $PYTHON.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env.sh"
cd "$ROOT"
dir="${1:-tests/fixtures/full}"
sizes="${2:-224,448}"
threads=$(nproc)
cargo build --release --quiet
ours=$("$CARGO_TARGET_DIR/release/dino-ar" bench backbone --backbone "$dir/hf.safetensors" --sizes "$sizes" --runs 5 --warmup 1)
theirs=$("${PYTHON:-python3}" tools/bench/backbone_torch.py "$dir" --sizes "$sizes" --runs 5 --warmup 1 --threads "$threads")
echo "$ours"; echo; echo "$theirs"; echo
paste <(echo "$ours" | grep -E '^[0-9]+x') <(echo "$theirs" | grep -E '^[0-9]+x') |
  awk '{ printf "dino_ar_over_torch_at_%s=%.2f\n", $1, $3 / $8 }'   # the two median_ms columns
