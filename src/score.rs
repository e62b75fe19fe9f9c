//! From predictions to anomaly maps, image scores and a calibrated threshold.
//!
//! Patch score = mean over channels of the squared prediction error; the grid map is upsampled
//! bilinearly (align_corners = false, like `F.interpolate`) to the image size. Image score = the
//! map's maximum, with the mean of its top 1 % beside it. Calibration on held-out normal images
//! fixes a threshold and display constants once, stored with the model.
//!
//! The verdict rule lives here, once: [`is_anomalous`]. The CLI's CSV, the JS API's `anomalous`,
//! the page's table and the overlay's contour all call it.

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::infra::readback::{ReadBackError, read_back};
use crate::threshold::{self, Choice, Rule, ThresholdError};
use crate::weights::{TensorFile, WeightsError};

/// `[B, C, h, w]` predictions and targets → `[B, h, w]` patch scores (on the device).
pub fn patch_scores(prediction: Tensor<4>, target: Tensor<4>) -> Tensor<3> {
    let [b, _, h, w] = prediction.dims();
    (prediction - target)
        .powi_scalar(2)
        .mean_dim(1)
        .reshape([b, h, w])
}

/// The mean and spread of the patch scores at each grid position over the training images, for
/// [`crate::spec::PositionNorm::Standardise`]: `(s − μ) / σ` takes out what every image shares at a
/// position (the raster-order head's higher error where it has little context).
#[derive(Debug, Clone)]
pub struct PositionStats {
    /// `[1, h, w]`
    mean: Tensor<3>,
    /// `[1, h, w]`, floored (see [`PositionStats::from_scores`]).
    std: Tensor<3>,
}

const POSITION_MEAN: &str = "position_mean";
const POSITION_STD: &str = "position_std";

impl PositionStats {
    /// From `n` images' patch scores `[n, h, w]` (host values). A spread is floored at a twentieth
    /// of the average spread, so that a position every training image happens to score alike does
    /// not turn a small difference into a huge one.
    pub fn from_scores(scores: &[f32], (h, w): (usize, usize), device: &Device) -> Self {
        let p = h * w;
        let n = scores.len() / p;
        assert!(
            n > 0 && scores.len() == n * p,
            "position stats of {} scores",
            scores.len()
        );
        let mut mean = vec![0f64; p];
        let mut var = vec![0f64; p];
        for img in scores.chunks_exact(p) {
            img.iter()
                .zip(&mut mean)
                .for_each(|(&s, m)| *m += s as f64 / n as f64);
        }
        for img in scores.chunks_exact(p) {
            for ((&s, m), v) in img.iter().zip(&mean).zip(&mut var) {
                *v += (s as f64 - m).powi(2) / n as f64;
            }
        }
        let std: Vec<f64> = var.iter().map(|v| v.sqrt()).collect();
        let floor = (std.iter().sum::<f64>() / p as f64 / 20.0).max(1e-12);
        let upload = |v: Vec<f64>| {
            let v: Vec<f32> = v.into_iter().map(|x| x as f32).collect();
            Tensor::from_data(TensorData::new(v, [1, h, w]), device)
        };
        Self {
            mean: upload(mean),
            std: upload(std.into_iter().map(|s| s.max(floor)).collect()),
        }
    }

    /// `[B, h, w]` patch scores, standardised per position.
    pub fn apply(&self, scores: Tensor<3>) -> Tensor<3> {
        (scores - self.mean.clone()) / self.std.clone()
    }

    pub fn grid(&self) -> (usize, usize) {
        let [_, h, w] = self.mean.dims();
        (h, w)
    }

    /// The two `[h, w]` tensors for the model bundle.
    pub async fn export(&self) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>, ReadBackError> {
        let (h, w) = self.grid();
        Ok(vec![
            (
                POSITION_MEAN.into(),
                vec![h, w],
                read_back(self.mean.clone(), "position means").await?,
            ),
            (
                POSITION_STD.into(),
                vec![h, w],
                read_back(self.std.clone(), "position spreads").await?,
            ),
        ])
    }

    /// From a model bundle, for a grid of `h × w` patches.
    pub fn from_file(
        file: &TensorFile,
        (h, w): (usize, usize),
        device: &Device,
    ) -> Result<Self, WeightsError> {
        let tensor = |name: &str| -> Result<Tensor<3>, WeightsError> {
            let t = file
                .get(name)
                .ok_or_else(|| WeightsError::MissingTensor(name.to_string()))?;
            if t.shape != [h, w] {
                return Err(WeightsError::ShapeMismatch {
                    name: name.to_string(),
                    found: t.shape.clone(),
                    expected: vec![h, w],
                });
            }
            Ok(Tensor::from_data(
                TensorData::new(t.to_f32(name)?, [1, h, w]),
                device,
            ))
        };
        Ok(Self {
            mean: tensor(POSITION_MEAN)?,
            std: tensor(POSITION_STD)?,
        })
    }
}

/// Bilinear upsampling of a row-major `h × w` map to `out_h × out_w`, align_corners = false.
pub fn upsample_bilinear(map: &[f32], h: usize, w: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    assert_eq!(map.len(), h * w, "map size");
    let axis = |n_in: usize, n_out: usize| -> Vec<(usize, usize, f32)> {
        let scale = n_in as f64 / n_out as f64;
        (0..n_out)
            .map(|o| {
                let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (src.floor() as usize).min(n_in - 1);
                let i1 = (i0 + 1).min(n_in - 1);
                (i0, i1, (src - i0 as f64) as f32)
            })
            .collect()
    };
    let ys = axis(h, out_h);
    let xs = axis(w, out_w);
    let mut out = Vec::with_capacity(out_h * out_w);
    for &(y0, y1, fy) in &ys {
        for &(x0, x1, fx) in &xs {
            let top = map[y0 * w + x0] * (1.0 - fx) + map[y0 * w + x1] * fx;
            let bottom = map[y1 * w + x0] * (1.0 - fx) + map[y1 * w + x1] * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

/// The one verdict rule: a score is anomalous when it is **strictly above** the threshold; a
/// score exactly on it is normal. The calibrated threshold is a quantile of held-out *normal*
/// images' scores, so the normal image that sets it stays normal. Applies to image scores (the
/// verdict) and to pixel scores (the region the overlay outlines) alike.
pub fn is_anomalous(score: f32, threshold: f32) -> bool {
    score > threshold
}

/// The verdict as people read it: `anomalous` or `normal` ([`is_anomalous`]).
pub fn verdict(score: f32, threshold: f32) -> &'static str {
    if is_anomalous(score, threshold) {
        "anomalous"
    } else {
        "normal"
    }
}

/// The two image-level scores of one anomaly map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageScore {
    pub max: f32,
    /// Mean of the top 1 % of pixels (at least one pixel).
    pub top1: f32,
}

pub fn image_score(map: &[f32]) -> ImageScore {
    assert!(!map.is_empty(), "empty anomaly map");
    let n = map.len();
    let k = n.div_ceil(100);
    let mut v = map.to_vec();
    // Partition so that the k largest values sit at the end, in O(n).
    v.select_nth_unstable_by(n - k, |a, b| a.total_cmp(b));
    let top_k = &v[n - k..];
    ImageScore {
        max: top_k.iter().copied().fold(f32::MIN, f32::max),
        top1: top_k.iter().sum::<f32>() / k as f32,
    }
}

/// numpy's default (linear) quantile of unsorted values.
pub fn quantile(values: &[f32], q: f64) -> f32 {
    assert!(!values.is_empty(), "quantile of nothing");
    let mut v = values.to_vec();
    v.sort_unstable_by(|a, b| a.total_cmp(b));
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    let t = (pos - lo as f64) as f32;
    v[lo] + (v[hi] - v[lo]) * t
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CalibrationError {
    #[error("calibration needs at least one normal image (the display range rests on them)")]
    NoImages,
    #[error(transparent)]
    Rule(#[from] ThresholdError),
}

/// Decision threshold and display normalisation, fixed on normal images (held out of training by
/// `fit`, or given to `calibrate`) and, for some rules, marked anomalous ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Images whose max score is above this are anomalous ([`is_anomalous`]).
    pub threshold: f32,
    /// Where the threshold sits among the normal images' scores: the quantile asked for under a
    /// `quantile` rule, else the share of them at or below it.
    pub quantile: f64,
    /// Display: pixel scores map to `(s - low) / (high - low)`, so a typical normal pixel is 0 and
    /// the threshold is 1; a normal image never looks hot.
    pub display_low: f32,
    pub display_high: f32,
    /// How many normal images the calibration saw.
    pub images: usize,
    /// The rule that set the threshold ([`crate::threshold`]); absent in models written before
    /// rules existed, which were all `quantile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
    /// How many marked anomalous images the rule saw.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub anomalous_images: usize,
    /// Too few images for the rule, in words (kept with the model, shown with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Calibration {
    /// From the (upsampled or grid) anomaly maps of held-out normal images, at their `quantile_q`.
    pub fn fit(normal_maps: &[Vec<f32>], quantile_q: f64) -> Result<Self, CalibrationError> {
        Ok(Self::from_maps(normal_maps, &[], Rule::Quantile(quantile_q))?.0)
    }

    /// The threshold `rule` picks on normal images' maps and marked anomalous images' scores, with
    /// the display range from the normal maps; and the rule's report.
    pub fn from_maps(
        normal_maps: &[Vec<f32>],
        anomalous_scores: &[f32],
        rule: Rule,
    ) -> Result<(Self, Choice), CalibrationError> {
        if normal_maps.is_empty() || normal_maps.iter().any(|m| m.is_empty()) {
            return Err(CalibrationError::NoImages);
        }
        let maxes: Vec<f32> = normal_maps.iter().map(|m| image_score(m).max).collect();
        let pixels: Vec<f32> = normal_maps.iter().flatten().copied().collect();
        Self::from_scores(&maxes, quantile(&pixels, 0.5), anomalous_scores, rule)
    }

    /// [`Calibration::from_maps`] from image scores and the normal maps' median pixel score (the
    /// rule says whether it needs normal scores).
    pub fn from_scores(
        normal: &[f32],
        display_low: f32,
        anomalous: &[f32],
        rule: Rule,
    ) -> Result<(Self, Choice), CalibrationError> {
        let choice = threshold::choose(rule, normal, anomalous)?;
        let threshold = choice.threshold;
        let quantile = match rule {
            Rule::Quantile(q) => q,
            _ => 1.0 - choice.false_alarm_rate,
        };
        let calibration = Self {
            threshold,
            quantile,
            display_low,
            display_high: threshold.max(display_low + f32::EPSILON),
            images: normal.len(),
            rule: Some(rule),
            anomalous_images: anomalous.len(),
            warning: choice.warning.clone(),
        };
        Ok((calibration, choice))
    }

    /// The rule that set the threshold (`quantile` for models from before rules).
    pub fn rule(&self) -> Rule {
        self.rule.unwrap_or(Rule::Quantile(self.quantile))
    }

    /// The threshold and display range that place a map's scores (for [`crate::overlay`]).
    pub fn scale(&self) -> Scale {
        Scale {
            threshold: self.threshold,
            display_low: self.display_low,
            display_high: self.display_high,
        }
    }
}

/// The numbers that place a map's scores: the verdict threshold and the display range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Scale {
    pub threshold: f32,
    pub display_low: f32,
    pub display_high: f32,
}

impl Scale {
    /// A pixel score in display units: 0 = typical normal, 1 = the calibrated threshold.
    pub fn display(&self, score: f32) -> f32 {
        let span = self.display_high - self.display_low;
        let span = if span > 0.0 { span } else { 1.0 };
        ((score - self.display_low) / span).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsampling_matches_interpolate_align_corners_false() {
        // torch: F.interpolate(tensor([[0., 1.]]).view(1,1,1,2), size=(1,4), mode="bilinear")
        assert_eq!(
            upsample_bilinear(&[0., 1.], 1, 2, 1, 4),
            vec![0.0, 0.25, 0.75, 1.0]
        );
        let m = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(upsample_bilinear(&m, 2, 2, 2, 2), m.to_vec());
    }

    #[test]
    fn top_one_percent_and_max() {
        let mut map: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        map.reverse();
        let s = image_score(&map);
        assert_eq!(s.max, 999.0);
        assert_eq!(s.top1, (990..1000).sum::<i32>() as f32 / 10.0);
        assert_eq!(image_score(&[3.0]).top1, 3.0);
    }

    #[test]
    fn a_score_on_the_threshold_is_normal() {
        assert!(!is_anomalous(0.5, 0.5));
        assert!(is_anomalous(0.500_000_06, 0.5));
        assert_eq!(verdict(0.5, 0.5), "normal");
        assert_eq!(verdict(0.6, 0.5), "anomalous");
    }

    #[test]
    fn quantile_is_numpy_linear() {
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.5);
        assert_eq!(quantile(&[5.0, 1.0], 1.0), 5.0);
    }

    #[test]
    fn calibration_puts_normals_below_one() {
        let maps = vec![vec![0.1, 0.2, 0.3], vec![0.2, 0.2, 0.4]];
        let c = Calibration::fit(&maps, 0.99).unwrap();
        assert!(c.threshold <= 0.4 && c.threshold > 0.3);
        assert_eq!(c.scale().display(0.2), 0.0);
        assert!(c.scale().display(0.35) < 1.0);
        assert!(Calibration::fit(&[], 0.99).is_err());
    }
}
