#!/usr/bin/env bash
# Write the app as one static folder that any static host can serve (GitHub Pages, a bucket, a
# plain web server): the page, pkg/ (the wasm and its glue) and the built-in sample, with relative
# paths only, so it also works from a sub-path (https://user.github.io/dino-ar/).
#   tools/site.sh [--release|--dev|--no-build] [OUT]    (default: --release, OUT = site/)
# --no-build takes pkg/ as it is (tools/test.sh builds it first).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
build="--release"
case "${1:-}" in --release|--dev|--no-build) build="$1"; shift;; esac
out="${1:-site}"
if [ "$build" != "--no-build" ]; then
  "$ROOT/tools/setup.sh" --no-browser
  wasm-pack build "$build" --target web --out-dir pkg
fi
for f in pkg/dino_ar.js pkg/dino_ar_bg.wasm; do
  [ -f "$f" ] || { echo "missing $f: run without --no-build" >&2; exit 1; }
done
# The page must not name an absolute path: on a sub-path host it would point outside the site.
if grep -nE "(src|href)=\"/[^/]|from \"/|import\\(\"/|fetch\\(\"/" www/*.html www/*.js; then
  echo "absolute paths in www/ (above): use relative ones" >&2
  exit 1
fi
rm -rf "$out"
mkdir -p "$out/pkg"
cp -r www/. "$out/"
cp pkg/dino_ar.js pkg/dino_ar_bg.wasm "$out/pkg/"
# GitHub Pages: serve files as they are (no Jekyll processing).
touch "$out/.nojekyll"
echo "static site in $out/ ($(du -sh "$out" | cut -f1)): publish the folder as it is"
