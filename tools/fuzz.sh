#!/usr/bin/env bash
# The long fuzzing runs (docs/FUZZING.md): each target from its seeds, corpus and dictionary,
# under libFuzzer with the issue's limits (2 GiB, 1 s per input), then its corpus minimised back
# into fuzz/corpus/<target>.corpus.gz (what tests/fuzz_replay.rs replays under cargo test).
#
#   tools/fuzz.sh [--runs N | --seconds S] [target...]     (default: every target, 10^6 runs)
#
# Logs and the working corpora: ${DINO_AR_FUZZ_WORK:-~/.cache/dino-ar-fuzz}. A crash leaves
# fuzz/artifacts/<target>/crash-*: fix it at its root and keep it as tests/fixtures/fuzz/<target>_*.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh
limit=(-runs=1000000)
targets=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) limit=(-runs="$2"); shift 2 ;;
    --seconds) limit=(-max_total_time="$2"); shift 2 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[[ ${#targets[@]} -gt 0 ]] || targets=(nifti dicom weights bundle picture text)
work="${DINO_AR_FUZZ_WORK:-$HOME/.cache/dino-ar-fuzz}"
mkdir -p "$work"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
(cd fuzz && cargo +"$DINO_AR_NIGHTLY" fuzz build)

# The seeds: fixtures listed in fuzz/seeds/<target>.txt (a folder: its files), hand-made ones in
# fuzz/seeds/<target>/, the corpus kept so far and the crashes found (tests/fuzz_replay.rs reads the same).
seeds() {
  while read -r p; do
    if [[ -d "$p" ]]; then find "$p" -maxdepth 1 -type f; elif [[ -n "$p" ]]; then echo "$p"; fi
  done < fuzz/seeds/"$1".txt
  ls -d fuzz/seeds/"$1"/* tests/fixtures/fuzz/"$1"_* 2>/dev/null || true
}

# fuzz/corpus/<target>.corpus.gz: the kept corpus as one file (gzip of [u32 LE length][bytes]...),
# read by tests/fuzz_replay.rs; a folder of thousands of small files would crowd the repository.
unpack() { # target dir
  [ -f fuzz/corpus/"$1".corpus.gz ] || return 0
  python3 - "$1" "$2" <<'PY'
import gzip, hashlib, pathlib, struct, sys
data = gzip.decompress(pathlib.Path(f"fuzz/corpus/{sys.argv[1]}.corpus.gz").read_bytes())
out, at = pathlib.Path(sys.argv[2]), 0
while at < len(data):
    (n,) = struct.unpack_from("<I", data, at)
    chunk = data[at + 4 : at + 4 + n]
    (out / hashlib.sha1(chunk).hexdigest()).write_bytes(chunk)
    at += 4 + n
PY
}
pack() { # target dir
  python3 - "$1" "$2" <<'PY'
import gzip, pathlib, struct, sys
files = sorted(p for p in pathlib.Path(sys.argv[2]).iterdir() if p.is_file())
body = b"".join(struct.pack("<I", p.stat().st_size) + p.read_bytes() for p in files)
pathlib.Path(f"fuzz/corpus/{sys.argv[1]}.corpus.gz").write_bytes(gzip.compress(body, 9, mtime=0))
print(f"   corpus kept: {len(files)} inputs, {len(body)} bytes, fuzz/corpus/{sys.argv[1]}.corpus.gz")
PY
}

for t in "${targets[@]}"; do
  corpus="$work/corpus/$t"
  mkdir -p "$corpus" fuzz/corpus
  seeds "$t" | while read -r f; do cp "$f" "$corpus/"; done
  unpack "$t" "$corpus"
  echo "== $t: ${limit[*]}, log $work/$t.log"
  (cd fuzz && cargo +"$DINO_AR_NIGHTLY" fuzz run "$t" "$corpus" -- \
      -dict=dict/"$t".dict -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=1 \
      -max_len=65536 -print_final_stats=1 "${limit[@]}") \
    >"$work/$t.log" 2>&1 || { tail -40 "$work/$t.log"; exit 1; }
  grep -E '^stat::number_of_executed_units|^#[0-9]+[[:space:]]+DONE' "$work/$t.log" | tail -2
  # Keep the smallest corpus with the same coverage (cmin), replacing the committed one.
  (cd fuzz && cargo +"$DINO_AR_NIGHTLY" fuzz cmin "$t" "$corpus" -- -max_len=65536 \
      -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=1) >"$work/$t.cmin.log" 2>&1
  pack "$t" "$corpus"
done
