//! The state behind a JS `Detector` — the device, the backbone, the model — and the work, in Rust
//! types. A failed call leaves the session as it was.

use std::cell::{Cell, RefCell};
use std::ops::ControlFlow;
use std::rc::Rc;

use burn::tensor::{Device, Tensor};
use serde::Serialize;

use super::convert::VolumeFile;
use super::device::{lost_reason, webgpu_device};
use crate::backbone::{DinoV3, load_backbone};
use crate::bundle::{Bundle, BundleError};
use crate::compute::{Precision, auto_declines};
use crate::detector::{
    self, AnomalyMap, Detector, DetectorError, Explanation, VolumeMap, check_size,
};
use crate::preprocess::RgbImage;
use crate::readback::{ReadBackError, read_back};
use crate::spec::FitSpec;
use crate::train::Progress;
use crate::volume::{Plane, Volume, is_background, nifti};
use crate::weights::WeightsError;

/// Everything a call can fail with; the message is what the JS `Error` says.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SessionError {
    #[error("unknown backend `{0}`: use \"webgpu\", \"cpu\" or \"auto\"")]
    UnknownBackend(String),
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
    #[error("image {index}: {message}")]
    Image { index: usize, message: String },
    #[error("{0}")]
    Input(String),
    #[error("training cancelled")]
    Cancelled,
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Detector(#[from] DetectorError),
    #[error(transparent)]
    ReadBack(#[from] ReadBackError),
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
    cancel: Cell<bool>,
    /// What `Detector.create` asked for; [`Session::precision`] says what the device gives.
    precision: Precision,
}

impl Session {
    /// `"webgpu"`, `"cpu"` or `"auto"` (WebGPU on a hardware adapter, else the CPU).
    pub async fn create(kind: &str, precision: Precision) -> Result<Self, SessionError> {
        let cpu = |why: String| (Device::flex(), why, false);
        let (device, backend, on_webgpu) = match kind {
            "cpu" => cpu("cpu".into()),
            "webgpu" => {
                let gpu = webgpu_device().await.map_err(SessionError::WebGpu)?;
                (gpu.device, gpu.adapter.label, true)
            }
            "auto" => match webgpu_device().await {
                Ok(gpu) => match auto_declines(Ok(&gpu.adapter)) {
                    None => (gpu.device, gpu.adapter.label, true),
                    Some(why) => cpu(format!("cpu ({why})")),
                },
                Err(why) => cpu(format!("cpu ({why})")),
            },
            other => return Err(SessionError::UnknownBackend(other.into())),
        };
        Ok(Self {
            device: RefCell::new(device),
            backend: RefCell::new(backend),
            on_webgpu: Cell::new(on_webgpu),
            needs_reload: RefCell::new(None),
            backbone: RefCell::new(None),
            detector: RefCell::new(None),
            cancel: Cell::new(false),
            precision,
        })
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
        let info = ModelInfo {
            method: m.describe(),
            input_height,
            input_width,
            threshold: m.calibration.threshold,
            display_low: m.calibration.display_low,
            display_high: m.calibration.display_high,
            train_images: m.train_images,
            spec: m.spec.clone(),
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
        // Through the model's window, as it saw its training images.
        let img = det
            .meta
            .spec
            .window
            .picture(img)
            .map_err(SessionError::Input)?;
        Ok((det, img))
    }

    pub async fn score(
        &self,
        rgba: &[u8],
        width: usize,
        height: usize,
    ) -> Result<AnomalyMap, SessionError> {
        let (det, img) = self.detector_and_image(rgba, width, height)?;
        Ok(det.score(&img).await?)
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
        let mut v = det
            .score_volume(volume, |n, _, _| {
                on_slice(n + 1, count);
                Ok(())
            })
            .await
            .map_err(|e| match e {
                DetectorError::Window(w) => SessionError::Input(w),
                other => other.into(),
            })?;
        let threshold = det.meta.calibration.threshold;
        let description = format!("dino-ar anomaly map, threshold {threshold}");
        let map = std::mem::take(&mut v.map);
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

    /// Fit as `spec` says on normal images (RGBA, width, height) and return the bundle bytes;
    /// `progress` sees every image embedded and every training step.
    pub async fn fit(
        &self,
        images: &[(Vec<u8>, usize, usize)],
        spec: &FitSpec,
        progress: impl FnMut(FitProgress),
    ) -> Result<Vec<u8>, SessionError> {
        self.fit_with_volumes(images, &[], spec, progress).await
    }

    /// [`Session::fit`] on pictures and normal volumes (every slice through the spec's window
    /// and plane, background-only ones skipped when `skipEmpty` says so). Progress counts the
    /// pictures and then every slice; volumes are read one at a time.
    pub async fn fit_with_volumes(
        &self,
        images: &[(Vec<u8>, usize, usize)],
        volumes: &[VolumeFile],
        spec: &FitSpec,
        mut progress: impl FnMut(FitProgress),
    ) -> Result<Vec<u8>, SessionError> {
        spec.validate().map_err(DetectorError::from)?;
        let backbone = self.backbone()?;
        let size = check_size(&backbone, spec.size)?;
        if images.is_empty() && volumes.is_empty() {
            return Err(SessionError::NoImages);
        }
        self.cancel.set(false);
        // Grids stay on the device: nothing is read back between the backbone and the head.
        let mut grids = Vec::with_capacity(images.len());
        let mut sizes = Vec::with_capacity(images.len());
        // Which input each grid came from: a volume's slices stay together in the hold-out split.
        let mut sources = Vec::with_capacity(images.len());
        // Volumes add their slices to the total as they are read.
        let mut total = images.len();
        let mut done = 0;
        for (index, (rgba, width, height)) in images.iter().enumerate() {
            let img = RgbImage::from_rgba8(rgba, *width, *height)
                .and_then(|img| spec.window.picture(img))
                .map_err(|message| SessionError::Image { index, message })?;
            grids.push(detector::embed(&backbone, &img, size)?);
            sizes.push((*width, *height));
            sources.push(index);
            done += 1;
            progress(FitProgress::Embedded {
                image: done,
                images: total,
            });
            if self.cancel.get() {
                return Err(SessionError::Cancelled);
            }
        }
        for (v, file) in volumes.iter().enumerate() {
            let named =
                |message: String| SessionError::Input(format!("{}: {message}", file.name()));
            let volume = file.read().map_err(named)?;
            let slices = volume.slices(&spec.window, spec.plane).map_err(named)?;
            total += slices.count();
            for n in 0..slices.count() {
                let img = slices.image(n);
                done += 1;
                if !(spec.skip_empty > 0.0 && is_background(&img, spec.skip_empty)) {
                    grids.push(detector::embed(&backbone, &img, size)?);
                    sizes.push((img.width, img.height));
                    sources.push(images.len() + v);
                }
                progress(FitProgress::Embedded {
                    image: done,
                    images: total,
                });
                if self.cancel.get() {
                    return Err(SessionError::Cancelled);
                }
            }
        }
        if grids.is_empty() {
            return Err(SessionError::Input(
                "every slice of the volumes is background only (skipEmpty): nothing to fit on"
                    .into(),
            ));
        }
        let cancel = &self.cancel;
        let [_, d, gh, gw] = grids[0].dims();
        detector::check_training_grids(&backbone.device(), grids.len(), (d, gh, gw))?;
        let grids = Tensor::cat(grids, 0);
        let fitted = detector::fit_model_validated(
            grids.into(),
            &sizes,
            Some(&sources),
            &backbone,
            spec,
            None,
            |p| {
                progress(FitProgress::Trained(p));
                if cancel.get() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )
        .await;
        match fitted {
            Err(DetectorError::Train(crate::train::TrainError::Cancelled)) => {
                Err(SessionError::Cancelled)
            }
            other => Ok(other?),
        }
    }

    pub fn cancel(&self) {
        self.cancel.set(true);
    }
}
