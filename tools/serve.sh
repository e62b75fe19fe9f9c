#!/usr/bin/env bash
# Build pkg/ and pkg-threads/ and serve the app on http://localhost:$PORT (default 8080), cross-origin
# isolated (every core on the CPU backend). Installs what is missing.
#   tools/serve.sh             dev builds (share the test build's compiled dependencies: fast)
#   tools/serve.sh --release   optimised builds (slower to build, faster in the page)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
"$ROOT/tools/setup.sh" --no-browser
profile="--dev"
[ "${1:-}" = "--release" ] && profile="--release"
wasm-pack build $profile --target web --out-dir pkg
"$ROOT/tools/build-threads.sh" $profile
exec python3 "$ROOT/tools/serve.py" "${PORT:-8080}"
