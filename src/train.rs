//! Fitting the AR head on the embedding grids of normal images (natively and in the browser).
//!
//! Teacher forcing: the head sees the whole grid and must predict each embedding from the ones
//! before it; the loss is the MSE to the clean embeddings. With probability `noise_prob` per batch
//! the *input* gets feature noise `noise_scale · σ · N(0, 1)`, σ being each sample's per-channel
//! standard deviation over positions; the target stays clean.

use std::ops::ControlFlow;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::ar::{ArConfig, ArHead};
pub use crate::rng::Rng;

/// Optimisation settings; the defaults are the paper's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f32,
    pub seed: u64,
    pub noise_prob: f64,
    pub noise_scale: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            epochs: 40,
            batch_size: 64,
            learning_rate: 1e-3,
            weight_decay: 0.01,
            seed: 42,
            noise_prob: 0.2,
            noise_scale: 0.03,
        }
    }
}

/// Reported after every optimisation step.
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

/// Train a fresh head on `grids: [N, C, h, w]` (normal images' embeddings).
///
/// `progress` is called after every step; returning `ControlFlow::Break(())` cancels the run,
/// which then ends with an error saying so. Asynchronous because reading the loss back must be
/// on WebGPU.
pub async fn fit(
    grids: Tensor<4>,
    config: &ArConfig,
    options: &FitOptions,
    mut progress: impl FnMut(Progress) -> ControlFlow<()>,
) -> Result<ArHead, String> {
    let [n, c, _, _] = grids.dims();
    if n == 0 {
        return Err("no training images".into());
    }
    if c != config.channels {
        return Err(format!(
            "embeddings have {c} channels but the AR head expects {}",
            config.channels
        ));
    }
    if options.batch_size == 0 || options.epochs == 0 {
        return Err("epochs and batch size must be at least 1".into());
    }
    let device: Device = grids.device().autodiff();
    let grids = grids.autodiff();
    let mut rng = Rng::new(options.seed);
    let mut head = ArHead::new(config, &mut rng, &device)?;
    let mut optim = AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(1e-8)
        .with_weight_decay(options.weight_decay)
        .init();
    let steps = n.div_ceil(options.batch_size);
    let mut order: Vec<i64> = (0..n as i64).collect();
    for epoch in 1..=options.epochs {
        rng.shuffle(&mut order);
        for (step, batch) in order.chunks(options.batch_size).enumerate() {
            let idx = Tensor::<1, Int>::from_data(
                TensorData::new(batch.to_vec(), [batch.len()]),
                &device,
            );
            let target = grids.clone().select(0, idx);
            let input = if rng.next_f64() < options.noise_prob {
                // The device generator is seeded from ours right before use: runs repeat.
                device.seed(rng.next_u64());
                target.clone() + feature_noise(&target, options.noise_scale)
            } else {
                target.clone()
            };
            let loss = (head.forward(input) - target).powi_scalar(2).mean();
            let grads = GradientsParams::from_grads(loss.backward(), &head);
            head = optim.step(options.learning_rate, head, grads);
            let loss = loss
                .into_data_async()
                .await
                .map_err(|e| format!("reading the loss failed: {e:?}"))?
                .try_into_vec::<f32>()
                .map_err(|e| format!("{e:?}"))?[0];
            if !loss.is_finite() {
                return Err(format!(
                    "training diverged: loss is {loss} at epoch {epoch}, step {}",
                    step + 1
                ));
            }
            let p = Progress {
                epoch,
                epochs: options.epochs,
                step: step + 1,
                steps,
                loss,
            };
            if progress(p).is_break() {
                return Err("training cancelled".into());
            }
        }
    }
    Ok(head.valid())
}
