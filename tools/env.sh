# Shared settings for the project's scripts (sourced, not run).
# One target directory for every build (native, wasm tests, pkg/), outside the clone so that a
# fresh clone on the same machine reuses what was already compiled.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dino-ar-target}"
export PATH="$HOME/.cargo/bin:$PATH"
export CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"
# SwiftShader (software WebGPU) is slow: give each in-browser test time.
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-900}"
# Mesa's Vulkan driver complains on every start when this is unset (no display server here).
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
  XDG_RUNTIME_DIR="$(mktemp -d)"
  export XDG_RUNTIME_DIR
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
# The threaded browser build (tools/build-threads.sh) needs nightly for -Z build-std: pinned, so that
# every machine compiles the same std.
export DINO_AR_NIGHTLY="${DINO_AR_NIGHTLY:-nightly-2026-05-20}"
