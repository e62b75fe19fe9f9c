//! What every command shares: the flags for where it runs and which backbone it loads, the
//! overlay style, and the terminal's progress bar and messages. Each command's own flags live in
//! its file; the settings they carry are the library's types (`FitSpec`, `OverlayStyle`, …).

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use clap::Args;
use dino_ar::backbone::{LoadedBackbone, load_backbone};
use dino_ar::infra::compute::{DeviceChoice, Precision};
use dino_ar::overlay::{Colormap, OverlayStyle};
use indicatif::{ProgressBar, ProgressStyle};

/// A clap parser for one of the library's named choices (its names listed in `--help`).
pub use dino_ar::infra::named::clap_choice as choice;

/// Where the tensors live: every subcommand that runs a model takes `--device`.
#[derive(Args)]
pub struct DeviceArgs {
    /// auto: a hardware GPU if there is one (never a software adapter), else the CPU.
    #[arg(long, default_value_t = DeviceChoice::Auto,
          value_parser = choice::<DeviceChoice>())]
    pub device: DeviceChoice,
    /// f16: half-precision matmuls on a GPU with shader-f16 (else f32, saying why).
    #[arg(long, default_value_t = Precision::default(),
          value_parser = choice::<Precision>())]
    pub precision: Precision,
}

impl DeviceArgs {
    /// The device, announced on stderr (`device: gpu: NVIDIA …` or `device: cpu (…)`).
    pub fn open(&self) -> Result<Device, String> {
        let compute = dino_ar::infra::compute::open(self.device)?;
        eprintln!("device: {}", compute.label);
        Ok(compute.device)
    }
}

#[derive(Args)]
pub struct BackboneArgs {
    /// DINOv3 weights: Hugging Face safetensors, Meta .pth, or Meta keys in safetensors.
    #[arg(long)]
    pub backbone: PathBuf,
    /// Hugging Face config.json (default: a config.json beside the weights, if present).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

impl BackboneArgs {
    /// Open the device and load the weights in the asked precision where the device has it
    /// (stderr says when it has not).
    pub fn load(&self) -> Result<LoadedBackbone, String> {
        let device = self.device.open()?;
        load_weights(
            &self.backbone,
            self.config.as_deref(),
            &device,
            self.device.precision,
        )
    }
}

/// Load weights, with `config.json` from `config` or from beside the weights, in `precision`.
pub fn load_weights(
    path: &Path,
    config: Option<&Path>,
    device: &Device,
    precision: Precision,
) -> Result<LoadedBackbone, String> {
    let bytes = read(path)?;
    let beside = path.with_file_name("config.json");
    let config_path = config
        .map(Path::to_path_buf)
        .or_else(|| beside.is_file().then_some(beside));
    let json = config_path
        .as_deref()
        .map(|p| {
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        })
        .transpose()?;
    let mut loaded = load_backbone(&bytes, json.as_deref(), device).map_err(|e| {
        let cfg = config_path
            .map(|p| format!(" (with {})", p.display()))
            .unwrap_or_default();
        format!("{}{cfg}: {e}", path.display())
    })?;
    let (model, note) = loaded.model.with_precision(precision);
    match note {
        Some(note) => eprintln!("precision: {} ({note})", model.precision()),
        None if precision != Precision::default() => eprintln!("precision: {precision}"),
        None => {}
    }
    loaded.model = model;
    Ok(loaded)
}

/// How overlays are drawn: every default is `OverlayStyle::default()`'s (as the page starts).
#[derive(Args)]
pub struct StyleArgs {
    #[arg(long, default_value_t = OverlayStyle::default().colormap,
          value_parser = choice::<Colormap>())]
    colormap: Colormap,
    /// Opacity of the map's hottest colour, 0 to 1.
    #[arg(long, default_value_t = OverlayStyle::default().opacity)]
    opacity: f32,
    /// Leave out the outline of the region above the threshold.
    #[arg(long)]
    no_contour: bool,
}

impl StyleArgs {
    pub fn style(&self) -> Result<OverlayStyle, String> {
        OverlayStyle::new(self.colormap, self.opacity, !self.no_contour).map_err(|e| e.to_string())
    }
}

pub fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Write a file whole or not at all: the bytes go to a temporary file beside it, are synced to
/// the disk, and take the name by a rename — a crash, a kill or a full disk midway leaves the file
/// that was there (or none), never a torn one. The error names the file.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let part = write_part(path, bytes)?;
    std::fs::rename(&part, path).map_err(|e| {
        let _ = std::fs::remove_file(&part);
        format!("cannot write {}: {e}", path.display())
    })
}

/// The bytes in a synced temporary file beside `path` (`.NAME.part`), ready to be renamed to it.
fn write_part(path: &Path, bytes: &[u8]) -> Result<PathBuf, String> {
    use std::io::Write;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let part = path.with_file_name(format!(".{name}.part"));
    let written = std::fs::File::create(&part).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    written.map_err(|e| {
        let _ = std::fs::remove_file(&part);
        format!("cannot write {}: {e}", path.display())
    })?;
    Ok(part)
}

/// Append `text` to `path` in one write, synced: each call adds whole lines or, failing, says so
/// naming the file (what was there stays).
pub fn append(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    let appended = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.sync_data()
        });
    appended.map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Write a model to `path`, keeping the model already there as `NAME.vK.safetensors` (K its
/// version, or the first free number): the CLI never loses a model it made.
pub fn write_model(path: &Path, bytes: &[u8]) -> Result<(), String> {
    // The new model is on the disk before the old one moves: a full disk leaves the old in place.
    let part = write_part(path, bytes)?;
    if path.is_file() {
        let old = read(path)?;
        let version = dino_ar::bundle::Bundle::read(&old).map_or(0, |b| b.meta.version());
        let stem = path.file_name().unwrap_or_default().to_string_lossy();
        let stem = stem
            .strip_suffix(".safetensors")
            .unwrap_or(&stem)
            .to_string();
        let named = |k: usize| path.with_file_name(format!("{stem}.v{k}.safetensors"));
        let k = match version > 0 && !named(version).exists() {
            true => version,
            false => (1..).find(|&k| !named(k).exists()).expect("a free number"),
        };
        std::fs::rename(path, named(k)).map_err(|e| {
            let _ = std::fs::remove_file(&part);
            format!(
                "cannot keep the previous model {} as {}: {e}",
                path.display(),
                named(k).display()
            )
        })?;
        eprintln!("kept the previous model as {}", named(k).display());
    }
    std::fs::rename(&part, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

pub fn bar(len: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>10} [{bar:30}] {pos}/{len} {elapsed_precise} (eta {eta})",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// A line for the user, shown above the progress bar (and also when stderr is not a terminal).
pub fn say(pb: &ProgressBar, msg: String) {
    pb.suspend(|| eprintln!("{msg}"));
}

/// What a file says about how it was read (a 4-D file's first volume, …), shown once.
pub fn notes(pb: &ProgressBar, name: &str, notes: &[String]) {
    for note in notes {
        say(pb, format!("{name}: {note}"));
    }
}

/// The closing line about skipped files, if any were.
pub fn skipped_summary(skipped: &[String], total: usize) {
    if !skipped.is_empty() {
        eprintln!(
            "skipped {} of {total} files (unreadable, not a supported image or volume, or not \
             for this window; named above)",
            skipped.len()
        );
    }
}
