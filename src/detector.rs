//! Backbone + scorer (AR head or kNN bank) + calibration: the one object both front ends drive.
//!
//! image → [`Detector::embed`] → grid → patch scores → map upsampled to the image → image score
//! and verdict. [`fit_model`] builds the scorer and its calibration from normal images' grids.
//! Every read-back is asynchronous so the same code runs on WebGPU in the browser.

use std::ops::ControlFlow;

use burn::tensor::{Device, Tensor};

use crate::ar::ArHead;
use crate::backbone::DinoV3;
use crate::bundle::{Bundle, BundleError, BundleMeta, FORMAT_VERSION, Step, Version};
use crate::grids::Grids;
use crate::infra::readback::{ReadBackError, read_back};
use crate::infra::rng::Rng;
use crate::input::Input;
use crate::knn::MemoryBank;
use crate::preprocess::RgbImage;
use crate::score::{
    Calibration, CalibrationError, ImageScore, PositionStats, image_score, is_anomalous,
    patch_scores, upsample_bilinear,
};
use crate::spec::{FitSpec, InputSize, Method, PositionNorm, SpecError};
use crate::threshold::{Choice, Rule};
use crate::train::{Progress, TrainError, Validation, fit_validated};
use crate::training_set::GridCache;
use crate::volume::{SliceWriter, Volume};

/// Everything that can stop scoring or fitting; each message names what was wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DetectorError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Calibration(#[from] CalibrationError),
    #[error(transparent)]
    ReadBack(#[from] ReadBackError),
    /// The backbone refused the input (a size it cannot take).
    #[error("{0}")]
    Backbone(String),
    /// The work does not fit the device (a buffer over the GPU's limit); says what to lower.
    #[error("{0}")]
    Device(String),
    /// The model's window cannot read this input (a CT window on a picture, …).
    #[error("{0}")]
    Window(String),
    /// What the caller did with a result failed (writing an overlay, …).
    #[error("{0}")]
    Output(String),
    #[error("nothing to fit on: {}", match background {
        0 => format!("none of the {files} files is a readable image or volume for the window"),
        n => format!("the {n} slices read are background only (see the skip-empty level)"),
    })]
    EmptyTrainingSet { files: usize, background: usize },
    #[error("need at least 2 normal images (one or more are held out for calibration), got {0}")]
    TooFewImages(usize),
    #[error("{grids} embedding grids but {sizes} image sizes")]
    SizeCount { grids: usize, sizes: usize },
    #[error("embedding grid {index} has {found} values, expected {expected}")]
    GridSize {
        index: usize,
        found: usize,
        expected: String,
    },
}

/// The part that turns an embedding grid into patch scores.
pub enum Scorer {
    /// The AR head's squared error, standardised per position when the spec says so.
    Ar(Box<ArHead>, Option<Box<PositionStats>>),
    Knn(Box<MemoryBank>),
}

impl Scorer {
    /// `[B, D, h, w]` → `[B, h, w]`.
    pub fn patch_scores(&self, grid: Tensor<4>) -> Tensor<3> {
        match self {
            Scorer::Ar(head, position) => {
                let s = patch_scores(head.forward(grid.clone()), grid);
                match position {
                    Some(p) => p.apply(s),
                    None => s,
                }
            }
            Scorer::Knn(bank) => bank.patch_scores(grid),
        }
    }

    async fn export(&self) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>, ReadBackError> {
        match self {
            Scorer::Ar(head, position) => {
                let mut tensors = head.export().await?;
                if let Some(p) = position {
                    tensors.extend(p.export().await?);
                }
                Ok(tensors)
            }
            Scorer::Knn(bank) => Ok(vec![bank.export().await?]),
        }
    }
}

/// The patch scores of the training images `[N, D, h, w]` under the head, per position: batches
/// of 64 bound the memory.
async fn position_stats(head: &ArHead, train: &Grids) -> Result<PositionStats, ReadBackError> {
    let [n, _, h, w] = train.dims();
    let mut scores = Vec::with_capacity(n * h * w);
    for start in (0..n).step_by(64) {
        let rows: Vec<usize> = (start..n.min(start + 64)).collect();
        let batch = train.rows(&rows);
        let s = patch_scores(head.forward(batch.clone()), batch);
        scores.extend(read_back(s, "training patch scores").await?);
    }
    Ok(PositionStats::from_scores(&scores, (h, w), &train.device()))
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

/// Patch scores of one grid `[1, D, h, w]`, upsampled to `width × height`.
async fn map_of(
    scorer: &Scorer,
    grid: Tensor<4>,
    width: usize,
    height: usize,
) -> Result<(Vec<f32>, Vec<f32>), DetectorError> {
    let [_, _, gh, gw] = grid.dims();
    let patch = read_back(scorer.patch_scores(grid), "patch scores").await?;
    let map = upsample_bilinear(&patch, gh, gw, height, width);
    Ok((patch, map))
}

/// Embed one image at the model size: `[1, D, h, w]`.
pub fn embed(
    backbone: &DinoV3,
    image: &RgbImage,
    (h, w): (usize, usize),
) -> Result<Tensor<4>, DetectorError> {
    let pixels = backbone
        .pixels_tensor(image.to_model_input(h, w), h, w)
        .map_err(DetectorError::Backbone)?;
    Ok(backbone
        .forward(pixels)
        .map_err(DetectorError::Backbone)?
        .patch_grid())
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
        let scorer = match meta.method() {
            Method::Ar => {
                let head = ArHead::from_file(&bundle.tensors, &meta.ar_config(), &device)?;
                let position = match meta.spec.position_norm {
                    PositionNorm::None => None,
                    PositionNorm::Standardise => {
                        let (h, w) = meta.input_size();
                        let grid = backbone
                            .config
                            .grid(h, w)
                            .map_err(BundleError::NotABundle)?;
                        Some(Box::new(PositionStats::from_file(
                            &bundle.tensors,
                            grid,
                            &device,
                        )?))
                    }
                };
                // The head computes in the backbone's precision: an f16 backbone means the
                // adapter has f16 and the user asked for it.
                let head = head.with_dtype(backbone.precision().float_dtype());
                Scorer::Ar(Box::new(head), position)
            }
            Method::Knn => Scorer::Knn(Box::new(MemoryBank::from_file(
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
        self.meta.input_size()
    }

    /// Anomaly map, image score and verdict for one image.
    pub async fn score(&self, image: &RgbImage) -> Result<AnomalyMap, DetectorError> {
        self.score_with(image, None).await
    }

    /// [`Detector::score`], taking the image's grid from `kept` when it holds it (only the head
    /// runs then) and keeping it there otherwise.
    pub async fn score_with(
        &self,
        image: &RgbImage,
        kept: Option<&dyn GridCache>,
    ) -> Result<AnomalyMap, DetectorError> {
        let d = self.backbone.config.hidden_size;
        let grid = match kept.and_then(|k| k.get(image)) {
            Some((values, (h, w))) if values.len() == d * h * w => Tensor::from_data(
                burn::tensor::TensorData::new(values, [1, d, h, w]),
                &self.backbone.device(),
            ),
            _ => {
                let grid = embed(&self.backbone, image, self.input_size())?;
                if let Some(k) = kept {
                    let [_, _, h, w] = grid.dims();
                    k.put(
                        image,
                        &read_back(grid.clone(), "embeddings").await?,
                        [d, h, w],
                    );
                }
                grid
            }
        };
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
            anomalous: is_anomalous(score.max, threshold),
        })
    }
}

impl Detector {
    /// The results for what a file holds, through the model's window: a picture's one result
    /// (slice `None`), or a volume's slices' in the model's plane (`only` those, when given).
    /// For calibration: the maps of normal images and the scores of anomalous ones.
    pub async fn results_of(
        &self,
        input: &Input,
        only: Option<&[usize]>,
        kept: Option<&dyn GridCache>,
    ) -> Result<Vec<(Option<usize>, AnomalyMap)>, DetectorError> {
        let spec = &self.meta.spec;
        match input {
            Input::Picture(img) => {
                let img = spec
                    .window
                    .picture(img.clone())
                    .map_err(DetectorError::Window)?;
                Ok(vec![(None, self.score_with(&img, kept).await?)])
            }
            Input::Volume(v) => {
                let slices = v
                    .slices(&spec.window, spec.plane)
                    .map_err(DetectorError::Window)?;
                let count = slices.count();
                let wanted: Vec<usize> = match only {
                    Some(o) => o.to_vec(),
                    None => (0..count).collect(),
                };
                let mut out = Vec::with_capacity(wanted.len());
                for n in wanted {
                    if n >= count {
                        return Err(DetectorError::Window(format!(
                            "slice {n} does not exist: the volume has {count} {} slices",
                            spec.plane
                        )));
                    }
                    out.push((Some(n), self.score_with(&slices.image(n), kept).await?));
                }
                Ok(out)
            }
        }
    }
}

/// A volume's result: each slice's (in the model's plane), and the volume's — its worst slice.
#[derive(Debug, Clone)]
pub struct VolumeMap {
    /// Per slice: scores and patch grid (`map` is emptied: the maps are in `map` below).
    pub slices: Vec<AnomalyMap>,
    /// The slice with the highest score; the volume's score and verdict are that slice's.
    pub worst: usize,
    /// The anomaly map on the volume's own voxel grid (for [`crate::volume::nifti::write_gz`]
    /// with the volume's affine, through [`Volume::with_data`]).
    pub map: Vec<f32>,
    /// The window read this volume against its kind (a CT window on MR).
    pub warning: Option<String>,
}

impl VolumeMap {
    pub fn worst(&self) -> &AnomalyMap {
        &self.slices[self.worst]
    }
}

impl Detector {
    /// Score every slice of `volume` through the model's window and plane. `on_slice(n, image,
    /// result)` sees each slice's windowed image and full result as it is done (for overlays,
    /// progress, rows); an error it returns stops the run.
    pub async fn score_volume(
        &self,
        volume: &Volume,
        on_slice: impl FnMut(usize, &RgbImage, &AnomalyMap) -> Result<(), String>,
    ) -> Result<VolumeMap, DetectorError> {
        self.score_volume_with(volume, None, on_slice).await
    }

    /// [`Detector::score_volume`] with the slices' grids from and into `kept`
    /// ([`Detector::score_with`]).
    pub async fn score_volume_with(
        &self,
        volume: &Volume,
        kept: Option<&dyn GridCache>,
        mut on_slice: impl FnMut(usize, &RgbImage, &AnomalyMap) -> Result<(), String>,
    ) -> Result<VolumeMap, DetectorError> {
        let spec = &self.meta.spec;
        let slices = volume
            .slices(&spec.window, spec.plane)
            .map_err(DetectorError::Window)?;
        let mut map = SliceWriter::new(slices.geometry);
        let mut results = Vec::with_capacity(slices.count());
        let mut worst = 0;
        for n in 0..slices.count() {
            let image = slices.image(n);
            let mut r = self.score_with(&image, kept).await?;
            on_slice(n, &image, &r).map_err(DetectorError::Output)?;
            map.put(n, &r.map);
            r.map = Vec::new();
            if r.score.max
                > results
                    .get(worst)
                    .map_or(f32::MIN, |w: &AnomalyMap| w.score.max)
            {
                worst = n;
            }
            results.push(r);
        }
        Ok(VolumeMap {
            slices: results,
            worst,
            map: map.into_data(),
            warning: slices.warning,
        })
    }
}

/// What the AR head saw and what it expected for one image: the embedding grid and the head's
/// prediction of it, coloured alike by the grid's first three principal components (RGBA, one
/// pixel per patch, row-major).
#[derive(Debug, Clone)]
pub struct Explanation {
    pub grid_h: usize,
    pub grid_w: usize,
    pub actual: Vec<u8>,
    pub predicted: Vec<u8>,
}

impl Detector {
    /// The explain view's grids for `image` ([`crate::explain::pca_colours`]); `None` for the
    /// kNN baseline, which predicts nothing.
    pub async fn explain(&self, image: &RgbImage) -> Result<Option<Explanation>, DetectorError> {
        let Scorer::Ar(head, _) = &self.scorer else {
            return Ok(None);
        };
        let grid = embed(&self.backbone, image, self.input_size())?;
        let [_, c, grid_h, grid_w] = grid.dims();
        let predicted = read_back(head.forward(grid.clone()), "prediction").await?;
        let actual = read_back(grid, "embeddings").await?;
        let (actual, predicted) =
            crate::explain::pca_colours(&actual, &predicted, c, grid_h * grid_w);
        Ok(Some(Explanation {
            grid_h,
            grid_w,
            actual,
            predicted,
        }))
    }
}

/// `count` training grids of `[d, h, w]` go to the device as one tensor: refuse them, saying what
/// to lower, when that is more than the device takes in one buffer. (For grids that come from the
/// host, [`NormalGrid::stack`] keeps such a set there instead and fitting uploads it by batches;
/// the page embeds on the device, so its sets must fit.)
pub fn check_training_grids(
    device: &Device,
    count: usize,
    (d, h, w): (usize, usize, usize),
) -> Result<(), DetectorError> {
    grids_fit(
        device,
        [count, d, h, w],
        &format!("the {count} training grids"),
        "train on fewer images or at a smaller size",
    )
}

/// Why a kNN bank cannot be made of `train`, grids kept on the host for being too large for one
/// buffer of the device.
fn bank_too_large(train: &Grids) -> DetectorError {
    let what = format!("the kNN bank of {} training grids", train.dims()[0]);
    let advice =
        "train on fewer images or at a smaller size, or fit the AR head (it trains by batches)";
    grids_fit(&train.device(), train.dims(), &what, advice)
        .err()
        .unwrap_or_else(|| DetectorError::Device(format!("{what} does not fit this device")))
}

/// `Err` with `advice` when f32 values of `dims` (`what`) do not fit in one buffer of `device`.
fn grids_fit(
    device: &Device,
    dims: [usize; 4],
    what: &str,
    advice: &str,
) -> Result<(), DetectorError> {
    let bytes = 4 * dims.iter().product::<usize>() as u64;
    crate::infra::compute::fits_in_one_buffer(device, bytes, what, |_| advice.into())
        .map_err(DetectorError::Device)
}

/// One normal image's embedding, with the size its map is calibrated at.
pub struct NormalGrid {
    /// `[D, h, w]` values, channel-major.
    pub grid: Vec<f32>,
    pub width: usize,
    pub height: usize,
}

impl NormalGrid {
    /// Host grids (all of one grid size) as `[N, D, h, w]` for `device`, with the images' sizes:
    /// one tensor on the device when they fit in one of its buffers, else kept on the host and
    /// uploaded a batch at a time while fitting ([`Grids`]).
    pub fn stack(
        normals: &[NormalGrid],
        (d, gh, gw): (usize, usize, usize),
        device: &Device,
    ) -> Result<(Grids, Vec<(usize, usize)>), DetectorError> {
        let mut values = Vec::with_capacity(normals.len() * d * gh * gw);
        for (index, g) in normals.iter().enumerate() {
            if g.grid.len() != d * gh * gw {
                return Err(DetectorError::GridSize {
                    index,
                    found: g.grid.len(),
                    expected: format!("{d}x{gh}x{gw}"),
                });
            }
            values.extend_from_slice(&g.grid);
        }
        let sizes = normals.iter().map(|g| (g.width, g.height)).collect();
        Ok((
            Grids::new(values, [normals.len(), d, gh, gw], device),
            sizes,
        ))
    }

    /// Embed one normal image and bring its grid to the host (for caching and stacking).
    pub async fn embed(
        backbone: &DinoV3,
        image: &RgbImage,
        size: (usize, usize),
    ) -> Result<(Self, (usize, usize)), DetectorError> {
        let grid = embed(backbone, image, size)?;
        let [_, _, gh, gw] = grid.dims();
        let grid = read_back(grid, "embeddings").await?;
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

/// Fit a scorer as `spec` says on the normal images' grids `[N, D, h, w]` (embedded at
/// `spec.size`, on the backbone's device; nothing is read back), keeping a hold-out share out of
/// training for calibration, and return the bundle bytes. `image_sizes[k]` is image k's
/// (width, height): calibration maps are at that size.
pub async fn fit_model(
    grids: impl Into<Grids>,
    image_sizes: &[(usize, usize)],
    backbone: &DinoV3,
    spec: &FitSpec,
    progress: impl FnMut(Progress) -> ControlFlow<()>,
) -> Result<Vec<u8>, DetectorError> {
    fit_model_validated(
        grids.into(),
        image_sizes,
        None,
        backbone,
        spec,
        None,
        &Origin::default(),
        progress,
    )
    .await
}

/// Where a fit starts and what it learns from, for the model's history.
#[derive(Default)]
pub struct Origin<'a> {
    /// Go on learning from this model (its AR head's weights, or its kNN bank with the new
    /// patches added; its history continues); `None` fits from scratch.
    pub resume: Option<&'a Bundle>,
    /// The fingerprints of the normal files given ([`crate::marks::fingerprint`]).
    pub fingerprints: Vec<String>,
}

/// The calibration hold-out (first) and the training images (second), `holdout` of `n` images
/// drawn by `seed`. With `sources` (image k came from file `sources[k]`, e.g. the slices of one
/// volume) a file's images stay on one side: neighbouring slices of a volume held out while their
/// neighbours train would make the threshold optimistic. Without, every image is its own file.
pub fn holdout_split(
    n: usize,
    sources: Option<&[usize]>,
    holdout: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let held = ((n as f64 * holdout).round() as usize).clamp(1, n - 1);
    let own: Vec<usize> = (0..n).collect();
    let sources = sources.unwrap_or(&own);
    // The files in first-seen order, shuffled as the images used to be.
    let mut files: Vec<usize> = Vec::new();
    for &s in sources {
        if !files.contains(&s) {
            files.push(s);
        }
    }
    let mut order: Vec<usize> = (0..files.len()).collect();
    Rng::new(seed ^ 0x5eed).shuffle(&mut order);
    // The images file by file in that order; the first files (whole) are held out. Training
    // takes the rest in this order too (the memory bank's order, the batches' seed order).
    let groups: Vec<Vec<usize>> = order
        .iter()
        .map(|&f| (0..n).filter(|&k| sources[k] == files[f]).collect())
        .collect();
    let mut cut = 0;
    let mut calib_len = 0;
    while cut < groups.len() && calib_len < held && calib_len + groups[cut].len() < n {
        calib_len += groups[cut].len();
        cut += 1;
    }
    if cut == 0 {
        // One file only: its images are split as single images.
        let order = order_images(n, seed);
        return (order[..held].to_vec(), order[held..].to_vec());
    }
    (groups[..cut].concat(), groups[cut..].concat())
}

fn order_images(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(seed ^ 0x5eed).shuffle(&mut order);
    order
}

/// [`fit_model`] with a validation set that picks the AR head's epoch (see
/// [`crate::train::fit_validated`]); the bundle records the choice. With `origin.resume` the
/// model goes on learning from that one (the same hold-out split and calibration as a fit: the
/// threshold is set again on the held-out normal images by the model's rule when it rests on
/// normal images alone, else by `spec.quantile` — a rule of marked anomalous images is applied
/// again by [`calibrate`]).
#[allow(clippy::too_many_arguments)] // one call per front end; each argument is one input
pub async fn fit_model_validated(
    grids: Grids,
    image_sizes: &[(usize, usize)],
    sources: Option<&[usize]>,
    backbone: &DinoV3,
    spec: &FitSpec,
    validation: Option<&Validation>,
    origin: &Origin<'_>,
    progress: impl FnMut(Progress) -> ControlFlow<()>,
) -> Result<Vec<u8>, DetectorError> {
    spec.validate_with(validation.is_some())?;
    if let Some(b) = origin.resume {
        b.check_backbone(&backbone.fingerprint)?;
        b.meta.spec.check_resume(spec)?;
    }
    let n = grids.dims()[0];
    if image_sizes.len() != n {
        return Err(DetectorError::SizeCount {
            grids: n,
            sizes: image_sizes.len(),
        });
    }
    if n < 2 {
        return Err(DetectorError::TooFewImages(n));
    }
    let d = backbone.config.hidden_size;
    if sources.is_some_and(|s| s.len() != n) {
        return Err(DetectorError::SizeCount {
            grids: n,
            sizes: sources.map_or(0, <[usize]>::len),
        });
    }
    let (calib_idx, train_idx) = holdout_split(n, sources, spec.holdout, spec.seed);
    let (calib_idx, train_idx) = (&calib_idx[..], &train_idx[..]);

    let train = grids.subset(train_idx);
    let mut chosen = None;
    let (scorer, bank_size) = match spec.method {
        Method::Ar => {
            let start = origin.resume.map(|b| &b.tensors);
            let (head, choice) =
                fit_validated(train.clone(), spec, validation, start, progress).await?;
            chosen = choice;
            let position = match spec.position_norm {
                PositionNorm::None => None,
                PositionNorm::Standardise => Some(Box::new(position_stats(&head, &train).await?)),
            };
            (Scorer::Ar(Box::new(head), position), None)
        }
        Method::Knn => {
            // The bank is every training patch, together on the device: a set kept on the host
            // because it does not fit in one buffer cannot be a bank there.
            let Some(train) = train.whole() else {
                return Err(bank_too_large(&train));
            };
            let mut bank = MemoryBank::from_grids(train);
            if let Some(b) = origin.resume {
                let old = MemoryBank::from_file(&b.tensors, d, &backbone.device())
                    .map_err(BundleError::from)?;
                bank = old.extended(bank);
            }
            let size = bank.len();
            (Scorer::Knn(Box::new(bank)), Some(size))
        }
    };

    let mut maps = Vec::with_capacity(calib_idx.len());
    for &i in calib_idx {
        let (width, height) = image_sizes[i];
        let (_, map) = map_of(&scorer, grids.rows(&[i]), width, height).await?;
        maps.push(map);
    }
    let rule = match origin.resume.map(|b| b.meta.calibration.rule()) {
        Some(r @ Rule::FalseAlarms(_)) => r,
        _ => Rule::Quantile(spec.quantile),
    };
    let (calibration, _) = Calibration::from_maps(&maps, &[], rule)?;
    let created_by = format!("dino-ar {}", env!("CARGO_PKG_VERSION"));
    let mut history = origin
        .resume
        .map(|b| b.meta.history.clone())
        .unwrap_or_default();
    history.push(Version {
        step: match origin.resume {
            Some(_) => Step::Learn,
            None => Step::Fit,
        },
        images: n,
        normal: origin.fingerprints.clone(),
        anomalous: Vec::new(),
        epochs: (spec.method == Method::Ar).then_some(chosen.map_or(spec.epochs, |c| c.epoch)),
        rule,
        threshold: calibration.threshold,
        created_by: created_by.clone(),
    });
    let meta = BundleMeta {
        format_version: FORMAT_VERSION,
        spec: spec.clone(),
        calibration,
        backbone_fingerprint: backbone.fingerprint.clone(),
        embedding_dim: d,
        // Over the model's life: a resumed model has seen its earlier images too.
        train_images: train_idx.len() + origin.resume.map_or(0, |b| b.meta.train_images),
        bank_size,
        validation: chosen,
        created_by,
        history,
    };
    let tensors = scorer.export().await?;
    Ok(Bundle::write(&meta, &tensors)?)
}

/// What a calibration is given: normal images' maps (they set the display range; under a
/// `quantile` or `fpr` rule, the threshold) and marked anomalous images' scores, each with its
/// file's fingerprint for the model's history.
#[derive(Default)]
pub struct CalibrationSet {
    pub normal_maps: Vec<Vec<f32>>,
    pub normal: Vec<String>,
    pub anomalous_scores: Vec<f32>,
    pub anomalous: Vec<String>,
}

impl CalibrationSet {
    /// A file's results ([`Detector::results_of`]) into the set, with its fingerprint: a normal
    /// file's every image (a volume's slices) is a normal image; an anomalous *picked* slice is
    /// an anomalous image, and a whole anomalous volume is one, by its worst slice — its verdict
    /// (its other slices may well be normal).
    pub fn add(
        &mut self,
        fingerprint: &str,
        results: Vec<(Option<usize>, AnomalyMap)>,
        anomalous: bool,
        picked: bool,
    ) {
        let id = |slice: Option<usize>| match (slice, picked) {
            (Some(n), true) => format!("{fingerprint}:{n}"),
            _ => fingerprint.to_string(),
        };
        if anomalous && !picked {
            let worst = results
                .iter()
                .map(|(_, r)| r.score.max)
                .fold(f32::MIN, f32::max);
            self.anomalous_scores.push(worst);
            self.anomalous.push(fingerprint.to_string());
            return;
        }
        let before = self.normal.len();
        for (slice, r) in results {
            match anomalous {
                true => {
                    self.anomalous_scores.push(r.score.max);
                    self.anomalous.push(id(slice));
                }
                false => {
                    self.normal_maps.push(r.map);
                    if picked || self.normal.len() == before {
                        // A whole file: its fingerprint once, not once per slice.
                        self.normal.push(id(slice));
                    }
                }
            }
        }
    }
}

/// The model `bundle` with its threshold set again by `rule` on `set` (its scorer unchanged): the
/// new bundle's bytes, and the rule's report. One call for the CLI's `calibrate`, the JS API's
/// `calibrate` and the page's rule picker.
pub fn calibrate(
    bundle: &Bundle,
    set: &CalibrationSet,
    rule: Rule,
) -> Result<(Vec<u8>, Choice), DetectorError> {
    // Without normal images (a threshold set by hand, a rule of marked anomalous images alone),
    // the display range stays the model's.
    let (calibration, choice) = match set.normal_maps.is_empty() {
        true => Calibration::from_scores(
            &[],
            bundle.meta.calibration.display_low,
            &set.anomalous_scores,
            rule,
        )?,
        false => Calibration::from_maps(&set.normal_maps, &set.anomalous_scores, rule)?,
    };
    let mut meta = bundle.meta.clone();
    let created_by = format!("dino-ar {}", env!("CARGO_PKG_VERSION"));
    meta.history.push(Version {
        step: Step::Calibrate,
        images: set.normal_maps.len() + set.anomalous_scores.len(),
        normal: set.normal.clone(),
        anomalous: set.anomalous.clone(),
        epochs: None,
        rule,
        threshold: calibration.threshold,
        created_by: created_by.clone(),
    });
    meta.calibration = calibration;
    meta.created_by = created_by;
    Ok((bundle.rewrite(&meta)?, choice))
}

/// The input size checked against the backbone (both sides multiples of its patch size).
pub fn check_size(backbone: &DinoV3, size: InputSize) -> Result<(usize, usize), DetectorError> {
    let (h, w) = size.hw();
    backbone.config.grid(h, w).map_err(SpecError::Size)?;
    Ok((h, w))
}

#[cfg(test)]
mod tests {
    use super::holdout_split;
    use super::{AnomalyMap, CalibrationSet};
    use crate::score::ImageScore;

    fn result(max: f32) -> AnomalyMap {
        AnomalyMap {
            map: vec![max, 0.0],
            width: 2,
            height: 1,
            grid: vec![max],
            grid_h: 1,
            grid_w: 1,
            score: ImageScore { max, top1: max },
            threshold: 1.0,
            anomalous: false,
        }
    }

    #[test]
    fn a_calibration_set_counts_volumes_as_their_verdicts_do() {
        let mut set = CalibrationSet::default();
        // A normal volume given whole: every slice a normal image, its fingerprint once.
        set.add(
            "aa",
            vec![(Some(0), result(0.1)), (Some(1), result(0.3))],
            false,
            false,
        );
        // An anomalous volume given whole: one image, its worst slice.
        set.add(
            "bb",
            vec![(Some(0), result(0.2)), (Some(1), result(0.9))],
            true,
            false,
        );
        // Slices a person marked: each its own image, named with its slice.
        set.add("cc", vec![(Some(4), result(0.7))], true, true);
        set.add("dd", vec![(None, result(0.2))], false, false);
        assert_eq!(set.normal_maps.len(), 3);
        assert_eq!(set.normal, ["aa", "dd"]);
        assert_eq!(set.anomalous_scores, [0.9, 0.7]);
        assert_eq!(set.anomalous, ["bb", "cc:4"]);
    }

    #[test]
    fn single_images_split_as_before_and_a_volumes_slices_stay_together() {
        // Every image its own file: the same split as a plain shuffle of the images.
        let (calib, train) = holdout_split(10, None, 0.2, 42);
        let order = super::order_images(10, 42);
        assert_eq!((&calib[..], &train[..]), (&order[..2], &order[2..]));
        // Three volumes of 4 slices and two pictures: whole volumes are held out.
        let sources = [0, 0, 0, 0, 1, 1, 1, 1, 2, 3, 3, 3, 3, 4];
        for seed in 0..20 {
            let (calib, train) = holdout_split(sources.len(), Some(&sources), 0.25, seed);
            assert!(!calib.is_empty() && !train.is_empty());
            for c in &calib {
                assert!(
                    train.iter().all(|t| sources[*t] != sources[*c]),
                    "seed {seed}: {calib:?}"
                );
            }
        }
        // One volume only: its slices are split one by one (nothing else could calibrate).
        let (calib, train) = holdout_split(5, Some(&[7; 5]), 0.4, 1);
        assert_eq!((calib.len(), train.len()), (2, 3));
    }
}
