//! `dino-ar calibrate`: a model's threshold set again by a rule ([`dino_ar::threshold`]) on
//! normal images and, for `f1` / `recall`, anomalous ones — folders, or the images of a marks CSV.
//! The scorer is unchanged; the new model's history records the rule and the files' fingerprints.

use std::path::PathBuf;

use clap::Args;
use dino_ar::bundle::Bundle;
use dino_ar::detector::{CalibrationSet, Detector, calibrate};
use dino_ar::marks::Mark;
use dino_ar::threshold::Rule;
use dino_ar::training_set::GridCache;

use crate::args::{BackboneArgs, bar, read, say, write_model};
use crate::data::{self, Source};

#[derive(Args)]
pub struct CalibrateArgs {
    #[command(flatten)]
    backbone: BackboneArgs,
    /// The model bundle to calibrate.
    #[arg(long)]
    model: PathBuf,
    /// Normal images or volumes (a folder, or one file; a volume's slices are normal images):
    /// they place the threshold under `quantile` and `fpr`, and the display range always.
    #[arg(long, required_unless_present = "marks")]
    normal: Option<PathBuf>,
    /// Anomalous images or volumes (a volume counts once, by its worst slice), for `f1` and
    /// `recall`.
    #[arg(long)]
    anomalous: Option<PathBuf>,
    /// The images of a marks CSV instead (file,slice,fingerprint,mark, as the page exports it),
    /// found by fingerprint under --images.
    #[arg(long, conflicts_with_all = ["normal", "anomalous"])]
    marks: Option<PathBuf>,
    /// The folder the marked files are in (default: the marks file's folder).
    #[arg(long, requires = "marks")]
    images: Option<PathBuf>,
    /// How the threshold is chosen: quantile:Q, fpr:RATE (at most that share of normal images
    /// flagged), f1 (best F1 on the anomalous and normal images), recall:RATE (at least that
    /// share of anomalous images flagged) or manual:THRESHOLD.
    #[arg(long, value_parser = parse_rule)]
    rule: Rule,
    /// The calibrated model (.safetensors); a model already there is kept as NAME.vK.
    #[arg(long)]
    out: PathBuf,
    /// A feature cache to read embeddings from and keep them in (as `score --cache`).
    #[arg(long)]
    cache: Option<PathBuf>,
}

fn parse_rule(s: &str) -> Result<Rule, String> {
    s.parse().map_err(|e| format!("{e}"))
}

pub fn run(args: CalibrateArgs) -> Result<(), String> {
    let backbone = args.backbone.load()?.model;
    let model = &args.model;
    let bundle = Bundle::read(&read(model)?).map_err(|e| format!("{}: {e}", model.display()))?;
    let det = Detector::new(backbone, &bundle).map_err(|e| format!("{}: {e}", model.display()))?;
    let cache = data::FeatureCache::for_scoring(args.cache.as_deref(), &det);
    let cache = cache.as_ref().map(|c| c as &dyn GridCache);

    // (source, slices picked or all, anomalous?)
    let mut inputs: Vec<(Source, Option<Vec<usize>>, bool)> = Vec::new();
    match &args.marks {
        Some(csv) => {
            let (marks, dir) = data::read_marks(csv, args.images.as_deref())?;
            for m in data::marked_sources(&dir, &marks)? {
                inputs.push((m.source, m.slices, m.mark == Mark::Anomalous));
            }
        }
        None => {
            for (dir, anomalous) in [(&args.normal, false), (&args.anomalous, true)] {
                if let Some(dir) = dir {
                    for s in data::sources(data::normal_files(dir)?) {
                        inputs.push((s, None, anomalous));
                    }
                }
            }
        }
    }

    let mut set = CalibrationSet::default();
    let pb = bar(inputs.len(), "scoring");
    for (source, only, anomalous) in &inputs {
        pb.inc(1);
        let name = source.name();
        let (input, print) = source.read_with_fingerprint()?;
        let results = pollster::block_on(det.results_of(&input, only.as_deref(), cache))
            .map_err(|e| format!("{name}: {e}"))?;
        set.add(&print, results, *anomalous, only.is_some());
        say(&pb, format!("{name}: scored"));
    }
    pb.finish_and_clear();
    let (bytes, choice) = calibrate(&bundle, &set, args.rule).map_err(|e| e.to_string())?;
    write_model(&args.out, &bytes)?;
    let recall = match choice.recall {
        Some(r) => format!(", recall {:.1}% of {}", 100.0 * r, choice.anomalous),
        None => String::new(),
    };
    eprintln!(
        "{}: threshold {:.5} by {} (was {:.5}): flags {:.1}% of {} normal images{recall}",
        args.out.display(),
        choice.threshold,
        choice.rule,
        bundle.meta.calibration.threshold,
        100.0 * choice.false_alarm_rate,
        choice.normal,
    );
    if let Some(w) = &choice.warning {
        eprintln!("warning: {w}");
    }
    Ok(())
}
