//! The native command line: a thin shell over the library (files in, files out).

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(not(target_arch = "wasm32"))]
mod bench;
#[cfg(not(target_arch = "wasm32"))]
mod data;
#[cfg(not(target_arch = "wasm32"))]
mod overlay;

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;

    use std::ops::ControlFlow;
    use std::time::Instant;

    use burn::tensor::Device;
    use clap::{Args, Parser, Subcommand, ValueEnum};
    use dino_ar::ar::{ArConfig, Variant};
    use dino_ar::backbone::{DinoV3, LoadedBackbone, load_backbone};
    use dino_ar::bundle::Bundle;
    use dino_ar::detector::{Detector, FitMethod, NormalGrid, fit_model};
    use dino_ar::metrics::{MaskedMap, auroc, average_precision, f1_max, pro};
    use dino_ar::preprocess::{RgbImage, parse_size};
    use dino_ar::train::FitOptions;
    use dino_ar::weights::{TensorFile, write_safetensors_f32};
    use indicatif::{ProgressBar, ProgressStyle};

    use crate::data::{self, FeatureCache};
    use crate::overlay::overlay_png;

    #[derive(Parser)]
    #[command(
        name = "dino-ar",
        version,
        about = "Unsupervised visual anomaly detection with DINOv3 embeddings (native CLI).",
        long_about = "Unsupervised visual anomaly detection with DINOv3 embeddings.\n\n\
            Runs on the CPU (burn-flex). DINOv3 weights are yours to obtain (Hugging Face \
            `model.safetensors` or Meta's `.pth`); nothing is uploaded anywhere."
    )]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Subcommand)]
    enum Command {
        /// Run the backbone on one image (or a normalised pixel tensor) and save the embeddings.
        ///
        /// Writes a safetensors file with `patch_tokens` [1, h·w, D] (raster order, after the
        /// final norm) and `cls_token` [1, D], both float32.
        Embed(EmbedArgs),
        /// Fit a model (AR head or kNN baseline) on a folder of normal images.
        ///
        /// A hold-out share of the images is kept out of training and calibrates the threshold
        /// and the display normalisation stored in the bundle.
        Fit(FitArgs),
        /// Score images: writes scores.csv and an overlay PNG per image.
        Score(ScoreArgs),
        /// Benchmarks (BENCHMARKS.md): `heads` (AR vs kNN scoring), `backbone`, `train`.
        Bench(crate::bench::BenchArgs),
        /// Evaluate on an MVTec-style dataset (test/good, test/<defect>, ground_truth/<defect>).
        Eval(EvalArgs),
    }

    #[derive(Args)]
    struct BackboneArgs {
        /// DINOv3 weights: Hugging Face safetensors, Meta .pth, or Meta keys in safetensors.
        #[arg(long)]
        backbone: PathBuf,
        /// Hugging Face config.json (default: a config.json beside the weights, if present).
        #[arg(long)]
        config: Option<PathBuf>,
    }

    #[derive(Clone, Copy, ValueEnum)]
    enum MethodArg {
        Ar,
        Knn,
    }

    #[derive(Clone, Copy, ValueEnum)]
    enum VariantArg {
        Dilated,
        Standard,
    }

    #[derive(Args)]
    struct FitArgs {
        #[command(flatten)]
        backbone: BackboneArgs,
        /// Folder of normal (defect-free) images.
        #[arg(long)]
        normal: PathBuf,
        /// Output model bundle (.safetensors).
        #[arg(long)]
        out: PathBuf,
        /// Model input size: S or HxW, multiples of the patch size.
        #[arg(long, default_value = "448")]
        size: String,
        #[arg(long, value_enum, default_value = "ar")]
        method: MethodArg,
        /// AR head variant: dilation 4 (dilated) or 1 (standard).
        #[arg(long, value_enum, default_value = "dilated")]
        variant: VariantArg,
        #[arg(long, default_value_t = 40)]
        epochs: usize,
        /// Hidden channels of the AR head (the paper: 256).
        #[arg(long, default_value_t = 256)]
        hidden: usize,
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Share of the normal images held out for calibration.
        #[arg(long, default_value_t = 0.1)]
        holdout: f64,
        /// Threshold = this quantile of the held-out normal images' scores.
        #[arg(long, default_value_t = 0.99)]
        quantile: f64,
        /// Feature cache folder (default ~/.cache/dino-ar/features).
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Do not read or write the feature cache.
        #[arg(long)]
        no_cache: bool,
    }

    #[derive(Args)]
    struct ScoreArgs {
        #[command(flatten)]
        backbone: BackboneArgs,
        /// Model bundle from `dino-ar fit`.
        #[arg(long)]
        model: PathBuf,
        /// Images to score, or folders of them.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Output folder for scores.csv and the overlays.
        #[arg(long, default_value = "dino-ar-scores")]
        out: PathBuf,
    }

    #[derive(Args)]
    struct EvalArgs {
        #[command(flatten)]
        backbone: BackboneArgs,
        #[arg(long)]
        model: PathBuf,
        /// MVTec-style dataset root.
        #[arg(long)]
        data: PathBuf,
        /// Also write the metrics as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    }

    #[derive(Args)]
    struct EmbedArgs {
        /// DINOv3 weights: Hugging Face safetensors, Meta .pth, or Meta keys in safetensors.
        #[arg(long)]
        backbone: PathBuf,
        /// Hugging Face config.json (default: a config.json beside the weights, if present).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Image to embed (PNG, JPEG, BMP, TIFF; 8 or 16 bit; grey, RGB, RGBA, palette).
        #[arg(long, conflicts_with = "pixels", required_unless_present = "pixels")]
        image: Option<PathBuf>,
        /// Model input size: S (square) or HxW, multiples of the patch size.
        #[arg(long, default_value = "448", conflicts_with = "pixels")]
        size: String,
        /// Already normalised input: safetensors with `pixel_values` [1, 3, H, W].
        #[arg(long)]
        pixels: Option<PathBuf>,
        /// Output safetensors file.
        #[arg(long)]
        out: PathBuf,
    }

    pub fn main() -> ExitCode {
        let cli = Cli::parse();
        let result = match cli.command {
            Command::Embed(args) => embed(args),
            Command::Fit(args) => fit(args),
            Command::Score(args) => score(args),
            Command::Eval(args) => eval(args),
            Command::Bench(args) => crate::bench::run(args),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }

    fn read(path: &Path) -> Result<Vec<u8>, String> {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    }

    /// Load weights, with `config.json` from `--config` or from beside the weights.
    fn backbone(
        path: &Path,
        config: Option<&Path>,
        device: &Device,
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
        load_backbone(&bytes, json.as_deref(), device).map_err(|e| {
            let cfg = config_path
                .map(|p| format!(" (with {})", p.display()))
                .unwrap_or_default();
            format!("{}{cfg}: {e}", path.display())
        })
    }

    fn embed(args: EmbedArgs) -> Result<(), String> {
        let device = Device::flex();
        let loaded = backbone(&args.backbone, args.config.as_deref(), &device)?;
        let model = &loaded.model;
        let (pixels, height, width) = match (&args.image, &args.pixels) {
            (Some(image), _) => {
                let (h, w) = parse_size(&args.size)?;
                model
                    .config
                    .grid(h, w)
                    .map_err(|e| format!("--size {}: {e}", args.size))?;
                let img = RgbImage::decode(&read(image)?)
                    .map_err(|e| format!("{}: {e}", image.display()))?;
                (img.to_model_input(h, w), h, w)
            }
            (None, Some(path)) => {
                let file = TensorFile::from_bytes(&read(path)?)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let t = file
                    .get("pixel_values")
                    .ok_or_else(|| format!("{}: missing tensor `pixel_values`", path.display()))?;
                let [1, 3, h, w] = t.shape[..] else {
                    return Err(format!(
                        "{}: tensor `pixel_values` has shape {:?}, expected [1, 3, H, W]",
                        path.display(),
                        t.shape
                    ));
                };
                (
                    t.to_f32("pixel_values")
                        .map_err(|e| format!("{}: {e}", path.display()))?,
                    h,
                    w,
                )
            }
            (None, None) => return Err("give --image or --pixels".into()),
        };
        let input = model.pixels_tensor(pixels, height, width)?;
        let out = model.forward(input)?;
        let [_, n, d] = out.patch_tokens.dims();
        let patch = out.patch_tokens.into_data();
        let cls = out.cls_token.into_data();
        let patch = patch.as_slice::<f32>().map_err(|e| format!("{e:?}"))?;
        let cls = cls.as_slice::<f32>().map_err(|e| format!("{e:?}"))?;
        let bytes = write_safetensors_f32(
            &[
                ("patch_tokens", vec![1, n, d], patch),
                ("cls_token", vec![1, d], cls),
            ],
            None,
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(&args.out, bytes)
            .map_err(|e| format!("cannot write {}: {e}", args.out.display()))?;
        eprintln!(
            "{}: {} ({}), {}x{} -> grid {}x{} of {d}-d embeddings -> {}",
            args.backbone.display(),
            loaded.layout,
            loaded.format,
            height,
            width,
            out.grid.0,
            out.grid.1,
            args.out.display()
        );
        Ok(())
    }

    fn bar(len: usize, what: &str) -> ProgressBar {
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
    fn say(pb: &ProgressBar, msg: String) {
        pb.suspend(|| eprintln!("{msg}"));
    }

    /// Decode an image, or name it, count it and move on: one bad file never stops a batch.
    fn decode_or_skip(
        pb: &ProgressBar,
        path: &Path,
        skipped: &mut usize,
    ) -> Option<(RgbImage, Vec<u8>)> {
        data::decode(path)
            .map_err(|e| {
                say(pb, format!("skipping unreadable image {e}"));
                *skipped += 1;
            })
            .ok()
    }

    fn model_size(model: &DinoV3, size: &str) -> Result<(usize, usize), String> {
        let (h, w) = parse_size(size)?;
        model
            .config
            .grid(h, w)
            .map_err(|e| format!("--size {size}: {e}"))?;
        Ok((h, w))
    }

    fn fit(args: FitArgs) -> Result<(), String> {
        let started = Instant::now();
        let device = Device::flex();
        let backbone = backbone(
            &args.backbone.backbone,
            args.backbone.config.as_deref(),
            &device,
        )?
        .model;
        let size = model_size(&backbone, &args.size)?;
        let files = data::images_in(&args.normal)?;
        if files.is_empty() {
            return Err(format!(
                "{}: no images (png, jpg, bmp, tif, webp) in this folder",
                args.normal.display()
            ));
        }
        let root = if args.no_cache {
            None
        } else {
            args.cache.clone().or_else(data::default_cache_root)
        };
        let cache = FeatureCache::new(root, &backbone.fingerprint, size);
        let (normals, grid) = embed_all(&backbone, &files, size, &cache)?;
        let method = match args.method {
            MethodArg::Knn => FitMethod::Knn,
            MethodArg::Ar => {
                let variant = match args.variant {
                    VariantArg::Dilated => Variant::Dilated,
                    VariantArg::Standard => Variant::Standard,
                };
                if args.hidden == 0 {
                    return Err("--hidden must be at least 1".into());
                }
                let config = ArConfig {
                    variant,
                    hidden: args.hidden,
                    ..ArConfig::new(backbone.config.hidden_size)
                };
                let options = FitOptions {
                    epochs: args.epochs,
                    batch_size: args.batch_size,
                    seed: args.seed,
                    ..FitOptions::default()
                };
                FitMethod::Ar { config, options }
            }
        };
        // Sized by the first progress report: fit_model owns the hold-out split and the batching.
        let pb = bar(0, "training");
        let d = backbone.config.hidden_size;
        let (grids, sizes) = NormalGrid::stack(&normals, (d, grid.0, grid.1), &device)?;
        let bytes = pollster::block_on(fit_model(
            grids,
            &sizes,
            size,
            &backbone,
            method,
            args.holdout,
            args.quantile,
            args.seed,
            |p| {
                pb.set_length((p.epochs * p.steps) as u64);
                pb.set_position(((p.epoch - 1) * p.steps + p.step) as u64);
                pb.set_message(format!("epoch {}/{} loss {:.4}", p.epoch, p.epochs, p.loss));
                if p.step == p.steps {
                    say(
                        &pb,
                        format!(
                            "epoch {}/{}: last batch loss {:.5}",
                            p.epoch, p.epochs, p.loss
                        ),
                    );
                }
                ControlFlow::Continue(())
            },
        ))?;
        pb.finish();
        std::fs::write(&args.out, &bytes)
            .map_err(|e| format!("cannot write {}: {e}", args.out.display()))?;
        let bundle = Bundle::read(&bytes).map_err(|e| e.to_string())?;
        let c = &bundle.meta.calibration;
        eprintln!(
            "{}: fit on {} images ({} held out), threshold {:.5} (q{}), {:.1} MB, {:.1} s",
            args.out.display(),
            bundle.meta.train_images,
            c.images,
            c.threshold,
            c.quantile,
            bytes.len() as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Embed every readable image (from the cache when possible); unreadable ones are named and
    /// skipped. Returns the grids and the grid size.
    fn embed_all(
        backbone: &DinoV3,
        files: &[PathBuf],
        size: (usize, usize),
        cache: &FeatureCache,
    ) -> Result<(Vec<NormalGrid>, (usize, usize)), String> {
        let pb = bar(files.len(), "embedding");
        let mut out = Vec::with_capacity(files.len());
        let mut skipped = 0;
        let mut grid_size = (0, 0);
        for path in files {
            pb.inc(1);
            let Some((img, bytes)) = decode_or_skip(&pb, path, &mut skipped) else {
                continue;
            };
            let normal = match cache.get(&bytes) {
                Some((grid, shape)) => {
                    grid_size = (shape[1], shape[2]);
                    NormalGrid {
                        grid,
                        width: img.width,
                        height: img.height,
                    }
                }
                None => {
                    let (normal, g) = pollster::block_on(NormalGrid::embed(backbone, &img, size))?;
                    grid_size = g;
                    let d = backbone.config.hidden_size;
                    cache.put(&bytes, &normal.grid, &[d, g.0, g.1]);
                    normal
                }
            };
            out.push(normal);
        }
        pb.finish_and_clear();
        if skipped > 0 {
            eprintln!(
                "{skipped} of {} images could not be read and were skipped",
                files.len()
            );
        }
        if out.is_empty() {
            return Err("none of the images could be read".into());
        }
        Ok((out, grid_size))
    }

    fn detector(args: &BackboneArgs, model: &Path) -> Result<Detector, String> {
        let device = Device::flex();
        let backbone = backbone(&args.backbone, args.config.as_deref(), &device)?.model;
        let bundle =
            Bundle::read(&read(model)?).map_err(|e| format!("{}: {e}", model.display()))?;
        Detector::new(backbone, &bundle).map_err(|e| format!("{}: {e}", model.display()))
    }

    fn score(args: ScoreArgs) -> Result<(), String> {
        let det = detector(&args.backbone, &args.model)?;
        std::fs::create_dir_all(&args.out)
            .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
        // A folder stands for the images in it (sorted), like `fit --normal`.
        let mut images = Vec::new();
        for path in &args.images {
            if path.is_dir() {
                images.extend(data::images_in(path)?);
            } else {
                images.push(path.clone());
            }
        }
        if images.is_empty() {
            return Err("no images to score in the given folders".into());
        }
        let mut csv = String::from("file,score,score_top1,threshold,verdict\n");
        let pb = bar(images.len(), "scoring");
        let mut failed = 0;
        // Overlay names: `<stem>_overlay.png`, numbered when two inputs share a stem.
        let mut used = std::collections::HashSet::new();
        for path in &images {
            pb.inc(1);
            let Some((img, _)) = decode_or_skip(&pb, path, &mut failed) else {
                continue;
            };
            let r = pollster::block_on(det.score(&img))?;
            let verdict = if r.anomalous { "anomalous" } else { "normal" };
            csv += &format!(
                "{},{},{},{},{verdict}\n",
                csv_field(&path.display().to_string()),
                r.score.max,
                r.score.top1,
                r.threshold
            );
            let stem = path.file_stem().unwrap_or_default().to_string_lossy();
            let png = overlay_png(&img, &r.map, &det.meta.calibration)?;
            let mut name = format!("{stem}_overlay.png");
            for k in 2.. {
                if used.insert(name.clone()) {
                    break;
                }
                name = format!("{stem}_{k}_overlay.png");
            }
            let out = args.out.join(name);
            std::fs::write(&out, png)
                .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
            say(
                &pb,
                format!("{:>10.5}  {verdict:<9}  {}", r.score.max, path.display()),
            );
        }
        pb.finish_and_clear();
        let csv_path = args.out.join("scores.csv");
        std::fs::write(&csv_path, csv)
            .map_err(|e| format!("cannot write {}: {e}", csv_path.display()))?;
        if failed == images.len() {
            return Err("none of the images could be read".into());
        }
        eprintln!("wrote {} and the overlays", csv_path.display());
        Ok(())
    }

    fn csv_field(s: &str) -> String {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    }

    fn eval(args: EvalArgs) -> Result<(), String> {
        let started = Instant::now();
        let det = detector(&args.backbone, &args.model)?;
        let test = data::mvtec_test_set(&args.data)?;
        let pb = bar(test.len(), "evaluating");
        let (mut pixel_scores, mut pixel_labels) = (Vec::new(), Vec::new());
        let (mut image_scores, mut image_labels) = (Vec::new(), Vec::new());
        let mut maps: Vec<(Vec<f32>, Vec<bool>, usize, usize)> = Vec::new();
        let mut categories = std::collections::BTreeMap::<&str, usize>::new();
        let (mut skipped, mut no_mask) = (0, 0);
        for t in &test {
            pb.inc(1);
            let Some((img, _)) = decode_or_skip(&pb, &t.path, &mut skipped) else {
                continue;
            };
            let r = pollster::block_on(det.score(&img))?;
            *categories.entry(t.category.as_str()).or_default() += 1;
            image_scores.push(r.score.max);
            image_labels.push(t.anomalous);
            let mask = match (&t.mask, t.anomalous) {
                (Some(m), _) => data::read_mask(m, img.width, img.height)?,
                (None, false) => vec![false; img.width * img.height],
                (None, true) => {
                    say(
                        &pb,
                        format!("no mask for {}: image-level metrics only", t.path.display()),
                    );
                    no_mask += 1;
                    continue;
                }
            };
            pixel_scores.extend_from_slice(&r.map);
            pixel_labels.extend_from_slice(&mask);
            maps.push((r.map, mask, img.width, img.height));
        }
        pb.finish_and_clear();
        let named = |what: &str, r: Result<f64, dino_ar::metrics::MetricError>| {
            r.map_err(|e| format!("{what}: {e}"))
        };
        let masked: Vec<MaskedMap> = maps
            .iter()
            .map(|(s, m, w, h)| MaskedMap {
                scores: s,
                mask: m,
                width: *w,
                height: *h,
            })
            .collect();
        let metrics = serde_json::json!({
            "pixel_auroc": named("pixel AUROC", auroc(&pixel_scores, &pixel_labels))?,
            "pixel_ap": named("pixel AP", average_precision(&pixel_scores, &pixel_labels))?,
            "image_auroc": named("image AUROC", auroc(&image_scores, &image_labels))?,
            "f1_max": named("pixel F1-max", f1_max(&pixel_scores, &pixel_labels).map(|f| f.0))?,
            "image_f1_max": named("image F1-max", f1_max(&image_scores, &image_labels).map(|f| f.0))?,
            "pro": named("PRO", pro(&masked, 0.3))?,
            "counts": {
                "images": image_scores.len(),
                "anomalous_images": image_labels.iter().filter(|&&l| l).count(),
                "normal_images": image_labels.iter().filter(|&&l| !l).count(),
                "pixels": pixel_scores.len(),
                "anomalous_pixels": pixel_labels.iter().filter(|&&l| l).count(),
                "skipped_unreadable": skipped,
                "anomalous_without_mask": no_mask,
                "per_category": categories,
            },
            "method": serde_json::to_value(&det.meta.method).unwrap_or_default(),
            "seconds": started.elapsed().as_secs_f64(),
        });
        println!("{:<14} {:>8}", "metric", "value");
        for key in [
            "pixel_auroc",
            "pixel_ap",
            "image_auroc",
            "f1_max",
            "image_f1_max",
            "pro",
        ] {
            println!(
                "{key:<14} {:>8.4}",
                metrics[key].as_f64().unwrap_or(f64::NAN)
            );
        }
        println!("{}", metrics["counts"]);
        if let Some(path) = &args.json {
            let text = serde_json::to_string_pretty(&metrics).expect("JSON of plain values");
            std::fs::write(path, text)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        Ok(())
    }
}
