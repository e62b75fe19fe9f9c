"""Third-party test files from PyPI packages, with what the reference readers read from each.

    .venv/bin/pip install -r tools/corpus/requirements.txt
    .venv/bin/python tools/corpus/reference.py OUT_DIR [--download DIR]

Sources (all from PyPI; no other network):
- DICOM: every file under pydicom's installed `pydicom/data/test_files/` (subfolders too) that
  `pydicom.dcmread(force=False)` opens, DICOMDIRs (Media Storage Directory) left out.
- NIfTI: every .nii / .nii.gz / .hdr under nibabel's installed `nibabel/tests/data/` that
  `nibabel.load` opens as NIfTI-1 or NIfTI-2 (image or .hdr/.img pair; a pair's .img is copied
  beside its .hdr, only the .hdr is listed). Files that load as Analyze, MINC, ... are not listed.
- Pictures: the PNG/JPEG/TIFF/WebP/BMP files of Pillow's `Tests/images/` (bmpsuite, APNGs, EXIF,
  16-bit, CMYK, truncated, ...), taken from Pillow's *sdist* (the wheel has no tests), less
  Pillow's own drawing/text-rendering outputs and files over 5 MB.
  NETWORK: the sdist is looked for in the --download cache (default OUT_DIR/download); only when
  it is missing does this script fetch it with pip (`pip download --no-binary :all:`, in a
  throw-away venv holding the sdist's metadata build requirements, so nothing is compiled).
  The tarball's sha256 is checked.

Writes (OUT_DIR/files and OUT_DIR/ref are emptied first):
- OUT_DIR/files/<source>/<path>: the copied files (source: pydicom, nibabel, pillow; <path> is the
  file's path inside the package's test-data folder).
- OUT_DIR/ref/<n>.safetensors: the reference's values for manifest entry n (0-based).
- OUT_DIR/manifest.json: a list, sorted (dicom, nifti, picture; then by path), of
  {"file": "files/pydicom/CT_small.dcm", "kind": "dicom"|"nifti"|"picture",
   "reference": "values"|"refused", "values": "ref/3.safetensors"}      (when "values")
   or the same with "reason": "<ExceptionType: message>" and no "values" (when "refused").
- OUT_DIR/environment.json: package versions, the pydicom decoder plugins per transfer syntax
  (in the order pydicom tries them) and, per DICOM file with values, the plugin that decoded it
  (JPEG decoders differ by a few levels: pylibjpeg's libjpeg vs Pillow's libjpeg-turbo).

Reference values (float64, C order), following tools/fixtures/make_dicom.py, make_volumes.py and
make_awkward.py:
- dicom   `frames` [frames, rows, cols]: `ds.pixel_array`, then grey -> apply_modality_lut;
          PALETTE COLOR -> apply_color_lut, mean of R, G, B; 3 samples -> the RGB pydicom gives
          by default (YBR converted), mean of R, G, B. `bits_allocated` int64 [1].
          No pixel data or a pixel_array exception -> refused.
- nifti   `data` (nibabel's shape: x, y, z[, t, ...]) = img.get_fdata() (scaled); an RGB voxel type
          is the mean of R, G, B (as make_volumes.py). `affine` [4, 4] = img.affine.
- picture `rgb` [H, W, 3] in [0, 1] (float32; every `stride`-th row and column of a picture over a
          quarter megapixel, `shape` [H, W] the full size): PIL, first frame, ImageOps.exif_transpose, then modes
          I;16 / I;16B / I -> grey / 65535 repeated over 3 channels, any other -> convert("RGB") / 255.
          A failure to open, load or convert -> refused.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from importlib.metadata import version
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pydicom.pixels
from PIL import Image, ImageOps
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut
from safetensors.numpy import save_file

PILLOW_SDIST = "pillow-13.0.0.tar.gz"
PILLOW_SDIST_SHA256 = "cdcd1ba258178f7356d74170c9a81ba4eab6a5d55748bc402a5a2a6fe6be3510"
# What pip needs to read the sdist's metadata without building anything (see requirements.txt).
SDIST_METADATA_REQS = ["setuptools==84.2.1", "pybind11==3.1.0", "wheel==0.48.0"]
PICTURE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp")
MAX_PICTURE_BYTES = 5 * 1024 * 1024
# Pillow's own rendering outputs (ImageDraw, text, fonts, EPS/TGA/BLP/AVIF reference renders):
# ordinary 8-bit PNGs of no interest as awkward inputs.
PICTURE_SKIP_PREFIXES = (
    "imagedraw", "test_", "eps/", "tga/", "blp/", "avif/", "bitmap_font", "multiline", "variation",
    "imageops", "effect_", "radial_gradient", "linear_gradient", "rotate_45", "rectangle_",
    "transparent_background_text", "text_", "default_font", "caption_", "colr_", "cbdt",
    "chromacheck", "drawing_", "high_ascii", "unicode_extended",
)
DIRECTORY_STORAGE = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage (DICOMDIR)


def reason(e, out):
    """The exception as text, with OUT_DIR left out of any path in it (the manifest is the same
    whatever OUT_DIR is)."""
    return f"{type(e).__name__}: {e}".replace(f"{out}/", "").strip()


def f64(a):
    return np.ascontiguousarray(a, dtype=np.float64)


# ---------------------------------------------------------------- DICOM


def dicom_files():
    root = Path(pydicom.__file__).parent / "data" / "test_files"
    out = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or "__pycache__" in p.parts:
            continue
        try:
            ds = pydicom.dcmread(p, force=False, stop_before_pixels=True)
        except Exception:  # not DICOM (README, .json, .icc, .gz, ...) or unreadable without force
            continue
        sop = ds.file_meta.get("MediaStorageSOPClassUID", None) if hasattr(ds, "file_meta") else None
        if sop == DIRECTORY_STORAGE or "DirectoryRecordSequence" in ds:
            continue
        out.append((root, p))
    return out


def decoder_order(uid):
    """The plugins pydicom tries for a transfer syntax, in the order it tries them."""
    d = pydicom.pixels.get_decoder(uid)
    return list(d._available) if not d.is_native else ["native"]


def dicom_plugin(path):
    """The plugin whose output ds.pixel_array returns: pydicom tries its plugins in order and
    keeps the first that succeeds, so the first one that succeeds alone."""
    uid = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    for plugin in decoder_order(uid):
        if plugin == "native":
            return plugin
        ds = pydicom.dcmread(path)
        try:
            ds.pixel_array_options(decoding_plugin=plugin)
            ds.pixel_array
            return plugin
        except Exception:
            continue
    return None


def dicom_values(path, notes):
    ds = pydicom.dcmread(path, force=False)
    arr = ds.pixel_array
    rows, cols = int(ds.Rows), int(ds.Columns)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.get("SamplesPerPixel", 1))
    pi = str(ds.get("PhotometricInterpretation", ""))
    expected = (rows, cols) if frames == 1 else (frames, rows, cols)
    if spp == 3:
        expected += (3,)
    if arr.shape != expected:
        notes.append(f"{path.name}: pixel_array shape {arr.shape}, expected {expected} "
                     f"(frames={frames}, samples={spp})")
    if spp == 1 and pi == "PALETTE COLOR":
        v = apply_color_lut(arr, ds).astype(np.float64).mean(axis=-1)
    elif spp == 3:
        v = arr.astype(np.float64).mean(axis=-1)
    else:
        v = apply_modality_lut(arr, ds).astype(np.float64)
    if frames == 1 and v.ndim == 2:
        v = v[None]
    return {"frames": f64(v), "bits_allocated": np.array([int(ds.BitsAllocated)], dtype=np.int64)}


# ---------------------------------------------------------------- NIfTI


def nifti_magic(path):
    """True when the header says NIfTI-1 or NIfTI-2 (either byte order), gzip or not."""
    import gzip

    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            head = f.read(540)
    except Exception:
        return False
    return head[344:347] in (b"n+1", b"ni1") or head[4:7] in (b"n+2", b"ni2")


def nifti_files():
    root = Path(nib.__file__).parent / "tests" / "data"
    out = []
    for p in sorted(root.iterdir()):
        if not p.is_file() or not p.name.endswith((".nii", ".nii.gz", ".hdr")):
            continue
        try:
            img = nib.load(p)
        except Exception:
            if nifti_magic(p):
                out.append(p)  # a NIfTI header nibabel cannot load: listed as refused
            continue
        if isinstance(img, nib.Nifti1Pair):  # Nifti1Image, Nifti2Image and the .hdr/.img pairs
            out.append(p)
    return out


def nifti_values(path):
    img = nib.load(path)
    raw = np.asarray(img.dataobj)
    if raw.dtype.names:  # RGB(A) voxels: the mean of R, G and B, as make_volumes.py
        data = sum(raw[c].astype(np.float64) for c in "RGB") / 3.0
    else:
        data = img.get_fdata()
    return {"data": f64(data), "affine": f64(img.affine)}


# ---------------------------------------------------------------- pictures


def pillow_sdist(cache):
    cache.mkdir(parents=True, exist_ok=True)
    tar = cache / PILLOW_SDIST
    if not tar.exists():
        print(f"fetching {PILLOW_SDIST} with pip into {cache} ...", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            venv = Path(tmp) / "venv"
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
            subprocess.run(pip + ["install", "--only-binary", ":all:", *SDIST_METADATA_REQS], check=True)
            version_ = PILLOW_SDIST.removeprefix("pillow-").removesuffix(".tar.gz")
            subprocess.run(pip + ["download", "--no-binary", ":all:", "--no-deps", "--no-build-isolation",
                                  f"pillow=={version_}", "-d", str(cache)], check=True)
    digest = hashlib.sha256(tar.read_bytes()).hexdigest()
    if digest != PILLOW_SDIST_SHA256:
        sys.exit(f"{tar}: sha256 {digest}, expected {PILLOW_SDIST_SHA256}")
    return tar


def extract_pictures(tar_path, dest):
    """Copies the chosen Tests/images files to dest; returns their paths relative to dest, sorted."""
    names = []
    with tarfile.open(tar_path) as tar:
        for m in tar.getmembers():
            _, sep, rel = m.name.partition("/Tests/images/")
            if not sep or not m.isfile() or not rel.lower().endswith(PICTURE_EXTS):
                continue
            if rel.startswith(PICTURE_SKIP_PREFIXES) or m.size > MAX_PICTURE_BYTES:
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(m).read())
            names.append(rel)
    return sorted(names)


def picture_values(path, notes):
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode in ("I;16", "I;16B", "I"):
            a = np.asarray(im, dtype=np.float64) / 65535.0
            if a.min() < 0 or a.max() > 1:
                notes.append(f"{path.name}: mode {im.mode} values outside 0..65535 "
                             f"({a.min() * 65535:g}..{a.max() * 65535:g})")
            rgb = np.repeat(a[..., None], 3, -1)
        else:
            rgb = np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"PIL gave shape {rgb.shape}")
    # A large picture keeps every `stride`-th row and column (about a quarter megapixel): the reference
    # stays small, and the comparison still covers the whole image. `shape` is the full size.
    h, w = rgb.shape[:2]
    stride = max(1, int(np.ceil(np.sqrt(h * w / 2.5e5))))
    return {"rgb": np.ascontiguousarray(rgb[::stride, ::stride], dtype=np.float32),
            "shape": np.array([h, w], dtype=np.int64), "stride": np.array([stride], dtype=np.int64)}


# ---------------------------------------------------------------- main


def environment():
    from pydicom.pixels.decoders.base import _PIXEL_DATA_DECODERS

    pkgs = ["numpy", "pillow", "pydicom", "nibabel", "safetensors", "pylibjpeg",
            "pylibjpeg-openjpeg", "pylibjpeg-libjpeg"]
    versions = {}
    for p in pkgs:
        try:
            versions[p] = version(p)
        except Exception:
            versions[p] = None
    plugins = {}
    for uid in sorted(_PIXEL_DATA_DECODERS):
        d = pydicom.pixels.get_decoder(uid)
        plugins[f"{uid} {uid.name}"] = decoder_order(uid)
    return {"versions": versions, "pydicom_decoders": plugins, "pillow_sdist": PILLOW_SDIST,
            "pillow_sdist_sha256": PILLOW_SDIST_SHA256}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--download", type=Path, help="cache holding the Pillow sdist (default OUT/download)")
    args = ap.parse_args()
    out = args.out.resolve()
    t0 = time.time()
    warnings.simplefilter("ignore")
    for sub in ("files", "ref"):
        shutil.rmtree(out / sub, ignore_errors=True)
    (out / "ref").mkdir(parents=True)
    files = out / "files"

    jobs = []  # (kind, relative file, callable -> tensors)
    notes = []
    for root, p in dicom_files():
        rel = p.relative_to(root)
        dst = files / "pydicom" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dst)
        jobs.append(("dicom", dst, lambda d=dst: dicom_values(d, notes)))
    for p in nifti_files():
        dst = files / "nibabel" / p.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dst)
        if p.name.endswith(".hdr"):
            img_file = p.with_suffix(".img")
            if img_file.exists():
                shutil.copyfile(img_file, dst.with_suffix(".img"))
        jobs.append(("nifti", dst, lambda d=dst: nifti_values(d)))
    tar = pillow_sdist((args.download or out / "download").resolve())
    for rel in extract_pictures(tar, files / "pillow"):
        dst = files / "pillow" / rel
        jobs.append(("picture", dst, lambda d=dst: picture_values(d, notes)))

    manifest, counts, plugins = [], {}, {}
    for n, (kind, dst, read) in enumerate(jobs):
        entry = {"file": dst.relative_to(out).as_posix(), "kind": kind}
        try:
            tensors = read()
            save_file(tensors, out / "ref" / f"{n}.safetensors")
            if kind == "dicom":
                plugins[entry["file"]] = dicom_plugin(dst)
            entry.update(reference="values", values=f"ref/{n}.safetensors")
        except Exception as e:
            entry.update(reference="refused", reason=reason(e, out))
        manifest.append(entry)
        c = counts.setdefault(kind, {"values": 0, "refused": 0})
        c[entry["reference"]] += 1
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    env = environment()
    env["dicom_plugin_used"] = plugins
    (out / "environment.json").write_text(json.dumps(env, indent=1) + "\n")

    for kind, c in counts.items():
        print(f"{kind:8} {c['values']:4} values {c['refused']:4} refused")
    for note in notes:
        print("note:", note)
    print(f"{len(manifest)} files in {out} ({time.time() - t0:.1f} s)")


if __name__ == "__main__":
    main()
