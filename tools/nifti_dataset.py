"""Rewrite an MVTec-layout dataset of grey pictures as NIfTI volumes (one slice each, uint8, RAS,
masks as NIfTI too), so `dino-ar eval` on both can show that volumes are read as their pictures
are (docs/results.md). A picture's row r, column c becomes voxel (i = W-1-c, j = H-1-r, k = 0): the
radiological display of src/volume/mod.rs shows it as the picture.

    .venv/bin/python tools/nifti_dataset.py ../shared/data/kolektorsdd /tmp/kolektorsdd_nifti
"""

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image


def convert(src: Path, dst: Path):
    grey = np.asarray(Image.open(src).convert("L"), dtype=np.uint8)
    voxels = np.ascontiguousarray(grey[::-1, ::-1].T[:, :, None])
    img = nib.Nifti1Image(voxels, np.eye(4), dtype=np.uint8)
    img.header.set_xyzt_units("mm")
    nib.save(img, dst.with_name(dst.stem + ".nii.gz"))


def main(root: Path, out: Path):
    n = 0
    for src in sorted(root.rglob("*")):
        if src.suffix.lower() not in {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}:
            continue
        dst = out / src.relative_to(root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        convert(src, dst)
        n += 1
    print(f"{n} pictures → NIfTI in {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
