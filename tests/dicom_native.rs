//! DICOM files and series against pydicom: every transfer syntax read (implicit, explicit, big
//! endian, deflated, RLE, JPEG baseline, JPEG 2000 lossless and lossy), the rescale to Hounsfield
//! units, the awkward pixels real archives hold (YBR_FULL_422 and YBR_FULL, palette colour, 1-bit
//! frames, implicit VR under an explicit syntax), a shuffled oblique series stacked in slice order
//! with its RAS affine, and the refusals (JPEG-LS, a truncated file, mixed series). Fixtures:
//! `tools/fixtures/make_dicom.py`.
#![cfg(not(target_arch = "wasm32"))]

use std::path::PathBuf;

use dino_ar::volume::{VolumeErrorKind, dicom};
use dino_ar::weights::{Dtype, TensorFile};

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
    // Large whole-number images are stored as int16 (a smaller fixture).
    let values = match t.dtype {
        Dtype::I16 => t
            .bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32)
            .collect(),
        _ => t.to_f32(name).unwrap(),
    };
    (t.shape.clone(), values)
}

#[test]
fn every_file_reads_as_pydicom_reads_it() {
    // (file, the largest difference, the percentage of values that may differ)
    for (name, tolerance, percent) in [
        ("MR_small.dcm", 0.0, 0),
        ("MR_small_implicit.dcm", 0.0, 0),
        ("MR_small_bigendian.dcm", 0.0, 0),
        ("MR_small_RLE.dcm", 0.0, 0),
        ("CT_small.dcm", 0.0, 0),
        ("SC_rgb_rle.dcm", 1e-4, 0),
        ("MR_small_jp2klossless.dcm", 0.0, 0),
        // Lossy JPEG 2000 (signed 16-bit): OpenJPEG (pydicom's) and hayro run the 9/7 wavelet in
        // f32 each their own way; a value where it lands on .5 rounds apart (counted below).
        ("JPEG2000.dcm", 1.0, 1),
        ("j2k_rgb_lossless.dcm", 1e-4, 0),
        ("j2k_rgb_lossy.dcm", 1.0, 1),
        ("SC_ybr_full_422_uncompressed.dcm", 1e-4, 0),
        ("ybr_full_planar0.dcm", 1e-4, 0),
        ("ybr_full_planar1.dcm", 1e-4, 0),
        ("palette16.dcm", 1e-2, 0),
        ("palette8.dcm", 1e-4, 0),
        ("bits1.dcm", 0.0, 0),
        ("implicit_as_explicit.dcm", 0.0, 0),
        ("explicit_as_implicit.dcm", 0.0, 0),
        // Two JPEG decoders (libjpeg through Pillow, jpeg-decoder) round their IDCTs apart.
        ("SC_rgb_jpeg_dcmtk.dcm", 3.0, 100),
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
        // A rounding here and there, not a shifted image ("apart": not within 1e-4).
        let apart = got
            .iter()
            .zip(&want)
            .filter(|(a, b)| (*a - *b).abs() > 1e-4)
            .count();
        assert!(
            apart * 100 <= got.len() * percent,
            "{name}: {apart} of {} values differ from pydicom's",
            got.len()
        );
    }
    let ct = dicom::read(&bytes("CT_small.dcm")).unwrap();
    assert_eq!(ct.modality.as_deref(), Some("CT"));
    // Stored 128 … 2191, intercept −1024: Hounsfield units from −896.
    let min = ct.frames[0].iter().copied().fold(f32::MAX, f32::min);
    assert_eq!(min, -896.0, "rescaled to HU");
}

#[test]
fn a_writers_slip_is_read_and_said() {
    let img = dicom::read(&bytes("implicit_as_explicit.dcm")).unwrap();
    assert!(
        img.notes.iter().any(|n| n.contains("implicit VR though")),
        "{:?}",
        img.notes
    );
    let img = dicom::read(&bytes("explicit_as_implicit.dcm")).unwrap();
    assert!(img.notes.iter().any(|n| n.contains("explicit VR though")));
    assert!(
        dicom::read(&bytes("MR_small.dcm"))
            .unwrap()
            .notes
            .is_empty()
    );
    let palette = dicom::read(&bytes("palette8.dcm")).unwrap();
    assert!(palette.notes.iter().any(|n| n.contains("palette")));
    assert!(palette.eight_bit, "8-bit LUTs give 8-bit values");
    assert!(!dicom::read(&bytes("palette16.dcm")).unwrap().eight_bit);
    assert!(!dicom::read(&bytes("bits1.dcm")).unwrap().eight_bit);
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

#[test]
fn items_nested_past_any_real_depth_are_refused_not_a_stack_overflow() {
    // The preamble, a file meta of one element (explicit VR little endian), then a sequence of
    // undefined length opening 100 000 undefined-length items, one inside the other (800 kB).
    let mut file = vec![0u8; 128];
    file.extend(b"DICM");
    file.extend([0x02, 0x00, 0x10, 0x00, b'U', b'I', 20, 0]);
    file.extend(b"1.2.840.10008.1.2.1\0");
    file.extend([
        0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
    ]);
    for _ in 0..100_000 {
        file.extend([0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
    }
    let e = dicom::read(&file).unwrap_err().to_string();
    assert!(e.contains("nested more than 64"), "{e}");
}
