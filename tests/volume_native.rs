//! NIfTI volumes against nibabel: every data type, both byte orders, NIfTI-2, gzip, and the
//! orientation (flipped, permuted, oblique, qform-only files give the slices nibabel's canonical
//! view gives). Fixtures: `tools/fixtures/make_volumes.py`.
#![cfg(not(target_arch = "wasm32"))]

use std::path::PathBuf;

use dino_ar::volume::{Plane, VolumeErrorKind, nifti};
use dino_ar::weights::TensorFile;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/volumes")
}

fn expected() -> TensorFile {
    TensorFile::from_bytes(&std::fs::read(dir().join("expected.safetensors")).unwrap()).unwrap()
}

#[test]
fn every_fixture_reads_as_nibabel_sees_it() {
    let expected = expected();
    let mut files: Vec<String> = expected
        .names()
        .filter_map(|n| n.strip_suffix("/affine").map(String::from))
        .collect();
    files.sort();
    assert!(files.len() >= 19, "{files:?}");
    for file in &files {
        let volume = nifti::read(&std::fs::read(dir().join(file)).unwrap())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let affine = expected
            .get(&format!("{file}/affine"))
            .unwrap()
            .to_f32("affine")
            .unwrap();
        for r in 0..3 {
            for c in 0..4 {
                let (got, want) = (volume.affine[r][c], affine[r * 4 + c] as f64);
                assert!(
                    (got - want).abs() < 1e-5,
                    "{file}: affine[{r}][{c}] {got} vs {want}"
                );
            }
        }
        for plane in Plane::ALL {
            let name = format!("{file}/{plane}");
            let t = expected.get(&name).unwrap();
            let want = t.to_f32(&name).unwrap();
            let g = volume.geometry(*plane);
            assert_eq!(
                [g.count, g.height, g.width],
                t.shape[..],
                "{name}: slices × rows × columns"
            );
            let got: Vec<f32> = (0..g.count).flat_map(|n| volume.slice(&g, n)).collect();
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
                .fold(0.0f32, f32::max);
            assert!(
                worst < 1e-6,
                "{name}: differs from nibabel by {worst} (relative)"
            );
        }
    }
}

#[test]
fn what_the_reader_says_about_a_file() {
    let read = |f: &str| nifti::read(&std::fs::read(dir().join(f)).unwrap());
    let four = read("four_d.nii.gz").unwrap();
    assert_eq!(four.dims, [7, 6, 5]);
    assert!(
        four.notes[0].contains("first of its 3 volumes"),
        "{:?}",
        four.notes
    );
    assert!(read("uint8.nii").unwrap().eight_bit);
    assert!(read("rgb24.nii").unwrap().eight_bit);
    assert!(!read("int16.nii").unwrap().eight_bit);
    assert!(!read("int16_scaled.nii.gz").unwrap().eight_bit);
    let e = read("pair.hdr").unwrap_err();
    assert_eq!(e.kind, VolumeErrorKind::Unsupported);
    let e = e.to_string();
    assert!(e.contains("header-only") && e.contains(".img"), "{e}");
    assert!(
        read("pair.img")
            .unwrap_err()
            .to_string()
            .contains("not a NIfTI file")
    );
}

#[test]
fn a_broken_gzip_is_named() {
    let mut bytes = std::fs::read(dir().join("lps.nii.gz")).unwrap();
    let cut = bytes.len() / 2;
    bytes.truncate(cut);
    let e = nifti::read(&bytes).unwrap_err().to_string();
    assert!(e.contains("truncated") || e.contains("cannot read"), "{e}");
    bytes[cut / 2] ^= 0xff;
    assert!(nifti::read(&bytes).is_err());
}
