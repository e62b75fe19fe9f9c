//! `dino-ar eval`: score an MVTec- or BMAD-style test split and report the metrics (the library's
//! `Evaluation`); the ground-truth rules are the library's (`GroundTruth`).

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use dino_ar::evaluate::{Evaluation, GroundTruth, Protocol, Scored};
use dino_ar::input::{self, Input};
use dino_ar::preprocess::RgbImage;
use dino_ar::volume::Plane;
use dino_ar::volume::window::Window;
use indicatif::ProgressBar;

use crate::args::{BackboneArgs, choice, notes, say, skipped_summary, write};
use crate::data::{self, read_input};

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    backbone: BackboneArgs,
    #[arg(long)]
    model: PathBuf,
    /// Dataset root: MVTec layout (test/<category>, ground_truth/<category>) or BMAD's
    /// (<split>/{good,Ungood}/img, <split>/Ungood/label). Test files may be NIfTI volumes
    /// with NIfTI masks.
    #[arg(long)]
    data: PathBuf,
    /// BMAD: which split to evaluate on (test or valid).
    #[arg(long, default_value = "test")]
    split: String,
    /// full: pixel metrics at each image's own size; paper: maps and masks at 240x240.
    #[arg(long, default_value_t = Protocol::Full,
          value_parser = choice::<Protocol>())]
    protocol: Protocol,
    /// Also write the metrics as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run(args: EvalArgs) -> Result<(), String> {
    let started = Instant::now();
    let det = crate::score::detector(&args.backbone, &args.model)?;
    let (window, plane) = (det.meta.spec.window, det.meta.spec.plane);
    let test = data::test_set(&args.data, &args.split)?;
    let pb = crate::args::bar(test.len(), "evaluating");
    let mut evaluation = Evaluation::with_protocol(args.protocol);
    let mut skipped = Vec::new();
    for t in &test {
        pb.inc(1);
        let refused = each_test_image(t, &window, plane, &pb, |img, truth, what| {
            let r = pollster::block_on(det.score(img)).map_err(|e| format!("{what}: {e}"))?;
            let (map, mask, width, height) = args.protocol.view(
                &r.grid,
                (r.grid_h, r.grid_w),
                r.map,
                (img.width, img.height),
                truth.mask,
            );
            let with_pixels = evaluation
                .add(Scored {
                    category: &t.category,
                    anomalous: truth.anomalous,
                    score: r.score.max,
                    map,
                    width,
                    height,
                    mask,
                })
                .map_err(|e| format!("{what}: {e}"))?;
            if !with_pixels {
                say(&pb, format!("no mask for {what}: image-level metrics only"));
            }
            Ok(())
        })?;
        if let Some(e) = refused {
            skipped.push(e);
            evaluation.skip_unreadable();
        }
    }
    pb.finish_and_clear();
    skipped_summary(&skipped, test.len());
    let mut report = evaluation.report().map_err(|e| e.to_string())?;
    report.model = Some(det.meta.spec.clone());
    report.seconds = Some(started.elapsed().as_secs_f64());
    print!("{}", report.table());
    println!(
        "{}",
        serde_json::to_string(&report.counts).expect("JSON of plain values")
    );
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).expect("JSON of plain values");
        write(path, text.as_bytes())?;
    }
    Ok(())
}

/// Every image a test file holds — the picture, or each slice of a volume with its mask slice —
/// through the model's window, with its ground truth: `visit(image, truth, what)`. A file that
/// cannot be read or windowed is named and returned as the reason (nothing is visited).
pub fn each_test_image(
    t: &data::TestImage,
    window: &Window,
    plane: Plane,
    pb: &ProgressBar,
    mut visit: impl FnMut(&RgbImage, GroundTruth, &str) -> Result<(), String>,
) -> Result<Option<String>, String> {
    let file = t.path.display().to_string();
    let refuse = |e: String| {
        say(pb, format!("skipping {e}"));
        Ok(Some(e))
    };
    let input = match read_input(&t.path) {
        Ok(input) => input,
        Err(e) => return refuse(e),
    };
    match input {
        Input::Picture(img) => {
            let img = match window.picture(img) {
                Ok(img) => img,
                Err(e) => return refuse(format!("{file}: {e}")),
            };
            let mask = match t.mask.as_deref() {
                None => None,
                Some(m) => {
                    let bytes = crate::data::read_file(m)?;
                    Some(
                        input::decode_picture(&bytes)
                            .map_err(|e| format!("{}: {e}", m.display()))?,
                    )
                }
            };
            let truth = GroundTruth::picture(t.anomalous, mask.as_ref(), img.width, img.height);
            visit(&img, truth, &file)?;
        }
        Input::Volume(volume) => {
            notes(pb, &file, &volume.notes);
            let slices = match volume.slices(window, plane) {
                Ok(slices) => slices,
                Err(e) => return refuse(format!("{file}: {e}")),
            };
            if let Some(w) = &slices.warning {
                say(pb, format!("{file}: {w}"));
            }
            // A volume's mask is a volume of the same anatomy, cut the same way.
            let mask = match &t.mask {
                None => None,
                Some(m) => match read_input(m)? {
                    Input::Volume(mask) => {
                        let g = mask.geometry(plane);
                        let s = slices.geometry;
                        if (g.count, g.height, g.width) != (s.count, s.height, s.width) {
                            return Err(format!(
                                "{}: the mask's {plane} slices are {}×{}×{}, the volume's \
                                 ({file}) {}×{}×{}",
                                m.display(),
                                g.count,
                                g.height,
                                g.width,
                                s.count,
                                s.height,
                                s.width
                            ));
                        }
                        Some((mask, g))
                    }
                    Input::Picture(_) => {
                        return Err(format!(
                            "{}: the mask of a volume must be a volume (NIfTI)",
                            m.display()
                        ));
                    }
                },
            };
            for n in 0..slices.count() {
                let mask_n = mask.as_ref().map(|(m, g)| m.slice(g, n));
                let truth = GroundTruth::slice(t.anomalous, mask_n.as_deref());
                visit(
                    &slices.image(n),
                    truth,
                    &format!("{file} {plane} slice {n}"),
                )?;
            }
        }
    }
    Ok(None)
}
