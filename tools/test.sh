#!/usr/bin/env bash
# Run every test: native (burn-flex) and in headless Chromium (WebGPU + CPU in wasm).
# Installs what is missing first. This is the README's test command and what CI runs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
"$ROOT/tools/setup.sh"

printf '\n== native tests (cargo test; the GPU ones on lavapipe, which setup.sh installed)\n' >&2
DINO_AR_REQUIRE_GPU=1 cargo test --all-targets

printf '\n== the readers against files other projects ship for theirs (tools/corpus/run.sh: pydicom, nibabel, Pillow from PyPI)\n' >&2
tools/corpus/run.sh

printf '\n== benchmark commands at their smallest sizes (full runs: BENCHMARKS.md)\n' >&2
bin="$CARGO_TARGET_DIR/debug/dino-ar"   # built by cargo test for tests/cli.rs
heads=$("$bin" bench heads --banks 1,2 --dim 16 --grid 4 --runs 1 --warmup 0)
echo "$heads"
echo "$heads" | tail -1 | grep -Eq '^knn_over_ar_at_2=[0-9.]+$' || { echo "bench heads: bad last line" >&2; exit 1; }
"$bin" bench backbone --backbone tests/fixtures/tiny/hf.safetensors --sizes 32,32x48 --runs 1 --warmup 0
"$bin" bench train --images 4 --dim 16 --grid 4 --batch-size 2 --runs 1 --warmup 0
DINO_AR_BIN="$bin" tools/bench/gpu.sh --no-build --quick   # GPU (lavapipe here) and CPU side by side

printf '\n== in-browser tests (wasm-pack test --headless --chrome)\n' >&2
wasm-pack test --headless --chrome -- --test web --test web_device_lost

printf '\n== the pkg/ JavaScript API: build (wasm-pack build --dev)\n' >&2
# --dev shares the compiled dependencies of the wasm tests above.
wasm-pack build --dev --target web --out-dir pkg
(cd tests/js && npm ci --no-audit --no-fund --silent)

printf '\n== the threaded build: pkg-threads/ (tools/build-threads.sh --dev; nightly, its own target directory)\n' >&2
tools/build-threads.sh --dev

printf '\n== the TypeScript types of pkg/: tests/ts/consumer.ts and the README example (tsc --strict)\n' >&2
mkdir -p tests/ts/out
awk '/^```ts$/ { keep = 1; next } /^```$/ { keep = 0 } keep' README.md | sed 's#"\./pkg/#"../../../pkg/#' > tests/ts/out/readme.ts
[ -s tests/ts/out/readme.ts ] || { echo "no \`\`\`ts example found in README.md" >&2; exit 1; }
tests/js/node_modules/.bin/tsc -p tests/ts
echo "types check"

printf '\n== the npm package: npm pack --dry-run lists the wasm, the glue, the types, README and LICENSE\n' >&2
packed=$(cd pkg && npm pack --dry-run --json 2>/dev/null | node -e '
  const [p] = JSON.parse(require("fs").readFileSync(0, "utf8"));
  console.log(`${p.name}@${p.version}: ${p.files.map((f) => f.path).sort().join(" ")}`);')
want="$(awk -F'"' '/^name = /{n=$2} /^version = /{v=$2; print n "@" v; exit}' Cargo.toml): LICENSE README.md dino_ar.d.ts dino_ar.js dino_ar_bg.wasm package.json"
echo "$packed"
[ "$packed" = "$want" ] || { echo "npm pack: expected $want" >&2; exit 1; }

printf '\n== the pkg/ JavaScript API at run time (tests/js/api.mjs)\n' >&2
node tests/js/api.mjs
node tools/bench/learn.mjs --size 32 --normals 4 --batch 6 --marked 2 --runs 1   # BENCHMARKS §8 at its smallest

printf '\n== the page end to end in headless Chromium, served as the static site tools/site.sh writes (tests/js/page.mjs)\n' >&2
site="$(mktemp -d)/dino-ar"   # served from its parent: the page lives on a sub-path
tools/site.sh --no-build "$site"
DINO_AR_SITE="$site" node tests/js/page.mjs

printf '\n== every core in the browser: pkg-threads/ isolated, pkg/ not, the same results (tests/js/threads.mjs)\n' >&2
node tests/js/threads.mjs

printf '\n== the CLI and the page agree: verdicts, overlays, a score on the threshold (tests/js/agree.mjs)\n' >&2
DINO_AR_BIN="$bin" node tests/js/agree.mjs

printf '\n== in-browser benchmark and footprint at their smallest sizes (full runs: BENCHMARKS.md)\n' >&2
node tests/js/bench.mjs --model tests/fixtures/tiny --onnx model_64.onnx --size 64 --runs 1 --train 3 --webgpu \
  --profile --cpu-profile "$(mktemp -d)/bench.cpuprofile"
node tests/js/bench.mjs --model tests/fixtures/tiny --onnx model_64.onnx --size 64 --runs 1 --train 3 --threads 2
tools/bench/footprint.sh --dev
node tools/bench/decode.mjs tests/fixtures/awkward/phone_rotated.jpg 1   # the library's decode in the wasm
# The WGSL matmul variants behind src/backbone/gpu_linear.rs, on a shape with partial blocks.
node tests/js/matmul_variants.mjs '[[37,12,20]]'

if [ ! -f tests/fixtures/full/hf.safetensors ]; then
  printf '\nnote: the full-size ViT-S/16 parity test was SKIPPED (tests/fixtures/full is absent;\n      generate it with `python tools/fixtures/make_fixtures.py --full`, see README)\n' >&2
fi
printf '\nall tests passed\n' >&2
