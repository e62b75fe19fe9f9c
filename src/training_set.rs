//! The normal images a model is fit on, assembled one way for every front end: files in (bytes, or
//! already read), each picture through the pre-resize rule and the spec's window, each volume cut
//! into the spec's plane with background slices skipped, every image embedded as it comes, and
//! which file each grid came from kept for the hold-out split (a volume's slices stay on one
//! side). The CLI adds its feature cache and a progress bar; the page adds cancel; neither
//! restates a rule.

use std::ops::ControlFlow;

use burn::tensor::Tensor;

use crate::backbone::DinoV3;
use crate::bundle::Bundle;
use crate::detector::{
    self, DetectorError, NormalGrid, Origin, check_size, check_training_grids, fit_model_validated,
};
use crate::grids::Grids;
use crate::infra::readback::read_back;
use crate::input::{DecodeError, Input};
use crate::preprocess::RgbImage;
use crate::spec::FitSpec;
use crate::train::{Progress, Validation};
use crate::volume::{Volume, is_background};

/// Where the embedded grids wait for training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// On the backbone's device, never read back (the page: nothing crosses back between the
    /// backbone and the head). The set must fit in one buffer of the device.
    Device,
    /// On the host, each grid read back as it is embedded (the CLI: grids can be cached, and a
    /// set larger than one GPU buffer goes to the device a batch at a time).
    Host,
}

/// Embedding grids kept across runs, keyed by what the backbone sees ([`image_key`]): the CLI's
/// disk cache, the page's [`KeptGrids`]. A cache holds grids of one backbone at one input size.
pub trait GridCache {
    /// `(grid [D·h·w], grid size (h, w))` when this image was embedded before.
    fn get(&self, image: &RgbImage) -> Option<(Vec<f32>, (usize, usize))>;
    fn put(&self, image: &RgbImage, grid: &[f32], shape: [usize; 3]);
}

/// FNV-1a over what the backbone sees: the image's size and its (windowed) pixels, so a slice
/// of a volume, a picture and the same picture under another window are told apart.
pub fn image_key(image: &RgbImage) -> u64 {
    let size = [image.width as u64, image.height as u64];
    let bytes = size
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .chain(image.data.iter().flat_map(|v| v.to_le_bytes()));
    bytes.fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// How many bytes of embedding grids the page keeps for learning and re-scoring without the
/// backbone: 64 MiB, about 220 images at 224² with ViT-S/16 (301 kB each) or 55 at 448².
pub const KEPT_GRIDS_BUDGET: usize = 64 << 20;

/// Grids kept in memory (the embeddings of the images a page scored), the oldest dropped first
/// past `budget` bytes.
pub struct KeptGrids {
    budget: usize,
    grids: std::cell::RefCell<std::collections::VecDeque<Kept>>,
}

/// One kept grid: the image's key, its `[D·h·w]` values and `(h, w)`.
type Kept = (u64, Vec<f32>, (usize, usize));

impl KeptGrids {
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            grids: Default::default(),
        }
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.grids.borrow().iter().map(|g| 4 * g.1.len()).sum()
    }

    pub fn len(&self) -> usize {
        self.grids.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drop every grid (another backbone, another input size).
    pub fn clear(&self) {
        self.grids.borrow_mut().clear();
    }
}

impl GridCache for KeptGrids {
    fn get(&self, image: &RgbImage) -> Option<(Vec<f32>, (usize, usize))> {
        let key = image_key(image);
        let grids = self.grids.borrow();
        let (_, grid, shape) = grids.iter().find(|g| g.0 == key)?;
        Some((grid.clone(), *shape))
    }

    fn put(&self, image: &RgbImage, grid: &[f32], [_, h, w]: [usize; 3]) {
        let key = image_key(image);
        let mut grids = self.grids.borrow_mut();
        grids.retain(|g| g.0 != key);
        grids.push_back((key, grid.to_vec(), (h, w)));
        let mut bytes: usize = grids.iter().map(|g| 4 * g.1.len()).sum();
        while bytes > self.budget && grids.len() > 1 {
            bytes -= 4 * grids.pop_front().map_or(0, |g| g.1.len());
        }
    }
}

/// Why a file added nothing. [`AddError::skippable`] tells a file to name and move past (a batch
/// goes on) from a failure of the run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AddError {
    #[error("{name}: {source}")]
    Unreadable { name: String, source: DecodeError },
    /// The spec's window cannot read it (a CT window on a picture, `as-is` on a float volume).
    #[error("{name}: {message}")]
    Window { name: String, message: String },
    #[error("{what}: {source}")]
    Embed { what: String, source: DetectorError },
    #[error("training cancelled")]
    Cancelled,
}

impl AddError {
    pub fn skippable(&self) -> bool {
        matches!(self, AddError::Unreadable { .. } | AddError::Window { .. })
    }

    pub fn kind(&self) -> &'static str {
        match self {
            AddError::Unreadable { source, .. } => source.kind(),
            AddError::Window { .. } => "window",
            AddError::Embed { .. } => "embed",
            AddError::Cancelled => "cancelled",
        }
    }
}

/// What one file added.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Added {
    /// Images embedded (1 for a picture; a volume's slices that are not background).
    pub images: usize,
    /// A volume's slices in the spec's plane (`None` for a picture).
    pub slices: Option<usize>,
    /// What the reader said about the file and a window read against its kind.
    pub notes: Vec<String>,
}

impl Added {
    /// The line a front end shows for a volume: `12 of 20 axial slices (…)`.
    pub fn describe(&self, spec: &FitSpec) -> Option<String> {
        let count = self.slices?;
        let skipped = if self.images < count {
            format!(
                " (the others are background only: skip-empty {})",
                spec.skip_empty
            )
        } else {
            String::new()
        };
        Some(format!(
            "{} of {count} {} slices{skipped}",
            self.images, spec.plane
        ))
    }
}

/// The normal images of one fit, embedded.
pub struct TrainingSet<'a> {
    backbone: &'a DinoV3,
    spec: FitSpec,
    size: (usize, usize),
    keep: Keep,
    cache: Option<&'a dyn GridCache>,
    on_device: Vec<Tensor<4>>,
    on_host: Vec<NormalGrid>,
    grid: (usize, usize),
    sizes: Vec<(usize, usize)>,
    sources: Vec<usize>,
    /// Per file added: its fingerprint (`:N` after it for a volume's slices picked one by one).
    fingerprints: Vec<String>,
    files: usize,
    background: usize,
}

impl<'a> TrainingSet<'a> {
    /// An empty set for `spec` (checked, with its size against the backbone).
    pub fn new(backbone: &'a DinoV3, spec: &FitSpec, keep: Keep) -> Result<Self, DetectorError> {
        spec.validate()?;
        let size = check_size(backbone, spec.size)?;
        Ok(Self {
            backbone,
            spec: spec.clone(),
            size,
            keep,
            cache: None,
            on_device: Vec::new(),
            on_host: Vec::new(),
            grid: (0, 0),
            sizes: Vec::new(),
            sources: Vec::new(),
            fingerprints: Vec::new(),
            files: 0,
            background: 0,
        })
    }

    /// Look grids up in `cache` before embedding (a set on the device uploads what it finds), and
    /// store the new ones there.
    pub fn with_cache(mut self, cache: &'a dyn GridCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The model input size, `(h, w)`.
    pub fn size(&self) -> (usize, usize) {
        self.size
    }

    /// Images embedded so far.
    pub fn len(&self) -> usize {
        self.sizes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }

    /// Add what a file holds, read by the caller ([`crate::input::read`], a DICOM series);
    /// `fingerprint` is the file's ([`crate::marks::fingerprint`]), for the model's history.
    pub async fn add(
        &mut self,
        name: &str,
        fingerprint: &str,
        input: Input,
        each: impl FnMut(usize, usize) -> ControlFlow<()>,
    ) -> Result<Added, AddError> {
        match input {
            Input::Picture(img) => self.add_picture(name, fingerprint, img).await,
            Input::Volume(v) => self.add_volume(name, fingerprint, &v, None, each).await,
        }
    }

    /// A decoded picture: shrunk by the pre-resize rule, through the window, embedded.
    pub async fn add_picture(
        &mut self,
        name: &str,
        fingerprint: &str,
        img: RgbImage,
    ) -> Result<Added, AddError> {
        let img = self
            .spec
            .window
            .picture(img.for_training(self.size))
            .map_err(|message| AddError::Window {
                name: name.to_string(),
                message,
            })?;
        let source = self.files;
        self.push(&img, source, || name.to_string()).await?;
        self.files += 1;
        self.fingerprints.push(fingerprint.to_string());
        Ok(Added {
            images: 1,
            ..Added::default()
        })
    }

    /// A volume: its slices in the spec's plane through its window (`only` those, when given:
    /// the slices a person marked), background-only ones skipped when `skip_empty` says so. On
    /// cancel (`each` breaks) the volume's slices are taken back.
    pub async fn add_volume(
        &mut self,
        name: &str,
        fingerprint: &str,
        volume: &Volume,
        only: Option<&[usize]>,
        mut each: impl FnMut(usize, usize) -> ControlFlow<()>,
    ) -> Result<Added, AddError> {
        let (window, plane, skip) = (self.spec.window, self.spec.plane, self.spec.skip_empty);
        let slices = volume
            .slices(&window, plane)
            .map_err(|message| AddError::Window {
                name: name.to_string(),
                message,
            })?;
        let mut notes = volume.notes.clone();
        notes.extend(slices.warning.clone());
        let (before, source) = (self.len(), self.files);
        let mut images = 0;
        if let Some(&n) = only.into_iter().flatten().find(|&&n| n >= slices.count()) {
            return Err(AddError::Window {
                name: name.to_string(),
                message: format!(
                    "slice {n} does not exist: the volume has {} {plane} slices",
                    slices.count()
                ),
            });
        }
        for n in 0..slices.count() {
            if only.is_some_and(|o| !o.contains(&n)) {
                continue;
            }
            let img = slices.image(n);
            // A slice a person marked normal is trained on, background or not.
            if only.is_none() && skip > 0.0 && is_background(&img, skip) {
                self.background += 1;
            } else {
                self.push(&img, source, || format!("{name} {plane} slice {n}"))
                    .await?;
                images += 1;
            }
            if each(n + 1, slices.count()).is_break() {
                self.truncate(before);
                return Err(AddError::Cancelled);
            }
        }
        self.files += 1;
        match only {
            None => self.fingerprints.push(fingerprint.to_string()),
            Some(o) => {
                let each = o.iter().map(|n| format!("{fingerprint}:{n}"));
                self.fingerprints.extend(each);
            }
        }
        Ok(Added {
            images,
            slices: Some(slices.count()),
            notes,
        })
    }

    fn truncate(&mut self, len: usize) {
        self.on_device.truncate(len);
        self.on_host.truncate(len);
        self.sizes.truncate(len);
        self.sources.truncate(len);
    }

    /// Embed one image (from the cache when it has it) and keep its grid.
    async fn push(
        &mut self,
        img: &RgbImage,
        source: usize,
        what: impl Fn() -> String,
    ) -> Result<(), AddError> {
        let failed = |source: DetectorError| AddError::Embed {
            what: what(),
            source,
        };
        match self.keep {
            Keep::Device => {
                let d = self.backbone.config.hidden_size;
                let cached = self.cache.and_then(|c| c.get(img));
                let grid = match cached {
                    Some((grid, (gh, gw))) if grid.len() == d * gh * gw => {
                        let data = burn::tensor::TensorData::new(grid, [1, d, gh, gw]);
                        Tensor::from_data(data, &self.backbone.device())
                    }
                    _ => {
                        let grid =
                            detector::embed(self.backbone, img, self.size).map_err(failed)?;
                        // Kept for next time (the page learns from what it fit on, later).
                        if let Some(c) = self.cache {
                            let [_, _, gh, gw] = grid.dims();
                            let values = read_back(grid.clone(), "embeddings")
                                .await
                                .map_err(|e| failed(e.into()))?;
                            c.put(img, &values, [d, gh, gw]);
                        }
                        grid
                    }
                };
                let [_, _, gh, gw] = grid.dims();
                self.grid = (gh, gw);
                self.on_device.push(grid);
            }
            Keep::Host => {
                let d = self.backbone.config.hidden_size;
                let cached = self.cache.and_then(|c| c.get(img));
                let normal = match cached {
                    Some((grid, g)) if grid.len() == d * g.0 * g.1 => {
                        self.grid = g;
                        NormalGrid {
                            grid,
                            width: img.width,
                            height: img.height,
                        }
                    }
                    _ => {
                        let (normal, g) = NormalGrid::embed(self.backbone, img, self.size)
                            .await
                            .map_err(failed)?;
                        if let Some(c) = self.cache {
                            c.put(img, &normal.grid, [d, g.0, g.1]);
                        }
                        self.grid = g;
                        normal
                    }
                };
                self.on_host.push(normal);
            }
        }
        self.sizes.push((img.width, img.height));
        self.sources.push(source);
        Ok(())
    }

    /// Fit the model on the set (see [`detector::fit_model_validated`]) and return the bundle;
    /// with `resume`, that model goes on learning from its weights.
    pub async fn fit(
        self,
        validation: Option<&Validation>,
        resume: Option<&Bundle>,
        progress: impl FnMut(Progress) -> ControlFlow<()>,
    ) -> Result<Vec<u8>, DetectorError> {
        if self.is_empty() {
            return Err(DetectorError::EmptyTrainingSet {
                files: self.files,
                background: self.background,
            });
        }
        let Self {
            backbone,
            spec,
            keep,
            on_device,
            on_host,
            grid: (gh, gw),
            sizes,
            sources,
            fingerprints,
            ..
        } = self;
        let d = backbone.config.hidden_size;
        let grids: Grids = match keep {
            Keep::Device => {
                check_training_grids(&backbone.device(), sizes.len(), (d, gh, gw))?;
                Tensor::cat(on_device, 0).into()
            }
            // The per-image grids are freed once stacked: a set is held once while training.
            Keep::Host => NormalGrid::stack(&on_host, (d, gh, gw), &backbone.device())?.0,
        };
        drop(on_host);
        fit_model_validated(
            grids,
            &sizes,
            Some(&sources),
            backbone,
            &spec,
            validation,
            &Origin {
                resume,
                fingerprints,
            },
            progress,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(v: f32) -> RgbImage {
        RgbImage {
            width: 2,
            height: 1,
            data: vec![v; 6],
        }
    }

    #[test]
    fn kept_grids_drop_the_oldest_past_their_budget() {
        // Three grids of 8 values (32 bytes) in a budget of 80 bytes: the first goes.
        let kept = KeptGrids::new(80);
        for k in 0..3 {
            kept.put(&image(k as f32), &[k as f32; 8], [2, 2, 2]);
        }
        assert_eq!((kept.len(), kept.bytes()), (2, 64));
        assert!(kept.get(&image(0.0)).is_none());
        assert_eq!(kept.get(&image(2.0)), Some((vec![2.0; 8], (2, 2))));
        // The same image again replaces its grid, it is not kept twice.
        kept.put(&image(2.0), &[5.0; 8], [2, 2, 2]);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept.get(&image(2.0)).unwrap().0, vec![5.0; 8]);
        // Another window or size is another key.
        assert_ne!(image_key(&image(1.0)), image_key(&image(1.5)));
        kept.clear();
        assert!(kept.is_empty());
    }
}
