#!/usr/bin/env bash
# Reproduce docs/results.md: fit + eval of dilated / standard / knn on the shared datasets with
# the random-weight ViT-S/16 from `tools/fixtures/make_fixtures.py --full`.
#   tools/results.sh [DATA_ROOT] [SIZE] [EPOCHS]      (defaults: ../shared/data 224 10)
# With random backbone weights the numbers prove the pipeline, not the method.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
data="${1:-../shared/data}"; size="${2:-224}"; epochs="${3:-10}"
backbone=tests/fixtures/full/hf.safetensors
[ -f "$backbone" ] || { echo "missing $backbone: run tools/fixtures/make_fixtures.py --full" >&2; exit 1; }
# The dev profile optimises dependencies (burn) already: no separate release build needed.
cargo build --bin dino-ar
out="${RESULTS_DIR:-/tmp/dino-ar-results}"; mkdir -p "$out"
# A private copy: rebuilding the crate meanwhile must not swap the binary between fit and eval.
cp "$CARGO_TARGET_DIR/debug/dino-ar" "$out/dino-ar"
bin="$out/dino-ar"
for ds in lgg_brain_mri kolektorsdd; do
  for method in dilated standard knn; do
    case $method in knn) extra=(--method knn);; *) extra=(--method ar --variant "$method" --epochs "$epochs");; esac
    start=$(date +%s)
    "$bin" fit --backbone "$backbone" --normal "$data/$ds/train/good" --size "$size" "${extra[@]}" \
      --out "$out/${ds}_${method}.safetensors"
    mid=$(date +%s)
    "$bin" eval --backbone "$backbone" --model "$out/${ds}_${method}.safetensors" --data "$data/$ds" \
      --json "$out/${ds}_${method}.json"
    end=$(date +%s)
    echo "$ds $method fit_s=$((mid - start)) eval_s=$((end - mid))" | tee -a "$out/times.txt"
  done
done
