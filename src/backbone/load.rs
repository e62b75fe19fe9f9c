//! Map the two published DINOv3 key layouts onto [`DinoV3`], inferring the architecture from
//! tensor shapes and checking every tensor against it.
//!
//! * Hugging Face (`facebook/dinov3-*`): `embeddings.*`, `layer.N.attention.{q,k,v,o}_proj`,
//!   `layer_scale{1,2}.lambda1`, `mlp.{up,down,gate}_proj`, `norm`.
//! * Meta (`dinov3_*.pth`): `cls_token`, `storage_tokens`, fused `blocks.N.attn.qkv` with a
//!   `bias_mask` that zeroes the k bias, `ls{1,2}.gamma`, `mlp.fc{1,2}` (or SwiGLU `mlp.w{1,2,3}`),
//!   `rope_embed.periods`.
//!
//! Keys may carry a common prefix (`model.`, `backbone.`, `teacher.backbone.`, ...).

use burn::tensor::{Device, Tensor, TensorData};

use super::config::BackboneConfig;
use super::model::{Block, BlockWeights, DinoV3, LayerNorm, Linear, Mlp};
use super::rope;
use crate::weights::{TensorFile, WeightsError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    HuggingFace,
    Meta,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layout::HuggingFace => "Hugging Face DINOv3",
            Layout::Meta => "Meta DINOv3",
        })
    }
}

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

/// Key names of one layout, relative to the prefix.
struct Keys {
    layout: Layout,
    prefix: String,
    /// `layer.` (the hub files), `model.layer.` (saved by transformers >= 5) or `blocks.` (Meta).
    blocks: &'static str,
}

impl Keys {
    fn top(&self, hf: &str, meta: &str) -> String {
        let k = match self.layout {
            Layout::HuggingFace => hf,
            Layout::Meta => meta,
        };
        format!("{}{k}", self.prefix)
    }
    fn block(&self, i: usize, hf: &str, meta: &str) -> String {
        let k = match self.layout {
            Layout::HuggingFace => hf,
            Layout::Meta => meta,
        };
        format!("{}{}{i}.{k}", self.prefix, self.blocks)
    }

    fn new(file: &TensorFile) -> Result<Self, WeightsError> {
        let (layout, prefix) = detect(file)?;
        let blocks = match layout {
            Layout::Meta => "blocks.",
            Layout::HuggingFace => {
                let nested = format!("{prefix}model.layer.0.norm1.weight");
                if file.get(&nested).is_some() {
                    "model.layer."
                } else {
                    "layer."
                }
            }
        };
        Ok(Keys {
            layout,
            prefix,
            blocks,
        })
    }
}

/// Typed access to the file with shape checks that name the tensor. Each tensor is taken out of
/// the file as it is read, so its bytes are freed while the model fills up: loading peaks at about
/// twice the file size, not three times (in the browser that is the page's memory for good).
struct Reader<'a> {
    file: std::cell::RefCell<TensorFile>,
    device: &'a Device,
    /// Running hash of every uploaded value, in model order (the same for both layouts).
    hash: std::cell::Cell<u64>,
}

impl Reader<'_> {
    fn has(&self, name: &str) -> bool {
        self.file.borrow().get(name).is_some()
    }

    fn values(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>, WeightsError> {
        let t = self
            .file
            .borrow_mut()
            .tensors
            .remove(name)
            .ok_or_else(|| WeightsError::MissingTensor(name.to_string()))?;
        if t.shape != expected {
            return Err(WeightsError::ShapeMismatch {
                name: name.to_string(),
                found: t.shape.clone(),
                expected: expected.to_vec(),
            });
        }
        t.to_f32(name)
    }

    fn tensor<const N: usize>(
        &self,
        name: &str,
        shape: [usize; N],
    ) -> Result<Tensor<N>, WeightsError> {
        let v = self.values(name, &shape)?;
        Ok(self.upload(v, shape))
    }

    fn upload<const N: usize>(&self, v: Vec<f32>, shape: [usize; N]) -> Tensor<N> {
        self.hash.set(fingerprint_update(self.hash.get(), &v));
        Tensor::from_data(TensorData::new(v, shape), self.device)
    }

    /// A linear layer stored PyTorch-style as weight `[out, in]`, bias `[out]`.
    fn linear(
        &self,
        w: &str,
        b: Option<&str>,
        out: usize,
        inp: usize,
    ) -> Result<Linear, WeightsError> {
        let weight = self.values(w, &[out, inp])?;
        // Read the bias before uploading anything (errors first), upload weight then bias: the
        // fingerprint hashes uploads in order, the same order for every layout.
        let bias = b.map(|b| self.values(b, &[out])).transpose()?;
        let weight_t = self.upload(transpose(&weight, out, inp), [inp, out]);
        Ok(Linear {
            weight_t,
            bias: bias.map(|b| self.upload(b, [out])),
        })
    }

    fn layer_norm(&self, w: &str, b: &str, d: usize, eps: f64) -> Result<LayerNorm, WeightsError> {
        Ok(LayerNorm {
            weight: self.tensor(w, [d])?,
            bias: self.tensor(b, [d])?,
            eps,
        })
    }
}

fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = w[r * cols + c];
        }
    }
    t
}

/// Infer the architecture from the tensors (heads = width / 64, as in every released DINOv3).
pub fn infer_config(file: &TensorFile) -> Result<BackboneConfig, WeightsError> {
    let keys = Keys::new(file)?;
    let shape = |name: &str| {
        file.get(name)
            .map(|t| t.shape.clone())
            .ok_or_else(|| WeightsError::MissingTensor(name.to_string()))
    };

    let patch = shape(&keys.top(HF_PATCH, META_PATCH))?;
    let [d, c, p, p2] = patch[..] else {
        return Err(WeightsError::ShapeMismatch {
            name: keys.top(HF_PATCH, META_PATCH),
            found: patch,
            expected: vec![384, 3, 16, 16],
        });
    };
    if p != p2 {
        return Err(WeightsError::Config(format!(
            "non-square patches {p}x{p2} are not supported"
        )));
    }
    let registers_key = keys.top("embeddings.register_tokens", "storage_tokens");
    let num_registers = match file.get(&registers_key) {
        Some(t) if t.shape.len() == 3 => t.shape[1],
        Some(t) => {
            return Err(WeightsError::ShapeMismatch {
                name: registers_key,
                found: t.shape.clone(),
                expected: vec![1, 4, d],
            });
        }
        None => 0,
    };
    let norm1 = |i| keys.block(i, "norm1.weight", "norm1.weight");
    let num_layers = (0..).take_while(|&i| file.get(&norm1(i)).is_some()).count();
    if num_layers == 0 {
        return Err(WeightsError::MissingTensor(norm1(0)));
    }
    let gated = file
        .get(&keys.block(0, "mlp.gate_proj.weight", "mlp.w1.weight"))
        .is_some();
    let up_key = if gated {
        keys.block(0, "mlp.up_proj.weight", "mlp.w2.weight")
    } else {
        keys.block(0, "mlp.up_proj.weight", "mlp.fc1.weight")
    };
    let intermediate_size = match shape(&up_key)?[..] {
        [out, inp] if inp == d => out,
        ref found => {
            return Err(WeightsError::ShapeMismatch {
                name: up_key,
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
    file: TensorFile,
    config: &BackboneConfig,
    device: &Device,
) -> Result<DinoV3, WeightsError> {
    config.validate()?;
    let keys = Keys::new(&file)?;
    let layout = keys.layout;
    let r = Reader {
        file: std::cell::RefCell::new(file),
        device,
        hash: std::cell::Cell::new(FINGERPRINT_SEED),
    };
    let d = config.hidden_size;
    let (p, c) = (config.patch_size, config.in_channels);
    let eps = config.layer_norm_eps;

    let patch_weight = r.tensor(&keys.top(HF_PATCH, META_PATCH), [d, c, p, p])?;
    let patch_bias = r.tensor(
        &keys.top("embeddings.patch_embeddings.bias", "patch_embed.proj.bias"),
        [d],
    )?;
    let cls_token = r.tensor(&keys.top("embeddings.cls_token", "cls_token"), [1, 1, d])?;
    let register_tokens = (config.num_registers > 0)
        .then(|| {
            r.tensor(
                &keys.top("embeddings.register_tokens", "storage_tokens"),
                [1, config.num_registers, d],
            )
        })
        .transpose()?;

    let mut blocks = Vec::with_capacity(config.num_layers);
    for i in 0..config.num_layers {
        let k = |hf: &str, meta: &str| keys.block(i, hf, meta);
        let (q, kk, v) = match layout {
            Layout::HuggingFace => {
                let bias = |name: &str| r.has(name).then(|| name.to_string());
                let qb = bias(&k("attention.q_proj.bias", ""));
                let kb = bias(&k("attention.k_proj.bias", ""));
                let vb = bias(&k("attention.v_proj.bias", ""));
                (
                    r.linear(&k("attention.q_proj.weight", ""), qb.as_deref(), d, d)?,
                    r.linear(&k("attention.k_proj.weight", ""), kb.as_deref(), d, d)?,
                    r.linear(&k("attention.v_proj.weight", ""), vb.as_deref(), d, d)?,
                )
            }
            Layout::Meta => split_qkv(
                &r,
                &k("", "attn.qkv.weight"),
                &k("", "attn.qkv.bias"),
                &k("", "attn.qkv.bias_mask"),
                d,
            )?,
        };
        let o = r.linear(
            &k("attention.o_proj.weight", "attn.proj.weight"),
            Some(&k("attention.o_proj.bias", "attn.proj.bias")),
            d,
            d,
        )?;
        let hidden = config.intermediate_size;
        let lin = |hf: &str, meta: &str, out: usize, inp: usize| {
            r.linear(
                &k(&format!("{hf}.weight"), &format!("{meta}.weight")),
                Some(&k(&format!("{hf}.bias"), &format!("{meta}.bias"))),
                out,
                inp,
            )
        };
        let mlp = if config.gated_mlp {
            Mlp {
                gate: Some(lin("mlp.gate_proj", "mlp.w1", hidden, d)?),
                up: lin("mlp.up_proj", "mlp.w2", hidden, d)?,
                down: lin("mlp.down_proj", "mlp.w3", d, hidden)?,
            }
        } else {
            Mlp {
                gate: None,
                up: lin("mlp.up_proj", "mlp.fc1", hidden, d)?,
                down: lin("mlp.down_proj", "mlp.fc2", d, hidden)?,
            }
        };
        blocks.push(Block::from(BlockWeights {
            norm1: r.layer_norm(
                &k("norm1.weight", "norm1.weight"),
                &k("norm1.bias", "norm1.bias"),
                d,
                eps,
            )?,
            q,
            k: kk,
            v,
            o,
            ls1: r.tensor(&k("layer_scale1.lambda1", "ls1.gamma"), [d])?,
            norm2: r.layer_norm(
                &k("norm2.weight", "norm2.weight"),
                &k("norm2.bias", "norm2.bias"),
                d,
                eps,
            )?,
            mlp,
            ls2: r.tensor(&k("layer_scale2.lambda1", "ls2.gamma"), [d])?,
        }));
    }
    let norm = r.layer_norm(
        &keys.top("norm.weight", "norm.weight"),
        &keys.top("norm.bias", "norm.bias"),
        d,
        eps,
    )?;

    let head_dim = config.head_dim();
    let periods_key = keys.top("", "rope_embed.periods");
    let rope_periods = match (layout, r.has(&periods_key)) {
        (Layout::Meta, true) => r
            .values(&periods_key, &[head_dim / 4])?
            .into_iter()
            .map(f64::from)
            .collect(),
        _ => rope::periods(config.rope_theta, head_dim),
    };

    // RoPE periods are left out: HF derives them from theta while Meta stores a float32 copy whose
    // last bit may differ for the same model.
    let hash = fingerprint_update(
        r.hash.get(),
        &[config.num_heads as f32, config.layer_norm_eps as f32],
    );
    Ok(DinoV3 {
        fingerprint: format!("{hash:016x}"),
        config: config.clone(),
        patch_weight,
        patch_bias,
        cls_token,
        register_tokens,
        blocks,
        norm,
        rope_periods,
    })
}

/// Meta fuses q, k, v into one `[3D, D]` projection; its k bias is multiplied by `bias_mask`
/// (zero in released checkpoints), exactly as `LinearKMaskedBias` does.
fn split_qkv(
    r: &Reader,
    w: &str,
    b: &str,
    mask: &str,
    d: usize,
) -> Result<(Linear, Linear, Linear), WeightsError> {
    let weight = r.values(w, &[3 * d, d])?;
    let bias = if r.has(b) {
        let mut bias = r.values(b, &[3 * d])?;
        if r.has(mask) {
            let m = r.values(mask, &[3 * d])?;
            bias.iter_mut().zip(&m).for_each(|(b, m)| *b *= m);
        }
        Some(bias)
    } else {
        None
    };
    // A bias that is all zero (the masked k bias) is no bias: the same model as the HF layout.
    let part = |i: usize| Linear {
        weight_t: r.upload(transpose(&weight[i * d * d..(i + 1) * d * d], d, d), [d, d]),
        bias: bias
            .as_ref()
            .map(|b| &b[i * d..(i + 1) * d])
            .filter(|b| b.iter().any(|&x| x != 0.0))
            .map(|b| r.upload(b.to_vec(), [d])),
    };
    Ok((part(0), part(1), part(2)))
}

const FINGERPRINT_SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a over the f32 bit patterns: cheap, stable across platforms, not cryptographic. It tells
/// backbones apart so a model bundle is never scored with another backbone than it was fit on.
fn fingerprint_update(mut h: u64, values: &[f32]) -> u64 {
    for v in values {
        h ^= v.to_bits() as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
