//! The trained-model file: one safetensors holding the head's tensors and, under the metadata key
//! `dino_ar`, a JSON description (format version, method and its config, input size, calibration,
//! the backbone's fingerprint). The same bytes come out of `dino-ar fit` and the page.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::ar::ArConfig;
use crate::score::Calibration;
use crate::spec::{FitSpec, InputSize, Method, PositionNorm};
use crate::weights::{TensorFile, WeightsError, write_safetensors_f32};

/// 2: the whole [`FitSpec`] is stored. 1 (still read): method, AR config and training options.
pub const FORMAT_VERSION: u32 = 2;
const META_KEY: &str = "dino_ar";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleMeta {
    pub format_version: u32,
    /// How the model was made, every setting (defaults included).
    pub spec: FitSpec,
    pub calibration: Calibration,
    /// Of the backbone the embeddings came from (see `DinoV3::fingerprint`).
    pub backbone_fingerprint: String,
    pub embedding_dim: usize,
    pub train_images: usize,
    /// kNN: patches in the memory bank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_size: Option<usize>,
    /// AR head fit with a validation set: the epoch kept (best validation pixel AP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<crate::train::Chosen>,
    pub created_by: String,
    /// How the model came to be, oldest first: its fit, then every time it learned or was
    /// calibrated. Empty in models written before it was kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Version>,
}

named_choice! {
    /// What made a version of a model.
    pub enum Step ("step") {
        Fit = "fit", "fit from scratch";
        Learn = "learn", "went on learning from its weights";
        Calibrate = "calibrate", "threshold set again";
    }
}

/// One version of a model: what it learned from or was calibrated on — counts and the files'
/// fingerprints ([`crate::marks::fingerprint`], `:N` after it for a volume's slice N), never the
/// images — and the threshold that came of it.
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Version {
    #[cfg_attr(
        target_arch = "wasm32",
        tsify(type = "\"fit\" | \"learn\" | \"calibrate\"")
    )]
    pub step: Step,
    /// Images (pictures and slices) trained on or calibrated with.
    pub images: usize,
    /// The normal files' fingerprints.
    pub normal: Vec<String>,
    /// The marked anomalous files' fingerprints (calibration only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anomalous: Vec<String>,
    /// Epochs trained (AR head; not for a calibration or a kNN bank).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<usize>,
    /// The threshold rule and the threshold it gave.
    #[cfg_attr(target_arch = "wasm32", tsify(type = "string"))]
    pub rule: crate::threshold::Rule,
    pub threshold: f32,
    pub created_by: String,
}

impl BundleMeta {
    pub fn method(&self) -> Method {
        self.spec.method
    }

    /// Model input size (height, width) the scorer was fit at.
    pub fn input_size(&self) -> (usize, usize) {
        self.spec.size.hw()
    }

    /// The AR head's shape (meaningful for `Method::Ar`).
    pub fn ar_config(&self) -> ArConfig {
        self.spec.ar_config(self.embedding_dim)
    }

    /// This model's version: 1 for a fit, one more for each learn or calibration (0 for a model
    /// from before versions were kept).
    pub fn version(&self) -> usize {
        self.history.len()
    }

    /// A short description for people: `ar (dilated)` or `knn`.
    pub fn describe(&self) -> String {
        match self.spec.method {
            Method::Ar => format!("ar ({})", self.spec.variant),
            Method::Knn => "knn".into(),
        }
    }
}

/// Format 1, as earlier releases wrote it: read and turned into the current description. It did
/// not record the hold-out share; the default stands in for it.
mod v1 {
    use serde::Deserialize;

    use super::*;
    use crate::ar::Variant;

    #[derive(Deserialize)]
    pub struct Meta {
        method: Method1,
        input_size: (usize, usize),
        calibration: Calibration,
        backbone_fingerprint: String,
        embedding_dim: usize,
        train_images: usize,
        created_by: String,
    }

    #[derive(Deserialize)]
    #[serde(tag = "kind", rename_all = "lowercase")]
    enum Method1 {
        Ar {
            config: Config1,
            training: Training1,
        },
        Knn {
            bank_size: usize,
        },
    }

    #[derive(Deserialize)]
    struct Config1 {
        hidden: usize,
        layers: usize,
        kernel: usize,
        variant: Variant,
    }

    #[derive(Deserialize)]
    struct Training1 {
        epochs: usize,
        batch_size: usize,
        learning_rate: f64,
        weight_decay: f64,
        seed: u64,
        noise_prob: f64,
        noise_scale: f64,
    }

    impl From<Meta> for BundleMeta {
        fn from(m: Meta) -> Self {
            let (height, width) = m.input_size;
            let mut spec = FitSpec {
                size: InputSize { height, width },
                quantile: m.calibration.quantile,
                position_norm: PositionNorm::None,
                ..FitSpec::default()
            };
            let mut bank = None;
            match m.method {
                Method1::Ar { config, training } => {
                    spec.method = Method::Ar;
                    spec.hidden = config.hidden;
                    spec.layers = config.layers;
                    spec.kernel = config.kernel;
                    spec.variant = config.variant;
                    spec.epochs = training.epochs;
                    spec.batch_size = training.batch_size;
                    spec.learning_rate = training.learning_rate;
                    spec.weight_decay = training.weight_decay;
                    spec.seed = training.seed;
                    spec.noise_prob = training.noise_prob;
                    spec.noise_scale = training.noise_scale;
                }
                Method1::Knn { bank_size } => {
                    spec.method = Method::Knn;
                    bank = Some(bank_size);
                }
            }
            BundleMeta {
                format_version: 1,
                spec,
                calibration: m.calibration,
                backbone_fingerprint: m.backbone_fingerprint,
                embedding_dim: m.embedding_dim,
                train_images: m.train_images,
                bank_size: bank,
                validation: None,
                created_by: m.created_by,
                history: Vec::new(),
            }
        }
    }
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

    /// This model's tensors under a new description (a calibration changes no tensor).
    pub fn rewrite(&self, meta: &BundleMeta) -> Result<Vec<u8>, BundleError> {
        let mut tensors = Vec::new();
        for (name, t) in &self.tensors.tensors {
            tensors.push((name.clone(), t.shape.clone(), t.to_f32(name)?));
        }
        Self::write(meta, &tensors)
    }

    pub fn read(bytes: &[u8]) -> Result<Self, BundleError> {
        let tensors = TensorFile::from_bytes(bytes)?;
        let json = tensors.metadata.get(META_KEY).ok_or_else(|| {
            BundleError::NotABundle(
                "a tensor file without dino-ar metadata (is it backbone weights? those are loaded as the backbone, not as a model)".into(),
            )
        })?;
        let version: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| BundleError::NotABundle(format!("metadata is not JSON: {e}")))?;
        let found = version["format_version"].as_u64().unwrap_or(0) as u32;
        if found > FORMAT_VERSION {
            return Err(BundleError::TooNew { found });
        }
        let bad = |e: serde_json::Error| {
            BundleError::NotABundle(format!("metadata does not describe a model: {e}"))
        };
        let meta: BundleMeta = if found == 1 {
            serde_json::from_str::<v1::Meta>(json).map_err(bad)?.into()
        } else {
            let mut value = version;
            // Written before the setting existed: plain squared error, whatever today's default.
            if let Some(spec) = value["spec"].as_object_mut() {
                spec.entry("positionNorm").or_insert("none".into());
            }
            serde_json::from_value(value).map_err(bad)?
        };
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
