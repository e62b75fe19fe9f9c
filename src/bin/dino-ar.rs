//! The native command line: a thin shell over the library (files in, files out).

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;

    use burn::tensor::Device;
    use clap::{Args, Parser, Subcommand};
    use dino_ar::backbone::{LoadedBackbone, load_backbone};
    use dino_ar::preprocess::{RgbImage, parse_size};
    use dino_ar::weights::{TensorFile, write_safetensors_f32};

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
}
