#!/usr/bin/env bash
# Install what a fresh machine lacks for building and testing dino-ar; skip what is present.
#   tools/setup.sh            everything (wasm toolchain + Chromium for the browser tests)
#   tools/setup.sh --no-browser   only the wasm toolchain (enough to build and serve the app)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

step() { printf '\n== %s\n' "$*" >&2; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  step "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
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

if [ "${1:-}" != "--no-browser" ]; then
  command -v node >/dev/null && command -v npm >/dev/null \
    || { echo "Node.js and npm are needed for the browser API test (apt-get install nodejs npm)" >&2; exit 1; }
  if ! [ -x /usr/bin/chromium ] || ! [ -x /usr/bin/chromedriver ]; then
    step "apt-get install chromium chromium-driver"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver
  fi
fi
