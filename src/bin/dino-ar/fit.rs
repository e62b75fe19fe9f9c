//! `dino-ar fit`: normal images (a folder, or one file) → a model bundle. The library assembles
//! the training set ([`TrainingSet`]) and fits; this file reads the files, shows progress and
//! writes the bundle.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use dino_ar::backbone::DinoV3;
use dino_ar::bundle::Bundle;
use dino_ar::spec::FitSpec;
use dino_ar::train::Validation;
use dino_ar::training_set::{Keep, TrainingSet};

use dino_ar::input::Input;
use dino_ar::marks::Mark;

use crate::args::{BackboneArgs, bar, notes, read, say, skipped_summary, write_model};
use crate::data::{self, FeatureCache, Source};
use crate::eval::each_test_image;

/// The fit settings are `FitSpec`'s fields, with its defaults (the paper's).
#[derive(Args)]
pub struct FitArgs {
    #[command(flatten)]
    backbone: BackboneArgs,
    /// Normal (defect-free) images or volumes: a folder of them (a BMAD train/good folder with an
    /// img/ inside is read from there), or one file (a volume's slices are its images). Give it
    /// more than once to fit on several; with --resume, give the model's normal set *and* the
    /// new normals — the new ones join the set: on them alone a model forgets the old ones.
    #[arg(long, required_unless_present = "marks")]
    normal: Vec<PathBuf>,
    /// Go on learning from this model: its AR head's weights (or its kNN bank), its settings —
    /// a training flag given here (--epochs, --learning-rate, --seed, …) overrides one — and its
    /// threshold rule; the new model's history continues this one's.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Learn from the images marked normal in this marks CSV (file,slice,fingerprint,mark, as the
    /// page exports it), found by fingerprint under --images; with --normal too, they join those.
    #[arg(long)]
    marks: Option<PathBuf>,
    /// The folder the marked files are in (default: the marks file's folder).
    #[arg(long, requires = "marks")]
    images: Option<PathBuf>,
    /// Output model bundle (.safetensors).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    spec: FitSpec,
    /// AR head: a validation split with pixel masks (e.g. Brain/valid, holding good/img,
    /// Ungood/img and Ungood/label; or an MVTec test/ folder): after each epoch the head is
    /// scored on it and the epoch with the best pixel AP is kept, as the paper's code does.
    /// The bundle records it.
    #[arg(long)]
    valid: Option<PathBuf>,
    /// Feature cache folder (default ~/.cache/dino-ar/features).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Do not read or write the feature cache.
    #[arg(long)]
    no_cache: bool,
}

/// `explicit`: the spec flags given on the command line (clap's ids, the fields' names); with
/// `--resume` only those override the model's settings.
pub fn run(args: FitArgs, explicit: &[String]) -> Result<(), String> {
    let started = Instant::now();
    let resume = match &args.resume {
        Some(p) => {
            let b = Bundle::read(&read(p)?).map_err(|e| format!("{}: {e}", p.display()))?;
            Some(b)
        }
        None => None,
    };
    let spec = &match &resume {
        Some(b) => {
            let given = serde_json::to_value(&args.spec).map_err(|e| e.to_string())?;
            let overrides = explicit
                .iter()
                .map(|id| camel(id))
                .filter_map(|k| given.get(&k).map(|v| (k, v.clone())))
                .collect();
            let p = args.resume.as_deref().unwrap_or(Path::new(""));
            b.meta
                .spec
                .resumed(&overrides)
                .map_err(|e| format!("--resume {}: {e}", p.display()))?
        }
        None => args.spec.clone(),
    };
    spec.validate_with(args.valid.is_some())
        .map_err(|e| e.to_string())?;
    let backbone = args.backbone.load()?.model;
    if let (Some(b), Some(p)) = (&resume, &args.resume) {
        b.check_backbone(&backbone.fingerprint)
            .map_err(|e| format!("{}: {e}", p.display()))?;
        eprintln!(
            "resuming {} (version {}, {}, {} images so far)",
            p.display(),
            b.meta.version(),
            b.meta.describe(),
            b.meta.train_images
        );
    }
    let mut set = TrainingSet::new(&backbone, spec, Keep::Host).map_err(|e| match e {
        dino_ar::detector::DetectorError::Spec(dino_ar::spec::SpecError::Size(m)) => {
            format!("--size {}: {m}", spec.size)
        }
        other => other.to_string(),
    })?;
    // What to learn from: folders (every file), then the files marked normal in a marks CSV.
    let mut sources: Vec<Source> = Vec::new();
    let mut picked: Vec<Option<Vec<usize>>> = Vec::new();
    for normal in &args.normal {
        let files = data::normal_files(normal)?;
        if files.is_empty() {
            return Err(format!(
                "{}: the folder is empty: no images to fit on",
                normal.display()
            ));
        }
        for s in data::sources(files) {
            sources.push(s);
            picked.push(None);
        }
    }
    if let Some(csv) = &args.marks {
        let (marks, dir) = data::read_marks(csv, args.images.as_deref())?;
        let normal: Vec<_> = marks
            .into_iter()
            .filter(|m| m.mark == Mark::Normal)
            .collect();
        if normal.is_empty() {
            return Err(format!(
                "{}: no image is marked normal: nothing to learn from",
                csv.display()
            ));
        }
        for m in data::marked_sources(&dir, &normal)? {
            sources.push(m.source);
            picked.push(m.slices);
        }
    }
    let root = match args.no_cache {
        true => None,
        false => args.cache.clone().or_else(data::default_cache_root),
    };
    let cache = FeatureCache::new(
        root,
        &backbone.fingerprint,
        backbone.precision(),
        set.size(),
    );
    set = set.with_cache(&cache);
    let pb = bar(sources.len(), "embedding");
    let mut skipped = Vec::new();
    for (source, only) in sources.iter().zip(&picked) {
        pb.inc(1);
        let name = source.name();
        let go_on = |_, _| ControlFlow::Continue(());
        let added = match (source.read_with_fingerprint(), only) {
            (Ok((Input::Volume(v), print)), Some(only)) => {
                pollster::block_on(set.add_volume(&name, &print, &v, Some(only), go_on))
                    .map_err(|e| (e.skippable(), e.to_string()))
            }
            (Ok((input, print)), _) => pollster::block_on(set.add(&name, &print, input, go_on))
                .map_err(|e| (e.skippable(), e.to_string())),
            (Err(e), _) => Err((true, e)),
        };
        match added {
            Ok(added) => {
                notes(&pb, &name, &added.notes);
                if let Some(line) = added.describe(spec) {
                    say(&pb, format!("{name}: {line}"));
                }
            }
            Err((true, e)) => {
                say(&pb, format!("skipping {e}"));
                skipped.push(e);
            }
            Err((false, e)) => return Err(e),
        }
    }
    pb.finish_and_clear();
    skipped_summary(&skipped, sources.len());
    let validation = args
        .valid
        .as_deref()
        .map(|dir| validation_set(&backbone, dir, spec, set.size()))
        .transpose()?;
    // Sized by the first progress report: the library owns the hold-out split and the batching.
    let pb = bar(0, "training");
    let fitting = set.fit(validation.as_ref(), resume.as_ref(), |p| {
        pb.set_length((p.epochs * p.steps) as u64);
        pb.set_position(((p.epoch - 1) * p.steps + p.step) as u64);
        pb.set_message(format!("epoch {}/{} loss {:.4}", p.epoch, p.epochs, p.loss));
        if p.step == p.steps {
            let line = format!(
                "epoch {}/{}: last batch loss {:.5}",
                p.epoch, p.epochs, p.loss
            );
            say(&pb, line);
        }
        ControlFlow::Continue(())
    });
    let bytes = pollster::block_on(fitting).map_err(|e| e.to_string())?;
    pb.finish();
    write_model(&args.out, &bytes)?;
    let bundle = Bundle::read(&bytes).map_err(|e| e.to_string())?;
    if let Some(v) = &bundle.meta.validation {
        eprintln!(
            "kept epoch {} of {}: pixel AP {:.4} on {} validation images",
            v.epoch, spec.epochs, v.validation_pixel_ap, v.images
        );
    }
    let c = &bundle.meta.calibration;
    let step = bundle.meta.history.last();
    eprintln!(
        "{}: {} version {}, {} on {} images ({} held out), threshold {:.5} ({}), {:.1} MB, {:.1} s",
        args.out.display(),
        bundle.meta.describe(),
        bundle.meta.version(),
        step.map_or("fit".into(), |s| s.step.to_string()),
        step.map_or(bundle.meta.train_images, |s| s.images - c.images),
        c.images,
        c.threshold,
        c.rule(),
        bytes.len() as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    if let Some(w) = &c.warning {
        eprintln!("warning: {w}");
    }
    Ok(())
}

/// A clap id (a field's name, `learning_rate`) as the spec's JSON key (`learningRate`).
fn camel(id: &str) -> String {
    let mut out = String::new();
    let mut up = false;
    for c in id.chars() {
        match (c, up) {
            ('_', _) => up = true,
            (c, true) => {
                out.extend(c.to_uppercase());
                up = false;
            }
            (c, false) => out.push(c),
        }
    }
    out
}

/// The validation split of `fit --valid`: each image (or slice) embedded like the training
/// images, with its mask (all normal for a normal image).
fn validation_set(
    backbone: &DinoV3,
    dir: &Path,
    spec: &FitSpec,
    size: (usize, usize),
) -> Result<Validation, String> {
    let (root, split) = match (dir.parent(), dir.file_name()) {
        (Some(root), Some(split)) => (root, split.to_string_lossy()),
        _ => return Err(format!("--valid {}: not a split folder", dir.display())),
    };
    let set = data::test_set(root, &split).map_err(|e| format!("--valid: {e}"))?;
    let pb = bar(set.len(), "validation");
    let mut grids = Vec::new();
    let mut masks = Vec::new();
    for t in &set {
        pb.inc(1);
        each_test_image(t, &spec.window, spec.plane, &pb, |img, truth, what| {
            let Some(mask) = truth.pixel_mask(img.width, img.height) else {
                say(&pb, format!("no mask for {what}: left out of validation"));
                return Ok(());
            };
            let grid = dino_ar::detector::embed(backbone, img, size)
                .map_err(|e| format!("{what}: {e}"))?;
            grids.push(grid);
            masks.push((mask, img.width, img.height));
            Ok(())
        })?;
    }
    pb.finish_and_clear();
    if grids.is_empty() {
        return Err(format!(
            "--valid {}: no usable validation images",
            dir.display()
        ));
    }
    eprintln!(
        "validation: {} images from {} (the epoch with the best pixel AP is kept)",
        grids.len(),
        dir.display()
    );
    Ok(Validation {
        grids: burn::tensor::Tensor::cat(grids, 0),
        masks,
    })
}
