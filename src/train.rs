//! Fitting the AR head on the embedding grids of normal images (natively and in the browser).
//!
//! Teacher forcing: the head sees the whole grid and must predict each embedding from the ones
//! before it; the loss is the MSE to the clean embeddings. With probability `noise_prob` per batch
//! the *input* gets feature noise `noise_scale · σ · N(0, 1)`, σ being each sample's per-channel
//! standard deviation over positions; the target stays clean.

use std::ops::ControlFlow;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Tensor};
use serde::{Deserialize, Serialize};

use crate::ar::ArHead;
use crate::grids::Grids;
use crate::infra::readback::{ReadBackError, read_back};
pub use crate::infra::rng::Rng;
use crate::metrics::average_precision;
use crate::score::{patch_scores, upsample_bilinear};
use crate::spec::{FitSpec, SpecError};
use crate::weights::{TensorFile, WeightsError};

/// How a model goes on learning from the images a person marked normal (the page's *Learn from
/// my marks*, `learnDefaults()`), from its own weights: a few passes in small batches (more steps
/// for the same work), so that 8 marked images with as many of its normal set are learned in
/// seconds on a CPU (BENCHMARKS §8).
pub const LEARN_EPOCHS: usize = 3;
/// See [`LEARN_EPOCHS`].
pub const LEARN_BATCH_SIZE: usize = 8;

/// Why training stopped without a head.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrainError {
    #[error("no training images")]
    NoImages,
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Head(#[from] WeightsError),
    #[error("training diverged: loss is {loss} at epoch {epoch}, step {step}")]
    Diverged {
        loss: f32,
        epoch: usize,
        step: usize,
    },
    #[error("training cancelled")]
    Cancelled,
    #[error(transparent)]
    ReadBack(#[from] ReadBackError),
    #[error("validation: {0}")]
    Validation(String),
}

/// Validation images with pixel ground truth that pick the epoch to keep, as the official code
/// keeps the checkpoint with the best validation AUPR (pixel average precision).
pub struct Validation {
    /// `[M, C, h, w]`, embedded like the training grids, on the same device.
    pub grids: Tensor<4>,
    /// Per image: its mask at `width × height` (all false for a normal image).
    pub masks: Vec<(Vec<bool>, usize, usize)>,
}

/// The epoch a validation set chose, with its pixel AP (stored in the bundle).
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Chosen {
    pub epoch: usize,
    pub validation_pixel_ap: f64,
    /// Validation images it was chosen on.
    pub images: usize,
}

impl Validation {
    /// Pixel AP of `head`'s squared error maps (upsampled to each mask's size) over every
    /// validation pixel.
    pub async fn pixel_ap(&self, head: &ArHead) -> Result<f64, TrainError> {
        let mut scores = Vec::new();
        let mut labels = Vec::new();
        for (i, (mask, width, height)) in self.masks.iter().enumerate() {
            let grid = self.grids.clone().narrow(0, i, 1);
            let [_, _, gh, gw] = grid.dims();
            let s = patch_scores(head.forward(grid.clone()), grid);
            let s = read_back(s, "validation patch scores").await?;
            scores.extend(upsample_bilinear(&s, gh, gw, *height, *width));
            labels.extend_from_slice(mask);
        }
        average_precision(&scores, &labels).map_err(|e| TrainError::Validation(e.to_string()))
    }
}

/// Reported after every optimisation step.
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Progress {
    /// 1-based.
    pub epoch: usize,
    pub epochs: usize,
    /// 1-based within the epoch.
    pub step: usize,
    pub steps: usize,
    pub loss: f32,
}

/// Feature noise: `scale · σ · N(0, 1)` with σ the per-sample, per-channel std over positions.
pub fn feature_noise(x: &Tensor<4>, scale: f64) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let sigma = x
        .clone()
        .reshape([b, c, h * w])
        .var(2)
        .sqrt()
        .clamp_min(1e-6)
        .reshape([b, c, 1, 1]);
    Tensor::random([b, c, h, w], Distribution::Normal(0.0, 1.0), &x.device()) * sigma * scale
}

/// Train a fresh head (shaped by `spec`) on `grids: [N, C, h, w]`, normal images' embeddings
/// (a tensor, or [`Grids`] kept on the host and uploaded a batch at a time).
///
/// `progress` is called after every step; returning `ControlFlow::Break(())` cancels the run,
/// which then ends with [`TrainError::Cancelled`]. Asynchronous because reading the loss back must
/// be on WebGPU.
pub async fn fit(
    grids: impl Into<Grids>,
    spec: &FitSpec,
    progress: impl FnMut(Progress) -> ControlFlow<()>,
) -> Result<ArHead, TrainError> {
    Ok(fit_validated(grids.into(), spec, None, None, progress)
        .await?
        .0)
}

/// [`fit`], keeping the epoch whose head scores best on `validation` (pixel AP) instead of the
/// last one when a validation set is given; returns the head and, then, the epoch chosen.
///
/// With `start` (a model's tensors, shaped as `spec` says) the head is fine-tuned from those
/// weights instead of initialised: the first step's loss is that model's loss on its batch. The
/// optimiser starts afresh (its moments are not stored in a model).
pub async fn fit_validated(
    grids: Grids,
    spec: &FitSpec,
    validation: Option<&Validation>,
    start: Option<&TensorFile>,
    mut progress: impl FnMut(Progress) -> ControlFlow<()>,
) -> Result<(ArHead, Option<Chosen>), TrainError> {
    spec.validate()?;
    if let Some(v) = validation
        && (v.masks.is_empty() || !v.masks.iter().any(|m| m.0.iter().any(|&b| b)))
    {
        return Err(TrainError::Validation(
            "the validation images need at least one anomalous pixel in their masks".into(),
        ));
    }
    let mut best: Option<(Chosen, ArHead)> = None;
    let [n, c, _, _] = grids.dims();
    if n == 0 {
        return Err(TrainError::NoImages);
    }
    let config = spec.ar_config(c);
    let device: Device = grids.device().autodiff();
    let mut rng = Rng::new(spec.seed);
    let mut head = match start {
        Some(tensors) => ArHead::from_file(tensors, &config, &device)?,
        None => ArHead::new(&config, &mut rng, &device)?,
    };
    let mut optim = AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(1e-8)
        .with_weight_decay(spec.weight_decay as f32)
        .init();
    let steps = n.div_ceil(spec.batch_size);
    let mut order: Vec<usize> = (0..n).collect();
    for epoch in 1..=spec.epochs {
        rng.shuffle(&mut order);
        for (step, batch) in order.chunks(spec.batch_size).enumerate() {
            let target = grids.rows(batch).autodiff();
            let input = if rng.next_f64() < spec.noise_prob {
                // The device generator is seeded from ours right before use: runs repeat.
                device.seed(rng.next_u64());
                target.clone() + feature_noise(&target, spec.noise_scale)
            } else {
                target.clone()
            };
            let loss = (head.forward(input) - target).powi_scalar(2).mean();
            let grads = GradientsParams::from_grads(loss.backward(), &head);
            head = optim.step(spec.learning_rate, head, grads);
            let loss = read_back(loss, "training loss").await?[0];
            if !loss.is_finite() {
                return Err(TrainError::Diverged {
                    loss,
                    epoch,
                    step: step + 1,
                });
            }
            let p = Progress {
                epoch,
                epochs: spec.epochs,
                step: step + 1,
                steps,
                loss,
            };
            if progress(p).is_break() {
                return Err(TrainError::Cancelled);
            }
        }
        if let Some(v) = validation {
            let candidate = head.valid();
            let ap = v.pixel_ap(&candidate).await?;
            if best.as_ref().is_none_or(|b| ap > b.0.validation_pixel_ap) {
                let chosen = Chosen {
                    epoch,
                    validation_pixel_ap: ap,
                    images: v.masks.len(),
                };
                best = Some((chosen, candidate));
            }
        }
    }
    Ok(match best {
        Some((chosen, head)) => (head, Some(chosen)),
        None => (head.valid(), None),
    })
}
