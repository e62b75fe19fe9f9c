//! `dino-ar random-backbone`: a DINOv3 ViT with seeded random weights, for benchmarks and demos
//! where no pretrained weights may be used.

use std::path::PathBuf;

use clap::Args;
use dino_ar::backbone::random::RandomBackbone;

use crate::args::write;

/// Every default is `RandomBackbone::default()`'s (ViT-S/16, seed 0).
#[derive(Args)]
pub struct RandomBackboneArgs {
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

pub fn run(args: RandomBackboneArgs) -> Result<(), String> {
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
    write(&args.out, &bytes)?;
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
