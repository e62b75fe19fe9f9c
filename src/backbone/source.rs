//! Where the backbone's modules find their tensors: the file, the table of its key layout, the
//! device, and the fingerprint. Each module loads itself from a [`Source`] next to its definition
//! (`Linear::load(&src.pp("q_proj"), …)`, as candle's `VarBuilder`), always asking for the
//! Hugging Face name; [`META_NAMES`] says what Meta's checkpoints call it.
//!
//! Each tensor is taken out of the file as it is read, so its bytes are freed while the model
//! fills up: loading peaks at about twice the file size, not three times (in the browser that is
//! the page's memory for good).

use std::cell::{Cell, RefCell};

use burn::tensor::{Device, Tensor, TensorData};

use crate::weights::{TensorFile, WeightsError};

/// Which key table a checkpoint's tensor names follow (beside the tables themselves).
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

/// The two published key layouts as one table: a name the modules ask for (Hugging Face's, relative
/// to the key prefix), and what Meta's checkpoints call it. Where Meta has two names (the GELU MLP
/// and the SwiGLU one), the one the file holds is used. Meta's fused `attn.qkv` has no Hugging Face
/// counterpart: the attention asks for `qkv` and splits it.
pub const META_NAMES: &[(&str, &[&str])] = &[
    ("embeddings.patch_embeddings", &["patch_embed.proj"]),
    ("embeddings.cls_token", &["cls_token"]),
    ("embeddings.register_tokens", &["storage_tokens"]),
    ("layer", &["blocks"]),
    ("attention.qkv", &["attn.qkv"]),
    ("attention.o_proj", &["attn.proj"]),
    ("layer_scale1.lambda1", &["ls1.gamma"]),
    ("layer_scale2.lambda1", &["ls2.gamma"]),
    ("mlp.gate_proj", &["mlp.w1"]),
    ("mlp.up_proj", &["mlp.fc1", "mlp.w2"]),
    ("mlp.down_proj", &["mlp.fc2", "mlp.w3"]),
];

/// Files saved by transformers ≥ 5 nest the blocks one level deeper.
const HF_NESTED_NAMES: &[(&str, &[&str])] = &[("layer", &["model.layer"])];

/// The names `path` may have in the file under `table`, most likely first.
fn candidates(path: &str, table: &[(&str, &[&str])]) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut rest = path;
    'segments: while !rest.is_empty() {
        for (from, to) in table {
            if let Some(after) = rest.strip_prefix(from)
                && (after.is_empty() || after.starts_with('.'))
            {
                out = out
                    .iter()
                    .flat_map(|o| to.iter().map(move |t| format!("{o}{t}")))
                    .collect();
                rest = after;
                continue 'segments;
            }
        }
        let end = rest.find('.').map_or(rest.len(), |i| i + 1);
        out.iter_mut().for_each(|o| o.push_str(&rest[..end]));
        rest = &rest[end..];
    }
    out
}

/// The file and what is learned while reading it.
pub struct Store {
    file: RefCell<TensorFile>,
    prefix: String,
    table: &'static [(&'static str, &'static [&'static str])],
    device: Device,
    /// Running hash of every uploaded value, in load order (the same for both layouts).
    hash: Cell<u64>,
}

impl Store {
    pub fn new(file: TensorFile, layout: Layout, prefix: String, device: &Device) -> Self {
        let table = match layout {
            Layout::Meta => META_NAMES,
            Layout::HuggingFace
                if file
                    .get(&format!("{prefix}model.layer.0.norm1.weight"))
                    .is_some() =>
            {
                HF_NESTED_NAMES
            }
            Layout::HuggingFace => &[],
        };
        Self {
            file: RefCell::new(file),
            prefix,
            table,
            device: device.clone(),
            hash: Cell::new(FINGERPRINT_SEED),
        }
    }

    /// Upload to `device` from now on (the architecture is read before the device is known).
    pub fn on(mut self, device: &Device) -> Self {
        self.device = device.clone();
        self
    }

    pub fn root(&self) -> Source<'_> {
        Source {
            store: self,
            path: String::new(),
        }
    }
}

/// A position in the model's name tree (`layer.3.attention`), resolved to file keys on demand.
pub struct Source<'a> {
    store: &'a Store,
    path: String,
}

impl Source<'_> {
    /// The child `name` (`src.pp("norm1")`, `src.pp(3)`).
    pub fn pp(&self, name: impl std::fmt::Display) -> Self {
        let path = if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        };
        Source {
            store: self.store,
            path,
        }
    }

    /// The fingerprint of everything uploaded so far, with `extra` (settings that change the
    /// function without being tensors).
    pub fn fingerprint(&self, extra: &[f32]) -> String {
        format!("{:016x}", fingerprint_update(self.store.hash.get(), extra))
    }

    /// The file's key for `name` under this position: the first candidate the file holds, else
    /// the first candidate (for the error message).
    pub fn key(&self, name: &str) -> String {
        let path = if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        };
        let file = self.store.file.borrow();
        let all = candidates(&path, self.store.table);
        let found = all
            .iter()
            .map(|c| format!("{}{c}", self.store.prefix))
            .find(|k| file.get(k).is_some());
        found.unwrap_or_else(|| format!("{}{}", self.store.prefix, all[0]))
    }

    pub fn has(&self, name: &str) -> bool {
        self.store.file.borrow().get(&self.key(name)).is_some()
    }

    /// The shape of `name` as stored, or `None`.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let key = self.key(name);
        self.store.file.borrow().get(&key).map(|t| t.shape.clone())
    }

    /// The shape of `name`, or an error naming the missing key.
    pub fn require_shape(&self, name: &str) -> Result<Vec<usize>, WeightsError> {
        self.shape(name)
            .ok_or_else(|| WeightsError::MissingTensor(self.key(name)))
    }

    /// Take `name` out of the file as f32 values, checking its shape.
    pub fn values(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>, WeightsError> {
        let key = self.key(name);
        let t = self
            .store
            .file
            .borrow_mut()
            .tensors
            .remove(&key)
            .ok_or_else(|| WeightsError::MissingTensor(key.clone()))?;
        if t.shape != expected {
            return Err(WeightsError::ShapeMismatch {
                name: key,
                found: t.shape.clone(),
                expected: expected.to_vec(),
            });
        }
        t.to_f32(&key)
    }

    /// `name` on the device, checked against `shape`.
    pub fn tensor<const N: usize>(
        &self,
        name: &str,
        shape: [usize; N],
    ) -> Result<Tensor<N>, WeightsError> {
        let v = self.values(name, &shape)?;
        Ok(self.upload(v, shape))
    }

    /// Values onto the device; every upload is part of the fingerprint, in order.
    pub fn upload<const N: usize>(&self, v: Vec<f32>, shape: [usize; N]) -> Tensor<N> {
        let store = self.store;
        store.hash.set(fingerprint_update(store.hash.get(), &v));
        Tensor::from_data(TensorData::new(v, shape), &store.device)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_names_follow_the_table() {
        let meta = |p: &str| candidates(p, META_NAMES);
        assert_eq!(
            meta("layer.3.mlp.up_proj.weight"),
            ["blocks.3.mlp.fc1.weight", "blocks.3.mlp.w2.weight"]
        );
        assert_eq!(
            meta("layer.0.attention.o_proj.bias"),
            ["blocks.0.attn.proj.bias"]
        );
        assert_eq!(
            meta("layer.11.layer_scale2.lambda1"),
            ["blocks.11.ls2.gamma"]
        );
        assert_eq!(meta("embeddings.register_tokens"), ["storage_tokens"]);
        assert_eq!(meta("norm.weight"), ["norm.weight"]);
        // A name is only renamed whole: `layer_scale1` is not `layer` + `_scale1`.
        assert_eq!(
            candidates("layer.2.norm1.bias", &[]),
            ["layer.2.norm1.bias"]
        );
        assert_eq!(
            candidates("layer.2.norm1.bias", HF_NESTED_NAMES),
            ["model.layer.2.norm1.bias"]
        );
    }
}
