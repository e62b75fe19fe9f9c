//! How a model is fit: one specification, its defaults (the paper's) and its validation.
//!
//! Every front end fills a [`FitSpec`] and nothing else: the CLI's flags are its fields (clap's
//! derive, behind the `cli` feature: help from the field docs, defaults from [`FitSpec::default`]), the JS API deserialises the options object into it
//! (an unknown key is an error that names it), and the page fills its form from the defaults the
//! wasm reports. The bundle stores the whole spec, so a model says exactly how it was made.
//!
//! To add a setting: a field here (with its default and its check in [`FitSpec::validate`]), then
//! use it where the fit happens ([`crate::train`], [`crate::detector::fit_model`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::ar::{ArConfig, Variant};
use crate::infra::named::SettingError;
use crate::volume::Plane;
use crate::volume::window::Window;

named_choice! {
    /// Which scorer turns embeddings into patch scores. The one spelling of "AR or kNN".
    pub enum Method ("method") {
        /// The spatial autoregressive head (the paper's method).
        Ar = "ar", "autoregressive head (the paper)";
        /// The AnomalyDINO-style memory bank of normal patches (the baseline).
        Knn = "knn", "kNN memory bank (baseline)";
    }
}

named_choice! {
    /// How patch scores are placed before the image score and the map: as the head's squared
    /// error (the paper), or standardised per grid position.
    pub enum PositionNorm ("position norm") {
        /// The squared prediction error as it is.
        None = "none", "none: the squared error (the paper)";
        /// `(error − μ) / σ` with μ, σ the error's mean and spread *at that position* over the
        /// training images: a raster-order head has little or no context in the first rows and
        /// columns, so its error there is higher on every image (a "hot corner"); this removes
        /// that (AR head only).
        Standardise = "standardise", "standardised per position (no hot corner)";
    }
}

/// Model input size, height × width in pixels (multiples of the backbone's patch size).
///
/// Written as `[h, w]`; read from a number (square), `[h, w]`, or a string `"S"` / `"HxW"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "[usize; 2]")]
pub struct InputSize {
    pub height: usize,
    pub width: usize,
}

impl InputSize {
    pub fn square(side: usize) -> Self {
        Self {
            height: side,
            width: side,
        }
    }

    pub fn hw(self) -> (usize, usize) {
        (self.height, self.width)
    }
}

impl From<InputSize> for [usize; 2] {
    fn from(s: InputSize) -> Self {
        [s.height, s.width]
    }
}

impl fmt::Display for InputSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.height, self.width)
    }
}

impl FromStr for InputSize {
    type Err = SpecError;
    /// `448` (square) or `448x320` (height x width).
    fn from_str(s: &str) -> Result<Self, SpecError> {
        let bad = || {
            SpecError::Size(format!(
                "invalid input size `{s}`: expected S or HxW, e.g. 448 or 448x320"
            ))
        };
        let parse = |t: &str| t.trim().parse::<usize>().map_err(|_| bad());
        let (height, width) = match s.split_once(['x', 'X', '×']) {
            Some((h, w)) => (parse(h)?, parse(w)?),
            None => {
                let v = parse(s)?;
                (v, v)
            }
        };
        Ok(Self { height, width })
    }
}

impl<'de> Deserialize<'de> for InputSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Any {
            Side(usize),
            Pair([usize; 2]),
            Text(String),
        }
        match Any::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a whole number, [height, width] or \"HxW\"")
        })? {
            Any::Side(s) => Ok(InputSize::square(s)),
            Any::Pair([height, width]) => Ok(InputSize { height, width }),
            Any::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Everything that decides how a model is fit. The defaults are the paper's; each field's doc
/// says it (for the TypeScript types), and a test holds those lines to [`FitSpec::default`].
///
/// The CLI's `fit` flags are these fields (`--batch-size` for `batch_size`), their help these docs.
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct FitSpec {
    /// `ar` (the paper) or `knn` (the baseline). Default: `"ar"`.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = FitSpec::default().method, hide_default_value = true, value_parser = crate::infra::named::clap_choice::<Method>()))]
    pub method: Method,
    /// AR head: `dilated` (dilation 4, the paper), `standard` (dilation 1) or `gated` (two
    /// stacks, no blind spot). Default: `"dilated"`.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = FitSpec::default().variant, hide_default_value = true, value_parser = crate::infra::named::clap_choice::<Variant>()))]
    pub variant: Variant,
    /// AR head: hidden channels. Default: 256.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = FitSpec::default().hidden, hide_default_value = true))]
    pub hidden: usize,
    /// AR head: masked convolution layers (for `gated`: the input pair, each gated block and the
    /// output, so ≥ 3). Default: 5.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = FitSpec::default().layers, hide_default_value = true))]
    pub layers: usize,
    /// AR head: kernel size (odd). Default: 3.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = FitSpec::default().kernel, hide_default_value = true))]
    pub kernel: usize,
    /// AR head: passes over the training images. Default: 40.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = FitSpec::default().epochs, hide_default_value = true))]
    pub epochs: usize,
    /// AR head: images per optimisation step. Default: 64.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = FitSpec::default().batch_size, hide_default_value = true))]
    pub batch_size: usize,
    /// AR head: AdamW learning rate. Default: 0.001.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = FitSpec::default().learning_rate, hide_default_value = true))]
    pub learning_rate: f64,
    /// AR head: AdamW weight decay. Default: 0.01.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = FitSpec::default().weight_decay, hide_default_value = true))]
    pub weight_decay: f64,
    /// AR head: chance per batch that the input gets feature noise. Default: 0.2.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = FitSpec::default().noise_prob, hide_default_value = true))]
    pub noise_prob: f64,
    /// AR head: the noise's size relative to each channel's spread. Default: 0.03.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = FitSpec::default().noise_scale, hide_default_value = true))]
    pub noise_scale: f64,
    /// Seeds the initialisation, the batch order, the noise and the hold-out split. Default: 42.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = FitSpec::default().seed, hide_default_value = true))]
    pub seed: u64,
    /// Model input size, `[height, width]` (`S` or `HxW` on the command line; multiples of the
    /// backbone's patch size). Default: `[448, 448]`.
    #[cfg_attr(target_arch = "wasm32", tsify(type = "[number, number]"))]
    #[cfg_attr(feature = "cli", arg(long, default_value_t = FitSpec::default().size, hide_default_value = true))]
    pub size: InputSize,
    /// Share of the normal images held out of training to calibrate the threshold. Default: 0.1.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = FitSpec::default().holdout, hide_default_value = true))]
    pub holdout: f64,
    /// The threshold is this quantile of the held-out images' scores. Default: 0.99.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = FitSpec::default().quantile, hide_default_value = true))]
    pub quantile: f64,
    /// AR head: `none` (the squared error, the paper) or `standardise` (per grid position).
    /// Default: `"none"`.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = FitSpec::default().position_norm, hide_default_value = true, value_parser = crate::infra::named::clap_choice::<PositionNorm>()))]
    pub position_norm: PositionNorm,
    /// How intensities become grey values: `auto` (pictures and 8-bit volumes as they are, other
    /// volumes by percentiles), `as-is` (8-bit only), a CT preset (`ct-brain`, `ct-liver`,
    /// `ct-soft-tissue`, `ct-bone`), `ct:CENTRE,WIDTH` (HU), `percentile` (0.5–99.5 % per volume)
    /// or `percentile:LOW,HIGH`. Scoring uses the model's. Default: `"auto"`.
    #[cfg_attr(target_arch = "wasm32", tsify(type = "string"))]
    #[cfg_attr(feature = "cli", arg(long, default_value_t = FitSpec::default().window, hide_default_value = true))]
    pub window: Window,
    /// Volumes: the plane they are cut into, `axial`, `coronal` or `sagittal` (slices shown the
    /// radiological way). Scoring uses the model's. Default: `"axial"`.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = FitSpec::default().plane, hide_default_value = true, value_parser = crate::infra::named::clap_choice::<Plane>()))]
    pub plane: Plane,
    /// Volumes: training skips slices where fewer than 1 % of the pixels are brighter than this
    /// grey level (0–1, after the window); 0 keeps every slice. Default: 0.0.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = FitSpec::default().skip_empty, hide_default_value = true))]
    pub skip_empty: f32,
}

impl Default for FitSpec {
    fn default() -> Self {
        // The head's shape is the AR head's own default (the paper's).
        let head = ArConfig::new(0);
        Self {
            method: Method::Ar,
            variant: head.variant,
            hidden: head.hidden,
            layers: head.layers,
            kernel: head.kernel,
            epochs: 40,
            batch_size: 64,
            learning_rate: 1e-3,
            weight_decay: 0.01,
            noise_prob: 0.2,
            noise_scale: 0.03,
            seed: 42,
            size: InputSize::square(448),
            holdout: 0.1,
            quantile: 0.99,
            position_norm: PositionNorm::None,
            window: Window::Auto,
            plane: Plane::Axial,
            skip_empty: 0.0,
        }
    }
}

/// What is wrong with a fit specification; each message names the setting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error(transparent)]
    Setting(#[from] SettingError),
    #[error("{0}")]
    Size(String),
    #[error("fit options: {0}")]
    Options(String),
    #[error("a validation split picks the AR head's best epoch; the kNN baseline has no epochs")]
    ValidationNeedsAr,
    #[error(
        "a model can go on learning with new training settings, but not with another {0}: fit a new model for that"
    )]
    ResumeChanges(String),
}

impl FitSpec {
    /// Check every setting on its own; what depends on the backbone (the size against its patch
    /// size) is checked where the backbone is known.
    /// [`FitSpec::validate`], and whether a validation split (`validation`) can pick an epoch.
    pub fn validate_with(&self, validation: bool) -> Result<(), SpecError> {
        self.validate()?;
        if validation && self.method != Method::Ar {
            return Err(SpecError::ValidationNeedsAr);
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        fn check<T: fmt::Display>(
            name: &'static str,
            value: T,
            ok: bool,
            rule: &'static str,
        ) -> Result<(), SpecError> {
            if ok {
                Ok(())
            } else {
                Err(SettingError::OutOfRange {
                    name,
                    rule,
                    got: value.to_string(),
                }
                .into())
            }
        }
        let at_least_one = "a whole number ≥ 1";
        check("hidden", self.hidden, self.hidden >= 1, at_least_one)?;
        check("layers", self.layers, self.layers >= 1, at_least_one)?;
        let gated = self.method == Method::Ar && self.variant == Variant::Gated;
        check(
            "layers",
            self.layers,
            !gated || self.layers >= 3,
            "≥ 3 with the `gated` variant (its input pair, one gated block, its output)",
        )?;
        let k = self.kernel;
        check("kernel", k, k % 2 == 1 && k >= 3, "odd and ≥ 3")?;
        check("epochs", self.epochs, self.epochs >= 1, at_least_one)?;
        check(
            "batchSize",
            self.batch_size,
            self.batch_size >= 1,
            at_least_one,
        )?;
        let lr = self.learning_rate;
        check("learningRate", lr, lr.is_finite() && lr > 0.0, "> 0")?;
        let wd = self.weight_decay;
        check("weightDecay", wd, wd.is_finite() && wd >= 0.0, "≥ 0")?;
        let p = self.noise_prob;
        check("noiseProb", p, (0.0..=1.0).contains(&p), "in [0, 1]")?;
        let s = self.noise_scale;
        check("noiseScale", s, s.is_finite() && s >= 0.0, "≥ 0")?;
        let size = self.size;
        check("size", size, size.height >= 1 && size.width >= 1, "≥ 1")?;
        let h = self.holdout;
        check("holdout", h, (0.0..1.0).contains(&h), "in [0, 1)")?;
        let q = self.quantile;
        check("quantile", q, q > 0.0 && q <= 1.0, "in (0, 1]")?;
        let pn = self.position_norm;
        let ar_or_none = pn == PositionNorm::None || self.method == Method::Ar;
        check(
            "positionNorm",
            pn,
            ar_or_none,
            "`none` with the kNN baseline",
        )?;
        let e = self.skip_empty;
        check("skipEmpty", e, (0.0..1.0).contains(&e), "in [0, 1)")?;
        Ok(self.window.validate()?)
    }

    /// The AR head's shape for embeddings of `channels` dimensions.
    pub fn ar_config(&self, channels: usize) -> ArConfig {
        ArConfig {
            channels,
            hidden: self.hidden,
            layers: self.layers,
            kernel: self.kernel,
            variant: self.variant,
        }
    }

    /// Read a spec from JSON text, defaults filling what is absent.
    pub fn from_json(text: &str) -> Result<Self, SpecError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let spec: FitSpec =
            serde_path_to_error::deserialize(&mut de).map_err(|e| SpecError::Options(named(e)))?;
        spec.validate()?;
        Ok(spec)
    }
}

impl FitSpec {
    /// The spec to go on learning from a model made with `self`: its settings, with `overrides`
    /// (a JSON object of spec keys, as the JS API's options or the CLI's flags given) on top —
    /// only training settings may change ([`FitSpec::check_resume`]).
    pub fn resumed(
        &self,
        overrides: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, SpecError> {
        let mut value =
            serde_json::to_value(self).map_err(|e| SpecError::Options(e.to_string()))?;
        if let Some(map) = value.as_object_mut() {
            for (k, v) in overrides {
                map.insert(k.clone(), v.clone());
            }
        }
        let spec = Self::from_json(&value.to_string())?;
        self.check_resume(&spec)?;
        Ok(spec)
    }

    /// Refuse what would make a resumed model another model: its scorer's shape, its input (size,
    /// window, plane) or how its scores are placed. Training settings (epochs, learning rate,
    /// seed, hold-out, …) may change.
    pub fn check_resume(&self, resumed: &FitSpec) -> Result<(), SpecError> {
        let fixed: [(&str, bool); 9] = [
            ("method", self.method == resumed.method),
            ("variant", self.variant == resumed.variant),
            ("hidden", self.hidden == resumed.hidden),
            ("layers", self.layers == resumed.layers),
            ("kernel", self.kernel == resumed.kernel),
            ("size", self.size == resumed.size),
            ("positionNorm", self.position_norm == resumed.position_norm),
            ("window", self.window == resumed.window),
            ("plane", self.plane == resumed.plane),
        ];
        let changed: Vec<&str> = fixed
            .iter()
            .filter(|(_, same)| !same)
            .map(|(n, _)| *n)
            .collect();
        match changed.is_empty() {
            true => Ok(()),
            false => Err(SpecError::ResumeChanges(changed.join(", "))),
        }
    }
}

/// A deserialisation error with the key it happened at, e.g. "`seed`: invalid value …".
pub fn named<E: fmt::Display>(e: serde_path_to_error::Error<E>) -> String {
    let path = e.path().to_string();
    if path == "." || path.is_empty() {
        e.inner().to_string()
    } else {
        format!("`{path}`: {}", e.inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let d = FitSpec::default();
        d.validate().unwrap();
        let json = serde_json::to_string(&d).unwrap();
        assert!(json.contains("\"size\":[448,448]"), "{json}");
        assert_eq!(FitSpec::from_json(&json).unwrap(), d);
        assert_eq!(FitSpec::from_json("{}").unwrap(), d);
    }

    #[test]
    fn resuming_takes_the_models_spec_and_changes_only_training() {
        let made = FitSpec {
            epochs: 40,
            seed: 7,
            size: InputSize::square(224),
            ..FitSpec::default()
        };
        let over = |json: &str| {
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            made.resumed(v.as_object().unwrap())
        };
        let r = over(r#"{"epochs": 5, "learningRate": 0.0001}"#).unwrap();
        assert_eq!(
            (r.epochs, r.learning_rate, r.seed, r.size),
            (5, 1e-4, 7, made.size)
        );
        let e = over(r#"{"hidden": 64, "size": 448}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("hidden, size"), "{e}");
        let e = over(r#"{"epoch": 5}"#).unwrap_err().to_string();
        assert!(e.contains("epoch"), "{e}");
    }

    #[test]
    fn sizes_read_three_ways() {
        for text in [
            r#"{"size":224}"#,
            r#"{"size":[224,224]}"#,
            r#"{"size":"224"}"#,
        ] {
            assert_eq!(
                FitSpec::from_json(text).unwrap().size,
                InputSize::square(224)
            );
        }
        let s = FitSpec::from_json(r#"{"size":"448x320"}"#).unwrap().size;
        assert_eq!(s.hw(), (448, 320));
        let e = FitSpec::from_json(r#"{"size":"big"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`size`"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = FitSpec::from_json(r#"{"epoch":3}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `epoch`"), "{e}");
        let e = FitSpec::from_json(r#"{"seed":-1.5}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`seed`"), "{e}");
        let e = FitSpec::from_json(r#"{"epochs":0}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`epochs`") && e.contains("≥ 1"), "{e}");
        let e = FitSpec::from_json(r#"{"variant":"wide"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`variant`") && e.contains("wide"), "{e}");
        let e = FitSpec::from_json(r#"{"holdout":1}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`holdout`"), "{e}");
        let e = FitSpec::from_json(r#"{"kernel":4}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`kernel`") && e.contains("odd"), "{e}");
    }

    #[test]
    fn methods_parse_by_name() {
        assert_eq!("knn".parse::<Method>().unwrap(), Method::Knn);
        let e = "svm".parse::<Method>().unwrap_err().to_string();
        assert!(e.contains("`ar`, `knn`"), "{e}");
    }
    #[test]
    fn the_documented_defaults_are_the_defaults() {
        // The field docs become the TypeScript doc comments: each says its default, and must
        // say the one `FitSpec::default()` has.
        let source = include_str!("spec.rs");
        let start = source.find("pub struct FitSpec {").unwrap() + "pub struct FitSpec {".len();
        let body = &source[start..start + source[start..].find("\n}\n").unwrap()];
        let defaults = serde_json::to_value(FitSpec::default()).unwrap();
        let mut doc = String::new();
        let mut seen = 0;
        for line in body.lines().map(str::trim) {
            if let Some(text) = line.strip_prefix("///") {
                doc = doc + text + " ";
            } else if let Some(field) = line.strip_prefix("pub ").and_then(|l| l.split(':').next())
            {
                let key = field
                    .split('_')
                    .enumerate()
                    .map(|(i, w)| match i {
                        0 => w.to_string(),
                        _ => w[..1].to_uppercase() + &w[1..],
                    })
                    .collect::<String>();
                let documented = std::mem::take(&mut doc)
                    .split_once("Default: ")
                    .map(|(_, d)| d.trim().trim_end_matches('.').replace('`', ""))
                    .unwrap_or_else(|| panic!("`{key}` has no default in its doc"));
                let doc: serde_json::Value = serde_json::from_str(&documented).unwrap();
                assert_eq!(doc, defaults[&key], "`{key}`: documented default");
                seen += 1;
            }
        }
        assert_eq!(seen, defaults.as_object().unwrap().len());
    }
}
