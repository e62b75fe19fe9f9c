//! Free functions for the page's own thread (no detector, no device): the library's drawing
//! rule, verdict, CSV and defaults, so the page draws, judges and fills its forms exactly as the
//! CLI does instead of restating any of it in JavaScript.

use js_sys::Object;
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use super::convert::{fit_options, from_js, js_err, to_js};
use crate::ar::{ArConfig, Variant};
use crate::backbone::random::RandomBackbone;
use crate::infra::compute::{DeviceChoice, Precision};
use crate::overlay::{self, Colormap, OverlayStyle, Scale};
use crate::score;
use crate::scores_csv::{self, ScoreRow};
use crate::spec::{FitSpec, Method, PositionNorm};
use crate::volume::Plane;
use crate::volume::window::Window;

/// The fit settings' defaults, `{ method, variant, hidden, …, size: [h, w], holdout, quantile }`:
/// what `fit` uses for a key that is left out, and what the page's form starts from.
#[wasm_bindgen(js_name = fitDefaults, unchecked_return_type = "Required<FitSpec>")]
pub fn fit_defaults() -> Result<JsValue, JsValue> {
    to_js(&FitSpec::default())
}

/// Fit options read as `fit` reads them (absent keys take the defaults, an unknown key or a bad
/// value is an error that names it) → the whole spec, size as `[h, w]`. Lets a page check a form
/// before it reads any image.
#[wasm_bindgen(js_name = fitSpec, unchecked_return_type = "Required<FitSpec>")]
pub fn fit_spec(
    #[wasm_bindgen(unchecked_optional_param_type = "FitOptions")] options: Option<Object>,
) -> Result<JsValue, JsValue> {
    let options = options.map_or(JsValue::UNDEFINED, JsValue::from);
    let (spec, _) = fit_options(&options).map_err(js_err)?;
    to_js(&spec)
}

/// One named choice of a setting.
#[derive(Serialize, tsify::Tsify)]
pub struct Choice {
    value: String,
    label: String,
}

/// The named choices of each setting that has them.
#[derive(Serialize, tsify::Tsify)]
pub struct Choices {
    method: Vec<Choice>,
    variant: Vec<Choice>,
    colormap: Vec<Choice>,
    #[serde(rename = "positionNorm")]
    position_norm: Vec<Choice>,
    /// The intensity windows offered (a typed `ct:C,W` or `percentile:L,H` is accepted too).
    window: Vec<Choice>,
    plane: Vec<Choice>,
    precision: Vec<Choice>,
    device: Vec<Choice>,
}

/// The named choices of the fit and overlay settings and of the engine's precision, `{ method,
/// variant, colormap, positionNorm, window, plane, precision, device }`, each a list
/// of `{ value, label }`: the page's menus are filled from them.
#[wasm_bindgen(unchecked_return_type = "Choices")]
pub fn choices() -> Result<JsValue, JsValue> {
    fn list<T: Copy>(
        all: &[T],
        name: fn(T) -> &'static str,
        label: fn(T) -> &'static str,
    ) -> Vec<Choice> {
        all.iter()
            .map(|&c| Choice {
                value: name(c).into(),
                label: label(c).into(),
            })
            .collect()
    }
    to_js(&Choices {
        method: list(Method::ALL, Method::name, Method::label),
        variant: list(Variant::ALL, Variant::name, Variant::label),
        colormap: list(Colormap::ALL, Colormap::name, Colormap::label),
        position_norm: list(PositionNorm::ALL, PositionNorm::name, PositionNorm::label),
        window: Window::menu()
            .into_iter()
            .map(|(value, label)| Choice { value, label })
            .collect(),
        plane: list(Plane::ALL, Plane::name, Plane::label),
        precision: list(Precision::ALL, Precision::name, Precision::label),
        device: list(DeviceChoice::ALL, DeviceChoice::name, DeviceChoice::label),
    })
}

/// The overlay's defaults, `{ colormap, opacity, contour }`.
#[wasm_bindgen(js_name = overlayDefaults, unchecked_return_type = "Required<OverlayStyle>")]
pub fn overlay_defaults() -> Result<JsValue, JsValue> {
    to_js(&OverlayStyle::default())
}

/// The patches an AR head shaped by `spec` (`{ variant, layers, kernel }`, others ignored; absent
/// keys take the defaults, e.g. a model's `info.spec`) sees when it predicts one patch: its causal
/// receptive field, read from the head's own masks, as grid offsets `[dy0, dx0, dy1, dx1, …]`
/// relative to that patch (raster order, all strictly before it). Empty for the kNN baseline,
/// which scores every patch on its own.
#[wasm_bindgen(js_name = receptiveField)]
pub fn receptive_field(
    #[wasm_bindgen(unchecked_optional_param_type = "FitOptions")] spec: Option<Object>,
) -> Result<Vec<i32>, JsValue> {
    head_offsets(spec, ArConfig::receptive_field)
}

/// The patches before the predicted one, within its receptive field's reach, that the head
/// shaped by `spec` cannot see — its blind spot — as offsets like [`receptive_field`]'s. Empty
/// for the gated head (it has none) and for the kNN baseline.
#[wasm_bindgen(js_name = blindSpot)]
pub fn blind_spot(
    #[wasm_bindgen(unchecked_optional_param_type = "FitOptions")] spec: Option<Object>,
) -> Result<Vec<i32>, JsValue> {
    head_offsets(spec, ArConfig::blind_spot)
}

fn head_offsets(
    spec: Option<Object>,
    offsets: fn(&ArConfig) -> Vec<(isize, isize)>,
) -> Result<Vec<i32>, JsValue> {
    let spec = spec.map_or(JsValue::UNDEFINED, JsValue::from);
    let (spec, _) = fit_options(&spec).map_err(js_err)?;
    if spec.method != Method::Ar {
        return Ok(Vec::new());
    }
    Ok(offsets(&spec.ar_config(1))
        .into_iter()
        .flat_map(|(dy, dx)| [dy as i32, dx as i32])
        .collect())
}

/// A DINOv3 ViT with random weights from a seed (ViT-S/16 by default), as a Hugging Face
/// safetensors file for `loadBackbone` — the same bytes as `dino-ar random-backbone` writes, on
/// any platform. No download: for demos and benchmarks where no pretrained weights may be used
/// (it embeds colour and texture, not meaning).
#[wasm_bindgen(js_name = randomBackbone)]
pub fn random_backbone(
    #[wasm_bindgen(unchecked_optional_param_type = "Partial<RandomBackbone>")] options: Option<
        Object,
    >,
) -> Result<Vec<u8>, JsValue> {
    let spec: RandomBackbone = match options {
        None => RandomBackbone::default(),
        Some(o) => from_js(o.into(), "random backbone options").map_err(js_err)?,
    };
    spec.weights().map_err(js_err)
}

/// The verdict rule: `true` when `score` is strictly above `threshold` (on it is normal).
#[wasm_bindgen(js_name = isAnomalous)]
pub fn is_anomalous(score: f32, threshold: f32) -> bool {
    score::is_anomalous(score, threshold)
}

/// `"anomalous"` or `"normal"`, by the verdict rule.
#[wasm_bindgen(unchecked_return_type = "\"anomalous\" | \"normal\"")]
pub fn verdict(score: f32, threshold: f32) -> String {
    score::verdict(score, threshold).into()
}

/// A row-major `gridH × gridW` patch-score grid upsampled bilinearly to `height × width`
/// (align_corners = false), exactly as `score` computes its map.
#[wasm_bindgen(js_name = upsampleMap)]
pub fn upsample_map(
    grid: &[f32],
    grid_h: usize,
    grid_w: usize,
    height: usize,
    width: usize,
) -> Result<Vec<f32>, JsValue> {
    if grid.len() != grid_h * grid_w || grid.is_empty() {
        return Err(js_err(format!(
            "upsampleMap: the grid has {} values, expected {grid_h}x{grid_w}",
            grid.len()
        )));
    }
    Ok(score::upsample_bilinear(
        grid, grid_h, grid_w, height, width,
    ))
}

/// `renderOverlay`'s options: where the scores sit (from `loadModel`'s info; the threshold may be
/// the user's), and optionally the style (`overlayDefaults()` otherwise).
#[derive(Deserialize, tsify::Tsify)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RenderOptions {
    threshold: f32,
    display_low: f32,
    display_high: f32,
    #[tsify(optional)]
    colormap: Option<Colormap>,
    #[tsify(optional)]
    opacity: Option<f32>,
    #[tsify(optional)]
    contour: Option<bool>,
}

/// RGBA bytes of `base` (RGBA, `width × height`, e.g. a canvas's `ImageData.data`) with `map`
/// (one score per pixel) drawn over it by the library's rule. Options: `{ threshold, displayLow,
/// displayHigh }` (from `loadModel`'s info; the threshold may be the user's), and optionally
/// `{ colormap, opacity, contour }` (`overlayDefaults()` otherwise).
#[wasm_bindgen(js_name = renderOverlay)]
pub fn render_overlay(
    #[wasm_bindgen(unchecked_param_type = "Uint8Array | Uint8ClampedArray")] base: &[u8],
    width: usize,
    height: usize,
    map: &[f32],
    #[wasm_bindgen(unchecked_param_type = "RenderOptions")] options: JsValue,
) -> Result<Vec<u8>, JsValue> {
    let o: RenderOptions = from_js(options, "overlay options").map_err(js_err)?;
    let d = OverlayStyle::default();
    let style = OverlayStyle {
        colormap: o.colormap.unwrap_or(d.colormap),
        opacity: o.opacity.unwrap_or(d.opacity),
        contour: o.contour.unwrap_or(d.contour),
    };
    let scale = Scale {
        threshold: o.threshold,
        display_low: o.display_low,
        display_high: o.display_high,
    };
    overlay::render(base, width, height, map, &scale, &style).map_err(js_err)
}

/// The text of `scores.csv` for rows `[{ file, score?, scoreTop1?, threshold, error? }]`: the same
/// columns, numbers and verdicts as `dino-ar score` writes.
#[wasm_bindgen(js_name = scoresCsv)]
pub fn scores_csv(
    #[wasm_bindgen(unchecked_param_type = "ScoreRow[]")] rows: JsValue,
) -> Result<String, JsValue> {
    let rows: Vec<ScoreRow> = from_js(rows, "CSV rows").map_err(js_err)?;
    Ok(scores_csv::write(&rows))
}

/// A ZIP archive (stored, not compressed: PNGs are compressed already) of `files` under `names`,
/// e.g. every slice's overlay of a volume in one download.
#[wasm_bindgen(js_name = zipFiles)]
pub fn zip_files(names: Vec<String>, files: Vec<js_sys::Uint8Array>) -> Result<Vec<u8>, JsValue> {
    if names.len() != files.len() {
        return Err(js_err(format!(
            "{} names for {} files",
            names.len(),
            files.len()
        )));
    }
    let files: Vec<(String, Vec<u8>)> = names
        .into_iter()
        .zip(files.iter().map(|f| f.to_vec()))
        .collect();
    crate::infra::zip::store(&files).map_err(js_err)
}

/// Whether this build runs the CPU backend on several threads (`pkg-threads/`) or one (`pkg/`).
#[wasm_bindgen(js_name = threadedBuild)]
pub fn threaded_build() -> bool {
    super::threads::THREADED
}

/// The `BroadcastChannel` name on which a threaded build announces that one of its pool threads
/// panicked (`{ type: "panic", message }`): the worker that called the library is then stuck and
/// must be replaced. Listen on a thread that does not call the library (the page's own).
#[wasm_bindgen(js_name = engineChannel)]
pub fn engine_channel() -> String {
    super::threads::CHANNEL.into()
}
