//! The trained-model file: one safetensors holding the head's tensors and, under the metadata key
//! `dino_ar`, a JSON description (format version, method and its config, input size, calibration,
//! the backbone's fingerprint). The same bytes come out of `dino-ar fit` and the page.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::ar::ArConfig;
use crate::score::Calibration;
use crate::train::FitOptions;
use crate::weights::{TensorFile, WeightsError, write_safetensors_f32};

pub const FORMAT_VERSION: u32 = 1;
const META_KEY: &str = "dino_ar";

/// Which scorer a bundle holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Method {
    /// The spatial autoregressive head; tensors `layers.{i}.weight|bias`.
    Ar {
        config: ArConfig,
        training: FitOptions,
    },
    /// The kNN baseline; tensor `memory_bank` `[M, D]`, rows L2-normalised.
    Knn { bank_size: usize },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleMeta {
    pub format_version: u32,
    pub method: Method,
    /// Model input size (height, width) the head was fit at.
    pub input_size: (usize, usize),
    pub calibration: Calibration,
    /// Of the backbone the embeddings came from (see `DinoV3::fingerprint`).
    pub backbone_fingerprint: String,
    pub embedding_dim: usize,
    pub train_images: usize,
    pub created_by: String,
}

/// A bundle read from bytes: its description and its tensors.
pub struct Bundle {
    pub meta: BundleMeta,
    pub tensors: TensorFile,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BundleError {
    #[error("not a dino-ar model bundle: {0}")]
    NotABundle(String),
    #[error(
        "model bundle format {found} is newer than this dino-ar understands ({FORMAT_VERSION}); update dino-ar"
    )]
    TooNew { found: u32 },
    #[error(
        "this model was trained on another backbone (fingerprint {bundle}); the loaded backbone is {loaded}. \
         Load the backbone weights the model was fit with, or fit a new model"
    )]
    OtherBackbone { bundle: String, loaded: String },
    #[error(transparent)]
    Weights(#[from] WeightsError),
}

impl Bundle {
    pub fn write(
        meta: &BundleMeta,
        tensors: &[(String, Vec<usize>, Vec<f32>)],
    ) -> Result<Vec<u8>, BundleError> {
        let json =
            serde_json::to_string(meta).map_err(|e| BundleError::NotABundle(e.to_string()))?;
        let list: Vec<(&str, Vec<usize>, &[f32])> = tensors
            .iter()
            .map(|(n, s, v)| (n.as_str(), s.clone(), v.as_slice()))
            .collect();
        Ok(write_safetensors_f32(
            &list,
            Some(HashMap::from([(META_KEY.to_string(), json)])),
        )?)
    }

    pub fn read(bytes: &[u8]) -> Result<Self, BundleError> {
        let tensors = TensorFile::from_bytes(bytes)?;
        let json = tensors.metadata.get(META_KEY).ok_or_else(|| {
            BundleError::NotABundle(
                "a tensor file without dino-ar metadata (is it backbone weights? those go in --backbone)".into(),
            )
        })?;
        let version: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| BundleError::NotABundle(format!("metadata is not JSON: {e}")))?;
        let found = version["format_version"].as_u64().unwrap_or(0) as u32;
        if found > FORMAT_VERSION {
            return Err(BundleError::TooNew { found });
        }
        let meta: BundleMeta = serde_json::from_str(json).map_err(|e| {
            BundleError::NotABundle(format!("metadata does not describe a model: {e}"))
        })?;
        Ok(Self { meta, tensors })
    }

    /// Refuse to pair this model with a backbone it was not fit on.
    pub fn check_backbone(&self, fingerprint: &str) -> Result<(), BundleError> {
        if self.meta.backbone_fingerprint != fingerprint {
            return Err(BundleError::OtherBackbone {
                bundle: self.meta.backbone_fingerprint.clone(),
                loaded: fingerprint.to_string(),
            });
        }
        Ok(())
    }
}
