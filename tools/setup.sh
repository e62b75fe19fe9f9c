#!/usr/bin/env bash
# Install what a fresh machine lacks for building and testing dino-ar; skip what is present.
#   tools/setup.sh            everything (wasm toolchain + Chromium for the browser tests)
#   tools/setup.sh --no-browser   only the wasm toolchain (enough to build and serve the app)
# The first also installs Mesa's software Vulkan driver (lavapipe) when no Vulkan driver is
# present, so that the native GPU path (`--device gpu`) is tested on any machine.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

step() { printf '\n== %s\n' "$*" >&2; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  step "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

# The threaded browser build (tools/build-threads.sh): the pinned nightly, with std's sources.
if ! rustup run "$DINO_AR_NIGHTLY" rustc --version >/dev/null 2>&1 \
   || ! rustup component list --installed --toolchain "$DINO_AR_NIGHTLY" | grep -qx rust-src; then
  step "rustup toolchain install $DINO_AR_NIGHTLY (rust-src, wasm32: the threaded build)"
  rustup toolchain install "$DINO_AR_NIGHTLY" --profile minimal --component rust-src \
    --target wasm32-unknown-unknown
fi

if ! command -v wasm-pack >/dev/null; then
  step "cargo install wasm-pack (a few minutes)"
  cargo install wasm-pack --locked --version 0.15.1
fi

# wasm-bindgen-cli must match the wasm-bindgen version in Cargo.lock exactly.
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  step "cargo install wasm-bindgen-cli $want (have: ${have:-none})"
  # Not --locked: its lock file pins a dependency version the registry no longer has.
  cargo install wasm-bindgen-cli --version "$want" --force
fi

SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_updated=""
apt_install() {
  [ -n "$apt_updated" ] || { $SUDO apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@"
}

if [ "${1:-}" != "--no-browser" ]; then
  if ! compgen -G '/usr/share/vulkan/icd.d/*.json' >/dev/null && ! compgen -G '/etc/vulkan/icd.d/*.json' >/dev/null; then
    step "apt-get install mesa-vulkan-drivers (lavapipe: a software Vulkan driver for the GPU tests)"
    apt_install mesa-vulkan-drivers libvulkan1
  fi
  command -v node >/dev/null && command -v npm >/dev/null \
    || { echo "Node.js and npm are needed for the browser API test (apt-get install nodejs npm)" >&2; exit 1; }
  if ! [ -x /usr/bin/chromium ] || ! [ -x /usr/bin/chromedriver ]; then
    step "apt-get install chromium chromium-driver"
    apt_install chromium chromium-driver
  fi
fi
