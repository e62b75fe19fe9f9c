//! The DINOv3 ViT forward pass: patch embedding, CLS + register tokens, pre-norm blocks with
//! 2-D RoPE attention and LayerScale, final LayerNorm.
//!
//! Pure tensor code on whatever `Device` the tensors live on: it never reads a tensor back, so it
//! runs unchanged on WebGPU in the browser.

use burn::tensor::activation::{gelu, silu};
use burn::tensor::module::{attention, conv2d, layer_norm};
use burn::tensor::ops::{AttentionModuleOptions, ConvOptions};
use burn::tensor::{Device, Tensor, TensorData};

use super::config::BackboneConfig;
use super::rope;

/// `y = x Wᵀ + b`, with `Wᵀ` stored pre-transposed as `[in, out]`.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight_t: Tensor<2>,
    pub bias: Option<Tensor<1>>,
}

impl Linear {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, t, d_in] = x.dims();
        let d_out = self.weight_t.dims()[1];
        let y = x.reshape([b * t, d_in]).matmul(self.weight_t.clone());
        let y = match &self.bias {
            Some(bias) => y + bias.clone().unsqueeze::<2>(),
            None => y,
        };
        y.reshape([b, t, d_out])
    }

    /// Scale every output channel, `(x Wᵀ + b) · s`, folded into the weights: LayerScale for free.
    pub fn scale_outputs(self, s: Tensor<1>) -> Linear {
        Linear {
            weight_t: self.weight_t * s.clone().unsqueeze::<2>(),
            bias: self.bias.map(|b| b * s),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub weight: Tensor<1>,
    pub bias: Tensor<1>,
    pub eps: f64,
}

impl LayerNorm {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        // The backend's fused kernel: one pass per row on burn-flex instead of six over the tensor.
        layer_norm(x, self.weight.clone(), Some(self.bias.clone()), self.eps)
    }
}

/// Abramowitz & Stegun 7.1.28: `erf(u) ≈ 1 − (1 + a₁u + … + a₆u⁶)^−16` for `u ≥ 0`, |error| ≤ 3e-7.
const ERF_AS_7_1_28: [f32; 6] = [
    0.070_523_08,
    0.042_282_01,
    0.009_270_527,
    0.000_152_014_3,
    0.000_276_567_2,
    0.000_043_063_8,
];

/// The exact (erf) GELU, `x·Φ(x)`, as DINOv3 uses it.
///
/// burn-flex's `gelu` evaluates a scalar libm `erf` per element on one thread: 15–25 % of a native
/// CPU forward pass. Natively this builds it from element-wise ops that burn-flex vectorises and
/// spreads over threads — `0.5·(x + |x|·erf(|x|/√2))` with erf from [`ERF_AS_7_1_28`] — twice as
/// fast for the GELU, ~15 % off the whole forward at 224², within 1e-6 of the libm form.
/// Everywhere else the backend's own `gelu`: on GPUs one fused kernel beats twenty dispatches, and
/// in the browser's CPU path (one thread, 128-bit SIMD) the twenty passes over memory measured
/// ~10 % slower than the scalar erf (BENCHMARKS.md, table 3).
fn gelu_exact(x: Tensor<3>) -> Tensor<3> {
    if cfg!(target_arch = "wasm32") || x.device() != Device::flex() {
        return gelu(x);
    }
    let abs = x.clone().abs();
    let u = abs.clone() * std::f32::consts::FRAC_1_SQRT_2;
    let [a1, a2, a3, a4, a5, a6] = ERF_AS_7_1_28;
    let mut poly = u.clone() * a6 + a5;
    for a in [a4, a3, a2, a1] {
        poly = poly * u.clone() + a;
    }
    let poly = poly * u + 1.0;
    // poly^-16 by four squarings of the reciprocal.
    let mut r = poly.recip();
    for _ in 0..4 {
        r = r.clone() * r;
    }
    // x·Φ(x) = 0.5·(x + |x|·erf(|x|/√2)) with |x|·erf = |x| − |x|·r.
    (x + abs.clone() - abs * r) * 0.5
}

/// `down(gelu(up(x)))`, or with a gate (SwiGLU, ViT-S+/H+): `down(silu(gate(x)) * up(x))`.
#[derive(Debug, Clone)]
pub struct Mlp {
    pub gate: Option<Linear>,
    pub up: Linear,
    pub down: Linear,
}

impl Mlp {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let hidden = match &self.gate {
            None => gelu_exact(self.up.forward(x)),
            Some(gate) => silu(gate.forward(x.clone())) * self.up.forward(x),
        };
        self.down.forward(hidden)
    }
}

/// One transformer block's tensors as the checkpoint stores them.
pub struct BlockWeights {
    pub norm1: LayerNorm,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub ls1: Tensor<1>,
    pub norm2: LayerNorm,
    pub mlp: Mlp,
    pub ls2: Tensor<1>,
}

/// One transformer block, its weights rearranged for speed (same function as the checkpoint's).
#[derive(Debug, Clone)]
pub struct Block {
    pub norm1: LayerNorm,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    /// The output projection with LayerScale γ₁ folded in.
    pub o: Linear,
    pub norm2: LayerNorm,
    /// The MLP, LayerScale γ₂ folded into its down projection.
    pub mlp: Mlp,
}

impl From<BlockWeights> for Block {
    fn from(w: BlockWeights) -> Block {
        let mlp = Mlp {
            gate: w.mlp.gate,
            up: w.mlp.up,
            down: w.mlp.down.scale_outputs(w.ls2),
        };
        Block {
            norm1: w.norm1,
            q: w.q,
            k: w.k,
            v: w.v,
            o: w.o.scale_outputs(w.ls1),
            norm2: w.norm2,
            mlp,
        }
    }
}

impl Block {
    fn forward(&self, x: Tensor<3>, rope: &rope::RopeTables, heads: usize) -> Tensor<3> {
        let h = self.attention(self.norm1.forward(x.clone()), rope, heads);
        let x = x + h;
        x.clone() + self.mlp.forward(self.norm2.forward(x))
    }

    fn attention(&self, x: Tensor<3>, rope: &rope::RopeTables, heads: usize) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let head_dim = d / heads;
        // Three matmuls rather than one fused [D, 3D] one: slicing q, k, v out of a fused output
        // hands strided tensors to burn-flex's attention, 10 % slower at 448² (measured).
        let split = |y: Tensor<3>| y.reshape([b, t, heads, head_dim]).swap_dims(1, 2);
        let q = rope.apply(split(self.q.forward(x.clone())));
        let k = rope.apply(split(self.k.forward(x.clone())));
        let v = split(self.v.forward(x));
        // The backend's fused attention: on burn-flex a tiled (flash) kernel that never
        // materialises the [t, t] score matrix for long sequences — 448² inputs have 789 tokens.
        let options = AttentionModuleOptions {
            scale: Some((head_dim as f64).powf(-0.5)),
            softcap: None,
            is_causal: false,
        };
        let out = attention(q, k, v, None, None, options)
            .swap_dims(1, 2)
            .reshape([b, t, d]);
        self.o.forward(out)
    }
}

/// Output of the backbone for a batch.
#[derive(Debug, Clone)]
pub struct BackboneOutput {
    /// `[B, h·w, D]`, raster order, after the final norm.
    pub patch_tokens: Tensor<3>,
    /// `[B, D]`, after the final norm.
    pub cls_token: Tensor<2>,
    pub grid: (usize, usize),
}

impl BackboneOutput {
    /// The patch tokens as a channel-major grid `[B, D, h, w]`, the AR head's input.
    pub fn patch_grid(&self) -> Tensor<4> {
        let [b, n, d] = self.patch_tokens.dims();
        debug_assert_eq!(n, self.grid.0 * self.grid.1);
        self.patch_tokens
            .clone()
            .swap_dims(1, 2)
            .reshape([b, d, self.grid.0, self.grid.1])
    }
}

/// A DINOv3 ViT with its weights on one device.
#[derive(Debug, Clone)]
pub struct DinoV3 {
    pub config: BackboneConfig,
    /// Identifies these exact weights (and head count), whatever file layout they came in.
    pub fingerprint: String,
    pub patch_weight: Tensor<4>,
    pub patch_bias: Tensor<1>,
    /// `[1, 1, D]`
    pub cls_token: Tensor<3>,
    /// `[1, R, D]`; `None` when the model has no registers.
    pub register_tokens: Option<Tensor<3>>,
    pub blocks: Vec<Block>,
    pub norm: LayerNorm,
    /// RoPE periods, `head_dim / 4` of them (from the checkpoint when it stores them).
    pub rope_periods: Vec<f64>,
}

impl DinoV3 {
    pub fn device(&self) -> Device {
        self.patch_weight.device()
    }

    /// Run the backbone on normalised pixels `[B, C, H, W]` (H and W multiples of the patch size).
    pub fn forward(&self, pixels: Tensor<4>) -> Result<BackboneOutput, String> {
        let [b, c, height, width] = pixels.dims();
        if c != self.config.in_channels {
            return Err(format!(
                "pixel tensor has {c} channels, the backbone expects {}",
                self.config.in_channels
            ));
        }
        let (gh, gw) = self.config.grid(height, width)?;
        let p = self.config.patch_size;
        let d = self.config.hidden_size;

        let patches = conv2d(
            pixels,
            self.patch_weight.clone(),
            Some(self.patch_bias.clone()),
            ConvOptions::new([p, p], [0, 0], [1, 1], 1),
        );
        let patches = patches.reshape([b, d, gh * gw]).swap_dims(1, 2);

        let mut tokens = vec![self.cls_token.clone().expand([b, 1, d])];
        if let Some(reg) = &self.register_tokens {
            let r = reg.dims()[1];
            tokens.push(reg.clone().expand([b, r, d]));
        }
        tokens.push(patches);
        let mut x = Tensor::cat(tokens, 1);
        let prefix = 1 + self.config.num_registers;

        let rope = rope::RopeTables::new(&self.rope_periods, gh, gw, prefix, &self.device());
        for block in &self.blocks {
            x = block.forward(x, &rope, self.config.num_heads);
        }
        let x = self.norm.forward(x);

        let cls_token = x.clone().narrow(1, 0, 1).reshape([b, d]);
        let patch_tokens = x.narrow(1, prefix, gh * gw);
        Ok(BackboneOutput {
            patch_tokens,
            cls_token,
            grid: (gh, gw),
        })
    }

    /// Upload one image's normalised pixels `[C·H·W]` (channel-major), checking the length.
    pub fn pixels_tensor(
        &self,
        data: Vec<f32>,
        height: usize,
        width: usize,
    ) -> Result<Tensor<4>, String> {
        let c = self.config.in_channels;
        if data.len() != c * height * width {
            return Err(format!(
                "pixel buffer has {} values; {c}x{height}x{width} needs {}",
                data.len(),
                c * height * width
            ));
        }
        self.config.grid(height, width)?;
        Ok(Tensor::from_data(
            TensorData::new(data, [1, c, height, width]),
            &self.device(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_gelu_matches_the_backend_erf_gelu() {
        let device = Device::flex();
        let mut xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.005).collect();
        xs.extend([-1e30, -1e4, -40.0, -1e-6, 0.0, 1e-6, 40.0, 1e4, 1e30]);
        let n = xs.len();
        let x = Tensor::<3>::from_data(TensorData::new(xs.clone(), [1, 1, n]), &device);
        let ours = gelu_exact(x.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let theirs = gelu(x).into_data().try_to_vec::<f32>().unwrap();
        for ((x, a), b) in xs.iter().zip(&ours).zip(&theirs) {
            let tol = 1e-6 * x.abs().max(1.0);
            assert!((a - b).abs() <= tol, "gelu({x}): {a} vs {b}");
        }
    }
}
