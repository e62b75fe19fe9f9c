//! The state behind a JS `Detector` — the device, the backbone, the model — and the work, in Rust
//! types. A failed call leaves the session as it was.

use std::cell::{Cell, RefCell};
use std::ops::ControlFlow;
use std::rc::Rc;

use burn::tensor::Device;
use serde::Serialize;

use super::convert::FitItem;
use super::device::{lost_reason, webgpu_device};
use crate::backbone::{DinoV3, load_backbone};
use crate::bundle::{Bundle, BundleError};
use crate::detector::{
    AnomalyMap, CalibrationSet, Detector, DetectorError, Explanation, VolumeMap, calibrate,
};
use crate::infra::compute::{DeviceChoice, DeviceKind, Precision, auto_declines};
use crate::infra::readback::{ReadBackError, read_back};
use crate::input::{self, DecodeError, Input};
use crate::marks::{fingerprint, series_fingerprint};
use crate::preprocess::RgbImage;
use crate::spec::FitSpec;
use crate::threshold::{Choice, Rule};
use crate::train::Progress;
use crate::training_set::{AddError, Keep, KeptGrids, TrainingSet};
use crate::volume::{Plane, Volume, nifti};
use crate::weights::WeightsError;

/// Everything a call can fail with; the message is what the JS `Error` says.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SessionError {
    #[error("Detector.create: {0}")]
    UnknownBackend(crate::infra::named::SettingError),
    #[error("{0}")]
    WebGpu(String),
    #[error(
        "the WebGPU device was lost ({0}); switched to the CPU backend: load the backbone and model again"
    )]
    DeviceLost(String),
    #[error("no backbone loaded: call loadBackbone first")]
    NoBackbone,
    #[error("load the backbone before the model")]
    ModelBeforeBackbone,
    #[error("no model loaded: call loadModel (or fit) first")]
    NoModel,
    #[error("fit needs normal images")]
    NoImages,
    #[error("{0}")]
    Input(String),
    #[error("training cancelled")]
    Cancelled,
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Add(AddError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Detector(#[from] DetectorError),
    #[error(transparent)]
    ReadBack(#[from] ReadBackError),
}

impl SessionError {
    /// The machine-readable kind the JS `Error` carries as `err.kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            SessionError::UnknownBackend(_) => "options",
            SessionError::WebGpu(_) => "webgpu",
            SessionError::DeviceLost(_) => "device-lost",
            SessionError::NoBackbone | SessionError::ModelBeforeBackbone => "no-backbone",
            SessionError::NoModel => "no-model",
            SessionError::NoImages | SessionError::Input(_) => "input",
            SessionError::Cancelled => "cancelled",
            SessionError::Decode(e) => e.kind(),
            SessionError::Add(e) => e.kind(),
            SessionError::Weights(_) => "weights",
            SessionError::Bundle(_) => "bundle",
            SessionError::Detector(_) | SessionError::ReadBack(_) => "model",
        }
    }
}

impl From<SessionError> for wasm_bindgen::JsValue {
    fn from(e: SessionError) -> Self {
        super::convert::js_err_kind(&e, e.kind())
    }
}

/// One input of a fit, a learn or a calibration: its name (for messages), what it is, and — for
/// a volume — the slices picked (a person's marks), else all of it.
pub struct Item {
    pub name: String,
    pub input: FitItem,
    pub slices: Option<Vec<usize>>,
}

/// What an item holds, read by the library's rules, with its fingerprint.
fn read_item(name: &str, item: FitItem) -> Result<(Input, String), SessionError> {
    let (input, print) = match item {
        FitItem::Rgba(rgba, w, h) => {
            let print = fingerprint(&rgba);
            let img = RgbImage::from_rgba8(&rgba, w, h).map_err(DecodeError::Size);
            (img.map(Input::Picture), print)
        }
        FitItem::File(name, bytes) => (input::read(&name, &bytes), fingerprint(&bytes)),
        FitItem::Series(files) => {
            let print =
                series_fingerprint(&files.iter().map(|f| f.1.as_slice()).collect::<Vec<_>>());
            (input::read_series(files).map(Input::Volume), print)
        }
    };
    let input = input.map_err(|source| {
        let name = name.to_string();
        SessionError::Add(AddError::Unreadable { name, source })
    })?;
    Ok((input, print))
}

/// A picture through the model's window, as it saw its training images.
fn through_window(det: &Detector, img: RgbImage) -> Result<RgbImage, SessionError> {
    det.meta
        .spec
        .window
        .picture(img)
        .map_err(SessionError::Input)
}

/// What `loadBackbone` resolves to: the architecture read from the file.
#[derive(Debug, Clone, Serialize, tsify::Tsify)]
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
    /// What the backbone computes in (`f32` when `f16` was asked for where it cannot run).
    pub precision: Precision,
}

/// What `loadModel` resolves to: how the model was made and where its scores sit.
#[derive(Debug, Clone, Serialize, tsify::Tsify)]
#[serde(rename_all = "camelCase")]
pub struct ModelInfo {
    /// `ar (dilated)`, `knn`, …
    pub method: String,
    pub input_height: usize,
    pub input_width: usize,
    pub threshold: f32,
    pub display_low: f32,
    pub display_high: f32,
    pub train_images: usize,
    /// Every setting the model was fit with.
    #[tsify(type = "Required<FitSpec>")]
    pub spec: FitSpec,
    /// The rule that set the threshold: `quantile:0.99`, `fpr:0.01`, `f1`, `recall:0.95`,
    /// `manual:T`.
    pub rule: String,
    /// Normal and marked anomalous images the threshold rests on.
    pub calibration_images: usize,
    pub anomalous_images: usize,
    /// Too few images for the rule, in words.
    #[tsify(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// 1 for a fit, one more for each learn or calibration (0: from before versions were kept).
    pub version: usize,
    /// How the model came to be, oldest first.
    pub history: Vec<crate::bundle::Version>,
}

/// How the loaded model cuts a volume: its slices through the model's window and plane.
#[derive(Debug, Clone, Serialize, tsify::Tsify)]
#[serde(rename_all = "camelCase")]
pub struct SliceInfo {
    pub count: usize,
    pub width: usize,
    pub height: usize,
    pub plane: Plane,
    /// The model's window, e.g. `ct-brain` or `percentile`.
    pub window: String,
    /// Set when the window reads this volume against its kind (a CT window on MR).
    #[tsify(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// What the reader said about the file (a 4-D file's first volume, no orientation, …).
    pub notes: Vec<String>,
}

/// What `fit` reports: each normal image embedded (`phase: "embed"`), then every training step
/// (`phase: "train"`).
#[derive(Debug, Clone, Copy, Serialize, tsify::Tsify)]
#[serde(tag = "phase")]
pub enum FitProgress {
    /// `image` of `images` (1-based) went through the backbone.
    #[serde(rename = "embed")]
    Embedded { image: usize, images: usize },
    #[serde(rename = "train")]
    Trained(Progress),
}

pub struct Session {
    device: RefCell<Device>,
    backend: RefCell<String>,
    on_webgpu: Cell<bool>,
    /// Why the models are gone (the WebGPU device was lost) until a backbone is loaded again.
    needs_reload: RefCell<Option<String>>,
    backbone: RefCell<Option<DinoV3>>,
    detector: RefCell<Option<Rc<Detector>>>,
    /// The loaded model as read: what learning starts from and calibration rewrites.
    bundle: RefCell<Option<Rc<Bundle>>>,
    /// When asked ([`Session::keep_embeddings`]): the embeddings of the images scored (of one
    /// backbone at one input size), so learning and scoring them again run only the head.
    kept: RefCell<Option<Rc<KeptGrids>>>,
    kept_size: Cell<(usize, usize)>,
    cancel: Cell<bool>,
    /// What `Detector.create` asked for; [`Session::precision`] says what the device gives.
    precision: Precision,
}

impl Session {
    /// Where to compute (`auto`: WebGPU on a hardware adapter, else the CPU; the one rule,
    /// [`auto_declines`]).
    pub async fn create(choice: DeviceChoice, precision: Precision) -> Result<Self, SessionError> {
        let cpu = |why: String| (Device::flex(), why, false);
        let (device, backend, on_webgpu) = match choice {
            DeviceChoice::Cpu => cpu("cpu".into()),
            DeviceChoice::Gpu => {
                let gpu = webgpu_device().await.map_err(SessionError::WebGpu)?;
                (gpu.device, gpu.adapter.label, true)
            }
            DeviceChoice::Auto => match webgpu_device().await {
                Ok(gpu) => match auto_declines(Ok(&gpu.adapter)) {
                    None => (gpu.device, gpu.adapter.label, true),
                    Some(why) => cpu(format!("cpu ({why})")),
                },
                Err(why) => cpu(format!("cpu ({why})")),
            },
        };
        Ok(Self {
            device: RefCell::new(device),
            backend: RefCell::new(backend),
            on_webgpu: Cell::new(on_webgpu),
            needs_reload: RefCell::new(None),
            backbone: RefCell::new(None),
            detector: RefCell::new(None),
            bundle: RefCell::new(None),
            kept: RefCell::new(None),
            kept_size: Cell::new((0, 0)),
            cancel: Cell::new(false),
            precision,
        })
    }

    /// Where it computes now (the CPU after a lost WebGPU device).
    pub fn device_kind(&self) -> DeviceKind {
        self.fall_back_if_lost();
        match self.on_webgpu.get() {
            true => DeviceKind::Gpu,
            false => DeviceKind::Cpu,
        }
    }

    pub fn backend(&self) -> String {
        self.fall_back_if_lost();
        self.backend.borrow().clone()
    }

    /// The precision the backbone computes in on this device, and why it is not the one asked
    /// for, if so.
    pub fn precision(&self) -> (Precision, Option<String>) {
        self.fall_back_if_lost();
        self.precision.on(&self.device.borrow())
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
            *self.bundle.borrow_mut() = None;
            self.forget_kept();
            *self.needs_reload.borrow_mut() = Some(reason);
        }
    }

    /// The error for calls that needed what the lost device held.
    fn check_device(&self) -> Result<(), SessionError> {
        self.fall_back_if_lost();
        match self.needs_reload.borrow().as_ref() {
            Some(reason) => Err(SessionError::DeviceLost(reason.clone())),
            None => Ok(()),
        }
    }

    fn backbone(&self) -> Result<DinoV3, SessionError> {
        self.check_device()?;
        self.backbone
            .borrow()
            .clone()
            .ok_or(SessionError::NoBackbone)
    }

    /// Replaces the backbone; a model loaded for another backbone is dropped with it.
    pub fn load_backbone(
        &self,
        bytes: &[u8],
        config_json: Option<&str>,
    ) -> Result<BackboneInfo, SessionError> {
        self.fall_back_if_lost();
        let device = self.device.borrow().clone();
        let mut loaded = load_backbone(bytes, config_json, &device)?;
        loaded.model = loaded.model.with_precision(self.precision).0;
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
            precision: loaded.model.precision(),
        };
        let keep = self
            .detector
            .borrow()
            .as_ref()
            .is_some_and(|d| d.backbone.fingerprint == loaded.model.fingerprint);
        if !keep {
            *self.detector.borrow_mut() = None;
            *self.bundle.borrow_mut() = None;
            self.forget_kept();
        }
        *self.backbone.borrow_mut() = Some(loaded.model);
        Ok(info)
    }

    pub fn load_model(&self, bytes: &[u8]) -> Result<ModelInfo, SessionError> {
        let backbone = self.backbone().map_err(|e| match e {
            SessionError::NoBackbone => SessionError::ModelBeforeBackbone,
            other => other,
        })?;
        let bundle = Bundle::read(bytes)?;
        let det = Detector::new(backbone, &bundle)?;
        let m = &det.meta;
        let (input_height, input_width) = m.input_size();
        let c = &m.calibration;
        let info = ModelInfo {
            method: m.describe(),
            input_height,
            input_width,
            threshold: c.threshold,
            display_low: c.display_low,
            display_high: c.display_high,
            train_images: m.train_images,
            spec: m.spec.clone(),
            rule: c.rule().to_string(),
            calibration_images: c.images,
            anomalous_images: c.anomalous_images,
            warning: c.warning.clone(),
            version: m.version(),
            history: m.history.clone(),
        };
        *self.detector.borrow_mut() = Some(Rc::new(det));
        *self.bundle.borrow_mut() = Some(Rc::new(bundle));
        Ok(info)
    }

    /// Normalised pixels `[3·h·w]` → (channel-major grid `[D, gh, gw]`, gh, gw).
    pub async fn embed_pixels(
        &self,
        pixels: Vec<f32>,
        h: usize,
        w: usize,
    ) -> Result<(Vec<f32>, usize, usize), SessionError> {
        let model = self.backbone()?;
        let input = model
            .pixels_tensor(pixels, h, w)
            .map_err(SessionError::Input)?;
        let out = model.forward(input).map_err(SessionError::Input)?;
        let (gh, gw) = out.grid;
        Ok((read_back(out.patch_grid(), "embeddings").await?, gh, gw))
    }

    /// The loaded model and the image (RGBA) it is asked about.
    fn detector_and_image(
        &self,
        rgba: &[u8],
        width: usize,
        height: usize,
    ) -> Result<(Rc<Detector>, RgbImage), SessionError> {
        self.check_device()?;
        let det = self
            .detector
            .borrow()
            .clone()
            .ok_or(SessionError::NoModel)?;
        let img = RgbImage::from_rgba8(rgba, width, height).map_err(SessionError::Input)?;
        let img = through_window(&det, img)?;
        Ok((det, img))
    }

    /// A picture file's bytes, decoded by the library (as the CLI decodes it), through the
    /// model's window.
    fn detector_and_file(&self, bytes: &[u8]) -> Result<(Rc<Detector>, RgbImage), SessionError> {
        let det = self.detector()?;
        let img = input::decode_picture(bytes).map_err(SessionError::Decode)?;
        let img = through_window(&det, img)?;
        Ok((det, img))
    }

    pub async fn score_file(&self, bytes: &[u8]) -> Result<AnomalyMap, SessionError> {
        let (det, img) = self.detector_and_file(bytes)?;
        Ok(det
            .score_with(
                &img,
                self.kept_at(det.input_size()).as_deref().map(|k| k as _),
            )
            .await?)
    }

    pub async fn explain_file(&self, bytes: &[u8]) -> Result<Option<Explanation>, SessionError> {
        let (det, img) = self.detector_and_file(bytes)?;
        Ok(det.explain(&img).await?)
    }

    pub async fn score(
        &self,
        rgba: &[u8],
        width: usize,
        height: usize,
    ) -> Result<AnomalyMap, SessionError> {
        let (det, img) = self.detector_and_image(rgba, width, height)?;
        Ok(det
            .score_with(
                &img,
                self.kept_at(det.input_size()).as_deref().map(|k| k as _),
            )
            .await?)
    }

    fn detector(&self) -> Result<Rc<Detector>, SessionError> {
        self.check_device()?;
        self.detector.borrow().clone().ok_or(SessionError::NoModel)
    }

    /// How the loaded model cuts `volume`, or why its window cannot read it.
    pub fn volume_slices(&self, volume: &Volume) -> Result<SliceInfo, SessionError> {
        let det = self.detector()?;
        let spec = &det.meta.spec;
        let slices = volume
            .slices(&spec.window, spec.plane)
            .map_err(SessionError::Input)?;
        let g = slices.geometry;
        Ok(SliceInfo {
            count: g.count,
            width: g.width,
            height: g.height,
            plane: spec.plane,
            window: spec.window.to_string(),
            warning: slices.warning,
            notes: volume.notes.clone(),
        })
    }

    /// Slice `n` through the model's window and plane, as the model sees it.
    pub fn slice_image(&self, volume: &Volume, n: usize) -> Result<RgbImage, SessionError> {
        let det = self.detector()?;
        let spec = &det.meta.spec;
        let slices = volume
            .slices(&spec.window, spec.plane)
            .map_err(SessionError::Input)?;
        if n >= slices.count() {
            return Err(SessionError::Input(format!(
                "slice {n} does not exist: the volume has {} {} slices (0 to {})",
                slices.count(),
                spec.plane,
                slices.count() - 1
            )));
        }
        Ok(slices.image(n))
    }

    /// What the AR head saw and expected for slice `n` (as [`Session::explain`] for a picture).
    pub async fn explain_slice(
        &self,
        volume: &Volume,
        n: usize,
    ) -> Result<Option<Explanation>, SessionError> {
        let img = self.slice_image(volume, n)?;
        let det = self.detector()?;
        Ok(det.explain(&img).await?)
    }

    /// Every slice scored (`on_slice(n, count)` after each), the worst one, and the anomaly map
    /// as a `.nii.gz` on the volume's grid with its affine.
    pub async fn score_volume(
        &self,
        volume: &Volume,
        mut on_slice: impl FnMut(usize, usize),
    ) -> Result<(VolumeMap, Vec<u8>), SessionError> {
        let det = self.detector()?;
        let count = volume.geometry(det.meta.spec.plane).count;
        let kept = self.kept_at(det.input_size());
        let mut v = det
            .score_volume_with(volume, kept.as_deref().map(|k| k as _), |n, _, _| {
                on_slice(n + 1, count);
                Ok(())
            })
            .await
            .map_err(|e| match e {
                DetectorError::Window(w) => SessionError::Input(w),
                other => other.into(),
            })?;
        let threshold = det.meta.calibration.threshold;
        let map = std::mem::take(&mut v.map);
        let description = crate::scores_csv::names::map_description(threshold);
        let nii = nifti::write_gz(&volume.with_data(map), &description);
        Ok((v, nii))
    }

    /// The embedding grid and the AR head's prediction of it, PCA-coloured (`None` for kNN).
    pub async fn explain(
        &self,
        rgba: &[u8],
        width: usize,
        height: usize,
    ) -> Result<Option<Explanation>, SessionError> {
        let (det, img) = self.detector_and_image(rgba, width, height)?;
        Ok(det.explain(&img).await?)
    }

    /// Fit as `spec` says on `count` normal inputs (`item(k)` hands input k over when its turn
    /// comes, so one file at a time is in wasm memory) and return the bundle bytes. The library's
    /// [`TrainingSet`] reads, windows, slices and embeds them (grids the session kept from
    /// scoring are not embedded again); `progress` sees every image embedded (a volume adds its
    /// slices to the total when it is read) and every training step.
    pub async fn fit(
        &self,
        count: usize,
        item: impl Fn(usize) -> Result<Item, String>,
        spec: &FitSpec,
        progress: impl FnMut(FitProgress),
    ) -> Result<Vec<u8>, SessionError> {
        self.fit_from(None, count, item, spec, progress).await
    }

    /// Go on learning from the loaded model on `count` normal inputs (the images a person marked
    /// normal, and what else of its normal set the caller has): its settings with `overrides` (spec
    /// keys) on top, from its weights; returns the new bundle (load it to use it).
    pub async fn learn(
        &self,
        count: usize,
        item: impl Fn(usize) -> Result<Item, String>,
        overrides: &serde_json::Map<String, serde_json::Value>,
        progress: impl FnMut(FitProgress),
    ) -> Result<Vec<u8>, SessionError> {
        let bundle = self.bundle.borrow().clone().ok_or(SessionError::NoModel)?;
        let spec = bundle
            .meta
            .spec
            .resumed(overrides)
            .map_err(DetectorError::from)?;
        self.fit_from(Some(bundle), count, item, &spec, progress)
            .await
    }

    async fn fit_from(
        &self,
        resume: Option<Rc<Bundle>>,
        count: usize,
        item: impl Fn(usize) -> Result<Item, String>,
        spec: &FitSpec,
        mut progress: impl FnMut(FitProgress),
    ) -> Result<Vec<u8>, SessionError> {
        let backbone = self.backbone()?;
        let kept = self.kept_at(spec.size.hw());
        let mut set = TrainingSet::new(&backbone, spec, Keep::Device)?;
        if let Some(k) = kept.as_deref() {
            set = set.with_cache(k);
        }
        if count == 0 {
            return Err(SessionError::NoImages);
        }
        self.cancel.set(false);
        let cancel = &self.cancel;
        let (mut total, mut done) = (count, 0);
        for k in 0..count {
            let Item {
                name,
                input: it,
                slices,
            } = item(k).map_err(SessionError::Input)?;
            let (input, print) = read_item(&name, it)?;
            let picture = matches!(input, Input::Picture(_));
            let each = |n: usize, slices: usize| {
                if n == 1 {
                    total += slices - 1;
                }
                done += 1;
                progress(FitProgress::Embedded {
                    image: done,
                    images: total,
                });
                match cancel.get() {
                    true => ControlFlow::Break(()),
                    false => ControlFlow::Continue(()),
                }
            };
            let added = match (input, slices) {
                (Input::Volume(v), Some(only)) => {
                    set.add_volume(&name, &print, &v, Some(&only), each).await
                }
                (input, _) => set.add(&name, &print, input, each).await,
            };
            match added {
                Ok(_) => {}
                Err(AddError::Cancelled) => return Err(SessionError::Cancelled),
                Err(e) => return Err(SessionError::Add(e)),
            }
            if picture {
                done += 1;
                progress(FitProgress::Embedded {
                    image: done,
                    images: total,
                });
            }
            if cancel.get() {
                return Err(SessionError::Cancelled);
            }
        }
        let fitted = set
            .fit(None, resume.as_deref(), |p| {
                progress(FitProgress::Trained(p));
                match cancel.get() {
                    true => ControlFlow::Break(()),
                    false => ControlFlow::Continue(()),
                }
            })
            .await;
        match fitted {
            Err(DetectorError::Train(crate::train::TrainError::Cancelled)) => {
                Err(SessionError::Cancelled)
            }
            other => Ok(other?),
        }
    }

    /// The loaded model with its threshold set again by `rule` on normal and anomalous inputs
    /// (scored with the kept grids where it has them): the new bundle and the rule's report.
    pub async fn calibrate(
        &self,
        normal: Vec<Item>,
        anomalous: Vec<Item>,
        rule: Rule,
    ) -> Result<(Vec<u8>, Choice), SessionError> {
        let det = self.detector()?;
        let bundle = self.bundle.borrow().clone().ok_or(SessionError::NoModel)?;
        let kept = self.kept_at(det.input_size());
        let mut set = CalibrationSet::default();
        for (items, anomalous) in [(normal, false), (anomalous, true)] {
            for Item {
                name,
                input,
                slices,
            } in items
            {
                let (input, print) = read_item(&name, input)?;
                let results = det
                    .results_of(&input, slices.as_deref(), kept.as_deref().map(|k| k as _))
                    .await
                    .map_err(|e| SessionError::Input(format!("{name}: {e}")))?;
                set.add(&print, results, anomalous, slices.is_some());
            }
        }
        Ok(calibrate(&bundle, &set, rule)?)
    }

    /// [`Session::fit`] on decoded RGBA pictures `(rgba, width, height)`.
    pub async fn fit_pictures(
        &self,
        images: &[(Vec<u8>, usize, usize)],
        spec: &FitSpec,
        progress: impl FnMut(FitProgress),
    ) -> Result<Vec<u8>, SessionError> {
        let item = |k: usize| {
            let (rgba, w, h) = &images[k];
            Ok(Item {
                name: format!("image {k}"),
                input: FitItem::Rgba(rgba.clone(), *w, *h),
                slices: None,
            })
        };
        self.fit(images.len(), item, spec, progress).await
    }

    /// Keep the embeddings of scored images, up to `budget` bytes (the oldest dropped first; 0
    /// keeps none): learning from them and scoring them again then run only the head. Off until
    /// asked: keeping costs memory and, on WebGPU, one read-back per image scored.
    pub fn keep_embeddings(&self, budget: usize) {
        *self.kept.borrow_mut() = (budget > 0).then(|| Rc::new(KeptGrids::new(budget)));
    }

    /// `(images, bytes)` of embeddings kept now.
    pub fn kept_embeddings(&self) -> (usize, usize) {
        self.kept().map_or((0, 0), |k| (k.len(), k.bytes()))
    }

    fn kept(&self) -> Option<Rc<KeptGrids>> {
        self.kept.borrow().clone()
    }

    /// The kept grids for work at input `size`: those of another size are of no use to it (a
    /// cache holds one size), so they are dropped.
    fn kept_at(&self, size: (usize, usize)) -> Option<Rc<KeptGrids>> {
        if self.kept_size.replace(size) != size {
            self.forget_kept();
        }
        self.kept()
    }

    fn forget_kept(&self) {
        if let Some(k) = self.kept() {
            k.clear();
        }
    }

    pub fn cancel(&self) {
        self.cancel.set(true);
    }
}
