//! `dino-ar score`: images and volumes → `scores.csv`, an overlay per image, a NIfTI map and the
//! slice overlays per volume. Rows, names and verdicts are the library's (`scores_csv`).

use std::path::{Path, PathBuf};

use clap::Args;
use dino_ar::bundle::Bundle;
use dino_ar::detector::{Detector, DetectorError};
use dino_ar::input::Input;
use dino_ar::scores_csv::{self, ScoreRow, names};
use dino_ar::training_set::GridCache;
use dino_ar::volume::nifti;

use crate::args::{BackboneArgs, StyleArgs, append, bar, notes, read, say, skipped_summary, write};
use crate::data;
use crate::overlay::overlay_png;

#[derive(Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    backbone: BackboneArgs,
    /// Model bundle from `dino-ar fit`.
    #[arg(long)]
    model: PathBuf,
    /// Images or volumes to score, or folders of them. A volume gets a row per slice and one for
    /// the whole (the worst slice), a NIfTI anomaly map and an overlay folder.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Output folder for scores.csv and the overlays.
    #[arg(long, default_value = "dino-ar-scores")]
    out: PathBuf,
    /// Go on with an interrupted run into the same --out: the inputs its scores.csv finished are
    /// skipped (none is scored twice), the rest scored and appended. scores.csv is written an
    /// input at a time, so a killed run keeps every input it finished.
    #[arg(long)]
    resume: bool,
    /// Keep each image's embeddings in this feature cache (`fit`'s, e.g. ~/.cache/dino-ar/features)
    /// and read them from there: scoring the same images again — after the model learned, or
    /// with another model of the same backbone and size — runs only the head. Off unless given
    /// (a 448² grid is 1.2 MB per image).
    #[arg(long)]
    cache: Option<PathBuf>,
    #[command(flatten)]
    style: StyleArgs,
}

/// The backbone and the model bundle, checked against each other.
pub fn detector(args: &BackboneArgs, model: &Path) -> Result<Detector, String> {
    let backbone = args.load()?.model;
    let bundle = Bundle::read(&read(model)?).map_err(|e| format!("{}: {e}", model.display()))?;
    Detector::new(backbone, &bundle).map_err(|e| format!("{}: {e}", model.display()))
}

pub fn run(args: ScoreArgs) -> Result<(), String> {
    let style = args.style.style()?;
    let det = detector(&args.backbone, &args.model)?;
    let cache = data::FeatureCache::for_scoring(args.cache.as_deref(), &det);
    let cache = cache.as_ref().map(|c| c as &dyn GridCache);
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    // A folder stands for the files in it (sorted), like `fit --normal`.
    let mut files = Vec::new();
    for path in &args.images {
        if path.is_dir() {
            let inside = data::files_in(path)?;
            if inside.is_empty() {
                eprintln!("{}: the folder is empty", path.display());
            }
            files.extend(inside);
        } else {
            files.push(path.clone());
        }
    }
    if files.is_empty() {
        return Err("no files to score in the given folders".into());
    }
    // The DICOM files of one series are one volume.
    let sources = data::sources(files);
    let threshold = det.meta.calibration.threshold;
    let scale = det.meta.calibration.scale();
    let plane = det.meta.spec.plane;
    // scores.csv grows an input at a time (whole lines, synced): a run killed midway keeps every
    // input it finished, and --resume goes on from there.
    let csv_path = args.out.join("scores.csv");
    let done = match (args.resume, std::fs::read_to_string(&csv_path)) {
        (true, Ok(text)) => {
            let (kept, done) = scores_csv::finished(&text)
                .map_err(|e| format!("--resume: {}: {e}", csv_path.display()))?;
            write(&csv_path, kept.as_bytes())?;
            eprintln!(
                "resuming: {} of {} inputs already scored in {}",
                sources.iter().filter(|s| done.contains(&s.name())).count(),
                sources.len(),
                csv_path.display()
            );
            done
        }
        (true, Err(e)) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(format!("--resume: cannot read {}: {e}", csv_path.display()));
        }
        _ => {
            write(&csv_path, scores_csv::write_header().as_bytes())?;
            Default::default()
        }
    };
    let pb = bar(sources.len(), "scoring");
    let mut skipped = Vec::new();
    let mut unique = names::Unique::default();
    let mut rows: Vec<ScoreRow> = Vec::new();
    for source in &sources {
        pb.inc(1);
        let file = source.name();
        // Each input's output names as in a run from the start, scored or not.
        let stem = unique.stem(&source.stem());
        if done.contains(&file) {
            continue;
        }
        // The input's rows go to scores.csv together, once it is done.
        if !rows.is_empty() {
            append(&csv_path, &scores_csv::write_rows(&rows))?;
            rows.clear();
        }
        let mut refuse = |e: String| {
            say(&pb, format!("skipping {e}"));
            rows.push(ScoreRow::refused(&file, threshold, &e));
            skipped.push(e);
        };
        let input = match source.read() {
            Ok(input) => input,
            Err(e) => {
                refuse(e);
                continue;
            }
        };
        match input {
            Input::Picture(img) => {
                let img = match det.meta.spec.window.picture(img) {
                    Ok(img) => img,
                    Err(e) => {
                        refuse(format!("{file}: {e}"));
                        continue;
                    }
                };
                let r = pollster::block_on(det.score_with(&img, cache))
                    .map_err(|e| format!("{file}: {e}"))?;
                rows.push(ScoreRow::scored(&file, &r.score, threshold));
                let png = overlay_png(&img, &r.map, &scale, &style)?;
                write(&args.out.join(names::overlay(&stem)), &png)?;
                let verdict = dino_ar::score::verdict(r.score.max, threshold);
                say(&pb, format!("{:>10.5}  {verdict:<9}  {file}", r.score.max));
            }
            Input::Volume(volume) => {
                notes(&pb, &file, &volume.notes);
                let overlays = args.out.join(names::slice_overlays(&stem));
                std::fs::create_dir_all(&overlays)
                    .map_err(|e| format!("cannot create {}: {e}", overlays.display()))?;
                let scored = det.score_volume_with(&volume, cache, |n, img, r| {
                    let png = overlay_png(img, &r.map, &scale, &style)?;
                    write(&overlays.join(names::slice_overlay(plane, n)), &png)
                });
                let v = match pollster::block_on(scored) {
                    Ok(v) => v,
                    Err(DetectorError::Window(e)) => {
                        refuse(format!("{file}: {e}"));
                        continue;
                    }
                    Err(e) => return Err(format!("{file}: {e}")),
                };
                let mut notes = volume.notes.clone();
                if let Some(w) = &v.warning {
                    say(&pb, format!("{file}: {w}"));
                    notes.push(w.clone());
                }
                let scores: Vec<_> = v.slices.iter().map(|s| s.score).collect();
                rows.extend(ScoreRow::volume(&file, &scores, v.worst, threshold, &notes));
                let map = volume.with_data(v.map);
                let nii = nifti::write_gz(&map, &names::map_description(threshold));
                write(&args.out.join(names::anomaly_map(&stem)), &nii)?;
                let worst = scores[v.worst].max;
                let verdict = dino_ar::score::verdict(worst, threshold);
                say(
                    &pb,
                    format!(
                        "{worst:>10.5}  {verdict:<9}  {file} (worst: {plane} slice {} of {})",
                        v.worst,
                        scores.len()
                    ),
                );
            }
        }
    }
    if !rows.is_empty() {
        append(&csv_path, &scores_csv::write_rows(&rows))?;
    }
    pb.finish_and_clear();
    skipped_summary(&skipped, sources.len());
    if skipped.len() == sources.len() {
        return Err("none of the files is a readable image or volume for this model".into());
    }
    let before = sources.iter().filter(|s| done.contains(&s.name())).count();
    eprintln!(
        "scored {} files{}: wrote {} and the overlays",
        sources.len() - before - skipped.len(),
        match before {
            0 => String::new(),
            n => format!(" ({n} scored before)"),
        },
        csv_path.display()
    );
    Ok(())
}
