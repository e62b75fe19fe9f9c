//! File-system side of the CLI: image and volume folders, MVTec- and BMAD-style datasets, the
//! feature cache.

use std::path::{Path, PathBuf};

use dino_ar::compute::Precision;
use dino_ar::preprocess::RgbImage;
use dino_ar::volume::{Volume, dicom, nifti};
use dino_ar::weights::{TensorFile, write_safetensors_f32};

/// Where a ground-truth mask may be found: `<name>_mask.<ext>` or `<name>.<ext>`.
const MASK_EXTENSIONS: [&str; 9] = [
    "png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp", "nii.gz", "nii",
];

/// What a file holds: a picture, or a volume to be cut into slices.
pub enum Input {
    Picture(RgbImage),
    Volume(Volume),
}

/// Read a picture, a NIfTI volume or a DICOM file (a one-slice volume, or a multi-frame one),
/// known by its name or its first bytes; the error names the file.
pub fn read_input(path: &Path) -> Result<Input, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let input = if is_dicom(&bytes, &name) {
        dicom::read(&bytes)
            .and_then(|img| dicom::volume(vec![(name.to_string(), img)]))
            .map(Input::Volume)
    } else if nifti::looks_like(&bytes, &name) {
        nifti::read(&bytes).map(Input::Volume)
    } else {
        RgbImage::decode(&bytes).map(Input::Picture)
    };
    input.map_err(|e| format!("{}: {e}", path.display()))
}

fn is_dicom(bytes: &[u8], name: &str) -> bool {
    dicom::looks_like(bytes) || name.to_ascii_lowercase().ends_with(".dcm")
}

/// [`is_dicom`] from the file's first 132 bytes (the preamble and the `DICM` marker).
fn starts_as_dicom(path: &Path, name: &str) -> bool {
    use std::io::Read;
    let mut head = Vec::with_capacity(132);
    std::fs::File::open(path)
        .and_then(|f| f.take(132).read_to_end(&mut head))
        .is_ok()
        && is_dicom(&head, name)
}

/// What a run reads: one file, or the DICOM files of one series (one volume).
pub enum Source {
    File(PathBuf),
    Series {
        /// `<folder>/series <UID>`: how rows and messages name it.
        path: PathBuf,
        files: Vec<PathBuf>,
    },
}

impl Source {
    pub fn path(&self) -> &Path {
        match self {
            Source::File(p) | Source::Series { path: p, .. } => p,
        }
    }

    /// Output names: the file's stem, or the series' folder.
    pub fn stem(&self) -> String {
        match self {
            Source::File(p) => stem(p),
            Source::Series { path, .. } => path
                .parent()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "series".into()),
        }
    }

    /// The picture or volume it holds; a series is refused whole when one of its files is
    /// unreadable (a missing slice would misplace the others), naming that file.
    pub fn read(&self) -> Result<Input, String> {
        match self {
            Source::File(p) => read_input(p),
            Source::Series { path, files } => {
                let mut images = Vec::with_capacity(files.len());
                for f in files {
                    let bytes = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
                    let img = dicom::read(&bytes)
                        .map_err(|e| format!("{}: {e} (so its series is not read)", f.display()))?;
                    images.push((f.display().to_string(), img));
                }
                dicom::volume(images)
                    .map(Input::Volume)
                    .map_err(|e| format!("{}: {e}", path.display()))
            }
        }
    }
}

/// Files → what a run reads: DICOM files of one series (same SeriesInstanceUID, same folder)
/// become one source, in the place of its first file; every other file stays itself.
pub fn sources(files: Vec<PathBuf>) -> Vec<Source> {
    let mut out: Vec<Source> = Vec::new();
    let mut series: std::collections::HashMap<(PathBuf, String), usize> = Default::default();
    for f in files {
        let name = f
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        // Only DICOM files are read here (their header up to the pixel data is what a UID
        // needs); every other file is read once, later, by `Source::read`.
        let uid = Some(())
            .filter(|_| starts_as_dicom(&f, &name))
            .and_then(|_| std::fs::read(&f).ok())
            .and_then(|b| dicom::series_uid(&b).ok().flatten());
        let Some(uid) = uid else {
            out.push(Source::File(f));
            continue;
        };
        let folder = f.parent().map(Path::to_path_buf).unwrap_or_default();
        match series.get(&(folder.clone(), uid.clone())) {
            Some(&k) => {
                if let Source::Series { files, .. } = &mut out[k] {
                    files.push(f);
                }
            }
            None => {
                series.insert((folder.clone(), uid.clone()), out.len());
                out.push(Source::Series {
                    path: folder.join(format!("series {uid}")),
                    files: vec![f],
                });
            }
        }
    }
    // A series of one file reads as that file.
    out.into_iter()
        .map(|s| match s {
            Source::Series { files, .. } if files.len() == 1 => {
                Source::File(files.into_iter().next().unwrap())
            }
            other => other,
        })
        .collect()
}

/// The file name without its extension (`.nii.gz` counts as one).
pub fn stem(path: &Path) -> String {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let lower = name.to_ascii_lowercase();
    for ext in [".nii.gz", ".nii"] {
        if lower.ends_with(ext) {
            return name[..name.len() - ext.len()].to_string();
        }
    }
    path.file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// The files of a folder of normal images; BMAD keeps them one level down, in `img/`.
pub fn normal_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let files = files_in(dir)?;
    let img = dir.join("img");
    if files.is_empty() && img.is_dir() {
        return files_in(&img);
    }
    Ok(files)
}

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
pub fn decode(path: &Path) -> Result<RgbImage, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    RgbImage::decode(&bytes).map_err(|e| format!("{}: {e}", path.display()))
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

/// The test (or validation) images of a dataset, in either layout:
/// - MVTec: `test/good`, `test/<defect>`, `ground_truth/<defect>/<name>_mask.png` (or `<name>.png`);
/// - BMAD: `<split>/{good,Ungood}/img/<name>` with masks in `<split>/Ungood/label/<name>`, or the
///   files directly in `<split>/{good,Ungood}/` (image-level only).
///
/// Masks may be pictures or NIfTI volumes (for test volumes).
pub fn test_set(root: &Path, split: &str) -> Result<Vec<TestImage>, String> {
    let base = root.join(split);
    let categories = subfolders(&base).map_err(|e| {
        format!(
            "{} has no readable {split}/ folder ({e}); expected an MVTec layout \
             (test/<category>, ground_truth/<category>) or a BMAD one \
             ({split}/good/img, {split}/Ungood/img + label)",
            root.display()
        )
    })?;
    let bmad = categories
        .iter()
        .any(|c| base.join(c).join("img").is_dir() || c == "Ungood");
    let mut out = Vec::new();
    for category in categories {
        let anomalous = category != "good";
        let folder = base.join(&category);
        let (images, masks) = if bmad && folder.join("img").is_dir() {
            (folder.join("img"), vec![folder.join("label")])
        } else if bmad {
            (folder.clone(), vec![])
        } else {
            (
                folder.clone(),
                vec![root.join("ground_truth").join(&category)],
            )
        };
        for path in files_in(&images)? {
            let stem = stem(&path);
            let mask = masks.iter().find_map(|gt| {
                [format!("{stem}_mask"), stem.clone()]
                    .iter()
                    .flat_map(|name| {
                        MASK_EXTENSIONS
                            .iter()
                            .map(move |ext| gt.join(format!("{name}.{ext}")))
                    })
                    .find(|p| p.is_file())
            });
            out.push(TestImage {
                path,
                category: category.clone(),
                anomalous,
                mask,
            });
        }
    }
    if out.is_empty() {
        return Err(format!("no test images under {}", base.display()));
    }
    Ok(out)
}

fn subfolders(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// A binary mask at `width × height` (nearest-neighbour when the mask has another size).
pub fn read_mask(path: &Path, width: usize, height: usize) -> Result<Vec<bool>, String> {
    Ok(mask_of(&decode(path)?, width, height))
}

/// A picture's bright pixels as a mask at `width × height` (nearest-neighbour).
fn mask_of(img: &RgbImage, width: usize, height: usize) -> Vec<bool> {
    let mut out = Vec::with_capacity(width * height);
    for y in 0..height {
        let sy = (y * img.height / height).min(img.height - 1);
        for x in 0..width {
            let sx = (x * img.width / width).min(img.width - 1);
            let p = &img.data[(sy * img.width + sx) * 3..][..3];
            out.push(p.iter().any(|&v| v > 0.5));
        }
    }
    out
}

/// Embedding grids cached per (backbone, input size, image content): the backbone dominates the
/// cost of fitting, and the same normal images are fit again with other settings.
pub struct FeatureCache {
    dir: Option<PathBuf>,
}

/// FNV-1a over what the backbone sees: the image's size and its (windowed) pixels, so a slice
/// of a volume, a picture and the same picture under another window are told apart.
fn key(image: &RgbImage) -> u64 {
    let size = [image.width as u64, image.height as u64];
    let bytes = size
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .chain(image.data.iter().flat_map(|v| v.to_le_bytes()));
    bytes.fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

impl FeatureCache {
    /// One folder per backbone, input size and precision (f32's name has no suffix, as before).
    pub fn new(
        root: Option<PathBuf>,
        fingerprint: &str,
        precision: Precision,
        (h, w): (usize, usize),
    ) -> Self {
        let suffix = match precision {
            Precision::F32 => String::new(),
            other => format!("_{other}"),
        };
        let dir = root.map(|r| r.join(format!("{fingerprint}_{h}x{w}{suffix}")));
        if let Some(d) = &dir {
            let _ = std::fs::create_dir_all(d);
        }
        Self { dir }
    }

    fn path(&self, image: &RgbImage) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{:016x}.safetensors", key(image))))
    }

    /// `(grid [D·h·w], [D, h, w])` when cached.
    pub fn get(&self, image: &RgbImage) -> Option<(Vec<f32>, Vec<usize>)> {
        let bytes = std::fs::read(self.path(image)?).ok()?;
        let file = TensorFile::from_bytes(&bytes).ok()?;
        let t = file.get("grid")?;
        Some((t.to_f32("grid").ok()?, t.shape.clone()))
    }

    pub fn put(&self, image: &RgbImage, grid: &[f32], shape: &[usize]) {
        if let Some(path) = self.path(image)
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
