//! DICOM files and series against pydicom: every transfer syntax read (implicit, explicit, big
//! endian, deflated, RLE, JPEG baseline), the rescale to Hounsfield units, a shuffled oblique
//! series stacked in slice order with its RAS affine, and the refusals (JPEG-LS, JPEG 2000, a
//! truncated file, mixed series). Fixtures: `tools/fixtures/make_dicom.py`.
#![cfg(not(target_arch = "wasm32"))]

use std::path::PathBuf;

use dino_ar::volume::{VolumeErrorKind, dicom};
use dino_ar::weights::TensorFile;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dicom")
}

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap()
}

fn expected(name: &str) -> (Vec<usize>, Vec<f32>) {
    let file = TensorFile::from_bytes(&bytes("expected.safetensors")).unwrap();
    let t = file
        .get(name)
        .unwrap_or_else(|| panic!("{name} not in expected.safetensors"));
    (t.shape.clone(), t.to_f32(name).unwrap())
}

#[test]
fn every_file_reads_as_pydicom_reads_it() {
    for (name, tolerance) in [
        ("MR_small.dcm", 0.0),
        ("MR_small_implicit.dcm", 0.0),
        ("MR_small_bigendian.dcm", 0.0),
        ("MR_small_RLE.dcm", 0.0),
        ("CT_small.dcm", 0.0),
        ("SC_rgb_rle.dcm", 1e-4),
        // Two JPEG decoders (libjpeg through Pillow, jpeg-decoder) round their IDCTs apart.
        ("SC_rgb_jpeg_dcmtk.dcm", 3.0),
    ] {
        let img = dicom::read(&bytes(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (shape, want) = expected(name);
        assert_eq!(
            [img.frames.len(), img.rows, img.columns],
            shape[..],
            "{name}"
        );
        let got: Vec<f32> = img.frames.concat();
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            worst <= tolerance,
            "{name}: differs from pydicom by {worst}"
        );
    }
    let ct = dicom::read(&bytes("CT_small.dcm")).unwrap();
    assert_eq!(ct.modality.as_deref(), Some("CT"));
    // Stored 128 … 2191, intercept −1024: Hounsfield units from −896.
    let min = ct.frames[0].iter().copied().fold(f32::MAX, f32::min);
    assert_eq!(min, -896.0, "rescaled to HU");
}

#[test]
fn a_shuffled_oblique_series_becomes_one_volume() {
    let mut files: Vec<(String, dicom::DicomImage)> = ["d.dcm", "a.dcm", "e.dcm", "c.dcm", "b.dcm"]
        .iter()
        .map(|n| {
            (
                n.to_string(),
                dicom::read(&bytes(&format!("series/{n}"))).unwrap(),
            )
        })
        .collect();
    files.rotate_left(2);
    let v = dicom::volume(files).unwrap();
    let (shape, want) = expected("series/volume");
    assert_eq!([v.dims[2], v.dims[1], v.dims[0]], shape[..]);
    assert_eq!(v.data, want, "slices in order, in HU");
    let (_, affine) = expected("series/affine");
    for r in 0..3 {
        for c in 0..4 {
            let (got, want) = (v.affine[r][c], affine[r * 4 + c] as f64);
            assert!(
                (got - want).abs() < 1e-4,
                "affine[{r}][{c}]: {got} vs {want}"
            );
        }
    }
    assert_eq!(v.modality.as_deref(), Some("CT"));
    assert!(!v.eight_bit);
}

#[test]
fn what_cannot_be_read_is_named() {
    let e = dicom::read(&bytes("MR_small_jpeg_ls_lossless.dcm")).unwrap_err();
    assert_eq!(e.kind, VolumeErrorKind::Unsupported);
    let e = e.to_string();
    assert!(
        e.contains("1.2.840.10008.1.2.4.80") && e.contains("JPEG-LS") && e.contains("dcm2niix"),
        "{e}"
    );
    let e = dicom::read(&bytes("MR_small_jp2klossless.dcm"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("JPEG 2000"), "{e}");
    let e = dicom::read(&bytes("MR_truncated.dcm")).unwrap_err();
    assert_eq!(e.kind, VolumeErrorKind::Truncated);
    let e = e.to_string();
    assert!(e.contains("truncated"), "{e}");
    let e = dicom::read(b"not a dicom file at all")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a DICOM file"), "{e}");
    let whole = bytes("MR_small.dcm");
    // (MR_small ends with padding after its pixel data, which is never read.)
    for cut in [100, 140, 400, whole.len() - 200] {
        assert!(dicom::read(&whole[..cut]).is_err(), "cut at {cut}");
    }
    // Two series, or two sizes, are not one volume.
    let mixed = vec![
        (
            "CT_small.dcm".to_string(),
            dicom::read(&bytes("CT_small.dcm")).unwrap(),
        ),
        (
            "series/a.dcm".to_string(),
            dicom::read(&bytes("series/a.dcm")).unwrap(),
        ),
    ];
    let e = dicom::volume(mixed).unwrap_err().to_string();
    assert!(e.contains("2 series"), "{e}");
}
