//! The DINOv3 ViT as burn modules: patch embedding, CLS + register tokens, pre-norm blocks with
//! 2-D RoPE attention and LayerScale, final LayerNorm. Each module loads itself next to its
//! definition from a [`Source`] (Hugging Face names; the Meta layout is a table in
//! [`super::source`]).
//!
//! Pure tensor code on whatever `Device` the tensors live on: it never reads a GPU tensor back, so
//! it runs unchanged on WebGPU in the browser (on burn-flex two steps take fused CPU kernels,
//! [`super::cpu_kernels`]).

use burn::module::{Module, Param};
use burn::tensor::activation::softmax;
use burn::tensor::activation::{gelu, silu};
use burn::tensor::module::{conv2d, layer_norm};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Device, FloatDType, Tensor, TensorData};

use super::config::BackboneConfig;
use super::cpu_kernels;
#[cfg(not(target_feature = "atomics"))]
use super::gpu_linear;
use super::rope;
use super::source::Source;
use crate::infra::compute::Precision;
use crate::weights::WeightsError;

/// `y = x Wᵀ + b`, with `Wᵀ` stored pre-transposed as `[in, out]`.
///
/// In half precision (`with_precision`), `Wᵀ` is stored in f16 with each output column scaled to
/// a largest |w| of [`UNIT_MAX`] and `out_scale` holding the factors in f32: LayerScale folded into
/// a weight can leave it around 1e-6, where f16 has almost no bits left. The output is f32 either
/// way.
#[derive(Module, Debug)]
pub struct Linear {
    pub weight_t: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
    /// `[out]`, f32: the column scales of a reduced-precision `weight_t`.
    pub out_scale: Option<Param<Tensor<1>>>,
}

/// Whether a linear layer's bias must be in the file.
#[derive(Clone, Copy, PartialEq)]
enum Bias {
    Required,
    /// Hugging Face's q/k/v projections: the k projection has none.
    IfPresent,
}

impl Linear {
    fn new(weight_t: Tensor<2>, bias: Option<Tensor<1>>) -> Self {
        Self {
            weight_t: Param::from_tensor(weight_t),
            bias: bias.map(Param::from_tensor),
            out_scale: None,
        }
    }

    /// `weight` `[out, in]` and `bias` `[out]`, PyTorch's layout.
    fn load(src: &Source, out: usize, inp: usize, bias: Bias) -> Result<Self, WeightsError> {
        let weight = src.values("weight", &[out, inp])?;
        // Read the bias before uploading anything (errors first), upload weight then bias: the
        // fingerprint hashes uploads in order.
        let b = match bias {
            Bias::IfPresent if !src.has("bias") => None,
            _ => Some(src.values("bias", &[out])?),
        };
        let weight_t = src.upload(transpose(&weight, out, inp), [inp, out]);
        Ok(Self::new(weight_t, b.map(|b| src.upload(b, [out]))))
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, t, d_in] = x.dims();
        let weight_t = self.weight_t.val();
        let d_out = weight_t.dims()[1];
        let dtype = weight_t.dtype();
        let x = x.reshape([b * t, d_in]);
        #[cfg(not(target_feature = "atomics"))]
        if self.out_scale.is_none() {
            let bias = self.bias.as_ref().map(|b| b.val());
            if gpu_linear::applies(&x, &weight_t, bias.as_ref()) {
                return gpu_linear::linear(x, weight_t, bias).reshape([b, t, d_out]);
            }
        }
        let y = x.cast(dtype).matmul(weight_t);
        let y = match &self.out_scale {
            Some(s) => y.cast(FloatDType::F32) * s.val().unsqueeze::<2>(),
            None => y,
        };
        let y = match &self.bias {
            Some(bias) if cpu_kernels::applies(&y) => cpu_kernels::add_bias(y, bias.val()),
            Some(bias) => y + bias.val().unsqueeze::<2>(),
            None => y,
        };
        y.reshape([b, t, d_out])
    }

    /// Scale every output channel, `(x Wᵀ + b) · s`, folded into the weights: LayerScale for free.
    fn scale_outputs(self, s: Tensor<1>) -> Linear {
        Linear::new(
            self.weight_t.val() * s.clone().unsqueeze::<2>(),
            self.bias.map(|b| b.val() * s),
        )
    }

    /// The same layer with its matmul in `dtype` (f32: unchanged). The weights are converted on
    /// the device; the f32 copy is dropped with `self`.
    fn with_dtype(self, dtype: FloatDType) -> Linear {
        let weight_t = self.weight_t.val();
        if dtype == FloatDType::F32 || weight_t.dtype() != DType::F32 {
            return self;
        }
        // A column of zeros keeps scale 1 (0/1 = 0) rather than dividing by zero.
        let largest = weight_t.clone().abs().max_dim(0);
        let scale = largest.clone().equal_elem(0.0).float().add(largest) / UNIT_MAX;
        let unit = (weight_t / scale.clone()).cast(dtype);
        Linear {
            weight_t: Param::from_tensor(unit),
            bias: self.bias,
            out_scale: Some(Param::from_tensor(scale.squeeze_dim::<1>(0))),
        }
    }
}

/// The largest |w| of a weight column stored in f16: about a ViT's own weights' size, so the
/// matmul's f16 outputs are as large as unscaled ones would be (no nearer f16's 65 504), with ten
/// binades of f16's normal range below it for the column's smaller values.
const UNIT_MAX: f64 = 1.0 / 16.0;

fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = w[r * cols + c];
        }
    }
    t
}

#[derive(Module, Debug)]
pub struct LayerNorm {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    pub eps: f64,
}

impl LayerNorm {
    fn load(src: &Source, d: usize, eps: f64) -> Result<Self, WeightsError> {
        Ok(Self {
            weight: Param::from_tensor(src.tensor("weight", [d])?),
            bias: Param::from_tensor(src.tensor("bias", [d])?),
            eps,
        })
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        // The backend's fused kernel: one pass per row on burn-flex instead of six over the tensor.
        layer_norm(x, self.weight.val(), Some(self.bias.val()), self.eps)
    }
}

/// The exact (erf) GELU, `x·Φ(x)`, as DINOv3 uses it: on burn-flex the fused vector kernel
/// ([`cpu_kernels::gelu`]; burn-flex's own evaluates a scalar libm `erf` per element on one
/// thread), on a GPU the backend's one fused kernel.
fn gelu_exact(x: Tensor<3>) -> Tensor<3> {
    if cpu_kernels::applies(&x) {
        cpu_kernels::gelu(x)
    } else {
        gelu(x)
    }
}

/// `down(gelu(up(x)))`, or with a gate (SwiGLU, ViT-S+/H+): `down(silu(gate(x)) * up(x))`.
#[derive(Module, Debug)]
pub struct Mlp {
    pub gate: Option<Linear>,
    pub up: Linear,
    /// LayerScale γ₂ folded in.
    pub down: Linear,
}

impl Mlp {
    fn load(src: &Source, config: &BackboneConfig) -> Result<Self, WeightsError> {
        let (d, hidden) = (config.hidden_size, config.intermediate_size);
        let linear = |name, out, inp| Linear::load(&src.pp(name), out, inp, Bias::Required);
        Ok(Self {
            gate: match config.gated_mlp {
                true => Some(linear("gate_proj", hidden, d)?),
                false => None,
            },
            up: linear("up_proj", hidden, d)?,
            down: linear("down_proj", d, hidden)?,
        })
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let hidden = match &self.gate {
            None => gelu_exact(self.up.forward(x)),
            Some(gate) => silu(gate.forward(x.clone())) * self.up.forward(x),
        };
        self.down.forward(hidden)
    }

    fn with_dtype(self, dtype: FloatDType) -> Self {
        Self {
            gate: self.gate.map(|g| g.with_dtype(dtype)),
            up: self.up.with_dtype(dtype),
            down: self.down.with_dtype(dtype),
        }
    }
}

/// Multi-head self-attention with 2-D RoPE on queries and keys.
#[derive(Module, Debug)]
pub struct Attention {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    /// The output projection, LayerScale γ₁ folded in.
    pub o: Linear,
    pub heads: usize,
}

impl Attention {
    /// Separate `q_proj`, `k_proj`, `v_proj` (Hugging Face), or Meta's fused `qkv`.
    fn load(src: &Source, config: &BackboneConfig) -> Result<Self, WeightsError> {
        let d = config.hidden_size;
        let (q, k, v) = if src.has("qkv.weight") {
            split_qkv(&src.pp("qkv"), d)?
        } else {
            let part = |name| Linear::load(&src.pp(name), d, d, Bias::IfPresent);
            (part("q_proj")?, part("k_proj")?, part("v_proj")?)
        };
        let o = Linear::load(&src.pp("o_proj"), d, d, Bias::Required)?;
        Ok(Self {
            q,
            k,
            v,
            o,
            heads: config.num_heads,
        })
    }

    fn forward(&self, x: Tensor<3>, rope: &rope::RopeTables) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let heads = self.heads;
        let head_dim = d / heads;
        let scale = (head_dim as f64).powf(-0.5);
        // Three matmuls rather than one fused [D, 3D] one: slicing q, k, v out of a fused output
        // hands strided tensors to burn-flex's attention, 10 % slower at 448² (measured).
        let (q, k, v) = (
            self.q.forward(x.clone()),
            self.k.forward(x.clone()),
            self.v.forward(x),
        );
        if cpu_kernels::applies(&q) {
            // burn-flex: RoPE in place and the blocked attention with the vector softmax, both on
            // the projections' token-major layout (burn-flex's own attention takes a scalar `exp`
            // per score, and the split into heads costs a copy of q, k and v).
            let (q, k) = (rope.apply_tokens(q), rope.apply_tokens(k));
            return self
                .o
                .forward(cpu_kernels::attention(q, k, v, heads, scale as f32));
        }
        // On a GPU: the two matmuls in the projections' precision, the softmax in f32 (its sums
        // and exponentials are what f16 gets wrong); q is scaled before, so that no f16 score
        // comes near f16's range (±65 504).
        let dtype = self.q.weight_t.val().dtype();
        let split = |y: Tensor<3>| y.reshape([b, t, heads, head_dim]).swap_dims(1, 2);
        let q = rope.apply(split(q * scale)).cast(dtype);
        let k = rope.apply(split(k)).cast(dtype);
        let scores = q.matmul(k.swap_dims(2, 3)).cast(FloatDType::F32);
        let weights = softmax(scores, 3).cast(dtype);
        let out = weights.matmul(split(v).cast(dtype)).cast(FloatDType::F32);
        self.o.forward(out.swap_dims(1, 2).reshape([b, t, d]))
    }

    fn with_dtype(self, dtype: FloatDType) -> Self {
        Self {
            q: self.q.with_dtype(dtype),
            k: self.k.with_dtype(dtype),
            v: self.v.with_dtype(dtype),
            o: self.o.with_dtype(dtype),
            heads: self.heads,
        }
    }
}

/// Meta fuses q, k, v into one `[3D, D]` projection; its k bias is multiplied by `bias_mask`
/// (zero in released checkpoints), exactly as `LinearKMaskedBias` does.
fn split_qkv(src: &Source, d: usize) -> Result<(Linear, Linear, Linear), WeightsError> {
    let weight = src.values("weight", &[3 * d, d])?;
    let bias = if src.has("bias") {
        let mut bias = src.values("bias", &[3 * d])?;
        if src.has("bias_mask") {
            let m = src.values("bias_mask", &[3 * d])?;
            bias.iter_mut().zip(&m).for_each(|(b, m)| *b *= m);
        }
        Some(bias)
    } else {
        None
    };
    // A bias that is all zero (the masked k bias) is no bias: the same model as the HF layout.
    let part = |i: usize| {
        let weight_t = src.upload(transpose(&weight[i * d * d..(i + 1) * d * d], d, d), [d, d]);
        let bias = bias
            .as_ref()
            .map(|b| &b[i * d..(i + 1) * d])
            .filter(|b| b.iter().any(|&x| x != 0.0))
            .map(|b| src.upload(b.to_vec(), [d]));
        Linear::new(weight_t, bias)
    };
    Ok((part(0), part(1), part(2)))
}

/// One pre-norm transformer block, LayerScale folded into its output projections (the same
/// function as the checkpoint's).
#[derive(Module, Debug)]
pub struct Block {
    pub norm1: LayerNorm,
    pub attention: Attention,
    pub norm2: LayerNorm,
    pub mlp: Mlp,
}

impl Block {
    fn load(src: &Source, config: &BackboneConfig) -> Result<Self, WeightsError> {
        let (d, eps) = (config.hidden_size, config.layer_norm_eps);
        // This order is the fingerprint's (attention, MLP, then norms and scales), kept so that
        // model bundles made before these were modules still match their backbone.
        let attention = Attention::load(&src.pp("attention"), config)?;
        let mlp = Mlp::load(&src.pp("mlp"), config)?;
        let norm1 = LayerNorm::load(&src.pp("norm1"), d, eps)?;
        let ls1 = src.tensor("layer_scale1.lambda1", [d])?;
        let norm2 = LayerNorm::load(&src.pp("norm2"), d, eps)?;
        let ls2 = src.tensor("layer_scale2.lambda1", [d])?;
        Ok(Self {
            norm1,
            attention: Attention {
                o: attention.o.scale_outputs(ls1),
                ..attention
            },
            norm2,
            mlp: Mlp {
                down: mlp.down.scale_outputs(ls2),
                ..mlp
            },
        })
    }

    fn forward(&self, x: Tensor<3>, rope: &rope::RopeTables) -> Tensor<3> {
        let x = residual(
            x.clone(),
            self.attention.forward(self.norm1.forward(x), rope),
        );
        residual(x.clone(), self.mlp.forward(self.norm2.forward(x)))
    }

    /// The norms stay f32: their statistics are sums of squares, beyond f16's range for DINO's
    /// large activations.
    fn with_dtype(self, dtype: FloatDType) -> Self {
        Self {
            attention: self.attention.with_dtype(dtype),
            mlp: self.mlp.with_dtype(dtype),
            ..self
        }
    }
}

/// `x + y`; on burn-flex on all threads, into `y`'s memory.
fn residual(x: Tensor<3>, y: Tensor<3>) -> Tensor<3> {
    match cpu_kernels::applies(&y) {
        true => cpu_kernels::add(x, y),
        false => x + y,
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
#[derive(Module, Debug)]
pub struct DinoV3 {
    #[module(skip)]
    pub config: BackboneConfig,
    /// Identifies these exact weights (and head count), whatever file layout they came in.
    pub fingerprint: String,
    /// `[D, C, p, p]`, `[D]`
    pub patch_weight: Param<Tensor<4>>,
    pub patch_bias: Param<Tensor<1>>,
    /// `[1, 1, D]`
    pub cls_token: Param<Tensor<3>>,
    /// `[1, R, D]`; `None` when the model has no registers.
    pub register_tokens: Option<Param<Tensor<3>>>,
    pub blocks: Vec<Block>,
    pub norm: LayerNorm,
    /// RoPE periods, `head_dim / 4` of them (from the checkpoint when it stores them).
    pub rope_periods: Vec<f64>,
}

impl DinoV3 {
    /// The model `config` describes, every tensor checked against it.
    pub fn load(src: &Source, config: &BackboneConfig) -> Result<Self, WeightsError> {
        let d = config.hidden_size;
        let (p, c) = (config.patch_size, config.in_channels);
        let embeddings = src.pp("embeddings");
        let patch = embeddings.pp("patch_embeddings");
        let patch_weight = patch.tensor("weight", [d, c, p, p])?;
        let patch_bias = patch.tensor("bias", [d])?;
        let cls_token = embeddings.tensor("cls_token", [1, 1, d])?;
        let register_tokens = (config.num_registers > 0)
            .then(|| embeddings.tensor("register_tokens", [1, config.num_registers, d]))
            .transpose()?;
        let blocks = (0..config.num_layers)
            .map(|i| Block::load(&src.pp("layer").pp(i), config))
            .collect::<Result<Vec<_>, _>>()?;
        let norm = LayerNorm::load(&src.pp("norm"), d, config.layer_norm_eps)?;
        // Meta's checkpoints store the RoPE periods; otherwise they follow from theta.
        let quarter = config.head_dim() / 4;
        let rope_periods = match src.has("rope_embed.periods") {
            true => src
                .values("rope_embed.periods", &[quarter])?
                .into_iter()
                .map(f64::from)
                .collect(),
            false => rope::periods(config.rope_theta, config.head_dim()),
        };
        // RoPE periods are left out of the fingerprint: HF derives them from theta while Meta
        // stores a float32 copy whose last bit may differ for the same model.
        let fingerprint = src.fingerprint(&[config.num_heads as f32, config.layer_norm_eps as f32]);
        Ok(Self {
            config: config.clone(),
            fingerprint,
            patch_weight: Param::from_tensor(patch_weight),
            patch_bias: Param::from_tensor(patch_bias),
            cls_token: Param::from_tensor(cls_token),
            register_tokens: register_tokens.map(Param::from_tensor),
            blocks,
            norm,
            rope_periods,
        })
    }

    pub fn device(&self) -> Device {
        self.patch_bias.val().device()
    }

    /// The same model computing in `precision` where its device can (see [`Precision::on`]), with
    /// the reason when it cannot. Reduced precision covers the matmuls, their weights and the
    /// patch convolution; the residual stream, norms, RoPE and softmax stay f32. The weights are
    /// converted on the device and the f32 copies released.
    pub fn with_precision(self, precision: Precision) -> (Self, Option<String>) {
        let device = self.device();
        let (precision, note) = precision.on(&device);
        let dtype = precision.float_dtype();
        if dtype == FloatDType::F32 {
            return (self, note);
        }
        let model = Self {
            patch_weight: Param::from_tensor(self.patch_weight.val().cast(dtype)),
            patch_bias: Param::from_tensor(self.patch_bias.val().cast(dtype)),
            blocks: self
                .blocks
                .into_iter()
                .map(|b| b.with_dtype(dtype))
                .collect(),
            ..self
        };
        device.memory_cleanup();
        (model, note)
    }

    /// What the matmuls compute in.
    pub fn precision(&self) -> Precision {
        match self.patch_weight.val().dtype() {
            DType::F16 => Precision::F16,
            _ => Precision::F32,
        }
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

        let weight = self.patch_weight.val();
        let patches = conv2d(
            pixels.cast(weight.dtype()),
            weight,
            Some(self.patch_bias.val()),
            ConvOptions::new([p, p], [0, 0], [1, 1], 1),
        );
        let patches = patches
            .cast(FloatDType::F32)
            .reshape([b, d, gh * gw])
            .swap_dims(1, 2);

        let mut tokens = vec![self.cls_token.val().expand([b, 1, d])];
        if let Some(reg) = &self.register_tokens {
            let reg = reg.val();
            let r = reg.dims()[1];
            tokens.push(reg.expand([b, r, d]));
        }
        tokens.push(patches);
        let mut x = Tensor::cat(tokens, 1);
        let prefix = 1 + self.config.num_registers;

        let rope = rope::RopeTables::new(&self.rope_periods, gh, gw, prefix, &self.device());
        for block in &self.blocks {
            x = block.forward(x, &rope);
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
        let device = self.device();
        // A GPU refuses buffers above its limit: say what to lower before any work is queued.
        crate::infra::compute::fits_in_one_buffer(
            &device,
            self.config.largest_buffer(height, width),
            &format!(
                "input {height}x{width} (attention over {} tokens)",
                self.config.tokens(height, width)
            ),
            |limit| match self.config.largest_square_within(limit) {
                Some(s) => format!("use a smaller size (about {s}x{s} at most here)"),
                None => "use a smaller size".into(),
            },
        )?;
        Ok(Tensor::from_data(
            TensorData::new(data, [1, c, height, width]),
            &device,
        ))
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::infra::compute::{DeviceChoice, open};

    /// A LayerScale of 1e-5 folded into a weight leaves values near 1e-7, below f16's smallest
    /// normal (6e-5): cast as they are they would lose most of their bits; the column scales
    /// keep the layer's output within f16's relative precision.
    #[test]
    fn tiny_folded_weights_keep_their_precision_in_f16() {
        let Ok(gpu) = open(DeviceChoice::Gpu) else {
            eprintln!("SKIPPED tiny_folded_weights_keep_their_precision_in_f16: no GPU adapter");
            return;
        };
        if Precision::F16.on(&gpu.device).0 != Precision::F16 {
            eprintln!(
                "SKIPPED tiny_folded_weights_keep_their_precision_in_f16: no f16 on {}",
                gpu.label
            );
            return;
        }
        let device = gpu.device;
        let (inp, out) = (48, 16);
        let mut rng = crate::infra::rng::Rng::new(1);
        let w: Vec<f32> = rng.uniform(-0.1, 0.1, inp * out);
        let b: Vec<f32> = rng.uniform(-1e-6, 1e-6, out);
        let x: Vec<f32> = rng.uniform(-2.0, 2.0, 3 * inp);
        let layer = Linear::new(
            Tensor::from_data(TensorData::new(w, [inp, out]), &device),
            Some(Tensor::from_data(TensorData::new(b, [out]), &device)),
        )
        .scale_outputs(Tensor::full([out], 1e-5, &device));
        let x = Tensor::<3>::from_data(TensorData::new(x, [1, 3, inp]), &device);
        let values = |t: Tensor<3>| {
            t.into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap()
        };
        let exact = values(layer.forward(x.clone()));
        let half = layer.with_dtype(FloatDType::F16);
        assert_eq!(half.weight_t.val().dtype(), DType::F16);
        let got = values(half.forward(x));
        let largest = exact.iter().fold(0f32, |m, v| m.max(v.abs()));
        let error = exact
            .iter()
            .zip(&got)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            error <= 2e-3 * largest && error > 0.0,
            "f16 error {error:e} against outputs up to {largest:e}"
        );
    }
}
