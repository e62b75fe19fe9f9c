#!/usr/bin/env bash
# Write the app as one static folder that any static host can serve (GitHub Pages, a bucket, a
# plain web server): the page, pkg/ and pkg-threads/ (the wasm and its glue, one thread and every
# core) and the built-in sample, with relative paths only, so it also works from a sub-path
# (https://user.github.io/dino-ar/). A host that cannot send COOP/COEP headers still gets every
# core: the page isolates itself with its own service worker (www/isolate-sw.js).
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
  "$ROOT/tools/build-threads.sh" "$build"
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
mkdir -p "$out"
cp -r www/. "$out/"
# The glue, the wasm and the glue's snippets (the threaded build's worker helpers); the threaded
# build where it was built (tools/build-threads.sh), which the page loads when it is isolated.
for dir in pkg pkg-threads; do
  [ -f "$dir/dino_ar_bg.wasm" ] || continue
  mkdir -p "$out/$dir"
  cp "$dir/dino_ar.js" "$dir/dino_ar_bg.wasm" "$out/$dir/"
  [ -d "$dir/snippets" ] && cp -r "$dir/snippets" "$out/$dir/"
done
[ -d "$out/pkg-threads" ] || echo "note: no pkg-threads/ (tools/build-threads.sh): the site runs on one thread" >&2
# GitHub Pages: serve files as they are (no Jekyll processing).
touch "$out/.nojekyll"
echo "static site in $out/ ($(du -sh "$out" | cut -f1)): publish the folder as it is"
