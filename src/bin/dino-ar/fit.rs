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

use crate::args::{BackboneArgs, bar, notes, say, skipped_summary, write};
use crate::data::{self, FeatureCache};
use crate::eval::each_test_image;

/// The fit settings are `FitSpec`'s fields, with its defaults (the paper's).
#[derive(Args)]
pub struct FitArgs {
    #[command(flatten)]
    backbone: BackboneArgs,
    /// Normal (defect-free) images or volumes: a folder of them (a BMAD train/good folder with an
    /// img/ inside is read from there), or one file (a volume's slices are its images).
    #[arg(long)]
    normal: PathBuf,
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

pub fn run(args: FitArgs) -> Result<(), String> {
    let started = Instant::now();
    let spec = &args.spec;
    spec.validate_with(args.valid.is_some())
        .map_err(|e| e.to_string())?;
    let backbone = args.backbone.load()?.model;
    let mut set = TrainingSet::new(&backbone, spec, Keep::Host).map_err(|e| match e {
        dino_ar::detector::DetectorError::Spec(dino_ar::spec::SpecError::Size(m)) => {
            format!("--size {}: {m}", spec.size)
        }
        other => other.to_string(),
    })?;
    let files = data::normal_files(&args.normal)?;
    if files.is_empty() {
        return Err(format!(
            "{}: the folder is empty: no images to fit on",
            args.normal.display()
        ));
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
    let sources = data::sources(files);
    let pb = bar(sources.len(), "embedding");
    let mut skipped = Vec::new();
    for source in &sources {
        pb.inc(1);
        let name = source.name();
        let added = match source.read() {
            Ok(input) => {
                pollster::block_on(set.add(&name, input, |_, _| ControlFlow::Continue(())))
                    .map_err(|e| (e.skippable(), e.to_string()))
            }
            Err(e) => Err((true, e)),
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
    let fitting = set.fit(validation.as_ref(), |p| {
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
    write(&args.out, &bytes)?;
    let bundle = Bundle::read(&bytes).map_err(|e| e.to_string())?;
    if let Some(v) = &bundle.meta.validation {
        eprintln!(
            "kept epoch {} of {}: pixel AP {:.4} on {} validation images",
            v.epoch, spec.epochs, v.validation_pixel_ap, v.images
        );
    }
    let c = &bundle.meta.calibration;
    eprintln!(
        "{}: {} fit on {} images ({} held out), threshold {:.5} (q{}), {:.1} MB, {:.1} s",
        args.out.display(),
        bundle.meta.describe(),
        bundle.meta.train_images,
        c.images,
        c.threshold,
        c.quantile,
        bytes.len() as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(())
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
