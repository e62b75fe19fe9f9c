//! `dino-ar embed`: one image (or an already normalised pixel tensor) through the backbone, the
//! embeddings written as safetensors.

use std::path::PathBuf;

use clap::Args;
use dino_ar::detector::check_size;
use dino_ar::infra::readback::read_back;
use dino_ar::input;
use dino_ar::spec::{FitSpec, InputSize};
use dino_ar::weights::{TensorFile, write_safetensors_f32};

use crate::args::{DeviceArgs, load_weights, read, write};

#[derive(Args)]
pub struct EmbedArgs {
    /// DINOv3 weights: Hugging Face safetensors, Meta .pth, or Meta keys in safetensors.
    #[arg(long)]
    backbone: PathBuf,
    /// Hugging Face config.json (default: a config.json beside the weights, if present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Image to embed (PNG, JPEG, WebP, BMP, TIFF; 8 or 16 bit; grey, RGB, RGBA, palette).
    #[arg(long, conflicts_with = "pixels", required_unless_present = "pixels")]
    image: Option<PathBuf>,
    /// Model input size: S (square) or HxW, multiples of the patch size.
    #[arg(long, default_value_t = FitSpec::default().size, conflicts_with = "pixels")]
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

pub fn run(args: EmbedArgs) -> Result<(), String> {
    let device = args.device.open()?;
    let loaded = load_weights(
        &args.backbone,
        args.config.as_deref(),
        &device,
        args.device.precision,
    )?;
    let model = &loaded.model;
    let (pixels, height, width) = match (&args.image, &args.pixels) {
        (Some(image), _) => {
            let (h, w) =
                check_size(model, args.size).map_err(|e| format!("--size {}: {e}", args.size))?;
            let img = input::decode_picture(&read(image)?)
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
            let values = t
                .to_f32("pixel_values")
                .map_err(|e| format!("{}: {e}", path.display()))?;
            (values, h, w)
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
    let cls =
        pollster::block_on(read_back(out.cls_token, "class token")).map_err(|e| e.to_string())?;
    let bytes = write_safetensors_f32(
        &[
            ("patch_tokens", vec![1, n, d], &patch),
            ("cls_token", vec![1, d], &cls),
        ],
        None,
    )
    .map_err(|e| e.to_string())?;
    write(&args.out, &bytes)?;
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
