#!/usr/bin/env bash
# What half precision does to the metrics (BENCHMARKS.md §6): the same fit and eval on one
# MVTec-style dataset with the backbone in f32 and in f16, for the kNN baseline and an AR head.
#
#   tools/bench/precision.sh DATA BACKBONE [SIZE] [-- extra fit options]
#   DINO_AR_BIN=path/to/dino-ar tools/bench/precision.sh ...   # an existing binary (no build)
#
# f16 runs on `--device gpu` (it needs an adapter with f16 arithmetic); f32 runs on the CPU, whose
# embeddings equal the GPU's f32 ones within 1e-5 (tests/gpu_native.rs), so the difference between
# the rows is the precision. Feature noise is off (`--noise-prob 0`): with it the two devices
# would draw different noise and the AR rows would differ by training randomness, not precision.
# Prints one table row per method and precision: image AUROC, pixel AUROC, pixel AP.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../env.sh"

[ $# -ge 2 ] || { sed -n 2,12p "${BASH_SOURCE[0]}"; exit 2; }
data="$1" backbone="$2"; shift 2
size=224
if [ $# -gt 0 ] && [ "$1" != "--" ]; then size="$1"; shift; fi
[ "${1:-}" = "--" ] && shift
extra=("$@")

bin="${DINO_AR_BIN:-}"
if [ -z "$bin" ]; then
  (cd "$ROOT" && cargo build --release --quiet)
  bin="$CARGO_TARGET_DIR/release/dino-ar"
fi
normal="$data/train/good"
[ -d "$normal/img" ] && normal="$normal/img"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
printf '%-6s %-10s %-5s %12s %12s %10s\n' method precision device image_auroc pixel_auroc pixel_ap
for method in knn ar; do
  for precision in f32 f16; do
    device=cpu
    [ "$precision" = f16 ] && device=gpu
    model="$work/$method-$precision.safetensors"
    "$bin" fit --backbone "$backbone" --normal "$normal" --out "$model" --size "$size" \
      --method "$method" --noise-prob 0 --device "$device" --precision "$precision" --cache "$work/cache" \
      "${extra[@]}" 2> "$work/fit.log" > /dev/null || { cat "$work/fit.log" >&2; exit 1; }
    "$bin" eval --backbone "$backbone" --model "$model" --data "$data" --device "$device" \
      --precision "$precision" --json "$work/m.json" 2> "$work/eval.log" > /dev/null \
      || { cat "$work/eval.log" >&2; exit 1; }
    # A precision that did not run (no f16 on the adapter) must not pass for one that did.
    if grep -q '^precision: f32 (' "$work/fit.log" "$work/eval.log"; then
      grep -h '^precision:' "$work/fit.log" >&2
      exit 1
    fi
    python3 - "$work/m.json" "$method" "$precision" "$device" <<'EOF'
import json, sys
m = {x["key"]: x["value"] for x in json.load(open(sys.argv[1]))["metrics"]}
print(f"{sys.argv[2]:<6} {sys.argv[3]:<10} {sys.argv[4]:<5} {m['image_auroc']:12.4f} {m['pixel_auroc']:12.4f} {m['pixel_ap']:10.4f}")
EOF
  done
done
