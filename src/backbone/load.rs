//! Recognise the two published DINOv3 key layouts, infer the architecture from tensor shapes,
//! and build [`DinoV3`] (its modules load themselves from a [`Source`]; the layouts' names are a
//! table in [`super::source`]).
//!
//! * Hugging Face (`facebook/dinov3-*`): `embeddings.*`, `layer.N.attention.{q,k,v,o}_proj`,
//!   `layer_scale{1,2}.lambda1`, `mlp.{up,down,gate}_proj`, `norm`.
//! * Meta (`dinov3_*.pth`): `cls_token`, `storage_tokens`, fused `blocks.N.attn.qkv` with a
//!   `bias_mask` that zeroes the k bias, `ls{1,2}.gamma`, `mlp.fc{1,2}` (or SwiGLU `mlp.w{1,2,3}`),
//!   `rope_embed.periods`.
//!
//! Keys may carry a common prefix (`model.`, `backbone.`, `teacher.backbone.`, ...).

use burn::tensor::Device;

use super::config::BackboneConfig;
use super::model::DinoV3;
pub use super::source::Layout;
use super::source::{Source, Store};
use crate::weights::{TensorFile, WeightsError};

const HF_PATCH: &str = "embeddings.patch_embeddings.weight";
const META_PATCH: &str = "patch_embed.proj.weight";

/// Find the layout and key prefix from the patch-embedding weight.
pub fn detect(file: &TensorFile) -> Result<(Layout, String), WeightsError> {
    for name in file.names() {
        if let Some(prefix) = name.strip_suffix(HF_PATCH) {
            return Ok((Layout::HuggingFace, prefix.to_string()));
        }
        if let Some(prefix) = name.strip_suffix(META_PATCH) {
            return Ok((Layout::Meta, prefix.to_string()));
        }
    }
    let names: Vec<&str> = file.names().collect();
    let hint = if names
        .iter()
        .any(|n| n.ends_with("embeddings.position_embeddings"))
    {
        " It has learned position embeddings: this looks like DINOv2 or another ViT, not DINOv3."
    } else {
        ""
    };
    let sample: Vec<&str> = names.iter().take(5).copied().collect();
    Err(WeightsError::UnknownLayout(format!(
        "found {} tensors ({}{}) but neither `{HF_PATCH}` (Hugging Face DINOv3) nor \
         `{META_PATCH}` (Meta DINOv3).{hint}",
        names.len(),
        sample.join(", "),
        if names.len() > 5 { ", ..." } else { "" },
    )))
}

/// Infer the architecture from the tensors (heads = width / 64, as in every released DINOv3).
pub fn infer_config(file: TensorFile) -> Result<(BackboneConfig, Store), WeightsError> {
    let (layout, prefix) = detect(&file)?;
    let store = Store::new(file, layout, prefix, &Device::flex());
    let config = infer(&store.root())?;
    Ok((config, store))
}

fn infer(src: &Source) -> Result<BackboneConfig, WeightsError> {
    let patch = src.pp("embeddings.patch_embeddings");
    let [d, c, p, p2] = patch.require_shape("weight")?[..] else {
        return Err(WeightsError::ShapeMismatch {
            name: patch.key("weight"),
            found: patch.require_shape("weight")?,
            expected: vec![384, 3, 16, 16],
        });
    };
    if p != p2 {
        return Err(WeightsError::Config(format!(
            "non-square patches {p}x{p2} are not supported"
        )));
    }
    let num_registers = match src.shape("embeddings.register_tokens") {
        Some(s) if s.len() == 3 => s[1],
        Some(found) => {
            return Err(WeightsError::ShapeMismatch {
                name: src.key("embeddings.register_tokens"),
                found,
                expected: vec![1, 4, d],
            });
        }
        None => 0,
    };
    let blocks = src.pp("layer");
    let num_layers = (0..)
        .take_while(|&i| blocks.pp(i).has("norm1.weight"))
        .count();
    if num_layers == 0 {
        blocks.pp(0).require_shape("norm1.weight")?;
    }
    let mlp = blocks.pp(0).pp("mlp");
    let gated = mlp.has("gate_proj.weight");
    let intermediate_size = match mlp.require_shape("up_proj.weight")?[..] {
        [out, inp] if inp == d => out,
        ref found => {
            return Err(WeightsError::ShapeMismatch {
                name: mlp.key("up_proj.weight"),
                found: found.to_vec(),
                expected: vec![4 * d, d],
            });
        }
    };
    let config = BackboneConfig {
        patch_size: p,
        in_channels: c,
        hidden_size: d,
        num_layers,
        num_heads: (d / 64).max(1),
        num_registers,
        intermediate_size,
        gated_mlp: gated,
        layer_norm_eps: 1e-5,
        rope_theta: 100.0,
    };
    config.validate()?;
    Ok(config)
}

/// Build the model on `device`, checking every tensor against `config`.
pub fn build(
    store: Store,
    config: &BackboneConfig,
    device: &Device,
) -> Result<DinoV3, WeightsError> {
    config.validate()?;
    let store = store.on(device);
    DinoV3::load(&store.root(), config)
}
