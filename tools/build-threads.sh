#!/usr/bin/env bash
# Build pkg-threads/: the browser build on every core. burn-flex and gemm run on a rayon pool of Web
# Workers (src/web/pool.rs) that share one wasm memory, which needs atomics and bulk memory in
# every crate, std included: the pinned nightly toolchain rebuilds std with them (-Z build-std).
# The page loads it where it is cross-origin isolated, pkg/ (one thread) elsewhere.
#   tools/build-threads.sh [--dev|--release]    (default --release)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
profile="${1:---release}"
"$ROOT/tools/setup.sh" --no-browser
# RUSTFLAGS replaces .cargo/config.toml's flags: restate simd128 and strip. The linker must be told
# to make the memory shared and imported (each worker instantiates the module on the same memory)
# and to export the thread-local storage hooks wasm-bindgen initialises per thread; a shared memory
# declares its maximum up front: 4 GiB, what wasm32 addresses (the one-thread build grows to it too).
export RUSTUP_TOOLCHAIN="$DINO_AR_NIGHTLY"
link=""
for arg in --shared-memory --import-memory --max-memory=4294967296 --export=__wasm_init_tls \
           --export=__tls_size --export=__tls_align --export=__tls_base; do
  link="$link -C link-arg=$arg"
done
export RUSTFLAGS="-C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128 -C strip=symbols$link"
# Its own target directory: another toolchain and other flags share no compiled crate with the rest.
export CARGO_TARGET_DIR="$CARGO_TARGET_DIR/threads"
rm -rf pkg-threads   # wasm-pack leaves old snippets behind, which tools/site.sh would publish
wasm-pack build "$profile" --target web --out-dir pkg-threads --no-pack "$ROOT" \
  -Z build-std=panic_abort,std
