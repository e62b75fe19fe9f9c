#!/usr/bin/env bash
# Native GPU vs native CPU on one machine, one run each, the same tables side by side
# (BENCHMARKS.md §5): the ViT-S/16 backbone at 224² and 448² (first forward, shaders included, and
# steady state), AR-head scoring against kNN banks, and one training epoch of the paper's head.
#
#   tools/bench/gpu.sh                 # builds the release CLI, benches on `--device gpu` and `cpu`
#   DINO_AR_BIN=path/to/dino-ar tools/bench/gpu.sh --no-build [--quick] [--torch]
#
# --torch (needs python3 with torch, transformers, safetensors): also makes the random ViT-S/16
# of tools/fixtures/make_fixtures.py with its Hugging Face reference outputs, checks the GPU's
# embeddings against them (parity, 224² and 448²), and times PyTorch on the same weights — on CUDA
# where torch sees a GPU, else on the CPU.
#
# The backbone is a random ViT-S/16 made by `dino-ar random-backbone` (speed does not depend on
# the values). The bench tables carry the GPU allocator's own figures (weights in use after loading,
# memory reserved after each case: burn's `Device::memory_pool_usage`, on any adapter); where
# `nvidia-smi` exists, the GPU memory in use is also sampled every 100 ms and its peak printed. Runs as is on any machine with a Vulkan (Linux, Windows), Metal (macOS)
# or DX12 driver; on a machine without one, the GPU half fails with the reason.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../env.sh"
cd "$ROOT"

build=1 quick="" torch=""
for a in "$@"; do
  case "$a" in
    --no-build) build="" ;;
    --torch) torch=1 ;;
    --quick) quick=1 ;;  # the smallest sizes: a check that the script runs, not a measurement
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done
bin="${DINO_AR_BIN:-$CARGO_TARGET_DIR/release/dino-ar}"
[ -z "$build" ] || cargo build --release --bin dino-ar

work="$(mktemp -d)"
trap '[ -z "${smi:-}" ] || kill "$smi" 2>/dev/null; rm -rf "$work"' EXIT
if [ -n "$quick" ]; then
  "$bin" random-backbone --out "$work/vit.safetensors" --width 64 --layers 2 --mlp 128 2>&1
  sizes=32 runs=(--runs 1 --warmup 0) heads=(--banks 1,2 --dim 16 --grid 4)
  train=(--images 4 --dim 16 --grid 4 --batch-size 2)
else
  "$bin" random-backbone --out "$work/vit.safetensors" 2>&1
  sizes=224,448 runs=(--runs 5 --warmup 1) heads=(--banks 10,100,1000)
  train=(--images 200 --batch-size 64)
fi

# Peak GPU memory (MiB, all processes) between two marks, from nvidia-smi's samples.
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$work/mem" &
  smi=$!
fi
peak_since() {
  [ -n "${smi:-}" ] || return 0
  sleep 0.3
  tail -n +"$1" "$work/mem" | sort -n | tail -1 | awk '{print "# peak GPU memory in use: " $1 " MiB"}'
}
mark() { [ -n "${smi:-}" ] && wc -l <"$work/mem" || echo 0; }

# DEVICES="gpu" skips the CPU half (e.g. to compare two builds on the GPU alone).
for device in ${DEVICES:-gpu cpu}; do
  printf '\n######## --device %s\n' "$device"
  m=$(mark); "$bin" bench backbone --device "$device" --backbone "$work/vit.safetensors" --sizes "$sizes" "${runs[@]}"
  [ "$device" = cpu ] || peak_since "$m"
  m=$(mark); "$bin" bench heads --device "$device" "${heads[@]}" "${runs[@]}"
  [ "$device" = cpu ] || peak_since "$m"
  m=$(mark); "$bin" bench train --device "$device" "${train[@]}" --runs 1 --warmup 1
  [ "$device" = cpu ] || peak_since "$m"
done

if [ -n "$torch" ]; then
  py="${PYTHON:-python3}"
  printf '\n######## parity with Hugging Face DINOv3ViTModel on --device gpu, and PyTorch side by side\n'
  "$py" tools/fixtures/make_fixtures.py --full --out "$work/fixtures" >/dev/null 2>&1 \
    || "$py" tools/fixtures/make_fixtures.py --full --out "$work/fixtures"
  full="$work/fixtures/full"
  for size in 224x224 448x448; do
    "$bin" embed --device gpu --backbone "$full/hf.safetensors" --pixels "$full/pixels_$size.safetensors" \
      --out "$work/gpu_$size.safetensors" 2>/dev/null
    "$py" tools/bench/compare_embeddings.py "$full/ref_$size.safetensors" "$work/gpu_$size.safetensors" \
      --label "ViT-S/16 $size on the GPU vs transformers:"
  done
  cuda=$("$py" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')
  "$bin" bench backbone --device gpu --backbone "$full/hf.safetensors" --sizes "$sizes" "${runs[@]}"
  "$py" tools/bench/backbone_torch.py "$full" --device "$cuda" --sizes "$sizes" "${runs[@]}"
fi
