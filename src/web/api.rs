//! The exported `Detector` class. Each method hands its work to the [`Session`] and returns a
//! Promise; errors become JS `Error`s with the library's message, and the detector stays usable.

use std::rc::Rc;

use js_sys::{Function, Object, Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::convert::{
    explanation_object, fit_item, fit_items, fit_options, from_js, get, grid_object, js_err,
    js_err_kind, learn_options, named_files, rgba_object, score_object, to_js, volume_object,
};
use super::session::{FitProgress, Item, Session, SessionError};
use super::threads::{self, Threads};
use crate::infra::compute::{DeviceChoice, Precision};
use crate::input;
use crate::spec::FitSpec;
use crate::threshold::{Rule, ThresholdError};
use crate::volume::{Volume, nifti};

/// A scan read from a NIfTI file (`.nii`, `.nii.gz`), held in wasm memory once; the detector
/// cuts it into slices through its model's window and plane.
#[wasm_bindgen(js_name = Volume)]
pub struct JsVolume {
    volume: Rc<Volume>,
}

#[wasm_bindgen(js_class = Volume)]
impl JsVolume {
    /// Read NIfTI-1 or NIfTI-2 bytes (gzip-compressed or not); the error names the problem
    /// (truncated, not NIfTI, a header claiming too many voxels, …).
    pub fn read(bytes: &[u8]) -> Result<JsVolume, JsValue> {
        let volume = nifti::read(bytes).map_err(|e| js_err_kind(&e, e.kind.name()))?;
        Ok(JsVolume {
            volume: Rc::new(volume),
        })
    }

    /// Read DICOM files as one volume: the files of one series (one slice each, in any order:
    /// they are sorted by position), or one multi-frame file. `names` name the files in errors.
    #[wasm_bindgen(js_name = readDicom)]
    pub fn read_dicom(files: Vec<Uint8Array>, names: Vec<String>) -> Result<JsVolume, JsValue> {
        let files = named_files(files.iter().map(Uint8Array::to_vec), &names);
        let volume = input::read_series(files).map_err(|e| js_err_kind(&e, e.kind()))?;
        Ok(JsVolume {
            volume: Rc::new(volume),
        })
    }

    /// Read a volume file, NIfTI or DICOM, known by its content (as `dino-ar` reads it); a
    /// picture or an unsupported file is an error that says so (`kind` says which).
    #[wasm_bindgen(js_name = readFile)]
    pub fn read_file(bytes: &[u8], name: &str) -> Result<JsVolume, JsValue> {
        match input::read(name, bytes).map_err(|e| js_err_kind(&e, e.kind()))? {
            input::Input::Volume(v) => Ok(JsVolume { volume: Rc::new(v) }),
            input::Input::Picture(_) => Err(js_err_kind(
                "a picture, not a volume: score it as an image",
                "picture",
            )),
        }
    }

    /// Voxels along the stored axes `[i, j, k]`.
    #[wasm_bindgen(getter)]
    pub fn dims(&self) -> Vec<u32> {
        self.volume.dims.iter().map(|&d| d as u32).collect()
    }

    /// What the reader said about the file (a 4-D file's first volume, no orientation, …).
    #[wasm_bindgen(getter)]
    pub fn notes(&self) -> Vec<String> {
        self.volume.notes.clone()
    }
}

/// Holds the device and the loaded models. One per page (or per worker).
#[wasm_bindgen(js_name = Detector)]
pub struct JsDetector {
    session: Rc<Session>,
    threads: Threads,
}

/// `Detector.create`'s options.
#[derive(serde::Deserialize, Default, tsify::Tsify)]
#[serde(default, deny_unknown_fields)]
struct CreateOptions {
    /// At most this many threads for the CPU backend (default: all that the browser offers,
    /// `navigator.hardwareConcurrency`). Only `pkg-threads/` runs on several; `pkg/` runs on one
    /// and says so in `threadsNote`.
    #[tsify(optional)]
    threads: Option<u32>,
    /// `"f16"`: half-precision matmuls on a WebGPU adapter with `shader-f16` (half the weights'
    /// GPU memory); elsewhere f32, and `precisionNote` says why. Default `"f32"`.
    #[tsify(optional)]
    precision: Option<Precision>,
}

/// What `fit` and `learn` train: a model from scratch by a spec, or the loaded one on from its
/// weights with spec keys over its own.
enum Training {
    Fit(FitSpec),
    Learn(serde_json::Map<String, serde_json::Value>),
}

/// `fit` and `learn` from JS: the items read one at a time, progress to the callback, the
/// signal checked after each report → the bundle's bytes.
async fn train(
    s: Rc<Session>,
    images: JsValue,
    signal: Option<JsValue>,
    on_progress: Option<Function>,
    what: Training,
) -> Result<JsValue, JsValue> {
    let items = fit_items(&images).map_err(js_err)?;
    let aborted = |sig: &JsValue| get(sig, "aborted").and_then(|v| v.as_bool()) == Some(true);
    if signal.as_ref().is_some_and(aborted) {
        return Err(SessionError::Cancelled.into());
    }
    let count = items.length() as usize;
    let item = |k: usize| fit_item(k, &items.get(k as u32));
    let progress = |p: FitProgress| {
        if let (Some(f), Ok(v)) = (&on_progress, to_js(&p)) {
            // A throwing callback must not abort the training.
            let _ = f.call1(&JsValue::NULL, &v);
        }
        // After the callback, so an abort from inside it stops at this step.
        if signal.as_ref().is_some_and(aborted) {
            s.cancel();
        }
    };
    let bytes = match what {
        Training::Fit(spec) => s.fit(count, item, &spec, progress).await?,
        Training::Learn(overrides) => s.learn(count, item, &overrides, progress).await?,
    };
    Ok(Uint8Array::from(bytes.as_slice()).into())
}

#[wasm_bindgen(typescript_custom_section)]
const OPTIONS: &str = r#"
/**
 * Where the model runs: `"auto"` takes WebGPU on a hardware adapter, else the CPU; `"gpu"` is
 * WebGPU (`"webgpu"`, its first spelling, is still accepted). The CLI's `--device` takes the same.
 */
export type Backend = DeviceChoice | "webgpu";

/**
 * `fit`'s options: any settings of the fit specification (`fitDefaults()` gives each default;
 * an unknown key is an error) — `size` also as a number or `"HxW"` — and `signal` to cancel.
 */
export type FitOptions = Partial<Omit<FitSpec, "size">> & {
    size?: number | [number, number] | string;
    signal?: AbortSignal;
};

/**
 * `learn`'s options: training settings over the model's own (`epochs`, `learningRate`, `seed`,
 * `holdout`, …; what would make another model — its shape, size, window — is refused), and
 * `signal` to cancel.
 */
export type LearnOptions = Partial<Omit<FitSpec, "size">> & { signal?: AbortSignal };

/** `calibrate`'s request: the images the rule ranks, and the rule. */
export interface CalibrateRequest {
    /** Normal images (they also set the display range). */
    normal?: FitImage[];
    /** Anomalous images (for `f1` and `recall`; a whole volume counts once, by its worst slice). */
    anomalous?: FitImage[];
    /** `quantile:Q`, `fpr:RATE` (e.g. `fpr:0.01` or `fpr:1%`), `f1`, `recall:RATE` or `manual:T`. */
    rule: string;
}

/** `calibrate`'s result: the calibrated model's bytes, and how the threshold was chosen. */
export interface Calibrated {
    model: Uint8Array;
    choice: Choice;
}
"#;

/// `score`'s options.
#[derive(serde::Deserialize, Default, tsify::Tsify)]
#[serde(default, deny_unknown_fields)]
struct ScoreOptions {
    /// Also return the map upsampled to the image's size (`map`, width·height values).
    #[tsify(optional)]
    map: bool,
}

impl ScoreOptions {
    /// `score`'s optional options object, checked (an unknown key is named).
    fn read(options: Option<Object>) -> Result<Self, JsValue> {
        match options {
            None => Ok(Self::default()),
            Some(o) => from_js(o.into(), "score options").map_err(js_err),
        }
    }
}

#[wasm_bindgen(js_class = Detector)]
impl JsDetector {
    /// `"auto"`, `"cpu"` or `"gpu"`: `auto` takes WebGPU when the browser offers a hardware
    /// adapter, else the CPU backend (a software WebGPU adapter is far slower than it).
    /// `options.threads` limits the CPU backend's threads.
    #[wasm_bindgen(unchecked_return_type = "Promise<Detector>")]
    pub fn create(
        #[wasm_bindgen(unchecked_param_type = "Backend")] kind: String,
        #[wasm_bindgen(unchecked_optional_param_type = "CreateOptions")] options: Option<Object>,
    ) -> Promise {
        future_to_promise(async move {
            let options: CreateOptions = match options {
                None => CreateOptions::default(),
                Some(o) => from_js(o.into(), "Detector.create options").map_err(js_err)?,
            };
            let limit = options.threads.map(|n| n as usize);
            // The session first: a bad backend must not start the pool with the default size.
            let precision = options.precision.unwrap_or_default();
            let choice = DeviceChoice::parse_any(&kind).map_err(SessionError::UnknownBackend)?;
            let session = Session::create(choice, precision)
                .await
                .map_err(JsValue::from)?;
            let threads = threads::start(limit).await.map_err(js_err)?;
            Ok(JsDetector {
                session: Rc::new(session),
                threads,
            }
            .into())
        })
    }

    /// How many threads the CPU backend runs on (1 in `pkg/`).
    #[wasm_bindgen(getter)]
    pub fn threads(&self) -> usize {
        self.threads.count
    }

    /// Why fewer threads run than were asked for, if so (the one-thread build, or more than the
    /// browser offers).
    #[wasm_bindgen(getter, js_name = threadsNote)]
    pub fn threads_note(&self) -> Option<String> {
        self.threads.note.clone()
    }

    /// What the backbone computes in here: `"f16"` only when it was asked for and the device has
    /// it.
    #[wasm_bindgen(getter, unchecked_return_type = "Precision")]
    pub fn precision(&self) -> String {
        self.session.precision().0.name().into()
    }

    /// Why the precision is not the one asked for, if so (the CPU, or no `shader-f16`).
    #[wasm_bindgen(getter, js_name = precisionNote)]
    pub fn precision_note(&self) -> Option<String> {
        self.session.precision().1
    }

    /// Where it computes: `"cpu"` or `"gpu"` (what `auto` decided; the CPU after a lost WebGPU
    /// device). `backend` says it for people.
    #[wasm_bindgen(getter, unchecked_return_type = "DeviceKind")]
    pub fn device(&self) -> String {
        self.session.device_kind().name().into()
    }

    /// The backend in use, for people, e.g. `webgpu: <adapter>` or `cpu (why)`.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.session.backend()
    }

    /// Load DINOv3 weights and, optionally, the Hugging Face `config.json` text.
    #[wasm_bindgen(js_name = loadBackbone, unchecked_return_type = "Promise<BackboneInfo>")]
    pub fn load_backbone(&self, bytes: Vec<u8>, config_json: Option<String>) -> Promise {
        let s = self.session.clone();
        future_to_promise(async move {
            let info = s
                .load_backbone(&bytes, config_json.as_deref())
                .map_err(JsValue::from)?;
            to_js(&info)
        })
    }

    /// Load a model bundle (from `dino-ar fit` or `fit` here) made with the loaded backbone.
    #[wasm_bindgen(js_name = loadModel, unchecked_return_type = "Promise<ModelInfo>")]
    pub fn load_model(&self, bytes: Vec<u8>) -> Promise {
        let s = self.session.clone();
        future_to_promise(async move { to_js(&s.load_model(&bytes).map_err(JsValue::from)?) })
    }

    /// Normalised pixels `[3·h·w]` → `{ data: Float32Array [D, gridH, gridW], gridH, gridW }`.
    #[wasm_bindgen(js_name = embedPixels, unchecked_return_type = "Promise<Embedding>")]
    pub fn embed_pixels(&self, pixels: Vec<f32>, height: usize, width: usize) -> Promise {
        let s = self.session.clone();
        future_to_promise(async move {
            let (data, gh, gw) = s
                .embed_pixels(pixels, height, width)
                .await
                .map_err(JsValue::from)?;
            Ok(grid_object(&data, gh, gw))
        })
    }

    /// RGBA bytes → `{ width, height, grid, gridH, gridW, score, scoreTop1, threshold,
    /// anomalous }`; with `{ map: true }` also `map` (Float32Array, width·height).
    #[wasm_bindgen(unchecked_return_type = "Promise<ScoreResult>")]
    pub fn score(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array | Uint8ClampedArray")] rgba: Vec<u8>,
        width: usize,
        height: usize,
        #[wasm_bindgen(unchecked_optional_param_type = "ScoreOptions")] options: Option<Object>,
    ) -> Promise {
        let s = self.session.clone();
        future_to_promise(async move {
            let options = ScoreOptions::read(options)?;
            let r = s.score(&rgba, width, height).await.map_err(JsValue::from)?;
            Ok(score_object(&r, options.map))
        })
    }

    /// What the AR head saw and expected for an image (RGBA bytes): `{ gridH, gridW, actual,
    /// predicted }`, the embedding grid and the head's prediction of it coloured alike by the
    /// grid's first three principal components; `null` for a kNN model (it predicts nothing).
    #[wasm_bindgen(unchecked_return_type = "Promise<Explanation | null>")]
    pub fn explain(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array | Uint8ClampedArray")] rgba: Vec<u8>,
        width: usize,
        height: usize,
    ) -> Promise {
        let s = self.session.clone();
        future_to_promise(async move {
            let e = s
                .explain(&rgba, width, height)
                .await
                .map_err(JsValue::from)?;
            Ok(e.as_ref().map_or(JsValue::NULL, explanation_object))
        })
    }

    /// A picture file's bytes (PNG, JPEG, WebP, BMP, TIFF; 16-bit kept, EXIF orientation
    /// applied: decoded by the library exactly as the CLI decodes it) → as `score`.
    #[wasm_bindgen(js_name = scoreFile, unchecked_return_type = "Promise<ScoreResult>")]
    pub fn score_file(
        &self,
        bytes: Vec<u8>,
        #[wasm_bindgen(unchecked_optional_param_type = "ScoreOptions")] options: Option<Object>,
    ) -> Promise {
        let s = self.session.clone();
        future_to_promise(async move {
            let options = ScoreOptions::read(options)?;
            let r = s.score_file(&bytes).await?;
            Ok(score_object(&r, options.map))
        })
    }

    /// A picture file's bytes → as `explain`.
    #[wasm_bindgen(js_name = explainFile, unchecked_return_type = "Promise<Explanation | null>")]
    pub fn explain_file(&self, bytes: Vec<u8>) -> Promise {
        let s = self.session.clone();
        future_to_promise(async move {
            let e = s.explain_file(&bytes).await?;
            Ok(e.as_ref().map_or(JsValue::NULL, explanation_object))
        })
    }

    /// Fit on normal inputs → the bundle bytes (`Uint8Array`). Each item is a file,
    /// `{ bytes, name }` (a picture, NIfTI or DICOM file, read by the library as the CLI reads
    /// it: pictures shrunk to at most twice the model side first), the files of one DICOM series,
    /// `{ dicom: [bytes…], names }`, or decoded pixels, `{ rgba, width, height }`. A volume's
    /// slices, through the options' `window` and `plane`, are normal images.
    /// `options` is a fit specification (every key optional; `fitDefaults()` lists them with
    /// their defaults; an unknown key is an error) plus `signal`, an AbortSignal. `onProgress` is
    /// called after each image is embedded with `{ phase: "embed", image, images }` and after
    /// every training step with `{ phase: "train", epoch, epochs, step, steps, loss }`.
    #[wasm_bindgen(unchecked_return_type = "Promise<Uint8Array>")]
    pub fn fit(
        &self,
        #[wasm_bindgen(unchecked_param_type = "FitImage[]")] images: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "FitOptions")] options: Option<Object>,
        #[wasm_bindgen(unchecked_optional_param_type = "(progress: FitProgress) => void")]
        on_progress: Option<Function>,
    ) -> Promise {
        let s = self.session.clone();
        future_to_promise(async move {
            // The options first: a bad one is named before any image is copied.
            let options = options.map_or(JsValue::UNDEFINED, JsValue::from);
            let (spec, signal) = fit_options(&options).map_err(js_err)?;
            train(s, images, signal, on_progress, Training::Fit(spec)).await
        })
    }

    /// Keep the embeddings of the images scored from now on, up to `megabytes` (the library's
    /// budget, `KEPT_GRIDS_BUDGET`, 64 MiB, when left out; 0 keeps none), the oldest dropped
    /// first: `learn` and `calibrate` on images scored before, and scoring them again, then run
    /// only the head — seconds instead of a backbone pass per image. Off until asked: it costs
    /// memory and, on WebGPU, one read-back per image scored.
    #[wasm_bindgen(js_name = keepEmbeddings)]
    pub fn keep_embeddings(&self, megabytes: Option<f64>) -> Result<(), JsValue> {
        let budget = match megabytes {
            None => crate::training_set::KEPT_GRIDS_BUDGET,
            Some(m) if m.is_finite() && m >= 0.0 => (m * (1 << 20) as f64) as usize,
            Some(m) => {
                return Err(js_err(format!(
                    "keepEmbeddings: {m} is not a size in megabytes"
                )));
            }
        };
        self.session.keep_embeddings(budget);
        Ok(())
    }

    /// `{ images, bytes }` of embeddings kept now (see `keepEmbeddings`).
    #[wasm_bindgen(getter, js_name = keptEmbeddings, unchecked_return_type = "{ images: number; bytes: number }")]
    pub fn kept_embeddings(&self) -> Result<JsValue, JsValue> {
        let (images, bytes) = self.session.kept_embeddings();
        let out = Object::new();
        js_sys::Reflect::set(&out, &"images".into(), &images.into())?;
        js_sys::Reflect::set(&out, &"bytes".into(), &bytes.into())?;
        Ok(out.into())
    }

    /// Go on learning from the loaded model: the inputs (as `fit`'s; `slices` picks a volume's
    /// marked slices) join its normal set and its head is fine-tuned from its weights (a kNN
    /// model adds them to its bank) → the new bundle (`Uint8Array`; `loadModel` it to use it; its
    /// history continues this one's). Give the model's normal set with the new normals where you
    /// have it: on new images alone a model forgets the old ones. `options`: spec keys over the
    /// model's own (training settings only, e.g. `{ epochs: 10 }`; `learnDefaults()`), plus
    /// `signal`. Images scored before are not embedded again. Progress as `fit`'s.
    #[wasm_bindgen(unchecked_return_type = "Promise<Uint8Array>")]
    pub fn learn(
        &self,
        #[wasm_bindgen(unchecked_param_type = "FitImage[]")] images: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "LearnOptions")] options: Option<Object>,
        #[wasm_bindgen(unchecked_optional_param_type = "(progress: FitProgress) => void")]
        on_progress: Option<Function>,
    ) -> Promise {
        let s = self.session.clone();
        future_to_promise(async move {
            let options = options.map_or(JsValue::UNDEFINED, JsValue::from);
            let (overrides, signal) = learn_options(&options).map_err(js_err)?;
            train(s, images, signal, on_progress, Training::Learn(overrides)).await
        })
    }

    /// Set the loaded model's threshold again by a rule (`quantile:Q`, `fpr:RATE`, `f1`,
    /// `recall:RATE`, `manual:T`) on `normal` and `anomalous` inputs (as `fit`'s) →
    /// `{ model: Uint8Array, choice }`: the new bundle (its scorer unchanged; `loadModel` it) and
    /// the rule's report (threshold, images, false-alarm rate, recall, warning).
    #[wasm_bindgen(unchecked_return_type = "Promise<Calibrated>")]
    pub fn calibrate(
        &self,
        #[wasm_bindgen(unchecked_param_type = "CalibrateRequest")] request: JsValue,
    ) -> Promise {
        let s = self.session.clone();
        future_to_promise(async move {
            let rule = get(&request, "rule")
                .and_then(|r| r.as_string())
                .ok_or_else(|| js_err("calibrate needs a `rule`, e.g. \"fpr:0.01\""))?;
            let rule: Rule = rule.parse().map_err(|e: ThresholdError| js_err(e))?;
            let list = |key: &str| -> Result<Vec<Item>, JsValue> {
                let Some(v) = get(&request, key) else {
                    return Ok(Vec::new());
                };
                let items = fit_items(&v).map_err(|e| js_err(format!("`{key}`: {e}")))?;
                items
                    .iter()
                    .enumerate()
                    .map(|(k, it)| fit_item(k, &it).map_err(js_err))
                    .collect()
            };
            let (normal, anomalous) = (list("normal")?, list("anomalous")?);
            let (bytes, choice) = s.calibrate(normal, anomalous, rule).await?;
            let out = Object::new();
            js_sys::Reflect::set(&out, &"model".into(), &Uint8Array::from(bytes.as_slice()))?;
            js_sys::Reflect::set(&out, &"choice".into(), &to_js(&choice)?)?;
            Ok(out.into())
        })
    }

    /// How the loaded model cuts `volume`: `{ count, width, height, plane, window, warning?,
    /// notes }`; an error when the model's window cannot read it (an "as is" model on a CT scan).
    #[wasm_bindgen(js_name = volumeSlices, unchecked_return_type = "SliceInfo")]
    pub fn volume_slices(&self, volume: &JsVolume) -> Result<JsValue, JsValue> {
        to_js(
            &self
                .session
                .volume_slices(&volume.volume)
                .map_err(JsValue::from)?,
        )
    }

    /// Slice `n` as the model sees it (its window and plane): `{ rgba, width, height }`, grey.
    #[wasm_bindgen(js_name = sliceImage, unchecked_return_type = "SliceImage")]
    pub fn slice_image(&self, volume: &JsVolume, n: usize) -> Result<JsValue, JsValue> {
        let img = self
            .session
            .slice_image(&volume.volume, n)
            .map_err(JsValue::from)?;
        Ok(rgba_object(&img))
    }

    /// `explain` for slice `n` of `volume` (through the model's window and plane).
    #[wasm_bindgen(js_name = explainSlice, unchecked_return_type = "Promise<Explanation | null>")]
    pub fn explain_slice(&self, volume: &JsVolume, n: usize) -> Promise {
        let s = self.session.clone();
        let volume = volume.volume.clone();
        future_to_promise(async move {
            let e = s.explain_slice(&volume, n).await.map_err(JsValue::from)?;
            Ok(e.as_ref().map_or(JsValue::NULL, explanation_object))
        })
    }

    /// Score every slice of `volume`: `{ slices: ScoreResult[], worstSlice, score, scoreTop1,
    /// threshold, anomalous, warning?, anomalyMap }` — the volume's score and verdict are its
    /// worst slice's; `anomalyMap` is a `.nii.gz` (Uint8Array) on the volume's grid with its
    /// affine, which opens aligned over the scan in 3D Slicer or ITK-SNAP. `onSlice` is called
    /// with `{ slice, slices }` after each slice.
    #[wasm_bindgen(js_name = scoreVolume, unchecked_return_type = "Promise<VolumeResult>")]
    pub fn score_volume(
        &self,
        volume: &JsVolume,
        #[wasm_bindgen(
            unchecked_optional_param_type = "(progress: { slice: number, slices: number }) => void"
        )]
        on_slice: Option<Function>,
    ) -> Promise {
        let s = self.session.clone();
        let volume = volume.volume.clone();
        future_to_promise(async move {
            let (v, nii) = s
                .score_volume(&volume, |slice, slices| {
                    if let Some(f) = &on_slice {
                        let p = js_sys::Object::new();
                        let _ = js_sys::Reflect::set(&p, &"slice".into(), &(slice as u32).into());
                        let _ = js_sys::Reflect::set(&p, &"slices".into(), &(slices as u32).into());
                        let _ = f.call1(&JsValue::NULL, &p);
                    }
                })
                .await
                .map_err(JsValue::from)?;
            Ok(volume_object(&v, &nii))
        })
    }

    /// Stop a running `fit` at its next step; its promise rejects with "training cancelled".
    pub fn cancel(&self) {
        self.session.cancel();
    }
}
