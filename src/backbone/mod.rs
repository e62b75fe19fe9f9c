//! The DINOv3 ViT backbone: image tensor in, patch-embedding grid out.

pub mod config;
pub mod cpu_kernels;
// The threaded browser build has no GPU (Cargo.toml).
#[cfg(not(target_feature = "atomics"))]
pub mod gpu_linear;
pub mod load;
pub mod model;
pub mod random;
pub mod rope;
pub mod source;

pub use config::BackboneConfig;
pub use load::Layout;
pub use model::{BackboneOutput, DinoV3};

use burn::tensor::Device;

use crate::weights::{TensorFile, WeightsError};

/// A backbone read from a weights file, with what was learned about the file on the way.
pub struct LoadedBackbone {
    pub model: DinoV3,
    pub layout: Layout,
    pub format: crate::weights::FileFormat,
}

/// Read DINOv3 weights (HF safetensors, Meta `.pth`, or Meta keys in safetensors) from bytes.
///
/// The architecture comes from the tensor shapes; `hf_config_json` (a Hugging Face
/// `config.json`) may add what shapes cannot tell: head count, LayerNorm eps, RoPE theta.
pub fn load_backbone(
    bytes: &[u8],
    hf_config_json: Option<&str>,
    device: &Device,
) -> Result<LoadedBackbone, WeightsError> {
    let file = TensorFile::from_bytes(bytes)?;
    let (layout, _) = load::detect(&file)?;
    let format = file.format;
    let (mut config, store) = load::infer_config(file)?;
    if let Some(json) = hf_config_json {
        config = config.with_hf_config(json)?;
    }
    let model = load::build(store, &config, device)?;
    Ok(LoadedBackbone {
        model,
        layout,
        format,
    })
}
