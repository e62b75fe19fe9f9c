//! Files that other projects ship for their own readers' tests — pydicom's DICOM files, nibabel's
//! NIfTI files, Pillow's awkward pictures (bmpsuite, EXIF, 16-bit, CMYK, truncated, …) — read here
//! and compared with what those reference readers read from them (issue 30, part 5).
//!
//! The corpus comes from PyPI, with the reference values: `tools/corpus/run.sh` makes it
//! (tools/corpus/reference.py) and runs this test on it, so plain `cargo test` skips it
//! (`#[ignore]`). Every file must be read without a panic; a file both read must give the same
//! values — exactly for lossless data, within a codec's rounding for lossy ones — and every file
//! refused here is listed with its message (docs/FUZZING.md gives the counts). The full report
//! goes to `$DINO_AR_CORPUS/report.md`.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use dino_ar::input;
use dino_ar::volume::{dicom, nifti};
use dino_ar::weights::{Dtype, TensorFile};

#[derive(serde::Deserialize)]
struct Entry {
    file: String,
    kind: String,
    reference: String,
    values: Option<String>,
    reason: Option<String>,
}

/// Files that read to other values than the reference's, each for a reason that is not a fault
/// here (or not one fixed yet: the closing note of issue 30 lists them). A file on this list that
/// comes to agree fails the test, so the list stays true.
const KNOWN: [(&str, &str); 7] = [
    (
        "files/pillow/app13.jpg",
        "4×4 pixels of random colour, chroma subsampled: two decoders' chroma upsampling differs \
         most on an image that small (photos agree within 4 levels: tests/input_native.rs)",
    ),
    (
        "files/pillow/exif_imagemagick_orientation.png",
        "its orientation is only in ImageMagick's hex-encoded text chunk (`Raw profile type \
         exif`), which Pillow reads and browsers and image-rs do not",
    ),
    (
        "files/pillow/bmp/q/pal4rletrns.bmp",
        "RLE with skipped (transparent) pixels: Pillow paints them palette entry 0, here they are \
         transparent black, as browsers show them",
    ),
    (
        "files/pillow/bmp/q/pal8rletrns.bmp",
        "RLE with skipped (transparent) pixels: Pillow paints them palette entry 0, here they are \
         transparent black, as browsers show them",
    ),
    (
        "files/pillow/mmap_error.bmp",
        "a palette BMP whose header and palette disagree (Pillow's regression file for a crash): \
         the two decoders pick different colours",
    ),
    (
        "files/pillow/tiff_16bit_RGBa.tiff",
        "16-bit premultiplied alpha: Pillow cuts to 8 bits before dividing the alpha out, so its \
         colours are coarse where alpha is small; divided here in full precision",
    ),
    (
        "files/pillow/tiff_strip_planar_16bit_RGBa.tiff",
        "16-bit premultiplied alpha: Pillow cuts to 8 bits before dividing the alpha out, so its \
         colours are coarse where alpha is small; divided here in full precision",
    ),
];

/// What came of one file.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
enum Outcome {
    /// Both read it, to the same values.
    Same,
    /// Both read it; the values differ only by a lossy codec's rounding (a few levels at most,
    /// little on average).
    Close,
    /// Both read it, to other values or another shape: a bug here or there.
    Differs,
    /// Other values, for a reason given in [`KNOWN`].
    Known,
    /// Refused here, read by the reference: the message must be true (listed for review).
    RefusedHere,
    /// Read here, refused by the reference.
    ReadHereOnly,
    /// Refused by both.
    RefusedByBoth,
    /// A panic: never allowed.
    Panicked,
}

/// A reference tensor as f64 (the script writes f64 and f32 values, i64 sizes).
fn tensor(file: &TensorFile, name: &str) -> Option<(Vec<usize>, Vec<f64>)> {
    let t = file.get(name)?;
    let b = &t.bytes;
    let values = match t.dtype {
        Dtype::F64 => b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        Dtype::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        Dtype::I64 => b
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        ref other => panic!("{name}: a reference in {other:?}"),
    };
    Some((t.shape.clone(), values))
}

/// Compare values: `Same` within `exact` (relative to the larger magnitude, NaN equal to NaN),
/// `Close` within `lossy` levels at most and half a level on average, else `Differs`.
fn compare(ours: &[f64], reference: &[f64], exact: f64, lossy: f64) -> (Outcome, String) {
    if ours.len() != reference.len() {
        return (
            Outcome::Differs,
            format!("{} values, the reference {}", ours.len(), reference.len()),
        );
    }
    let (mut worst, mut sum) = (0.0f64, 0.0f64);
    let mut apart = 0usize;
    for (&a, &b) in ours.iter().zip(reference) {
        let d = if a.is_nan() && b.is_nan() {
            0.0
        } else {
            (a - b).abs()
        };
        let d = if d.is_nan() { f64::INFINITY } else { d };
        if d > exact * a.abs().max(b.abs()).max(1.0) {
            apart += 1;
        }
        worst = worst.max(d);
        sum += d;
    }
    let mean = sum / ours.len().max(1) as f64;
    let detail = format!(
        "worst {worst:.4}, mean {mean:.5}, {apart} of {} apart",
        ours.len()
    );
    let outcome = if apart == 0 {
        Outcome::Same
    } else if worst <= lossy && mean <= lossy / 8.0 {
        Outcome::Close
    } else {
        Outcome::Differs
    };
    (outcome, detail)
}

/// The outcomes that need no comparison (refused here or there, or by both); otherwise what was
/// read here and the reference's values.
fn both_read<T, E: std::fmt::Display>(
    ours: Result<T, E>,
    reference: Option<&TensorFile>,
) -> Result<(T, &TensorFile), (Outcome, String)> {
    match (ours, reference) {
        (Err(e), None) => Err((Outcome::RefusedByBoth, e.to_string())),
        (Err(e), Some(_)) => Err((Outcome::RefusedHere, e.to_string())),
        (Ok(_), None) => Err((Outcome::ReadHereOnly, String::new())),
        (Ok(v), Some(r)) => Ok((v, r)),
    }
}

fn dicom_outcome(bytes: &[u8], reference: Option<&TensorFile>) -> (Outcome, String) {
    match both_read(dicom::read(bytes), reference) {
        Err(outcome) => outcome,
        Ok((img, r)) => {
            let (shape, want) = tensor(r, "frames").expect("frames");
            let got_shape = [img.frames.len(), img.rows, img.columns];
            if shape[..] != got_shape {
                return (
                    Outcome::Differs,
                    format!("shape {got_shape:?}, the reference {shape:?}"),
                );
            }
            let got: Vec<f64> = img.frames.concat().into_iter().map(f64::from).collect();
            // f32 holds 24 bits exactly: relative 1e-6 is exact for it. Lossy codecs (JPEG's
            // IDCT, JPEG 2000's 9/7 wavelet) round apart by a few levels.
            compare(&got, &want, 1e-6, 4.0)
        }
    }
}

fn nifti_outcome(bytes: &[u8], reference: Option<&TensorFile>) -> (Outcome, String) {
    match both_read(nifti::read(bytes), reference) {
        Err(outcome) => outcome,
        Ok((v, r)) => {
            let (shape, want) = tensor(r, "data").expect("data");
            let [nx, ny, nz] = v.dims;
            let dims: Vec<usize> = shape.iter().copied().chain([1, 1]).take(3).collect();
            if dims != [nx, ny, nz] {
                return (
                    Outcome::Differs,
                    format!("dims {:?}, the reference {shape:?}", v.dims),
                );
            }
            // The reference is nibabel's array in C order, (x, y, z[, t…]); a 4-D file is read
            // here as its first volume.
            let rest: usize = shape.iter().skip(3).product();
            let got: Vec<f64> = v.data.iter().map(|&x| x as f64).collect();
            let mut expected = vec![0.0; nx * ny * nz];
            for i in 0..nx {
                for j in 0..ny {
                    for k in 0..nz {
                        expected[i + nx * (j + ny * k)] = want[((i * ny + j) * nz + k) * rest];
                    }
                }
            }
            let (outcome, detail) = compare(&got, &expected, 1e-6, 0.0);
            let (_, affine) = tensor(r, "affine").expect("affine");
            let affine_apart = (0..3)
                .flat_map(|row| (0..4).map(move |c| (row, c)))
                .map(|(row, c)| (v.affine[row][c] - affine[row * 4 + c]).abs())
                .fold(0.0, f64::max);
            if affine_apart > 1e-4 {
                return (
                    Outcome::Differs,
                    format!("the affine is {affine_apart} apart; {detail}"),
                );
            }
            (outcome, detail)
        }
    }
}

fn picture_outcome(bytes: &[u8], reference: Option<&TensorFile>) -> (Outcome, String) {
    match both_read(input::decode_picture(bytes), reference) {
        Err(outcome) => outcome,
        Ok((img, r)) => {
            let (_, size) = tensor(r, "shape").expect("shape");
            let (_, stride) = tensor(r, "stride").expect("stride");
            let (shape, want) = tensor(r, "rgb").expect("rgb");
            let (h, w, s) = (size[0] as usize, size[1] as usize, stride[0] as usize);
            if (img.height, img.width) != (h, w) {
                return (
                    Outcome::Differs,
                    format!(
                        "{}×{}, the reference {w}×{h} (upright)",
                        img.width, img.height
                    ),
                );
            }
            let mut got = Vec::with_capacity(want.len());
            for y in (0..h).step_by(s) {
                for x in (0..w).step_by(s) {
                    let at = (y * w + x) * 3;
                    got.extend(img.data[at..at + 3].iter().map(|&v| v as f64));
                }
            }
            debug_assert_eq!(got.len(), shape.iter().product::<usize>());
            // In levels of 255: the same when within one level (Pillow keeps 8 bits of a 16-bit
            // RGB picture, dino-ar all 16), close within 8 (two JPEG decoders' IDCTs and
            // upsampling).
            let levels = |v: Vec<f64>| v.into_iter().map(|x| x * 255.0).collect::<Vec<_>>();
            let (outcome, detail) = compare(&levels(got), &levels(want), 0.0, 8.0);
            match outcome {
                Outcome::Close
                    if detail.starts_with("worst 0.") || detail.starts_with("worst 1.0") =>
                {
                    (Outcome::Same, detail)
                }
                _ => (outcome, detail),
            }
        }
    }
}

#[test]
#[ignore = "needs the third-party corpus: tools/corpus/run.sh makes it and runs this"]
fn files_from_other_projects_read_as_their_reference_readers_read_them() {
    let dir = PathBuf::from(
        std::env::var("DINO_AR_CORPUS")
            .expect("DINO_AR_CORPUS: the folder tools/corpus/run.sh wrote"),
    );
    let manifest: Vec<Entry> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let mut by_kind: BTreeMap<(String, Outcome), Vec<String>> = BTreeMap::new();
    for e in &manifest {
        let bytes = std::fs::read(dir.join(&e.file)).unwrap();
        let reference = e
            .values
            .as_ref()
            .filter(|_| e.reference == "values")
            .map(|v| TensorFile::from_bytes(&std::fs::read(dir.join(v)).unwrap()).unwrap());
        let run = || match e.kind.as_str() {
            "dicom" => dicom_outcome(&bytes, reference.as_ref()),
            "nifti" => nifti_outcome(&bytes, reference.as_ref()),
            "picture" => picture_outcome(&bytes, reference.as_ref()),
            other => panic!("unknown kind {other}"),
        };
        let (outcome, detail) = catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|p| {
            let message = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            (Outcome::Panicked, message)
        });
        let known = KNOWN
            .iter()
            .find(|(f, _)| *f == e.file)
            .map(|(_, why)| *why);
        let (outcome, detail) = match (outcome, known) {
            (Outcome::Differs, Some(why)) => (Outcome::Known, format!("{detail}: {why}")),
            (o, Some(_)) => (
                Outcome::Differs,
                format!("{o:?} now ({detail}): take it off the KNOWN list"),
            ),
            (o, None) => (o, detail),
        };
        let why = match (&outcome, &e.reason) {
            (Outcome::RefusedByBoth | Outcome::ReadHereOnly, Some(r)) => {
                format!("{detail} | the reference: {r}")
            }
            _ => detail,
        };
        by_kind
            .entry((e.kind.clone(), outcome))
            .or_default()
            .push(format!("{}: {why}", e.file));
    }
    let mut report = String::from("# The third-party corpus against the reference readers\n\n");
    let mut summary = String::new();
    for ((kind, outcome), files) in &by_kind {
        let _ = writeln!(summary, "{kind:8} {outcome:?}: {}", files.len());
        let _ = writeln!(report, "## {kind}: {outcome:?} ({})\n", files.len());
        for f in files {
            let _ = writeln!(report, "- {f}");
        }
        report.push('\n');
    }
    std::fs::write(dir.join("report.md"), &report).unwrap();
    eprintln!("{summary}(every file: {})", dir.join("report.md").display());
    let bad: Vec<&String> = by_kind
        .iter()
        .filter(|((_, o), _)| matches!(o, Outcome::Panicked | Outcome::Differs))
        .flat_map(|(_, files)| files)
        .collect();
    assert!(
        bad.is_empty(),
        "{} files panicked or read to other values:\n{}",
        bad.len(),
        bad.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}
