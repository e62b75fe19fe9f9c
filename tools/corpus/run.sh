#!/usr/bin/env bash
# The readers against files other projects ship for their own readers (tests/corpus_native.rs):
# pydicom's DICOM files, nibabel's NIfTI files, Pillow's test pictures, all from PyPI, with what
# those reference readers read from them (tools/corpus/reference.py). tools/test.sh runs this.
#
#   tools/corpus/run.sh            # venv, corpus and report under ${DINO_AR_CORPUS_HOME:-~/.cache/dino-ar-corpus}
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env.sh"
cd "$ROOT"
home="${DINO_AR_CORPUS_HOME:-$HOME/.cache/dino-ar-corpus}"
mkdir -p "$home"
if [ ! -x "$home/venv/bin/python" ]; then
  python3 -m venv "$home/venv"
fi
"$home/venv/bin/pip" install --quiet --disable-pip-version-check -r tools/corpus/requirements.txt
# The Pillow sdist (47 MB) is kept in the download folder: fetched once.
"$home/venv/bin/python" tools/corpus/reference.py "$home/out" --download "$home/download" 2> >(grep -v "WEBP compression\|More samples per pixel" >&2)
DINO_AR_CORPUS="$home/out" cargo test --test corpus_native -- --ignored --nocapture
echo "every file's outcome: $home/out/report.md"
