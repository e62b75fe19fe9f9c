//! The wasm-bindgen surface the page drives. A thin shell: it picks the device, moves bytes in and
//! numbers out, and turns every error into a JS `Error` with the library's message.
//!
//! [`Session`] holds the state and does the work with Rust types (the in-browser tests drive it
//! directly); [`Detector`] wraps it for JavaScript. Every method returns a Promise; nothing reads a
//! tensor synchronously (WebGPU in the browser cannot), and the WebGPU device is initialised
//! before any tensor exists. A failed call leaves the session as it was.

use std::cell::{Cell, RefCell};
use std::ops::ControlFlow;
use std::rc::Rc;

use burn::tensor::{Device, Tensor};
use js_sys::{Array, Float32Array, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::ar::{ArConfig, Variant};
use crate::backbone::{DinoV3, load_backbone};
use crate::bundle::Bundle;
use crate::detector::{self, AnomalyMap, FitMethod};
use crate::preprocess::RgbImage;
use crate::train::{FitOptions, Progress};

thread_local! {
    /// burn registers one wgpu runtime per page: initialise it once, share it afterwards.
    static WEBGPU: RefCell<Option<WebGpu>> = const { RefCell::new(None) };
    /// Set by the device-lost callback: why the page's WebGPU device went away.
    static LOST: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn lost_reason() -> Option<String> {
    LOST.with(|l| l.borrow().clone())
}

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

#[derive(Clone)]
struct WebGpu {
    device: Device,
    /// The wgpu handle behind `device`, for the lost-device callback (and the test hook).
    handle: burn::tensor::wgpu::wgpu::Device,
    label: String,
    /// A software adapter (SwiftShader and the like): much slower than the wasm CPU backend.
    software: bool,
}

async fn webgpu_device() -> Result<WebGpu, String> {
    if let Some(reason) = lost_reason() {
        return Err(format!(
            "the WebGPU device was lost earlier ({reason}); reload the page to use it again"
        ));
    }
    if let Some(found) = WEBGPU.with(|w| w.borrow().clone()) {
        return Ok(found);
    }
    let (device, setup) = Device::wgpu_options()
        .init_with_setup_async()
        .await
        .map_err(|e| format!("WebGPU unavailable: {e}"))?;
    let info = setup.adapter.get_info();
    let name = if info.name.is_empty() {
        format!("{:?}", info.device_type)
    } else {
        info.name
    };
    let software = matches!(info.device_type, burn::tensor::wgpu::wgpu::DeviceType::Cpu);
    let kind = if software { "software adapter" } else { "GPU" };
    setup.device.set_device_lost_callback(|reason, message| {
        let why = if message.is_empty() {
            format!("{reason:?}")
        } else {
            format!("{reason:?}: {message}")
        };
        LOST.with(|l| *l.borrow_mut() = Some(why));
    });
    let found = WebGpu {
        device,
        handle: setup.device.clone(),
        label: format!("webgpu: {name}, {kind} ({:?})", info.backend),
        software,
    };
    WEBGPU.with(|w| *w.borrow_mut() = Some(found.clone()));
    Ok(found)
}

/// The page's WebGPU device (initialised on first use, shared afterwards), with its label.
/// Anything else on the page that needs burn on WebGPU must come through here: burn registers
/// one wgpu runtime per page.
pub async fn webgpu() -> Result<(Device, String), String> {
    webgpu_device().await.map(|g| (g.device, g.label))
}

/// Test hook: destroy the page's WebGPU device, as a driver reset or a tab in the background
/// might. Everything on WebGPU is unusable afterwards.
#[doc(hidden)]
pub fn lose_webgpu_device_for_tests() {
    WEBGPU.with(|w| {
        if let Some(gpu) = w.borrow().as_ref() {
            gpu.handle.destroy();
        }
    });
}

/// What `loadBackbone` resolves to: the architecture read from the file.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackboneInfo {
    pub layout: String,
    pub format: String,
    pub hidden_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub registers: usize,
    pub patch_size: usize,
    pub fingerprint: String,
}

/// What `loadModel` resolves to.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelInfo {
    pub method: String,
    pub input_height: usize,
    pub input_width: usize,
    pub threshold: f32,
    pub display_low: f32,
    pub display_high: f32,
    pub train_images: usize,
}

/// Settings of `fit`; every field is optional on the JS side.
#[derive(Debug, Clone)]
pub struct WebFitOptions {
    pub epochs: usize,
    pub variant: Variant,
    /// Hidden channels of the AR head.
    pub hidden: usize,
    pub seed: u64,
    pub size: (usize, usize),
    pub method_knn: bool,
    /// Share of the images held out to calibrate the threshold.
    pub holdout: f64,
    /// The threshold is this quantile of the held-out images' scores.
    pub quantile: f64,
}

impl Default for WebFitOptions {
    fn default() -> Self {
        Self {
            epochs: 40,
            variant: Variant::Dilated,
            hidden: 256,
            seed: 42,
            size: (448, 448),
            method_knn: false,
            holdout: 0.1,
            quantile: 0.99,
        }
    }
}

/// What `fit` reports: each normal image embedded, then every training step.
#[derive(Debug, Clone, Copy)]
pub enum FitProgress {
    /// `image` of `images` (1-based) went through the backbone.
    Embedded {
        image: usize,
        images: usize,
    },
    Trained(Progress),
}

/// The state behind a `Detector`, with the work done in Rust types.
pub struct Session {
    device: RefCell<Device>,
    backend: RefCell<String>,
    on_webgpu: Cell<bool>,
    /// Why the models are gone (the WebGPU device was lost) until a backbone is loaded again.
    needs_reload: RefCell<Option<String>>,
    backbone: RefCell<Option<DinoV3>>,
    detector: RefCell<Option<Rc<detector::Detector>>>,
    cancel: Cell<bool>,
}

impl Session {
    pub async fn create(kind: &str) -> Result<Self, String> {
        let cpu = |why: String| (Device::flex(), why, false);
        let (device, backend, on_webgpu) = match kind {
            "cpu" => cpu("cpu".into()),
            "webgpu" => {
                let gpu = webgpu_device().await?;
                (gpu.device, gpu.label, true)
            }
            "auto" => match webgpu_device().await {
                Ok(gpu) if !gpu.software => (gpu.device, gpu.label, true),
                Ok(gpu) => cpu(format!(
                    "cpu (the only WebGPU adapter is a software one: {})",
                    gpu.label
                )),
                Err(why) => cpu(format!("cpu ({why})")),
            },
            other => {
                return Err(format!(
                    "unknown backend `{other}`: use \"webgpu\", \"cpu\" or \"auto\""
                ));
            }
        };
        Ok(Self {
            device: RefCell::new(device),
            backend: RefCell::new(backend),
            on_webgpu: Cell::new(on_webgpu),
            needs_reload: RefCell::new(None),
            backbone: RefCell::new(None),
            detector: RefCell::new(None),
            cancel: Cell::new(false),
        })
    }

    pub fn backend(&self) -> String {
        self.fall_back_if_lost();
        self.backend.borrow().clone()
    }

    /// When the WebGPU device was lost, move to the CPU backend; the models on the lost device
    /// are gone with it until they are loaded again.
    fn fall_back_if_lost(&self) {
        if let Some(reason) = lost_reason().filter(|_| self.on_webgpu.get()) {
            self.on_webgpu.set(false);
            *self.device.borrow_mut() = Device::flex();
            *self.backend.borrow_mut() = format!("cpu (WebGPU device lost: {reason})");
            *self.backbone.borrow_mut() = None;
            *self.detector.borrow_mut() = None;
            *self.needs_reload.borrow_mut() = Some(reason);
        }
    }

    /// The error for calls that needed what the lost device held.
    fn check_device(&self) -> Result<(), String> {
        self.fall_back_if_lost();
        match self.needs_reload.borrow().as_ref() {
            Some(reason) => Err(format!(
                "the WebGPU device was lost ({reason}); switched to the CPU backend: load the backbone and model again"
            )),
            None => Ok(()),
        }
    }

    fn backbone(&self) -> Result<DinoV3, String> {
        self.check_device()?;
        self.backbone
            .borrow()
            .clone()
            .ok_or_else(|| "no backbone loaded: call loadBackbone first".to_string())
    }

    /// Replaces the backbone; a model loaded for another backbone is dropped with it.
    pub fn load_backbone(
        &self,
        bytes: &[u8],
        config_json: Option<&str>,
    ) -> Result<BackboneInfo, String> {
        self.fall_back_if_lost();
        let device = self.device.borrow().clone();
        let loaded = load_backbone(bytes, config_json, &device).map_err(|e| e.to_string())?;
        *self.needs_reload.borrow_mut() = None;
        let c = &loaded.model.config;
        let info = BackboneInfo {
            layout: loaded.layout.to_string(),
            format: loaded.format.to_string(),
            hidden_size: c.hidden_size,
            layers: c.num_layers,
            heads: c.num_heads,
            registers: c.num_registers,
            patch_size: c.patch_size,
            fingerprint: loaded.model.fingerprint.clone(),
        };
        let keep = self
            .detector
            .borrow()
            .as_ref()
            .is_some_and(|d| d.backbone.fingerprint == loaded.model.fingerprint);
        if !keep {
            *self.detector.borrow_mut() = None;
        }
        *self.backbone.borrow_mut() = Some(loaded.model);
        Ok(info)
    }

    pub fn load_model(&self, bytes: &[u8]) -> Result<ModelInfo, String> {
        let backbone = self
            .backbone()
            .map_err(|_| "load the backbone before the model".to_string())?;
        let bundle = Bundle::read(bytes).map_err(|e| e.to_string())?;
        let det = detector::Detector::new(backbone, &bundle).map_err(|e| e.to_string())?;
        let m = &det.meta;
        let info = ModelInfo {
            method: match m.method {
                crate::bundle::Method::Ar { ref config, .. } => {
                    format!("ar ({:?})", config.variant).to_lowercase()
                }
                crate::bundle::Method::Knn { .. } => "knn".into(),
            },
            input_height: m.input_size.0,
            input_width: m.input_size.1,
            threshold: m.calibration.threshold,
            display_low: m.calibration.display_low,
            display_high: m.calibration.display_high,
            train_images: m.train_images,
        };
        *self.detector.borrow_mut() = Some(Rc::new(det));
        Ok(info)
    }

    /// Normalised pixels `[3·h·w]` → (channel-major grid `[D, gh, gw]`, gh, gw).
    pub async fn embed_pixels(
        &self,
        pixels: Vec<f32>,
        h: usize,
        w: usize,
    ) -> Result<(Vec<f32>, usize, usize), String> {
        let model = self.backbone()?;
        let out = model.forward(model.pixels_tensor(pixels, h, w)?)?;
        let (gh, gw) = out.grid;
        let data = out
            .patch_grid()
            .into_data_async()
            .await
            .map_err(|e| format!("reading back failed: {e:?}"))?;
        Ok((
            data.try_into_vec::<f32>().map_err(|e| format!("{e:?}"))?,
            gh,
            gw,
        ))
    }

    pub async fn score(
        &self,
        rgba: &[u8],
        width: usize,
        height: usize,
    ) -> Result<AnomalyMap, String> {
        self.check_device()?;
        let det = self
            .detector
            .borrow()
            .clone()
            .ok_or_else(|| "no model loaded: call loadModel (or fit) first".to_string())?;
        let img = RgbImage::from_rgba8(rgba, width, height)?;
        det.score(&img).await
    }

    /// Fit on normal images and return the bundle bytes; `progress` sees every image embedded
    /// and every training step.
    pub async fn fit(
        &self,
        images: &[(Vec<u8>, usize, usize)],
        options: &WebFitOptions,
        mut progress: impl FnMut(FitProgress),
    ) -> Result<Vec<u8>, String> {
        let backbone = self.backbone()?;
        let (h, w) = options.size;
        backbone.config.grid(h, w)?;
        self.cancel.set(false);
        // Grids stay on the device: nothing is read back between the backbone and the head.
        let mut grids = Vec::with_capacity(images.len());
        let mut sizes = Vec::with_capacity(images.len());
        for (k, (rgba, width, height)) in images.iter().enumerate() {
            let img = RgbImage::from_rgba8(rgba, *width, *height)
                .map_err(|e| format!("image {k}: {e}"))?;
            grids.push(detector::embed(&backbone, &img, (h, w))?);
            sizes.push((*width, *height));
            progress(FitProgress::Embedded {
                image: k + 1,
                images: images.len(),
            });
            if self.cancel.get() {
                return Err("training cancelled".into());
            }
        }
        if grids.is_empty() {
            return Err("fit needs normal images".into());
        }
        let method = if options.method_knn {
            FitMethod::Knn
        } else {
            let config = ArConfig {
                variant: options.variant,
                hidden: options.hidden,
                ..ArConfig::new(backbone.config.hidden_size)
            };
            let fit_options = FitOptions {
                epochs: options.epochs,
                seed: options.seed,
                ..FitOptions::default()
            };
            FitMethod::Ar {
                config,
                options: fit_options,
            }
        };
        let cancel = &self.cancel;
        detector::fit_model(
            Tensor::cat(grids, 0),
            &sizes,
            (h, w),
            &backbone,
            method,
            options.holdout,
            options.quantile,
            options.seed,
            |p| {
                progress(FitProgress::Trained(p));
                if cancel.get() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )
        .await
    }

    pub fn cancel(&self) {
        self.cancel.set(true);
    }
}

/// Holds the device and the loaded models. One per page (or per worker).
#[wasm_bindgen]
pub struct Detector {
    session: Rc<Session>,
}

fn js_err(msg: impl AsRef<str>) -> JsValue {
    JsError::new(msg.as_ref()).into()
}

fn set(obj: &Object, key: &str, value: impl Into<JsValue>) {
    // Setting a property on a fresh plain object cannot fail.
    let _ = Reflect::set(obj, &key.into(), &value.into());
}

fn get(obj: &JsValue, key: &str) -> Option<JsValue> {
    Reflect::get(obj, &key.into())
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_null())
}

fn grid_object(data: &[f32], gh: usize, gw: usize) -> JsValue {
    let out = Object::new();
    set(&out, "data", Float32Array::from(data));
    set(&out, "gridH", gh as u32);
    set(&out, "gridW", gw as u32);
    out.into()
}

fn to_js(value: &impl serde::Serialize) -> Result<JsValue, JsValue> {
    serde_wasm_bindgen::to_value(value).map_err(|e| js_err(e.to_string()))
}

/// `{ epochs, variant, hidden, seed, size, method, holdout, quantile }`, all optional.
fn fit_options(js: &JsValue) -> Result<WebFitOptions, String> {
    let mut o = WebFitOptions::default();
    if js.is_undefined() || js.is_null() {
        return Ok(o);
    }
    let number = |key: &str| {
        get(js, key).map(|v| {
            v.as_f64()
                .ok_or(format!("fit option `{key}` must be a number"))
        })
    };
    // A whole number ≥ `min`; fractions and negatives are errors, never truncated.
    let whole = |key: &str, min: f64| -> Result<Option<usize>, String> {
        number(key)
            .map(|v| {
                let v = v?;
                if v >= min && v.fract() == 0.0 && v <= 9_007_199_254_740_991.0 {
                    Ok(v as usize)
                } else {
                    Err(format!(
                        "fit option `{key}` must be a whole number ≥ {min}, got {v}"
                    ))
                }
            })
            .transpose()
    };
    // A share in [0, 1), or (0, 1) when zero makes no sense.
    let share = |key: &str, zero_ok: bool| -> Result<Option<f64>, String> {
        number(key)
            .map(|v| {
                let v = v?;
                if (0.0..1.0).contains(&v) && (zero_ok || v > 0.0) {
                    Ok(v)
                } else {
                    let range = if zero_ok { "[0, 1)" } else { "(0, 1)" };
                    Err(format!("fit option `{key}` must be in {range}, got {v}"))
                }
            })
            .transpose()
    };
    if let Some(e) = whole("epochs", 1.0)? {
        o.epochs = e;
    }
    if let Some(h) = whole("hidden", 1.0)? {
        o.hidden = h;
    }
    if let Some(h) = share("holdout", true)? {
        o.holdout = h;
    }
    if let Some(q) = share("quantile", false)? {
        o.quantile = q;
    }
    if let Some(s) = whole("seed", 0.0)? {
        o.seed = s as u64;
    }
    if let Some(s) = whole("size", 1.0)? {
        o.size = (s, s);
    }
    if let Some(v) = get(js, "variant") {
        o.variant = Variant::parse(&v.as_string().unwrap_or_default())?;
    }
    if let Some(m) = get(js, "method") {
        o.method_knn = match m.as_string().as_deref() {
            Some("knn") => true,
            Some("ar") => false,
            other => {
                return Err(format!(
                    "fit option `method` must be \"ar\" or \"knn\", got {other:?}"
                ));
            }
        };
    }
    Ok(o)
}

/// `[{ rgba, width, height }]` → owned buffers.
fn fit_images(js: &JsValue) -> Result<Vec<(Vec<u8>, usize, usize)>, String> {
    let array: &Array = js
        .dyn_ref()
        .ok_or("fit expects an array of { rgba, width, height }")?;
    array
        .iter()
        .enumerate()
        .map(|(k, item)| {
            let rgba = get(&item, "rgba").ok_or(format!("image {k}: missing `rgba`"))?;
            let rgba = Uint8Array::new(&rgba).to_vec();
            let dim = |key: &str| {
                get(&item, key)
                    .and_then(|v| v.as_f64())
                    .ok_or(format!("image {k}: missing `{key}`"))
            };
            Ok((rgba, dim("width")? as usize, dim("height")? as usize))
        })
        .collect()
}

#[wasm_bindgen]
impl Detector {
    /// `"webgpu"`, `"cpu"` or `"auto"`: WebGPU when the browser offers a hardware adapter, else the
    /// CPU backend (a software WebGPU adapter is far slower than it).
    pub fn create(kind: String) -> Promise {
        future_to_promise(async move {
            let session = Session::create(&kind).await.map_err(js_err)?;
            Ok(Detector {
                session: Rc::new(session),
            }
            .into())
        })
    }

    /// The backend in use, e.g. `webgpu: <adapter>` or `cpu`.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.session.backend()
    }

    /// Load DINOv3 weights and, optionally, the Hugging Face `config.json` text.
    #[wasm_bindgen(js_name = loadBackbone)]
    pub fn load_backbone(&self, bytes: Vec<u8>, config_json: Option<String>) -> Promise {
        let s = self.session.clone();
        future_to_promise(async move {
            to_js(
                &s.load_backbone(&bytes, config_json.as_deref())
                    .map_err(js_err)?,
            )
        })
    }

    /// Load a model bundle (from `dino-ar fit` or `fit` here) made with the loaded backbone.
    #[wasm_bindgen(js_name = loadModel)]
    pub fn load_model(&self, bytes: Vec<u8>) -> Promise {
        let s = self.session.clone();
        future_to_promise(async move { to_js(&s.load_model(&bytes).map_err(js_err)?) })
    }

    /// Normalised pixels `[3·h·w]` → `{ data: Float32Array [D, gridH, gridW], gridH, gridW }`.
    #[wasm_bindgen(js_name = embedPixels)]
    pub fn embed_pixels(&self, pixels: Vec<f32>, height: usize, width: usize) -> Promise {
        let s = self.session.clone();
        future_to_promise(async move {
            let (data, gh, gw) = s
                .embed_pixels(pixels, height, width)
                .await
                .map_err(js_err)?;
            Ok(grid_object(&data, gh, gw))
        })
    }

    /// RGBA bytes (a canvas `ImageData`) → resized to `sizeH × sizeW`, normalised and embedded:
    /// `{ data: Float32Array [D, gridH, gridW], gridH, gridW }`.
    #[wasm_bindgen(js_name = embedImage)]
    pub fn embed_image(
        &self,
        rgba: Vec<u8>,
        width: usize,
        height: usize,
        size_h: usize,
        size_w: usize,
    ) -> Promise {
        let s = self.session.clone();
        future_to_promise(async move {
            let img = RgbImage::from_rgba8(&rgba, width, height).map_err(js_err)?;
            let (data, gh, gw) = s
                .embed_pixels(img.to_model_input(size_h, size_w), size_h, size_w)
                .await
                .map_err(js_err)?;
            Ok(grid_object(&data, gh, gw))
        })
    }

    /// RGBA bytes → `{ map: Float32Array (width·height), width, height, grid, gridH, gridW,
    /// score, scoreTop1, threshold, anomalous }`.
    pub fn score(&self, rgba: Vec<u8>, width: usize, height: usize) -> Promise {
        let s = self.session.clone();
        future_to_promise(async move {
            let r = s.score(&rgba, width, height).await.map_err(js_err)?;
            let out = Object::new();
            set(&out, "map", Float32Array::from(r.map.as_slice()));
            set(&out, "width", r.width as u32);
            set(&out, "height", r.height as u32);
            set(&out, "grid", Float32Array::from(r.grid.as_slice()));
            set(&out, "gridH", r.grid_h as u32);
            set(&out, "gridW", r.grid_w as u32);
            set(&out, "score", r.score.max);
            set(&out, "scoreTop1", r.score.top1);
            set(&out, "threshold", r.threshold);
            set(&out, "anomalous", r.anomalous);
            Ok(out.into())
        })
    }

    /// Fit on `[{ rgba, width, height }]` normal images → the bundle bytes (`Uint8Array`).
    /// Options `{ epochs, variant, hidden, seed, size, method: "ar" | "knn", holdout, quantile,
    /// signal: AbortSignal }`, all optional. `onProgress` is called after each image is embedded with
    /// `{ phase: "embed", image, images }` and after every training step with
    /// `{ phase: "train", epoch, epochs, step, steps, loss }`.
    pub fn fit(&self, images: JsValue, options: JsValue, on_progress: Option<Function>) -> Promise {
        let s = self.session.clone();
        future_to_promise(async move {
            let images = fit_images(&images).map_err(js_err)?;
            // `{ signal }`: an AbortSignal; aborting it cancels like `cancel()`.
            let signal = get(&options, "signal");
            let aborted =
                |sig: &JsValue| get(sig, "aborted").and_then(|v| v.as_bool()) == Some(true);
            let options = fit_options(&options).map_err(js_err)?;
            if signal.as_ref().is_some_and(aborted) {
                return Err(js_err("training cancelled"));
            }
            let bytes = s
                .fit(&images, &options, |p| {
                    let report = match p {
                        FitProgress::Embedded { image, images } => {
                            let o = Object::new();
                            set(&o, "phase", "embed");
                            set(&o, "image", image as u32);
                            set(&o, "images", images as u32);
                            Ok(o.into())
                        }
                        FitProgress::Trained(p) => serde_wasm_bindgen::to_value(&p).inspect(|v| {
                            let _ = Reflect::set(v, &"phase".into(), &"train".into());
                        }),
                    };
                    if let Some(f) = &on_progress
                        && let Ok(v) = report
                    {
                        // A throwing callback must not abort the training.
                        let _ = f.call1(&JsValue::NULL, &v);
                    }
                    // After the callback, so an abort from inside it stops at this step.
                    if signal.as_ref().is_some_and(aborted) {
                        s.cancel();
                    }
                })
                .await
                .map_err(js_err)?;
            Ok(Uint8Array::from(bytes.as_slice()).into())
        })
    }

    /// Stop a running `fit` at its next step; its promise rejects with "training cancelled".
    pub fn cancel(&self) {
        self.session.cancel();
    }
}
