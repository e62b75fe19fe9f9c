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
    use std::ops::ControlFlow;
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;
    use std::str::FromStr;
    use std::time::Instant;

    use burn::tensor::Device;
    use clap::builder::{PossibleValuesParser, TypedValueParser};
    use clap::{Args, Parser, Subcommand};
    use dino_ar::ar::Variant;
    use dino_ar::backbone::random::RandomBackbone;
    use dino_ar::backbone::{DinoV3, LoadedBackbone, load_backbone};
    use dino_ar::bundle::Bundle;
    use dino_ar::compute::{DeviceChoice, Precision};
    use dino_ar::detector::{Detector, NormalGrid, check_size, fit_model_validated};
    use dino_ar::evaluate::{Evaluation, Protocol, Scored};
    use dino_ar::overlay::{Colormap, OverlayStyle};
    use dino_ar::preprocess::RgbImage;
    use dino_ar::readback::read_back;
    use dino_ar::scores_csv::{self, ScoreRow};
    use dino_ar::spec::{FitSpec, InputSize, Method, PositionNorm};
    use dino_ar::train::Validation;
    use dino_ar::volume::window::Window;
    use dino_ar::volume::{Plane, is_background, nifti};
    use dino_ar::weights::{TensorFile, write_safetensors_f32};
    use indicatif::{ProgressBar, ProgressStyle};

    use crate::data::{self, FeatureCache, Input};
    use crate::overlay::overlay_png;

    /// A clap parser for one of the library's named choices (its names listed in `--help`).
    pub(crate) fn choice<T>(names: Vec<&'static str>) -> impl TypedValueParser<Value = T>
    where
        T: FromStr + Clone + Send + Sync + 'static,
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        PossibleValuesParser::new(names).try_map(|s| s.parse::<T>())
    }

    fn window(s: &str) -> Result<Window, String> {
        s.parse()
            .map_err(|e: dino_ar::spec::SpecError| e.to_string())
    }

    fn size(s: &str) -> Result<InputSize, String> {
        s.parse()
            .map_err(|e: dino_ar::spec::SpecError| e.to_string())
    }

    #[derive(Parser)]
    #[command(
        name = "dino-ar",
        version,
        about = "Unsupervised visual anomaly detection with DINOv3 embeddings (native CLI).",
        long_about = "Unsupervised visual anomaly detection with DINOv3 embeddings.\n\n\
            Runs on a GPU (wgpu: Vulkan, Metal, DX12) or the CPU (burn-flex): see --device. DINOv3 weights are yours to obtain (Hugging Face \
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
        /// Write a DINOv3 ViT with random weights (Hugging Face safetensors), ViT-S/16 by default.
        ///
        /// For benchmarks and demos where no pretrained weights may be used: it embeds colour and
        /// texture, not meaning, so it shows the pipeline, not the method's accuracy.
        RandomBackbone(RandomBackboneArgs),
    }

    /// Every default is `RandomBackbone::default()`'s (ViT-S/16, seed 0).
    #[derive(Args)]
    struct RandomBackboneArgs {
        /// Output safetensors file.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = RandomBackbone::default().seed)]
        seed: u64,
        /// Embedding width (heads = width / 64).
        #[arg(long, default_value_t = RandomBackbone::default().width)]
        width: usize,
        #[arg(long, default_value_t = RandomBackbone::default().layers)]
        layers: usize,
        /// Hidden width of each block's MLP.
        #[arg(long, default_value_t = RandomBackbone::default().mlp)]
        mlp: usize,
        /// SwiGLU MLPs (as ViT-S+/16 and ViT-H+/16) instead of GELU.
        #[arg(long)]
        gated: bool,
        #[arg(long, default_value_t = RandomBackbone::default().registers)]
        registers: usize,
        #[arg(long, default_value_t = RandomBackbone::default().patch)]
        patch: usize,
    }

    /// Where the tensors live: every subcommand that runs a model takes `--device`.
    #[derive(Args)]
    pub struct DeviceArgs {
        /// auto: a hardware GPU if there is one (never a software adapter), else the CPU.
        #[arg(long, default_value_t = DeviceChoice::Auto,
              value_parser = choice::<DeviceChoice>(DeviceChoice::names()))]
        pub device: DeviceChoice,
        /// f16: half-precision matmuls on a GPU with shader-f16 (else f32, saying why).
        #[arg(long, default_value_t = Precision::default(),
              value_parser = choice::<Precision>(Precision::names()))]
        pub precision: Precision,
    }

    impl DeviceArgs {
        /// The device, announced on stderr (`device: gpu: NVIDIA …` or `device: cpu (…)`).
        pub fn open(&self) -> Result<Device, String> {
            let compute = dino_ar::compute::open(self.device)?;
            eprintln!("device: {}", compute.label);
            Ok(compute.device)
        }
    }

    #[derive(Args)]
    struct BackboneArgs {
        /// DINOv3 weights: Hugging Face safetensors, Meta .pth, or Meta keys in safetensors.
        #[arg(long)]
        backbone: PathBuf,
        /// Hugging Face config.json (default: a config.json beside the weights, if present).
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        device: DeviceArgs,
    }

    /// The fit settings: every default is `FitSpec::default()`'s (the paper's).
    #[derive(Args)]
    struct FitArgs {
        #[command(flatten)]
        backbone: BackboneArgs,
        /// Folder of normal (defect-free) images or NIfTI volumes (.nii, .nii.gz; their slices);
        /// a BMAD train/good folder with an img/ inside is read from there.
        #[arg(long)]
        normal: PathBuf,
        /// Output model bundle (.safetensors).
        #[arg(long)]
        out: PathBuf,
        /// Model input size: S or HxW, multiples of the patch size.
        #[arg(long, default_value_t = FitSpec::default().size, value_parser = size)]
        size: InputSize,
        #[arg(long, default_value_t = FitSpec::default().method,
              value_parser = choice::<Method>(Method::names()))]
        method: Method,
        /// AR head variant: dilation 4 (dilated) or 1 (standard).
        #[arg(long, default_value_t = FitSpec::default().variant,
              value_parser = choice::<Variant>(Variant::names()))]
        variant: Variant,
        #[arg(long, default_value_t = FitSpec::default().epochs)]
        epochs: usize,
        /// Hidden channels of the AR head.
        #[arg(long, default_value_t = FitSpec::default().hidden)]
        hidden: usize,
        /// Masked convolution layers of the AR head.
        #[arg(long, default_value_t = FitSpec::default().layers)]
        layers: usize,
        /// Kernel size of the AR head (odd).
        #[arg(long, default_value_t = FitSpec::default().kernel)]
        kernel: usize,
        #[arg(long, default_value_t = FitSpec::default().batch_size)]
        batch_size: usize,
        #[arg(long, default_value_t = FitSpec::default().learning_rate)]
        learning_rate: f64,
        #[arg(long, default_value_t = FitSpec::default().weight_decay)]
        weight_decay: f64,
        /// Chance per batch that the input gets feature noise.
        #[arg(long, default_value_t = FitSpec::default().noise_prob)]
        noise_prob: f64,
        /// Feature noise size relative to each channel's spread.
        #[arg(long, default_value_t = FitSpec::default().noise_scale)]
        noise_scale: f64,
        #[arg(long, default_value_t = FitSpec::default().seed)]
        seed: u64,
        /// Share of the normal images held out for calibration.
        #[arg(long, default_value_t = FitSpec::default().holdout)]
        holdout: f64,
        /// Threshold = this quantile of the held-out normal images' scores.
        #[arg(long, default_value_t = FitSpec::default().quantile)]
        quantile: f64,
        /// AR head: patch scores as the squared error (none) or standardised per grid position.
        #[arg(long, default_value_t = FitSpec::default().position_norm,
              value_parser = choice::<PositionNorm>(PositionNorm::names()))]
        position_norm: PositionNorm,
        /// Intensity window: as-is (8-bit pictures), ct-brain, ct-liver, ct-soft-tissue, ct-bone,
        /// ct:CENTRE,WIDTH (HU), percentile (0.5-99.5 % per volume) or percentile:LOW,HIGH.
        #[arg(long, default_value_t = FitSpec::default().window, value_parser = window)]
        window: Window,
        /// Volumes: the plane they are cut into (slices shown the radiological way).
        #[arg(long, default_value_t = FitSpec::default().plane,
              value_parser = choice::<Plane>(Plane::names()))]
        plane: Plane,
        /// Volumes: skip slices where fewer than 1 % of the pixels are brighter than this grey
        /// level (0-1, after the window); 0 keeps every slice.
        #[arg(long, default_value_t = FitSpec::default().skip_empty)]
        skip_empty: f32,
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

    impl FitArgs {
        fn spec(&self) -> FitSpec {
            FitSpec {
                method: self.method,
                variant: self.variant,
                hidden: self.hidden,
                layers: self.layers,
                kernel: self.kernel,
                epochs: self.epochs,
                batch_size: self.batch_size,
                learning_rate: self.learning_rate,
                weight_decay: self.weight_decay,
                noise_prob: self.noise_prob,
                noise_scale: self.noise_scale,
                seed: self.seed,
                size: self.size,
                holdout: self.holdout,
                quantile: self.quantile,
                position_norm: self.position_norm,
                window: self.window,
                plane: self.plane,
                skip_empty: self.skip_empty,
            }
        }
    }

    /// How overlays are drawn: every default is `OverlayStyle::default()`'s (as the page starts).
    #[derive(Args)]
    struct StyleArgs {
        #[arg(long, default_value_t = OverlayStyle::default().colormap,
              value_parser = choice::<Colormap>(Colormap::names()))]
        colormap: Colormap,
        /// Opacity of the map's hottest colour, 0 to 1.
        #[arg(long, default_value_t = OverlayStyle::default().opacity)]
        opacity: f32,
        /// Leave out the outline of the region above the threshold.
        #[arg(long)]
        no_contour: bool,
    }

    impl StyleArgs {
        fn style(&self) -> Result<OverlayStyle, String> {
            if !(0.0..=1.0).contains(&self.opacity) {
                return Err(format!("--opacity must be in [0, 1], got {}", self.opacity));
            }
            Ok(OverlayStyle {
                colormap: self.colormap,
                opacity: self.opacity,
                contour: !self.no_contour,
            })
        }
    }

    #[derive(Args)]
    struct ScoreArgs {
        #[command(flatten)]
        backbone: BackboneArgs,
        /// Model bundle from `dino-ar fit`.
        #[arg(long)]
        model: PathBuf,
        /// Images or NIfTI volumes to score, or folders of them. A volume gets a row per slice
        /// and one for the whole (the worst slice), a NIfTI anomaly map and an overlay folder.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Output folder for scores.csv and the overlays.
        #[arg(long, default_value = "dino-ar-scores")]
        out: PathBuf,
        #[command(flatten)]
        style: StyleArgs,
    }

    #[derive(Args)]
    struct EvalArgs {
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
              value_parser = choice::<Protocol>(Protocol::names()))]
        protocol: Protocol,
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
        #[arg(long, default_value_t = FitSpec::default().size, value_parser = size,
              conflicts_with = "pixels")]
        size: InputSize,
        /// Already normalised input: safetensors with `pixel_values` [1, 3, H, W].
        #[arg(long)]
        pixels: Option<PathBuf>,
        /// Output safetensors file.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        device: DeviceArgs,
    }

    pub fn main() -> ExitCode {
        let cli = Cli::parse();
        let result = match cli.command {
            Command::Embed(args) => embed(args),
            Command::Fit(args) => fit(args),
            Command::Score(args) => score(args),
            Command::Eval(args) => eval(args),
            Command::Bench(args) => crate::bench::run(args),
            Command::RandomBackbone(args) => random_backbone(args),
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

    /// Load weights, with `config.json` from `--config` or from beside the weights, in
    /// `precision` where the device has it (stderr says when it has not).
    fn backbone(
        path: &Path,
        config: Option<&Path>,
        device: &Device,
        precision: Precision,
    ) -> Result<LoadedBackbone, String> {
        let mut loaded = read_backbone(path, config, device)?;
        let (model, note) = loaded.model.with_precision(precision);
        match note {
            Some(note) => eprintln!("precision: {} ({note})", model.precision()),
            None if precision != Precision::default() => eprintln!("precision: {precision}"),
            None => {}
        }
        loaded.model = model;
        Ok(loaded)
    }

    /// The weights as the file has them (f32 on the device).
    fn read_backbone(
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
        let device = args.device.open()?;
        let loaded = backbone(
            &args.backbone,
            args.config.as_deref(),
            &device,
            args.device.precision,
        )?;
        let model = &loaded.model;
        let (pixels, height, width) = match (&args.image, &args.pixels) {
            (Some(image), _) => {
                let (h, w) = check_size(model, args.size)
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
        let input = model.pixels_tensor(pixels, height, width).map_err(|e| {
            let what = args
                .pixels
                .as_ref()
                .map_or("--size".into(), |p| p.display().to_string());
            format!("{what}: {e}")
        })?;
        let out = model.forward(input)?;
        let [_, n, d] = out.patch_tokens.dims();
        let patch = pollster::block_on(read_back(out.patch_tokens, "patch tokens"))
            .map_err(|e| e.to_string())?;
        let cls = pollster::block_on(read_back(out.cls_token, "class token"))
            .map_err(|e| e.to_string())?;
        let bytes = write_safetensors_f32(
            &[
                ("patch_tokens", vec![1, n, d], &patch),
                ("cls_token", vec![1, d], &cls),
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

    fn random_backbone(args: RandomBackboneArgs) -> Result<(), String> {
        let spec = RandomBackbone {
            seed: args.seed,
            width: args.width,
            layers: args.layers,
            mlp: args.mlp,
            gated: args.gated,
            registers: args.registers,
            patch: args.patch,
        };
        let config = spec.config();
        let bytes = spec.weights().map_err(|e| e.to_string())?;
        std::fs::write(&args.out, &bytes)
            .map_err(|e| format!("cannot write {}: {e}", args.out.display()))?;
        eprintln!(
            "{}: random DINOv3 ViT (width {}, {} layers, {} heads, patch {}, seed {}), {:.1} MB",
            args.out.display(),
            config.hidden_size,
            config.num_layers,
            config.num_heads,
            config.patch_size,
            args.seed,
            bytes.len() as f64 / 1e6
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

    /// Read a picture or a volume, or name it, count it and move on: one bad file never stops a
    /// batch.
    fn read_or_skip(pb: &ProgressBar, path: &Path, skipped: &mut Vec<String>) -> Option<Input> {
        read_source_or_skip(pb, &data::Source::File(path.to_path_buf()), skipped)
    }

    /// [`read_or_skip`] for a file or a DICOM series.
    fn read_source_or_skip(
        pb: &ProgressBar,
        source: &data::Source,
        skipped: &mut Vec<String>,
    ) -> Option<Input> {
        source
            .read()
            .map_err(|e| {
                say(pb, format!("skipping {e}"));
                skipped.push(e);
            })
            .ok()
    }

    /// What a file says about how it was read (a 4-D file's first volume, …), shown once.
    fn notes(pb: &ProgressBar, path: &Path, notes: &[String]) {
        for note in notes {
            say(pb, format!("{}: {note}", path.display()));
        }
    }

    /// The closing line about skipped files, if any were.
    fn skipped_summary(skipped: &[String], total: usize) {
        if !skipped.is_empty() {
            eprintln!(
                "skipped {} of {total} files (unreadable, not a supported image or volume, or not \
                 for this window; named above)",
                skipped.len()
            );
        }
    }

    fn fit(args: FitArgs) -> Result<(), String> {
        let started = Instant::now();
        let spec = args.spec();
        spec.validate().map_err(|e| e.to_string())?;
        if args.valid.is_some() && spec.method != Method::Ar {
            return Err(
                "--valid picks the AR head's best epoch; the kNN baseline has no epochs".into(),
            );
        }
        let device = args.backbone.device.open()?;
        let backbone = backbone(
            &args.backbone.backbone,
            args.backbone.config.as_deref(),
            &device,
            args.backbone.device.precision,
        )?
        .model;
        let size =
            check_size(&backbone, spec.size).map_err(|e| format!("--size {}: {e}", spec.size))?;
        let files = data::normal_files(&args.normal)?;
        if files.is_empty() {
            return Err(format!(
                "{}: the folder is empty: no images to fit on",
                args.normal.display()
            ));
        }
        let root = if args.no_cache {
            None
        } else {
            args.cache.clone().or_else(data::default_cache_root)
        };
        let cache = FeatureCache::new(root, &backbone.fingerprint, backbone.precision(), size);
        let (normals, sources, grid) =
            embed_all(&backbone, data::sources(files), &spec, size, &cache)?;
        // Sized by the first progress report: fit_model owns the hold-out split and the batching.
        let pb = bar(0, "training");
        let d = backbone.config.hidden_size;
        let (grids, sizes) =
            NormalGrid::stack(&normals, (d, grid.0, grid.1), &device).map_err(|e| e.to_string())?;
        // The grids are in `grids` now (on the device, or on the host when a set is larger than
        // the GPU takes in one buffer): free the per-image copies before training.
        drop(normals);
        let validation = args
            .valid
            .as_deref()
            .map(|dir| validation_set(&backbone, dir, &spec, size))
            .transpose()?;
        let fitting = fit_model_validated(
            grids,
            &sizes,
            Some(&sources),
            &backbone,
            &spec,
            validation.as_ref(),
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
        );
        let bytes = pollster::block_on(fitting).map_err(|e| e.to_string())?;
        pb.finish();
        std::fs::write(&args.out, &bytes)
            .map_err(|e| format!("cannot write {}: {e}", args.out.display()))?;
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

    /// The normal images' grids, the input each came from, and the grid size.
    type Embedded = (Vec<NormalGrid>, Vec<usize>, (usize, usize));

    /// Embed every readable picture and every slice of every readable volume, through the
    /// spec's window (from the cache when possible); the others are named and skipped. Returns
    /// the grids and the grid size.
    fn embed_all(
        backbone: &DinoV3,
        files: Vec<data::Source>,
        spec: &FitSpec,
        size: (usize, usize),
        cache: &FeatureCache,
    ) -> Result<Embedded, String> {
        let pb = bar(files.len(), "embedding");
        let mut out = Vec::with_capacity(files.len());
        let mut skipped = Vec::new();
        let mut grid_size = (0, 0);
        // Which file each grid came from: a volume's slices stay together in the hold-out split.
        let mut sources = Vec::with_capacity(files.len());
        let mut embed =
            |img: &RgbImage, source: usize, what: &dyn Fn() -> String| -> Result<(), String> {
                let normal = match cache.get(img) {
                    Some((grid, shape)) => {
                        grid_size = (shape[1], shape[2]);
                        NormalGrid {
                            grid,
                            width: img.width,
                            height: img.height,
                        }
                    }
                    None => {
                        let (normal, g) =
                            pollster::block_on(NormalGrid::embed(backbone, img, size))
                                .map_err(|e| format!("{}: {e}", what()))?;
                        grid_size = g;
                        let d = backbone.config.hidden_size;
                        cache.put(img, &normal.grid, &[d, g.0, g.1]);
                        normal
                    }
                };
                out.push(normal);
                sources.push(source);
                Ok(())
            };
        for (index, source) in files.iter().enumerate() {
            pb.inc(1);
            let path = source.path();
            let Some(input) = read_source_or_skip(&pb, source, &mut skipped) else {
                continue;
            };
            let refuse = |skipped: &mut Vec<String>, e: String| {
                let e = format!("{}: {e}", path.display());
                say(&pb, format!("skipping {e}"));
                skipped.push(e);
            };
            match input {
                Input::Picture(img) => match spec.window.picture(img) {
                    Ok(img) => embed(&img, index, &|| path.display().to_string())?,
                    Err(e) => refuse(&mut skipped, e),
                },
                Input::Volume(volume) => {
                    notes(&pb, path, &volume.notes);
                    let slices = match volume.slices(&spec.window, spec.plane) {
                        Ok(slices) => slices,
                        Err(e) => {
                            refuse(&mut skipped, e);
                            continue;
                        }
                    };
                    if let Some(w) = &slices.warning {
                        say(&pb, format!("{}: {w}", path.display()));
                    }
                    let mut used = 0;
                    for n in 0..slices.count() {
                        let img = slices.image(n);
                        if spec.skip_empty > 0.0 && is_background(&img, spec.skip_empty) {
                            continue;
                        }
                        embed(&img, index, &|| {
                            format!("{} {} slice {n}", path.display(), spec.plane)
                        })?;
                        used += 1;
                    }
                    say(
                        &pb,
                        format!(
                            "{}: {used} of {} {} slices{}",
                            path.display(),
                            slices.count(),
                            spec.plane,
                            if used < slices.count() {
                                " (the others are background only: --skip-empty)"
                            } else {
                                ""
                            }
                        ),
                    );
                }
            }
        }
        pb.finish_and_clear();
        skipped_summary(&skipped, files.len());
        if out.is_empty() {
            return Err("none of the files is a readable image or volume for this window".into());
        }
        Ok((out, sources, grid_size))
    }

    fn detector(args: &BackboneArgs, model: &Path) -> Result<Detector, String> {
        let device = args.device.open()?;
        let backbone = backbone(
            &args.backbone,
            args.config.as_deref(),
            &device,
            args.device.precision,
        )?
        .model;
        let bundle =
            Bundle::read(&read(model)?).map_err(|e| format!("{}: {e}", model.display()))?;
        Detector::new(backbone, &bundle).map_err(|e| format!("{}: {e}", model.display()))
    }

    fn score(args: ScoreArgs) -> Result<(), String> {
        let style = args.style.style()?;
        let det = detector(&args.backbone, &args.model)?;
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
        let files = data::sources(files);
        let threshold = det.meta.calibration.threshold;
        let scale = det.meta.calibration.scale();
        let (window, plane) = (det.meta.spec.window, det.meta.spec.plane);
        let mut rows = Vec::with_capacity(files.len());
        let pb = bar(files.len(), "scoring");
        let mut skipped = Vec::new();
        // Output names: `<stem>_overlay.png` (`<stem>_anomaly.nii.gz` and `<stem>_overlays/` for
        // a volume), numbered when two inputs share a stem.
        let mut used = std::collections::HashSet::new();
        let mut unique = |stem: &str| {
            let mut name = stem.to_string();
            for k in 2.. {
                if used.insert(name.clone()) {
                    break;
                }
                name = format!("{stem}_{k}");
            }
            name
        };
        let row = |file: &str| ScoreRow {
            file: file.to_string(),
            score: None,
            score_top1: None,
            threshold,
            error: None,
            slice: None,
            worst_slice: None,
            note: None,
        };
        let write = |path: PathBuf, bytes: &[u8]| {
            std::fs::write(&path, bytes)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))
        };
        for source in &files {
            pb.inc(1);
            let path = source.path();
            let file = path.display().to_string();
            let refused = |e: String| ScoreRow {
                error: Some(e),
                ..row(&file)
            };
            let Some(input) = read_source_or_skip(&pb, source, &mut skipped) else {
                rows.push(refused(skipped.last().cloned().unwrap_or_default()));
                continue;
            };
            let stem = unique(&source.stem());
            match input {
                Input::Picture(img) => {
                    let img = match window.picture(img) {
                        Ok(img) => img,
                        Err(e) => {
                            say(&pb, format!("skipping {file}: {e}"));
                            skipped.push(e.clone());
                            rows.push(refused(e));
                            continue;
                        }
                    };
                    let r =
                        pollster::block_on(det.score(&img)).map_err(|e| format!("{file}: {e}"))?;
                    rows.push(ScoreRow {
                        score: Some(r.score.max),
                        score_top1: Some(r.score.top1),
                        ..row(&file)
                    });
                    let png = overlay_png(&img, &r.map, &scale, &style)?;
                    write(args.out.join(format!("{stem}_overlay.png")), &png)?;
                    let verdict = dino_ar::score::verdict(r.score.max, threshold);
                    say(&pb, format!("{:>10.5}  {verdict:<9}  {file}", r.score.max));
                }
                Input::Volume(volume) => {
                    notes(&pb, path, &volume.notes);
                    let overlays = args.out.join(format!("{stem}_overlays"));
                    std::fs::create_dir_all(&overlays)
                        .map_err(|e| format!("cannot create {}: {e}", overlays.display()))?;
                    let scored = det.score_volume(&volume, |n, img, r| {
                        rows.push(ScoreRow {
                            score: Some(r.score.max),
                            score_top1: Some(r.score.top1),
                            slice: Some(n),
                            ..row(&file)
                        });
                        let png = overlay_png(img, &r.map, &scale, &style)?;
                        write(overlays.join(format!("{plane}_{n:04}.png")), &png)
                    });
                    let v = match pollster::block_on(scored) {
                        Ok(v) => v,
                        Err(dino_ar::detector::DetectorError::Window(e)) => {
                            say(&pb, format!("skipping {file}: {e}"));
                            skipped.push(e.clone());
                            rows.push(refused(e));
                            continue;
                        }
                        Err(e) => return Err(format!("{file}: {e}")),
                    };
                    let mut notes = volume.notes.clone();
                    if let Some(w) = &v.warning {
                        say(&pb, format!("{file}: {w}"));
                        notes.push(w.clone());
                    }
                    let worst = v.worst().clone();
                    rows.push(ScoreRow {
                        score: Some(worst.score.max),
                        score_top1: Some(worst.score.top1),
                        worst_slice: Some(v.worst),
                        note: (!notes.is_empty()).then(|| notes.join("; ")),
                        ..row(&file)
                    });
                    let description = format!("dino-ar anomaly map, threshold {threshold}");
                    write(
                        args.out.join(format!("{stem}_anomaly.nii.gz")),
                        &nifti::write_gz(&volume.with_data(v.map), &description),
                    )?;
                    let verdict = dino_ar::score::verdict(worst.score.max, threshold);
                    say(
                        &pb,
                        format!(
                            "{:>10.5}  {verdict:<9}  {file} (worst: {plane} slice {} of {})",
                            worst.score.max,
                            v.worst,
                            v.slices.len()
                        ),
                    );
                }
            }
        }
        pb.finish_and_clear();
        let csv_path = args.out.join("scores.csv");
        write(csv_path.clone(), scores_csv::write(&rows).as_bytes())?;
        skipped_summary(&skipped, files.len());
        if skipped.len() == files.len() {
            return Err("none of the files is a readable image or volume for this model".into());
        }
        eprintln!(
            "scored {} files: wrote {} and the overlays",
            files.len() - skipped.len(),
            csv_path.display()
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
            each_test_image(
                t,
                &spec.window,
                spec.plane,
                &pb,
                |img, anomalous, mask, what| {
                    let mask = match (mask, anomalous) {
                        (Some(m), _) => m,
                        (None, false) => vec![false; img.width * img.height],
                        (None, true) => {
                            say(&pb, format!("no mask for {what}: left out of validation"));
                            return Ok(());
                        }
                    };
                    let grid = dino_ar::detector::embed(backbone, img, size)
                        .map_err(|e| format!("{what}: {e}"))?;
                    grids.push(grid);
                    masks.push((mask, img.width, img.height));
                    Ok(())
                },
            )?;
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

    /// Every image a test file holds — the picture, or each slice of a volume with its mask
    /// slice — through the model's window: `visit(image, anomalous, mask, what)`. A file that
    /// cannot be read or windowed is named and returned as the reason (nothing is visited).
    fn each_test_image(
        t: &data::TestImage,
        window: &Window,
        plane: Plane,
        pb: &ProgressBar,
        mut visit: impl FnMut(&RgbImage, bool, Option<Vec<bool>>, &str) -> Result<(), String>,
    ) -> Result<Option<String>, String> {
        let file = t.path.display().to_string();
        let mut skipped = Vec::new();
        let Some(input) = read_or_skip(pb, &t.path, &mut skipped) else {
            return Ok(skipped.pop());
        };
        let refuse = |e: String| {
            say(pb, format!("skipping {file}: {e}"));
            Ok(Some(format!("{file}: {e}")))
        };
        match input {
            Input::Picture(img) => {
                let img = match window.picture(img) {
                    Ok(img) => img,
                    Err(e) => return refuse(e),
                };
                let mask = t
                    .mask
                    .as_deref()
                    .map(|m| data::read_mask(m, img.width, img.height))
                    .transpose()?;
                visit(&img, t.anomalous, mask, &file)?;
            }
            Input::Volume(volume) => {
                notes(pb, &t.path, &volume.notes);
                let slices = match volume.slices(window, plane) {
                    Ok(slices) => slices,
                    Err(e) => return refuse(e),
                };
                if let Some(w) = &slices.warning {
                    say(pb, format!("{file}: {w}"));
                }
                // A volume's mask is a volume of the same anatomy, cut the same way.
                let mask = match &t.mask {
                    None => None,
                    Some(m) => match data::read_input(m)? {
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
                    let img = slices.image(n);
                    let mask_n = mask
                        .as_ref()
                        .map(|(m, g)| m.slice(g, n).iter().map(|&v| v > 0.5).collect::<Vec<_>>());
                    // With a mask, a slice is anomalous where the mask marks something.
                    let anomalous = match &mask_n {
                        Some(m) => m.iter().any(|&v| v),
                        None => t.anomalous,
                    };
                    visit(
                        &img,
                        anomalous,
                        mask_n,
                        &format!("{file} {plane} slice {n}"),
                    )?;
                }
            }
        }
        Ok(None)
    }

    fn eval(args: EvalArgs) -> Result<(), String> {
        let started = Instant::now();
        let det = detector(&args.backbone, &args.model)?;
        let (window, plane) = (det.meta.spec.window, det.meta.spec.plane);
        let test = data::test_set(&args.data, &args.split)?;
        let pb = bar(test.len(), "evaluating");
        let mut evaluation = Evaluation::with_protocol(args.protocol);
        let mut skipped = Vec::new();
        // Score one image (a picture or a slice) and hand it to the evaluation.
        let add = |evaluation: &mut Evaluation,
                   img: &RgbImage,
                   t: &data::TestImage,
                   anomalous: bool,
                   mask: Option<Vec<bool>>,
                   what: &str|
         -> Result<(), String> {
            let r = pollster::block_on(det.score(img)).map_err(|e| format!("{what}: {e}"))?;
            let (map, mask, width, height) = args.protocol.view(
                &r.grid,
                (r.grid_h, r.grid_w),
                r.map,
                (img.width, img.height),
                mask,
            );
            let with_pixels = evaluation
                .add(Scored {
                    category: &t.category,
                    anomalous,
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
        };
        for t in &test {
            pb.inc(1);
            let refused = each_test_image(t, &window, plane, &pb, |img, anomalous, mask, what| {
                add(&mut evaluation, img, t, anomalous, mask, what)
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
            std::fs::write(path, text)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        Ok(())
    }
}
