//! The one input path and the outputs' names, for the page's thread and worker: what a file
//! holds, how a picture decodes, how DICOM files group into series, what a run's files are
//! called and what its CSV rows say — the library's rules (`input`, `scores_csv`), so the page
//! restates none of them.

use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;

use super::convert::{js_err, js_err_kind, rgba_object, to_js};
use crate::input::{self, Group};
use crate::score::ImageScore;
use crate::scores_csv::{ScoreRow, names};
use crate::volume::Plane;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = r#"
/** What a file holds (`sniffFile`). */
export type FileKind = "picture" | "nifti" | "dicom";
/** Every format the library reads (`supportedFormats`). */
export interface SupportedFormats { text: string; extensions: string[] }
/** One item of a run (`groupSeries`): a file, or the files of one DICOM series. */
export interface RunItem { files: number[]; name?: string; stem?: string }
/** What a scoring run writes for one input (`outputNames`). */
export interface OutputNames {
    overlay: string;
    anomalyMap: string;
    sliceOverlays: string;
    sliceOverlay?: string;
    sliceOverlayAlone?: string;
}
"#;

/// What a file holds, from its name and its first bytes (348 are enough; the whole file does):
/// `"picture"`, `"nifti"` or `"dicom"`. Anything else is an `Error` (`kind: "unsupported"`)
/// naming what the file seems to be and what is read.
#[wasm_bindgen(js_name = sniffFile, unchecked_return_type = "FileKind")]
pub fn sniff_file(name: &str, head: &[u8]) -> Result<String, JsValue> {
    input::sniff(name, head)
        .map(|k| k.name().to_string())
        .map_err(|e| js_err_kind(&e, e.kind()))
}

/// Refuse a file larger than the library reads (`limits::MAX_FILE_BYTES`, the same rule as the
/// CLI's) from its size alone, before any of it is read: an `Error` (`kind: "size"`) naming the
/// file, its size and the limit.
#[wasm_bindgen(js_name = checkFileSize)]
pub fn check_file_size(name: &str, size: f64) -> Result<(), JsValue> {
    input::check_file_size(name, size.max(0.0) as u64).map_err(|e| js_err_kind(&e, e.kind()))
}

/// `{ text, extensions }`: every format read, for people ("PNG, JPEG, … pictures; NIfTI … and
/// DICOM volumes") and for a file picker's `accept` (`[".png", …, ".nii.gz", ".dcm"]`).
#[wasm_bindgen(js_name = supportedFormats, unchecked_return_type = "SupportedFormats")]
pub fn supported_formats() -> JsValue {
    let o = Object::new();
    let _ = Reflect::set(&o, &"text".into(), &input::supported().into());
    let ext: Array = input::extensions().into_iter().map(JsValue::from).collect();
    let _ = Reflect::set(&o, &"extensions".into(), &ext);
    o.into()
}

/// A picture file decoded as the model reads it (16-bit kept inside, EXIF orientation applied,
/// alpha dropped) → `{ rgba, width, height }` (8-bit, for drawing): what the page shows under a
/// map is exactly what was scored.
#[wasm_bindgen(js_name = decodePicture, unchecked_return_type = "SliceImage")]
pub fn decode_picture(bytes: &[u8]) -> Result<JsValue, JsValue> {
    let img = input::decode_picture(bytes).map_err(|e| js_err_kind(&e, e.kind()))?;
    Ok(rgba_object(&img))
}

/// The SeriesInstanceUID of each file (`""` for any file that is not DICOM or has none), read
/// without decoding pixels.
#[wasm_bindgen(js_name = dicomSeries)]
pub fn dicom_series(names: Vec<String>, files: Vec<Uint8Array>) -> Vec<String> {
    files
        .iter()
        .enumerate()
        .map(|(k, f)| {
            let name = names.get(k).map(String::as_str).unwrap_or_default();
            input::series_uid(name, &f.to_vec()).unwrap_or_default()
        })
        .collect()
}

/// Files → the items of a run, as the CLI groups them: `folders[k]` is file k's folder, `uids[k]`
/// its series UID (`dicomSeries`). Each item is `{ files: [k] }` or, for a series of several
/// files, `{ files: [k…], name, stem }` (`<folder>/series <UID>`, the folder's name).
#[wasm_bindgen(js_name = groupSeries, unchecked_return_type = "RunItem[]")]
pub fn group_series(folders: Vec<String>, uids: Vec<String>) -> Result<JsValue, JsValue> {
    if folders.len() != uids.len() {
        return Err(js_err(format!(
            "{} folders for {} series UIDs",
            folders.len(),
            uids.len()
        )));
    }
    let keys: Vec<(String, Option<String>)> = folders
        .into_iter()
        .zip(uids)
        .map(|(f, u)| (f, Some(u).filter(|u| !u.is_empty())))
        .collect();
    let out = Array::new();
    for g in input::group_series(&keys) {
        let o = Object::new();
        let files: Array = match &g {
            Group::File(k) => [JsValue::from(*k as u32)].into_iter().collect(),
            Group::Series { files, .. } => files.iter().map(|&k| JsValue::from(k as u32)).collect(),
        };
        let _ = Reflect::set(&o, &"files".into(), &files);
        if let Group::Series { name, stem, .. } = &g {
            let _ = Reflect::set(&o, &"name".into(), &name.into());
            let _ = Reflect::set(&o, &"stem".into(), &stem.into());
        }
        out.push(&o);
    }
    Ok(out.into())
}

/// A file's output stem: its name without folder and extension (`.nii.gz` counts as one).
#[wasm_bindgen(js_name = fileStem)]
pub fn file_stem(name: &str) -> String {
    input::stem(name)
}

/// The names of what a scoring run writes for an input of stem `stem`, as `dino-ar score` names
/// them: `{ overlay, anomalyMap, sliceOverlays }`, and with a volume's `plane` and a `slice`
/// also `sliceOverlay` (its file in the overlay folder) and `sliceOverlayAlone` (that slice's
/// overlay saved on its own).
#[wasm_bindgen(js_name = outputNames, unchecked_return_type = "OutputNames")]
pub fn output_names(
    stem: &str,
    plane: Option<String>,
    slice: Option<u32>,
) -> Result<JsValue, JsValue> {
    let o = Object::new();
    let set = |key: &str, value: String| {
        let _ = Reflect::set(&o, &key.into(), &value.into());
    };
    set("overlay", names::overlay(stem));
    set("anomalyMap", names::anomaly_map(stem));
    set("sliceOverlays", names::slice_overlays(stem));
    if let (Some(plane), Some(n)) = (plane, slice) {
        let plane: Plane = plane.parse().map_err(js_err)?;
        set("sliceOverlay", names::slice_overlay(plane, n as usize));
        set(
            "sliceOverlayAlone",
            names::slice_overlay_alone(stem, plane, n as usize),
        );
    }
    Ok(o.into())
}

/// A volume's rows of `scores.csv`, as `dino-ar score` writes them: one per slice, then the
/// volume's (its worst slice's score, with the reader's notes and the window's warning).
#[wasm_bindgen(js_name = volumeRows, unchecked_return_type = "ScoreRow[]")]
pub fn volume_rows(
    file: &str,
    #[wasm_bindgen(unchecked_param_type = "{ score: number; scoreTop1: number }[]")]
    slices: JsValue,
    worst: usize,
    threshold: f32,
    notes: Vec<String>,
) -> Result<JsValue, JsValue> {
    // Each slice's `score` and `scoreTop1`, read from whatever else it holds (a `ScoreResult`).
    let slices: &Array = slices
        .dyn_ref()
        .ok_or_else(|| js_err("volumeRows: `slices` must be an array of { score, scoreTop1 }"))?;
    let number = |s: &JsValue, key: &str, k: u32| {
        Reflect::get(s, &key.into())
            .ok()
            .and_then(|v| v.as_f64())
            .map(|v| v as f32)
            .ok_or_else(|| js_err(format!("volumeRows: slice {k} has no number `{key}`")))
    };
    let scores = (0..slices.length())
        .map(|k| {
            let s = slices.get(k);
            Ok(ImageScore {
                max: number(&s, "score", k)?,
                top1: number(&s, "scoreTop1", k)?,
            })
        })
        .collect::<Result<Vec<_>, JsValue>>()?;
    let rows: Vec<ScoreRow> = ScoreRow::volume(file, &scores, worst, threshold, &notes);
    to_js(&rows)
}

/// A file's fingerprint: the first 16 hex digits of the SHA-256 of its bytes (what `sha256sum`
/// prints), as marks and a model's history name it.
#[wasm_bindgen]
pub fn fingerprint(bytes: &[u8]) -> String {
    crate::marks::fingerprint(bytes)
}

/// A DICOM series' fingerprint: of its files' fingerprints, sorted (any order of the files).
#[wasm_bindgen(js_name = seriesFingerprint)]
pub fn series_fingerprint(
    #[wasm_bindgen(unchecked_param_type = "Uint8Array[]")] files: Vec<Uint8Array>,
) -> String {
    let bytes: Vec<Vec<u8>> = files.iter().map(Uint8Array::to_vec).collect();
    crate::marks::series_fingerprint(&bytes.iter().map(Vec::as_slice).collect::<Vec<_>>())
}
