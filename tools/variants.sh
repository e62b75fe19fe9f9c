#!/usr/bin/env bash
# docs/results.md's comparison of the AR head's variants (the paper's `dilated` and `standard`
# single stacks, the `gated` two-stack head without a blind spot): fit + eval on the shared
# datasets with the random-weight ViT-S/16 from `tools/fixtures/make_fixtures.py --full`, the same
# epochs for each, over several seeds.
#   tools/variants.sh [DATA_ROOT] [SIZE] [EPOCHS]    (defaults: ../shared/data 224 10)
#   SEEDS="42 43 44" VARIANTS="dilated standard gated" DATASETS="lgg_brain_mri kolektorsdd" BACKBONE=weights
#   RESULTS_DIR=/tmp/dino-ar-variants;   then: python3 tools/variants_table.py RESULTS_DIR
# With random backbone weights the numbers prove the pipeline, not the method.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
data="${1:-../shared/data}"; size="${2:-224}"; epochs="${3:-10}"
backbone="${BACKBONE:-tests/fixtures/full/hf.safetensors}"
[ -f "$backbone" ] || { echo "missing $backbone: run tools/fixtures/make_fixtures.py --full" >&2; exit 1; }
cargo build --bin dino-ar
out="${RESULTS_DIR:-/tmp/dino-ar-variants}"; mkdir -p "$out"
# A private copy: rebuilding the crate meanwhile must not swap the binary between fit and eval.
cp "$CARGO_TARGET_DIR/debug/dino-ar" "$out/dino-ar"
bin="$out/dino-ar"
for ds in ${DATASETS:-lgg_brain_mri kolektorsdd}; do
  for seed in ${SEEDS:-42 43 44}; do
    for variant in ${VARIANTS:-dilated standard gated}; do
      run="${ds}_${variant}_${seed}"
      [ -f "$out/$run.json" ] && continue   # resumable: a finished run is kept
      start=$(date +%s)
      "$bin" fit --backbone "$backbone" --normal "$data/$ds/train/good" --size "$size" \
        --variant "$variant" --epochs "$epochs" --seed "$seed" --out "$out/$run.safetensors"
      mid=$(date +%s)
      "$bin" eval --backbone "$backbone" --model "$out/$run.safetensors" --data "$data/$ds" \
        --json "$out/$run.json.part"
      mv "$out/$run.json.part" "$out/$run.json"
      end=$(date +%s)
      echo "$ds $variant $seed fit_s=$((mid - start)) eval_s=$((end - mid))" | tee -a "$out/times.txt"
    done
  done
done
