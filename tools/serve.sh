#!/usr/bin/env bash
# Build pkg/ and serve the app on http://localhost:$PORT (default 8080). Installs what is missing.
#   tools/serve.sh             dev build (shares the test build's compiled dependencies: fast)
#   tools/serve.sh --release   optimised build (slower to build, faster in the page)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
"$ROOT/tools/setup.sh" --no-browser
profile="--dev"
[ "${1:-}" = "--release" ] && profile="--release"
wasm-pack build $profile --target web --out-dir pkg
exec python3 "$ROOT/tools/serve.py" "${PORT:-8080}"
