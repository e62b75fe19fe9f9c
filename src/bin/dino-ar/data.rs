//! File-system side of the CLI: image folders, MVTec-style datasets, the feature cache.

use std::path::{Path, PathBuf};

use dino_ar::preprocess::RgbImage;
use dino_ar::weights::{TensorFile, write_safetensors_f32};

/// Where a ground-truth mask may be found: `<name>_mask.<ext>` or `<name>.<ext>`.
const MASK_EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp"];

/// Every file directly in `dir`, sorted by name. Not only images: a file that is not one (a GIF,
/// a PDF, notes) is named and skipped by the caller, never silently left out of a run.
pub fn files_in(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read folder {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Decode an image file; the error names the file.
pub fn decode(path: &Path) -> Result<(RgbImage, Vec<u8>), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let img = RgbImage::decode(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((img, bytes))
}

/// A test image of an MVTec-style dataset with its ground truth.
pub struct TestImage {
    pub path: PathBuf,
    /// `good` or the defect type.
    pub category: String,
    pub anomalous: bool,
    /// The mask file, when there is one.
    pub mask: Option<PathBuf>,
}

/// `test/good`, `test/<defect>`, `ground_truth/<defect>/<name>_mask.png` (or `<name>.png`).
pub fn mvtec_test_set(root: &Path) -> Result<Vec<TestImage>, String> {
    let test = root.join("test");
    let dirs = std::fs::read_dir(&test).map_err(|e| {
        format!(
            "{} has no readable test/ folder ({e}); expected MVTec layout",
            root.display()
        )
    })?;
    let mut categories: Vec<String> = dirs
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    categories.sort();
    let mut out = Vec::new();
    for category in categories {
        let anomalous = category != "good";
        for path in files_in(&test.join(&category))? {
            let stem = path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let gt = root.join("ground_truth").join(&category);
            let mask = [format!("{stem}_mask"), stem.clone()]
                .iter()
                .flat_map(|name| {
                    let gt = &gt;
                    MASK_EXTENSIONS
                        .iter()
                        .map(move |ext| gt.join(format!("{name}.{ext}")))
                })
                .find(|p| p.is_file());
            out.push(TestImage {
                path,
                category: category.clone(),
                anomalous,
                mask,
            });
        }
    }
    if out.is_empty() {
        return Err(format!("no test images under {}", test.display()));
    }
    Ok(out)
}

/// A binary mask at `width × height` (nearest-neighbour when the mask has another size).
pub fn read_mask(path: &Path, width: usize, height: usize) -> Result<Vec<bool>, String> {
    let (img, _) = decode(path)?;
    let mut out = Vec::with_capacity(width * height);
    for y in 0..height {
        let sy = (y * img.height / height).min(img.height - 1);
        for x in 0..width {
            let sx = (x * img.width / width).min(img.width - 1);
            let p = &img.data[(sy * img.width + sx) * 3..][..3];
            out.push(p.iter().any(|&v| v > 0.5));
        }
    }
    Ok(out)
}

/// Embedding grids cached per (backbone, input size, image content): the backbone dominates the
/// cost of fitting, and the same normal images are fit again with other settings.
pub struct FeatureCache {
    dir: Option<PathBuf>,
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

impl FeatureCache {
    pub fn new(root: Option<PathBuf>, fingerprint: &str, (h, w): (usize, usize)) -> Self {
        let dir = root.map(|r| r.join(format!("{fingerprint}_{h}x{w}")));
        if let Some(d) = &dir {
            let _ = std::fs::create_dir_all(d);
        }
        Self { dir }
    }

    fn path(&self, image_bytes: &[u8]) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{:016x}.safetensors", fnv(image_bytes))))
    }

    /// `(grid [D·h·w], [D, h, w])` when cached.
    pub fn get(&self, image_bytes: &[u8]) -> Option<(Vec<f32>, Vec<usize>)> {
        let bytes = std::fs::read(self.path(image_bytes)?).ok()?;
        let file = TensorFile::from_bytes(&bytes).ok()?;
        let t = file.get("grid")?;
        Some((t.to_f32("grid").ok()?, t.shape.clone()))
    }

    pub fn put(&self, image_bytes: &[u8], grid: &[f32], shape: &[usize]) {
        if let Some(path) = self.path(image_bytes)
            && let Ok(bytes) = write_safetensors_f32(&[("grid", shape.to_vec(), grid)], None)
        {
            // A cache that cannot be written only costs time.
            let _ = std::fs::write(path, bytes);
        }
    }
}

/// The default cache root: `$XDG_CACHE_HOME/dino-ar/features` or `~/.cache/dino-ar/features`.
pub fn default_cache_root() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|c| c.join("dino-ar").join("features"))
}
