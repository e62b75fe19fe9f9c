//! File-system side of the CLI: image and volume folders, MVTec- and BMAD-style datasets, the
//! feature cache.

use std::path::{Path, PathBuf};

use dino_ar::infra::compute::Precision;
use dino_ar::input::{self, Group, Input};
use dino_ar::marks::{Mark, Marked, fingerprint, series_fingerprint};
use dino_ar::preprocess::RgbImage;
use dino_ar::training_set::{GridCache, image_key};
use dino_ar::weights::{TensorFile, write_safetensors_f32};

/// Where a ground-truth mask may be found: `<name>_mask.<ext>` or `<name>.<ext>`.
const MASK_EXTENSIONS: [&str; 9] = [
    "png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp", "nii.gz", "nii",
];

/// An input file's bytes: refused before reading when larger than the library allows
/// ([`input::check_file_size`]); the error names the file.
pub fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    let named = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let size = std::fs::metadata(path).map_err(|e| named(&e))?.len();
    input::check_file_size(&path.display().to_string(), size).map_err(|e| e.to_string())?;
    std::fs::read(path).map_err(|e| named(&e))
}

/// Read one file (a picture, a NIfTI volume or a DICOM file) by the library's rule; the error
/// names the file.
pub fn read_input(path: &Path) -> Result<Input, String> {
    let bytes = read_file(path)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    input::read(&name, &bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The files a marks CSV names, found by fingerprint among the files under `dir` (so a
/// colleague's copy under another name is found), with what each was marked: one entry per
/// file and mark, `slices` the marked slices of a volume (`None`: the whole file).
pub struct MarkedSource {
    pub source: Source,
    pub mark: Mark,
    pub slices: Option<Vec<usize>>,
}

pub fn marked_sources(dir: &Path, marks: &[Marked]) -> Result<Vec<MarkedSource>, String> {
    let mut found: Vec<(Source, String)> = Vec::new();
    for source in sources(all_files(dir)?) {
        let print = match &source {
            Source::File(p) => fingerprint(&read_file(p)?),
            Source::Series { files, .. } => {
                let mut bytes = Vec::new();
                for f in files {
                    bytes.push(read_file(f)?);
                }
                series_fingerprint(&bytes.iter().map(Vec::as_slice).collect::<Vec<_>>())
            }
        };
        found.push((source, print));
    }
    // In the folder's (sorted) order, whatever the marks' order: the same files, the same fit.
    let mut out: Vec<MarkedSource> = Vec::new();
    for (source, print) in &found {
        for mark in [Mark::Normal, Mark::Anomalous] {
            let mine: Vec<&Marked> = marks
                .iter()
                .filter(|m| m.mark == mark && m.fingerprint == *print)
                .collect();
            if mine.is_empty() {
                continue;
            }
            // A mark without a slice is the whole file.
            let slices = mine.iter().map(|m| m.slice).collect::<Option<Vec<usize>>>();
            out.push(MarkedSource {
                source: source.clone(),
                mark,
                slices,
            });
        }
    }
    let missing: Vec<String> = marks
        .iter()
        .filter(|m| found.iter().all(|(_, p)| *p != m.fingerprint))
        .map(|m| format!("{} ({})", m.describe(), m.fingerprint))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{} marked file{} not found under {} (files are matched by fingerprint): {}",
            missing.len(),
            if missing.len() == 1 { " is" } else { "s are" },
            dir.display(),
            missing.join(", ")
        ));
    }
    Ok(out)
}

/// Every file under `dir`, in subfolders too, sorted.
fn all_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let entries = std::fs::read_dir(&d)
            .map_err(|e| format!("cannot read folder {}: {e}", d.display()))?;
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            match p.is_dir() {
                true => todo.push(p),
                false => files.push(p),
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The marks CSV at `path`, and the folder its files are looked for in: `images`, else the CSV's.
pub fn read_marks(path: &Path, images: Option<&Path>) -> Result<(Vec<Marked>, PathBuf), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let marks = dino_ar::marks::from_csv(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let dir = match images {
        Some(d) => d.to_path_buf(),
        None => match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        },
    };
    Ok((marks, dir))
}

/// What a run reads: one file, or the DICOM files of one series (one volume).
#[derive(Clone)]
pub enum Source {
    File(PathBuf),
    Series {
        /// `<folder>/series <UID>`: how rows and messages name it.
        name: String,
        /// The folder's name: its output files' stem.
        stem: String,
        files: Vec<PathBuf>,
    },
}

impl Source {
    /// How rows and messages name it.
    pub fn name(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Series { name, .. } => name.clone(),
        }
    }

    /// Output names: the file's stem, or the series' folder.
    pub fn stem(&self) -> String {
        match self {
            Source::File(p) => input::stem(&p.to_string_lossy()),
            Source::Series { stem, .. } => stem.clone(),
        }
    }

    /// The picture or volume it holds; a series is refused whole when one of its files is
    /// unreadable, naming that file.
    pub fn read(&self) -> Result<Input, String> {
        Ok(self.read_with_fingerprint()?.0)
    }

    /// [`Source::read`], with the file's fingerprint (a series': of its files).
    pub fn read_with_fingerprint(&self) -> Result<(Input, String), String> {
        match self {
            Source::File(p) => {
                let bytes = read_file(p)?;
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                let input =
                    input::read(&name, &bytes).map_err(|e| format!("{}: {e}", p.display()))?;
                Ok((input, fingerprint(&bytes)))
            }
            Source::Series { name, files, .. } => {
                let mut bytes = Vec::with_capacity(files.len());
                for f in files {
                    let b = read_file(f)?;
                    bytes.push((f.display().to_string(), b));
                }
                let each: Vec<&[u8]> = bytes.iter().map(|(_, b)| b.as_slice()).collect();
                let print = series_fingerprint(&each);
                let volume = input::read_series(bytes).map_err(|e| format!("{name}: {e}"))?;
                Ok((Input::Volume(volume), print))
            }
        }
    }
}

/// The SeriesInstanceUID of a DICOM file (its first bytes tell; only DICOM files are read whole).
fn series_uid(path: &Path) -> Option<String> {
    use std::io::Read;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut head = Vec::with_capacity(352);
    std::fs::File::open(path)
        .and_then(|f| f.take(352).read_to_end(&mut head))
        .ok()?;
    if input::sniff(&name, &head).ok()? != input::Kind::Dicom {
        return None;
    }
    input::series_uid(&name, &read_file(path).ok()?)
}

/// Files → what a run reads, by the library's grouping ([`input::group_series`]).
pub fn sources(files: Vec<PathBuf>) -> Vec<Source> {
    let keys: Vec<(String, Option<String>)> = files
        .iter()
        .map(|f| {
            let folder = f.parent().map(|p| p.display().to_string());
            (folder.unwrap_or_default(), series_uid(f))
        })
        .collect();
    input::group_series(&keys)
        .into_iter()
        .map(|g| match g {
            Group::File(k) => Source::File(files[k].clone()),
            Group::Series {
                name,
                stem,
                files: members,
            } => Source::Series {
                name,
                stem,
                files: members.iter().map(|&k| files[k].clone()).collect(),
            },
        })
        .collect()
}

/// The files a path stands for: a folder's files (sorted; BMAD's `train/good` keeps them one
/// level down, in `img/`), or the file itself.
pub fn normal_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let files = files_in(path)?;
    let img = path.join("img");
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
            let stem = input::stem(&path.to_string_lossy());
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

/// Embedding grids cached per (backbone, input size, image content): the backbone dominates the
/// cost of fitting, and the same normal images are fit again with other settings.
pub struct FeatureCache {
    dir: Option<PathBuf>,
}

impl FeatureCache {
    /// The cache for scoring with `det` under `root` (its backbone, precision and input size),
    /// when a root is given: `score --cache`, `calibrate --cache`.
    pub fn for_scoring(root: Option<&Path>, det: &dino_ar::detector::Detector) -> Option<Self> {
        let root = root?.to_path_buf();
        let b = &det.backbone;
        Some(Self::new(
            Some(root),
            &b.fingerprint,
            b.precision(),
            det.input_size(),
        ))
    }

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
            .map(|d| d.join(format!("{:016x}.safetensors", image_key(image))))
    }
}

impl GridCache for FeatureCache {
    fn get(&self, image: &RgbImage) -> Option<(Vec<f32>, (usize, usize))> {
        let bytes = std::fs::read(self.path(image)?).ok()?;
        let file = TensorFile::from_bytes(&bytes).ok()?;
        let t = file.get("grid")?;
        let [_, h, w] = t.shape[..] else { return None };
        Some((t.to_f32("grid").ok()?, (h, w)))
    }

    fn put(&self, image: &RgbImage, grid: &[f32], shape: [usize; 3]) {
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
