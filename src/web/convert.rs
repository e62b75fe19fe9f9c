//! JS values ⇄ Rust types at the API's edge: the fit options object into a [`FitSpec`] (through
//! serde, so an unknown or mistyped key is an error that names it), image lists into buffers,
//! results and progress into plain JS objects.

use js_sys::{Array, Float32Array, Object, Reflect, Uint8Array};
use serde::Serialize;
use serde::de::DeserializeOwned;
use wasm_bindgen::prelude::*;

use crate::detector::{AnomalyMap, VolumeMap};
use crate::preprocess::RgbImage;
use crate::spec::{FitSpec, SpecError, named};

use super::session::Item;

pub fn js_err(msg: impl std::fmt::Display) -> JsValue {
    JsError::new(&msg.to_string()).into()
}

/// An `Error` with a machine-readable `kind` beside its message (`err.kind === "cancelled"`).
pub fn js_err_kind(msg: impl std::fmt::Display, kind: &str) -> JsValue {
    let e = js_err(msg);
    let _ = Reflect::set(&e, &"kind".into(), &kind.into());
    e
}

fn set(obj: &Object, key: &str, value: impl Into<JsValue>) {
    // Setting a property on a fresh plain object cannot fail.
    let _ = Reflect::set(obj, &key.into(), &value.into());
}

pub fn get(obj: &JsValue, key: &str) -> Option<JsValue> {
    if !obj.is_object() {
        return None;
    }
    Reflect::get(obj, &key.into())
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_null())
}

/// Any serialisable value as a plain JS object (maps as objects, not `Map`s).
pub fn to_js(value: &impl Serialize) -> Result<JsValue, JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(js_err)
}

/// A JS value into `T` through serde; the error names the key it happened at.
pub fn from_js<T: DeserializeOwned>(value: JsValue, what: &str) -> Result<T, String> {
    deserialize(value).map_err(|e| format!("{what}: {e}"))
}

/// Through a JSON value: serde-wasm-bindgen reads a struct's known keys only, so an unknown
/// (misspelt) key would pass unseen; a JSON object lists them all for `deny_unknown_fields`.
fn deserialize<T: DeserializeOwned>(value: JsValue) -> Result<T, String> {
    let json: serde_json::Value =
        serde_wasm_bindgen::from_value(value).map_err(|e| e.to_string())?;
    serde_path_to_error::deserialize(json).map_err(named)
}

/// `fit`'s options: a [`FitSpec`] (absent keys take the defaults) plus `signal`, an AbortSignal.
pub fn fit_options(js: &JsValue) -> Result<(FitSpec, Option<JsValue>), String> {
    if js.is_undefined() || js.is_null() {
        return Ok((FitSpec::default(), None));
    }
    if !js.is_object() {
        return Err("fit options must be an object, e.g. { epochs: 40 }".into());
    }
    let signal = get(js, "signal");
    // A copy without `signal`: everything else must be a fit setting.
    let copy = Object::assign(&Object::new(), js.unchecked_ref());
    let _ = Reflect::delete_property(&copy, &"signal".into());
    let spec: FitSpec =
        deserialize(JsValue::from(copy)).map_err(|e| SpecError::Options(e).to_string())?;
    spec.validate().map_err(|e| e.to_string())?;
    Ok((spec, signal))
}

/// `learn`'s options: the spec keys given (each checked against the model's spec by the
/// library) and the abort signal.
pub fn learn_options(
    js: &JsValue,
) -> Result<(serde_json::Map<String, serde_json::Value>, Option<JsValue>), String> {
    if js.is_undefined() || js.is_null() {
        return Ok((serde_json::Map::new(), None));
    }
    if !js.is_object() {
        return Err("learn options must be an object, e.g. { epochs: 10 }".into());
    }
    let signal = get(js, "signal");
    let copy = Object::assign(&Object::new(), js.unchecked_ref());
    let _ = Reflect::delete_property(&copy, &"signal".into());
    let value: serde_json::Value =
        serde_wasm_bindgen::from_value(JsValue::from(copy)).map_err(|e| e.to_string())?;
    match value {
        serde_json::Value::Object(map) => Ok((map, signal)),
        _ => Err("learn options must be an object, e.g. { epochs: 10 }".into()),
    }
}

#[wasm_bindgen(typescript_custom_section)]
const FIT_IMAGE: &str = r#"
/**
 * One normal input for `fit`: a file's bytes (a picture, NIfTI or DICOM file, known by its
 * content; `name` names it in errors), the files of one DICOM series, or decoded RGBA bytes (a
 * canvas's `ImageData.data`, row-major). A volume's slices, through the fit's window and plane,
 * are all normal images — or only `slices` (in the model's plane), the ones a person marked.
 * `nifti` is the older spelling of `bytes` for a NIfTI file.
 */
export type FitImage =
    | { bytes: Uint8Array; name?: string; slices?: number[] }
    | { dicom: Uint8Array[]; names?: string[]; slices?: number[] }
    | { rgba: Uint8Array | Uint8ClampedArray; width: number; height: number }
    | { nifti: Uint8Array; name?: string };
"#;

/// One `FitImage`, copied into wasm memory when its turn comes (one file in memory at a time).
pub enum FitItem {
    Rgba(Vec<u8>, usize, usize),
    File(String, Vec<u8>),
    Series(Vec<(String, Vec<u8>)>),
}

/// The `FitImage[]` array, checked to be one.
pub fn fit_items(js: &JsValue) -> Result<Array, String> {
    js.dyn_ref::<Array>().cloned().ok_or(
        "fit expects an array of { bytes, name } (or { rgba, width, height } / { dicom })".into(),
    )
}

/// The files of a DICOM series with the names their errors carry (`file 1`, … where none is given).
pub fn named_files(
    files: impl Iterator<Item = Vec<u8>>,
    names: &[String],
) -> Vec<(String, Vec<u8>)> {
    files
        .enumerate()
        .map(|(k, bytes)| {
            let name = names
                .get(k)
                .cloned()
                .unwrap_or_else(|| format!("file {}", k + 1));
            (name, bytes)
        })
        .collect()
}

/// Item `k` of a `FitImage[]`, with the name its errors carry.
pub fn fit_item(k: usize, item: &JsValue) -> Result<Item, String> {
    let (name, input) = fit_input(k, item)?;
    let slices = match get(item, "slices") {
        None => None,
        Some(list) => {
            let list: &Array = list.dyn_ref().ok_or(format!(
                "{name}: `slices` must be an array of slice numbers"
            ))?;
            let mut out = Vec::with_capacity(list.length() as usize);
            for v in list.iter() {
                match v.as_f64() {
                    Some(n) if n >= 0.0 && n.fract() == 0.0 => out.push(n as usize),
                    _ => return Err(format!("{name}: `slices` must hold whole numbers ≥ 0")),
                }
            }
            Some(out)
        }
    };
    Ok(Item {
        name,
        input,
        slices,
    })
}

fn fit_input(k: usize, item: &JsValue) -> Result<(String, FitItem), String> {
    if !item.is_object() {
        return Err(format!(
            "image {k}: expected {{ bytes, name }}, {{ dicom, names }} or {{ rgba, width, height }}"
        ));
    }
    let name = get(item, "name")
        .and_then(|n| n.as_string())
        .unwrap_or_else(|| format!("image {k}"));
    if let Some(bytes) = get(item, "bytes").or_else(|| get(item, "nifti")) {
        return Ok((
            name.clone(),
            FitItem::File(name, Uint8Array::new(&bytes).to_vec()),
        ));
    }
    if let Some(files) = get(item, "dicom") {
        let files: &Array = files
            .dyn_ref()
            .ok_or(format!("image {k}: `dicom` must be an array of file bytes"))?;
        let names: Vec<String> = get(item, "names")
            .and_then(|n| n.dyn_into::<Array>().ok())
            .map(|a| a.iter().filter_map(|n| n.as_string()).collect())
            .unwrap_or_default();
        let files = named_files(files.iter().map(|f| Uint8Array::new(&f).to_vec()), &names);
        let name = format!(
            "DICOM series ({} files, {})",
            files.len(),
            files.first().map(|f| f.0.as_str()).unwrap_or_default()
        );
        return Ok((name, FitItem::Series(files)));
    }
    let rgba = get(item, "rgba").ok_or(format!(
        "image {k}: give `bytes` (a file), `dicom` (a series) or `rgba` with `width` and `height`"
    ))?;
    let rgba = Uint8Array::new(&rgba).to_vec();
    let dim = |key: &str| {
        get(item, key)
            .and_then(|v| v.as_f64())
            .filter(|v| *v >= 0.0 && v.fract() == 0.0)
            .ok_or(format!("image {k}: `{key}` must be a whole number"))
    };
    let (w, h) = (dim("width")? as usize, dim("height")? as usize);
    Ok((name, FitItem::Rgba(rgba, w, h)))
}

#[wasm_bindgen(typescript_custom_section)]
const EMBEDDING: &str = r#"
/** `embedPixels`'s result: the patch embeddings, channel-major. */
export interface Embedding {
    /** `[D, gridH, gridW]` values. */
    data: Float32Array;
    gridH: number;
    gridW: number;
}
"#;

/// `{ data: Float32Array [D, gridH, gridW], gridH, gridW }` (TypeScript: `Embedding`).
pub fn grid_object(data: &[f32], gh: usize, gw: usize) -> JsValue {
    let out = Object::new();
    set(&out, "data", Float32Array::from(data));
    set(&out, "gridH", gh as u32);
    set(&out, "gridW", gw as u32);
    out.into()
}

#[wasm_bindgen(typescript_custom_section)]
const EXPLANATION: &str = r#"
/**
 * `explain`'s result: the image's embedding grid and the AR head's prediction of it, coloured
 * alike by the grid's first three principal components (equal colours: a good prediction).
 */
export interface Explanation {
    gridH: number;
    gridW: number;
    /** RGBA, one pixel per patch, row-major `gridH × gridW` (an `ImageData`'s layout). */
    actual: Uint8ClampedArray;
    predicted: Uint8ClampedArray;
}
"#;

/// `{ gridH, gridW, actual, predicted }` (TypeScript: `Explanation`).
pub fn explanation_object(e: &crate::detector::Explanation) -> JsValue {
    let out = Object::new();
    set(&out, "gridH", e.grid_h as u32);
    set(&out, "gridW", e.grid_w as u32);
    set(
        &out,
        "actual",
        js_sys::Uint8ClampedArray::from(e.actual.as_slice()),
    );
    set(
        &out,
        "predicted",
        js_sys::Uint8ClampedArray::from(e.predicted.as_slice()),
    );
    out.into()
}

#[wasm_bindgen(typescript_custom_section)]
const SCORE_RESULT: &str = r#"
/** `score`'s result: the image score, the verdict and the anomaly map. */
export interface ScoreResult {
    /** The image's size (the map's). */
    width: number;
    height: number;
    /** Patch scores, row-major `gridH × gridW`. */
    grid: Float32Array;
    gridH: number;
    gridW: number;
    /** Pixel scores at the image's size, row-major; only with `{ map: true }`. */
    map?: Float32Array;
    /** The image score: the map's maximum. */
    score: number;
    /** Mean of the map's top 1 %. */
    scoreTop1: number;
    /** The model's calibrated threshold. */
    threshold: number;
    /** `score > threshold` (a score exactly on the threshold is normal). */
    anomalous: boolean;
}
"#;

/// `score`'s result (TypeScript: `ScoreResult`); the full-size map only when `with_map` (the
/// patch grid is what a page needs to draw: [`super::page`] upsamples it).
pub fn score_object(r: &AnomalyMap, with_map: bool) -> JsValue {
    let out = Object::new();
    if with_map {
        set(&out, "map", Float32Array::from(r.map.as_slice()));
    }
    set(&out, "width", r.width as u32);
    set(&out, "height", r.height as u32);
    set(&out, "grid", Float32Array::from(r.grid.as_slice()));
    set(&out, "gridH", r.grid_h as u32);
    set(&out, "gridW", r.grid_w as u32);
    set(&out, "score", r.score.max);
    set(&out, "scoreTop1", r.score.top1);
    set(&out, "threshold", r.threshold);
    set(&out, "anomalous", r.anomalous);
    out.into()
}

#[wasm_bindgen(typescript_custom_section)]
const VOLUME_TYPES: &str = r#"
/** A slice as the model sees it: grey RGBA bytes, row-major. */
export interface SliceImage {
    rgba: Uint8ClampedArray;
    width: number;
    height: number;
}

/** `scoreVolume`'s result: every slice's, and the volume's (its worst slice's). */
export interface VolumeResult {
    slices: ScoreResult[];
    worstSlice: number;
    score: number;
    scoreTop1: number;
    threshold: number;
    anomalous: boolean;
    warning?: string;
    /** The anomaly map as a `.nii.gz` on the volume's voxel grid, with its affine. */
    anomalyMap: Uint8Array;
}
"#;

/// A windowed slice (grey, values in [0, 1]) as RGBA bytes for a canvas.
pub fn rgba_object(img: &RgbImage) -> JsValue {
    let rgba: Vec<u8> = img
        .data
        .chunks_exact(3)
        .flat_map(|p| {
            let q = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            [q(p[0]), q(p[1]), q(p[2]), 255]
        })
        .collect();
    let out = Object::new();
    set(
        &out,
        "rgba",
        js_sys::Uint8ClampedArray::from(rgba.as_slice()),
    );
    set(&out, "width", img.width as u32);
    set(&out, "height", img.height as u32);
    out.into()
}

/// `scoreVolume`'s result object.
pub fn volume_object(v: &VolumeMap, anomaly_map: &[u8]) -> JsValue {
    let out = Object::new();
    let slices = Array::new();
    for r in &v.slices {
        slices.push(&score_object(r, false));
    }
    let worst = v.worst();
    set(&out, "slices", slices);
    set(&out, "worstSlice", v.worst as u32);
    set(&out, "score", worst.score.max);
    set(&out, "scoreTop1", worst.score.top1);
    set(&out, "threshold", worst.threshold);
    set(&out, "anomalous", worst.anomalous);
    if let Some(w) = &v.warning {
        set(&out, "warning", w.as_str());
    }
    set(&out, "anomalyMap", Uint8Array::from(anomaly_map));
    out.into()
}
