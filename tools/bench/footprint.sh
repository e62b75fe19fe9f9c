#!/usr/bin/env bash
# Download footprint of the page: wasm (raw and gzip -9), JS glue, the page's own files, and the
# model bundles a user loads. Builds pkg/ and pkg-threads/ with the given profile first (default
# --release): the page downloads one of the two wasm files (pkg-threads/ where it is isolated).
#   tools/bench/footprint.sh [--release|--dev]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env.sh"
cd "$ROOT"
profile="${1:---release}"
wasm-pack build "$profile" --target web --out-dir pkg >/dev/null 2>&1
tools/build-threads.sh "$profile" >/dev/null 2>&1
size() { stat -c %s "$1"; }
gz() { gzip -9 -c "$1" | wc -c; }
printf '%-34s %12s %12s\n' "file ($profile)" bytes gzip_bytes
for f in pkg/dino_ar_bg.wasm pkg/dino_ar.js pkg-threads/dino_ar_bg.wasm pkg-threads/dino_ar.js www/*.html www/*.js www/*.css; do
  printf '%-34s %12d %12d\n' "$f" "$(size "$f")" "$(gz "$f")"
done
printf '%-34s %12d\n' "www/sample/ (all files)" "$(du -sb www/sample | cut -f1)"
printf '%-34s %12d\n' "sample model bundle" "$(size www/sample/model.safetensors)"
