//! A DINOv3 ViT with random weights, from a seed: the Hugging Face layout as a safetensors file,
//! read back by the same loader as real weights. No pretrained weights can be shipped (their
//! licence gates them), so benchmarks and demos that need a full-size model make one here.
//!
//! The recipe is `tools/fixtures/make_fixtures.py`'s, so the activations have the same scale as
//! the parity fixtures: LayerNorm weights 1 + 0.2·N, biases 0.1·N, layer scales 0.5 + 0.2·N, tokens
//! N(0, 1), matrices N / √fan-in, every value rounded to bfloat16 precision — N drawn as
//! [`crate::infra::rng::Rng::normal`] does, bit-identical on every platform (the page makes the same
//! model as the CLI). A random backbone
//! embeds colour and texture, not meaning: it shows the pipeline, not the method's accuracy.

use half::bf16;

use super::BackboneConfig;
use crate::infra::rng::Rng;
use crate::weights::{WeightsError, write_safetensors_f32};

/// What to generate: a DINOv3 ViT's shape and the seed; the default is ViT-S/16, seed 0. The
/// CLI's `random-backbone` flags and the JS API's `randomBackbone` options are these fields.
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RandomBackbone {
    /// Default 0.
    pub seed: u64,
    /// Embedding width; heads = width / 64. Default 384.
    pub width: usize,
    /// Transformer blocks. Default 12.
    pub layers: usize,
    /// Each block's MLP width. Default 1536.
    pub mlp: usize,
    /// SwiGLU MLPs (as ViT-S+/16, ViT-H+/16) instead of GELU. Default false.
    pub gated: bool,
    /// Register tokens. Default 4.
    pub registers: usize,
    /// Patch side in pixels. Default 16.
    pub patch: usize,
}

impl Default for RandomBackbone {
    fn default() -> Self {
        let c = BackboneConfig::vits16();
        Self {
            seed: 0,
            width: c.hidden_size,
            layers: c.num_layers,
            mlp: c.intermediate_size,
            gated: c.gated_mlp,
            registers: c.num_registers,
            patch: c.patch_size,
        }
    }
}

impl RandomBackbone {
    pub fn config(&self) -> BackboneConfig {
        BackboneConfig {
            hidden_size: self.width,
            num_heads: (self.width / 64).max(1),
            num_layers: self.layers,
            intermediate_size: self.mlp,
            gated_mlp: self.gated,
            num_registers: self.registers,
            patch_size: self.patch,
            ..BackboneConfig::vits16()
        }
    }

    /// The weights, as a Hugging Face safetensors file.
    pub fn weights(&self) -> Result<Vec<u8>, WeightsError> {
        random_weights(&self.config(), self.seed)
    }
}

/// How one tensor's values are drawn.
enum Init {
    Zero,
    /// `centre + spread·N(0, 1)`
    Around(f32, f32),
    /// `N(0, 1) / √fan-in`, fan-in being every dimension but the first.
    FanIn,
}

/// Every tensor of a Hugging Face `DINOv3ViTModel` shaped by `config`, in file order.
fn layout(c: &BackboneConfig) -> Vec<(String, Vec<usize>, Init)> {
    let (d, p, i) = (c.hidden_size, c.patch_size, c.intermediate_size);
    let mut t = vec![
        (
            "embeddings.cls_token".into(),
            vec![1, 1, d],
            Init::Around(0.0, 1.0),
        ),
        ("embeddings.mask_token".into(), vec![1, 1, d], Init::Zero),
        (
            "embeddings.patch_embeddings.weight".into(),
            vec![d, c.in_channels, p, p],
            Init::FanIn,
        ),
        (
            "embeddings.patch_embeddings.bias".into(),
            vec![d],
            Init::Around(0.0, 0.1),
        ),
    ];
    if c.num_registers > 0 {
        t.push((
            "embeddings.register_tokens".into(),
            vec![1, c.num_registers, d],
            Init::Around(0.0, 1.0),
        ));
    }
    let norm = |t: &mut Vec<(String, Vec<usize>, Init)>, name: String| {
        t.push((format!("{name}.weight"), vec![d], Init::Around(1.0, 0.2)));
        t.push((format!("{name}.bias"), vec![d], Init::Around(0.0, 0.1)));
    };
    let linear = |t: &mut Vec<(String, Vec<usize>, Init)>, name: String, out, inp, bias| {
        t.push((format!("{name}.weight"), vec![out, inp], Init::FanIn));
        if bias {
            t.push((format!("{name}.bias"), vec![out], Init::Around(0.0, 0.1)));
        }
    };
    for l in 0..c.num_layers {
        let b = format!("layer.{l}");
        norm(&mut t, format!("{b}.norm1"));
        // DINOv3 has no key bias (Meta masks it; Hugging Face leaves it out).
        for (proj, bias) in [
            ("q_proj", true),
            ("k_proj", false),
            ("v_proj", true),
            ("o_proj", true),
        ] {
            linear(&mut t, format!("{b}.attention.{proj}"), d, d, bias);
        }
        t.push((
            format!("{b}.layer_scale1.lambda1"),
            vec![d],
            Init::Around(0.5, 0.2),
        ));
        norm(&mut t, format!("{b}.norm2"));
        if c.gated_mlp {
            linear(&mut t, format!("{b}.mlp.gate_proj"), i, d, true);
        }
        linear(&mut t, format!("{b}.mlp.up_proj"), i, d, true);
        linear(&mut t, format!("{b}.mlp.down_proj"), d, i, true);
        t.push((
            format!("{b}.layer_scale2.lambda1"),
            vec![d],
            Init::Around(0.5, 0.2),
        ));
    }
    norm(&mut t, "norm".into());
    t
}

/// The largest random backbone made, in f32 bytes: DINOv3's largest model (ViT-7B) is ~27 GB,
/// more than a page or most machines can hold twice (the values, then the file).
pub const MAX_RANDOM_BYTES: u64 = 4 << 30;

/// Random weights for `config` from `seed`, as a Hugging Face safetensors file.
pub fn random_weights(config: &BackboneConfig, seed: u64) -> Result<Vec<u8>, WeightsError> {
    config.validate()?;
    let layout = layout(config);
    let bytes: u64 = layout
        .iter()
        .map(|(_, shape, _)| 4 * shape.iter().map(|&d| d as u64).product::<u64>())
        .sum();
    if bytes > MAX_RANDOM_BYTES {
        return Err(WeightsError::Config(format!(
            "a random backbone of width {} with {} layers would be {:.1} GB of weights; at most \
             {} GB are made",
            config.hidden_size,
            config.num_layers,
            bytes as f64 / 1e9,
            MAX_RANDOM_BYTES >> 30
        )));
    }
    let mut rng = Rng::new(seed);
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = layout
        .into_iter()
        .map(|(name, shape, init)| {
            let n: usize = shape.iter().product();
            let values = match init {
                Init::Zero => vec![0.0; n],
                Init::Around(centre, spread) => rng
                    .normal(n)
                    .into_iter()
                    .map(|z| centre + spread * z)
                    .collect(),
                Init::FanIn => {
                    let scale = 1.0 / (shape[1..].iter().product::<usize>() as f32).sqrt();
                    rng.normal(n).into_iter().map(|z| z * scale).collect()
                }
            };
            // bf16 precision: the file then reads the same as an f32, f16 or bf16 copy of it.
            let values = values
                .into_iter()
                .map(|v| bf16::from_f32(v).to_f32())
                .collect();
            (name, shape, values)
        })
        .collect();
    let views: Vec<(&str, Vec<usize>, &[f32])> = tensors
        .iter()
        .map(|(n, s, v)| (n.as_str(), s.clone(), v.as_slice()))
        .collect();
    write_safetensors_f32(&views, None)
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;
    use crate::backbone::load_backbone;

    #[test]
    fn a_random_backbone_loads_as_the_config_it_was_made_from() {
        let mut small = BackboneConfig {
            hidden_size: 128,
            num_layers: 2,
            num_heads: 2,
            intermediate_size: 256,
            ..BackboneConfig::vits16()
        };
        for gated in [false, true] {
            small.gated_mlp = gated;
            let bytes = random_weights(&small, 7).unwrap();
            let loaded = load_backbone(&bytes, None, &Device::flex()).unwrap();
            assert_eq!(loaded.model.config, small);
            let out = loaded
                .model
                .forward(
                    loaded
                        .model
                        .pixels_tensor(vec![0.5; 3 * 32 * 48], 32, 48)
                        .unwrap(),
                )
                .unwrap();
            let v = out.patch_tokens.into_data().try_into_vec::<f32>().unwrap();
            assert_eq!(v.len(), 2 * 3 * 128);
            assert!(v.iter().all(|x| x.is_finite()));
            let spread = v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32;
            assert!(spread > 1e-3, "the tokens are not all zero: {spread}");
        }
        // Nonsense shapes are refused by name, before anything is drawn.
        let e = random_weights(
            &BackboneConfig {
                hidden_size: 0,
                ..small.clone()
            },
            7,
        )
        .unwrap_err();
        assert!(e.to_string().contains("hidden size"), "{e}");
        let huge = BackboneConfig {
            hidden_size: 8192,
            num_heads: 128,
            intermediate_size: 32768,
            num_layers: 40,
            ..small.clone()
        };
        let e = random_weights(&huge, 7).unwrap_err();
        assert!(e.to_string().contains("GB of weights"), "{e}");
        // Same seed, same file; another seed, another model.
        assert_eq!(
            random_weights(&small, 7).unwrap(),
            random_weights(&small, 7).unwrap()
        );
        assert_ne!(
            random_weights(&small, 7).unwrap(),
            random_weights(&small, 8).unwrap()
        );
    }
}
