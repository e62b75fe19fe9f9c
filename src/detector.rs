//! Backbone + scorer (AR head or kNN bank) + calibration: the one object both front ends drive.
//!
//! image → [`Detector::embed`] → grid → patch scores → map upsampled to the image → image score
//! and verdict. [`fit_model`] builds the scorer and its calibration from normal images' grids.
//! Every read-back is asynchronous so the same code runs on WebGPU in the browser.

use std::ops::ControlFlow;

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::ar::{ArConfig, ArHead};
use crate::backbone::DinoV3;
use crate::bundle::{Bundle, BundleError, BundleMeta, FORMAT_VERSION, Method};
use crate::knn::MemoryBank;
use crate::preprocess::RgbImage;
use crate::rng::Rng;
use crate::score::{Calibration, ImageScore, image_score, patch_scores, upsample_bilinear};
use crate::train::{FitOptions, Progress, fit};

/// The part that turns an embedding grid into patch scores.
pub enum Scorer {
    Ar(ArHead),
    Knn(Box<MemoryBank>),
}

impl Scorer {
    /// `[B, D, h, w]` → `[B, h, w]`.
    pub fn patch_scores(&self, grid: Tensor<4>) -> Tensor<3> {
        match self {
            Scorer::Ar(head) => patch_scores(head.forward(grid.clone()), grid),
            Scorer::Knn(bank) => bank.patch_scores(grid),
        }
    }

    async fn export(&self) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>, String> {
        match self {
            Scorer::Ar(head) => head.export().await,
            Scorer::Knn(bank) => Ok(vec![bank.export().await?]),
        }
    }
}

/// One image's result.
#[derive(Debug, Clone)]
pub struct AnomalyMap {
    /// Pixel scores at the image's own size, row-major.
    pub map: Vec<f32>,
    pub width: usize,
    pub height: usize,
    /// Patch scores on the embedding grid, row-major.
    pub grid: Vec<f32>,
    pub grid_h: usize,
    pub grid_w: usize,
    pub score: ImageScore,
    pub threshold: f32,
    pub anomalous: bool,
}

async fn read(t: Tensor<3>) -> Result<Vec<f32>, String> {
    let data = t
        .into_data_async()
        .await
        .map_err(|e| format!("reading scores back failed: {e:?}"))?;
    data.try_into_vec::<f32>().map_err(|e| format!("{e:?}"))
}

/// Patch scores of one grid `[1, D, h, w]`, upsampled to `width × height`.
async fn map_of(
    scorer: &Scorer,
    grid: Tensor<4>,
    width: usize,
    height: usize,
) -> Result<(Vec<f32>, Vec<f32>), String> {
    let [_, _, gh, gw] = grid.dims();
    let patch = read(scorer.patch_scores(grid)).await?;
    let map = upsample_bilinear(&patch, gh, gw, height, width);
    Ok((patch, map))
}

/// Embed one image at the model size: `[1, D, h, w]`.
pub fn embed(
    backbone: &DinoV3,
    image: &RgbImage,
    (h, w): (usize, usize),
) -> Result<Tensor<4>, String> {
    let pixels = backbone.pixels_tensor(image.to_model_input(h, w), h, w)?;
    Ok(backbone.forward(pixels)?.patch_grid())
}

pub struct Detector {
    pub backbone: DinoV3,
    pub scorer: Scorer,
    pub meta: BundleMeta,
}

impl Detector {
    /// Pair a backbone with a bundle fit on it.
    pub fn new(backbone: DinoV3, bundle: &Bundle) -> Result<Self, BundleError> {
        bundle.check_backbone(&backbone.fingerprint)?;
        let meta = bundle.meta.clone();
        let dim = backbone.config.hidden_size;
        if meta.embedding_dim != dim {
            return Err(BundleError::NotABundle(format!(
                "the model expects {}-d embeddings, the backbone gives {dim}",
                meta.embedding_dim
            )));
        }
        let device = backbone.device();
        let scorer = match &meta.method {
            Method::Ar { config, .. } => {
                Scorer::Ar(ArHead::from_file(&bundle.tensors, config, &device)?)
            }
            Method::Knn { .. } => Scorer::Knn(Box::new(MemoryBank::from_file(
                &bundle.tensors,
                dim,
                &device,
            )?)),
        };
        Ok(Self {
            backbone,
            scorer,
            meta,
        })
    }

    pub fn input_size(&self) -> (usize, usize) {
        self.meta.input_size
    }

    /// Anomaly map, image score and verdict for one image.
    pub async fn score(&self, image: &RgbImage) -> Result<AnomalyMap, String> {
        let grid = embed(&self.backbone, image, self.meta.input_size)?;
        let [_, _, grid_h, grid_w] = grid.dims();
        let (grid_scores, map) = map_of(&self.scorer, grid, image.width, image.height).await?;
        let score = image_score(&map);
        let threshold = self.meta.calibration.threshold;
        Ok(AnomalyMap {
            map,
            width: image.width,
            height: image.height,
            grid: grid_scores,
            grid_h,
            grid_w,
            score,
            threshold,
            anomalous: score.max > threshold,
        })
    }
}

/// One normal image's embedding, with the size its map is calibrated at.
pub struct NormalGrid {
    /// `[D, h, w]` values, channel-major.
    pub grid: Vec<f32>,
    pub width: usize,
    pub height: usize,
}

impl NormalGrid {
    /// Upload host grids (all of one grid size) as `[N, D, h, w]`, with the images' sizes.
    pub fn stack(
        normals: &[NormalGrid],
        (d, gh, gw): (usize, usize, usize),
        device: &Device,
    ) -> Result<(Tensor<4>, Vec<(usize, usize)>), String> {
        let mut values = Vec::with_capacity(normals.len() * d * gh * gw);
        for (k, g) in normals.iter().enumerate() {
            if g.grid.len() != d * gh * gw {
                return Err(format!(
                    "grid {k} has {} values, expected {d}x{gh}x{gw}",
                    g.grid.len()
                ));
            }
            values.extend_from_slice(&g.grid);
        }
        let sizes = normals.iter().map(|g| (g.width, g.height)).collect();
        Ok((
            Tensor::from_data(TensorData::new(values, [normals.len(), d, gh, gw]), device),
            sizes,
        ))
    }

    /// Embed one normal image and bring its grid to the host (for caching and stacking).
    pub async fn embed(
        backbone: &DinoV3,
        image: &RgbImage,
        size: (usize, usize),
    ) -> Result<(Self, (usize, usize)), String> {
        let grid = embed(backbone, image, size)?;
        let [_, _, gh, gw] = grid.dims();
        let values = grid
            .into_data_async()
            .await
            .map_err(|e| format!("reading the embeddings back failed: {e:?}"))?;
        let grid = values.try_into_vec::<f32>().map_err(|e| format!("{e:?}"))?;
        Ok((
            Self {
                grid,
                width: image.width,
                height: image.height,
            },
            (gh, gw),
        ))
    }
}

/// What to fit: the AR head (with its config and options) or the kNN bank.
pub enum FitMethod {
    Ar {
        config: ArConfig,
        options: FitOptions,
    },
    Knn,
}

/// Fit a scorer on the normal images' grids `[N, D, h, w]` (on the backbone's device; nothing is
/// read back), keeping a hold-out share out of training for calibration, and return the bundle
/// bytes. `image_sizes[k]` is image k's (width, height): calibration maps are at that size.
#[allow(clippy::too_many_arguments)]
pub async fn fit_model(
    grids: Tensor<4>,
    image_sizes: &[(usize, usize)],
    input_size: (usize, usize),
    backbone: &DinoV3,
    method: FitMethod,
    holdout: f64,
    quantile: f64,
    seed: u64,
    progress: impl FnMut(Progress) -> ControlFlow<()>,
) -> Result<Vec<u8>, String> {
    let n = grids.dims()[0];
    if image_sizes.len() != n {
        return Err(format!("{n} grids but {} image sizes", image_sizes.len()));
    }
    if n < 2 {
        return Err(format!(
            "need at least 2 normal images (one or more are held out for calibration), got {n}"
        ));
    }
    if !(0.0..1.0).contains(&holdout) {
        return Err(format!("hold-out share must be in [0, 1), got {holdout}"));
    }
    let d = backbone.config.hidden_size;
    let held = ((n as f64 * holdout).round() as usize).clamp(1, n - 1);
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(seed ^ 0x5eed).shuffle(&mut order);
    let (calib_idx, train_idx) = order.split_at(held);

    let device: Device = grids.device();
    let rows = TensorData::new(
        train_idx.iter().map(|&i| i as i64).collect::<Vec<_>>(),
        [train_idx.len()],
    );
    let train = grids
        .clone()
        .select(0, Tensor::<1, Int>::from_data(rows, &device));
    let (scorer, method_meta) = match method {
        FitMethod::Ar { config, options } => {
            let head = fit(train, &config, &options, progress).await?;
            (
                Scorer::Ar(head),
                Method::Ar {
                    config,
                    training: options,
                },
            )
        }
        FitMethod::Knn => {
            let bank = MemoryBank::from_grids(train);
            let bank_size = bank.len();
            (Scorer::Knn(Box::new(bank)), Method::Knn { bank_size })
        }
    };

    let mut maps = Vec::with_capacity(held);
    for &i in calib_idx {
        let (width, height) = image_sizes[i];
        let (_, map) = map_of(&scorer, grids.clone().narrow(0, i, 1), width, height).await?;
        maps.push(map);
    }
    let calibration = Calibration::fit(&maps, quantile)?;
    let meta = BundleMeta {
        format_version: FORMAT_VERSION,
        method: method_meta,
        input_size,
        calibration,
        backbone_fingerprint: backbone.fingerprint.clone(),
        embedding_dim: d,
        train_images: train_idx.len(),
        created_by: format!("dino-ar {}", env!("CARGO_PKG_VERSION")),
    };
    let tensors = scorer.export().await?;
    Bundle::write(&meta, &tensors).map_err(|e| e.to_string())
}
