//! The shape of a DINOv3 ViT: read from the weights, optionally refined by a Hugging Face config.

use serde::Deserialize;

use crate::weights::WeightsError;

/// Largest model input side accepted: attention is quadratic in the token count, and a typo in
/// `--size` should be an error, not an out-of-memory crash.
pub use crate::limits::MAX_INPUT_SIDE;

/// Everything the forward pass needs to know about the architecture.
#[derive(Debug, Clone, PartialEq)]
pub struct BackboneConfig {
    pub patch_size: usize,
    pub in_channels: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_registers: usize,
    pub intermediate_size: usize,
    /// SwiGLU MLP (ViT-S+/H+) instead of the plain GELU MLP.
    pub gated_mlp: bool,
    pub layer_norm_eps: f64,
    /// RoPE base: the periods are `rope_theta^(k / (head_dim/4))`.
    pub rope_theta: f64,
}

impl BackboneConfig {
    /// DINOv3 ViT-S/16 (facebook/dinov3-vits16-pretrain-lvd1689m).
    pub fn vits16() -> Self {
        Self {
            patch_size: 16,
            in_channels: 3,
            hidden_size: 384,
            num_layers: 12,
            num_heads: 6,
            num_registers: 4,
            intermediate_size: 1536,
            gated_mlp: false,
            layer_norm_eps: 1e-5,
            rope_theta: 100.0,
        }
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// Patch-grid size for an input of `height × width` pixels, or an error naming the problem.
    pub fn grid(&self, height: usize, width: usize) -> Result<(usize, usize), String> {
        let p = self.patch_size;
        if height == 0 || width == 0 || !height.is_multiple_of(p) || !width.is_multiple_of(p) {
            return Err(format!(
                "input size {height}x{width} is not a positive multiple of the patch size {p} \
                 in both dimensions"
            ));
        }
        if height > MAX_INPUT_SIDE || width > MAX_INPUT_SIDE {
            return Err(format!(
                "input size {height}x{width} is too large: at most {MAX_INPUT_SIDE} pixels per side"
            ));
        }
        Ok((height / p, width / p))
    }

    /// Tokens of a forward pass at `height × width`: the class token, the registers, the patches.
    pub fn tokens(&self, height: usize, width: usize) -> usize {
        let p = self.patch_size.max(1);
        1 + self.num_registers + (height / p) * (width / p)
    }

    /// Bytes of the largest single tensor of a forward pass at `height × width` (valid sizes
    /// only): the attention scores `[heads, N, N]` or an MLP's hidden `[N, width]`, in f32.
    pub fn largest_buffer(&self, height: usize, width: usize) -> u64 {
        let n = self.tokens(height, width) as u64;
        let attention = self.num_heads as u64 * n * n;
        let mlp = n * self.intermediate_size as u64;
        4 * attention.max(mlp)
    }

    /// The largest square input (a multiple of the patch size) whose tensors fit `limit` bytes.
    pub fn largest_square_within(&self, limit: u64) -> Option<usize> {
        let p = self.patch_size.max(1);
        (1..=MAX_INPUT_SIDE / p)
            .rev()
            .map(|k| k * p)
            .find(|&s| self.largest_buffer(s, s) <= limit)
    }

    pub fn validate(&self) -> Result<(), WeightsError> {
        let bad = |m: String| Err(WeightsError::Config(m));
        if self.hidden_size == 0 {
            return bad("hidden size must be positive".into());
        }
        if self.num_heads == 0 || !self.hidden_size.is_multiple_of(self.num_heads) {
            return bad(format!(
                "hidden size {} is not divisible by {} heads",
                self.hidden_size, self.num_heads
            ));
        }
        if !self.head_dim().is_multiple_of(4) {
            return bad(format!(
                "head dim {} must be a multiple of 4 for 2-D RoPE",
                self.head_dim()
            ));
        }
        if self.patch_size == 0 || self.num_layers == 0 || self.intermediate_size == 0 {
            return bad("patch size, depth and MLP width must be positive".into());
        }
        if !(self.layer_norm_eps > 0.0 && self.rope_theta > 0.0) {
            return bad("layer_norm_eps and rope_theta must be positive".into());
        }
        Ok(())
    }

    /// Overlay the fields a Hugging Face `config.json` states on a config inferred from weights.
    pub fn with_hf_config(mut self, json: &str) -> Result<Self, WeightsError> {
        let hf: HfConfig = serde_json::from_str(json)
            .map_err(|e| WeightsError::Config(format!("config.json is not valid: {e}")))?;
        let check = |name: &str, from_json: Option<usize>, from_weights: usize| match from_json {
            Some(v) if v != from_weights => Err(WeightsError::Config(format!(
                "config.json says {name} = {v} but the weights have {from_weights}"
            ))),
            _ => Ok(()),
        };
        check("hidden_size", hf.hidden_size, self.hidden_size)?;
        check("num_hidden_layers", hf.num_hidden_layers, self.num_layers)?;
        check(
            "num_register_tokens",
            hf.num_register_tokens,
            self.num_registers,
        )?;
        check("patch_size", hf.patch_size, self.patch_size)?;
        check(
            "intermediate_size",
            hf.intermediate_size,
            self.intermediate_size,
        )?;
        if let Some(h) = hf.num_attention_heads {
            self.num_heads = h;
        }
        if let Some(e) = hf.layer_norm_eps {
            self.layer_norm_eps = e;
        }
        if let Some(t) = hf.rope_theta {
            self.rope_theta = t;
        }
        if let Some(act) = hf.hidden_act.as_deref() {
            let expected = if self.gated_mlp { "silu" } else { "gelu" };
            if act != expected {
                return Err(WeightsError::Config(format!(
                    "config.json asks for hidden_act `{act}`; this MLP layout uses `{expected}`"
                )));
            }
        }
        self.validate()?;
        Ok(self)
    }
}

#[derive(Deserialize)]
struct HfConfig {
    hidden_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_register_tokens: Option<usize>,
    patch_size: Option<usize>,
    intermediate_size: Option<usize>,
    layer_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    hidden_act: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vits16_is_valid_and_grids() {
        let c = BackboneConfig::vits16();
        c.validate().unwrap();
        assert_eq!(c.head_dim(), 64);
        assert_eq!(c.grid(448, 224).unwrap(), (28, 14));
        assert!(c.grid(450, 224).unwrap_err().contains("450x224"));
        assert!(c.grid(8192, 448).unwrap_err().contains("too large"));
    }

    #[test]
    fn hf_config_sets_heads_and_rejects_contradictions() {
        let c = BackboneConfig::vits16()
            .with_hf_config(r#"{"num_attention_heads": 12, "hidden_size": 384}"#)
            .unwrap();
        assert_eq!(c.num_heads, 12);
        let e = BackboneConfig::vits16()
            .with_hf_config(r#"{"hidden_size": 768}"#)
            .unwrap_err();
        assert!(e.to_string().contains("hidden_size = 768"), "{e}");
        let e = BackboneConfig::vits16()
            .with_hf_config(r#"{"num_attention_heads": 5}"#)
            .unwrap_err();
        assert!(e.to_string().contains("not divisible"), "{e}");
    }
}
