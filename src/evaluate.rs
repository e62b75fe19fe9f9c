//! Evaluation: scored test images with their ground truth in, one serialisable report out.
//!
//! The front end scores each test image and hands its map and mask to an [`Evaluation`]; the
//! [`EvalReport`] it produces is what the CLI prints and writes as JSON, and what scripts read
//! (their keys come from the report, not from a list of their own).
//!
//! To add a metric: its function in [`crate::metrics`], then one line in [`Evaluation::report`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::metrics::{MaskedMap, MetricError, auroc, average_precision, f1_max, pro};
use crate::preprocess::RgbImage;
use crate::score::upsample_bilinear;
use crate::spec::FitSpec;

named_choice! {
    /// At which size the pixel metrics are computed.
    pub enum Protocol ("evaluation protocol") {
        /// Every pixel of every test image at its own size.
        Full = "full", "full resolution: every pixel at the image's own size";
        /// The paper's (and the official code's): the patch map upsampled to 240×240 and the
        /// mask resized to 240×240 (nearest), pixel metrics over all those pixels. Equal to
        /// `full` on BraTS's 240×240 slices; it differs where images are larger.
        Paper = "paper", "the paper's: maps and masks at 240×240";
    }
}

/// The side of the paper's evaluation maps.
pub const PAPER_SIDE: usize = 240;

/// A map and its mask as a protocol evaluates them: `(map, mask, width, height)`.
pub type View = (Vec<f32>, Option<Vec<bool>>, usize, usize);

impl Protocol {
    /// The map (`map` at `width × height`, from the patch `grid` of `grid_h × grid_w`) and the
    /// mask as this protocol evaluates them.
    pub fn view(
        self,
        grid: &[f32],
        (grid_h, grid_w): (usize, usize),
        map: Vec<f32>,
        (width, height): (usize, usize),
        mask: Option<Vec<bool>>,
    ) -> View {
        match self {
            Protocol::Full => (map, mask, width, height),
            Protocol::Paper => {
                let side = PAPER_SIDE;
                let map = upsample_bilinear(grid, grid_h, grid_w, side, side);
                // Nearest neighbour as torch's `interpolate(mode="nearest")`: floor(i · in / out).
                let mask = mask.map(|m| {
                    (0..side * side)
                        .map(|i| m[(i / side) * height / side * width + (i % side) * width / side])
                        .collect()
                });
                (map, mask, side, side)
            }
        }
    }
}

/// One metric of the report: a key for scripts, a label for people, the value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub key: String,
    pub label: String,
    pub value: f64,
}

/// What the metrics were computed on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalCounts {
    pub images: usize,
    pub anomalous_images: usize,
    pub normal_images: usize,
    pub pixels: usize,
    pub anomalous_pixels: usize,
    /// Files that could not be read (named when they were skipped).
    pub skipped_unreadable: usize,
    /// Anomalous images without a mask: in the image-level metrics only.
    pub anomalous_without_mask: usize,
    /// Test images per category (`good`, defect types).
    pub per_category: BTreeMap<String, usize>,
}

/// Every metric with its counts, and what was evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub metrics: Vec<Metric>,
    pub counts: EvalCounts,
    /// How the evaluated model was fit (from its bundle), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<FitSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// At which size the pixel metrics were computed.
    #[serde(default = "full")]
    pub protocol: Protocol,
}

fn full() -> Protocol {
    Protocol::Full
}

impl EvalReport {
    /// A metric's value by key.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.metrics.iter().find(|m| m.key == key).map(|m| m.value)
    }

    /// The metrics as a two-column table for a terminal.
    pub fn table(&self) -> String {
        let mut out = format!("{:<16} {:>8}\n", "metric", "value");
        for m in &self.metrics {
            out += &format!("{:<16} {:>8.4}\n", m.label, m.value);
        }
        out
    }
}

/// A metric that could not be computed, named.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{label}: {source}")]
pub struct EvalError {
    pub label: &'static str,
    pub source: MetricError,
}

/// Scored test images collected for the report.
#[derive(Default)]
pub struct Evaluation {
    pixel_scores: Vec<f32>,
    pixel_labels: Vec<bool>,
    image_scores: Vec<f32>,
    image_labels: Vec<bool>,
    /// (map, mask, width, height) of the images with pixel ground truth.
    maps: Vec<(Vec<f32>, Vec<bool>, usize, usize)>,
    counts: EvalCounts,
    protocol: Option<Protocol>,
}

/// One scored test image and its ground truth.
/// What is known about one test image (a picture, or a slice of a volume): the ground-truth rules
/// of every evaluation and validation, in one place.
#[derive(Debug, Clone, PartialEq)]
pub struct GroundTruth {
    pub anomalous: bool,
    /// The defect mask at the image's size, when there is one.
    pub mask: Option<Vec<bool>>,
}

/// A mask pixel (grey, 0–1) marks a defect above this level.
pub const MASK_LEVEL: f32 = 0.5;

impl GroundTruth {
    /// A picture's: its folder's label, and its mask picture (any channel above [`MASK_LEVEL`]),
    /// sampled nearest-neighbour at `width × height` when it has another size.
    pub fn picture(anomalous: bool, mask: Option<&RgbImage>, width: usize, height: usize) -> Self {
        let mask = mask.map(|m| {
            let mut out = Vec::with_capacity(width * height);
            for y in 0..height {
                let sy = (y * m.height / height).min(m.height - 1);
                for x in 0..width {
                    let sx = (x * m.width / width).min(m.width - 1);
                    let p = &m.data[(sy * m.width + sx) * 3..][..3];
                    out.push(p.iter().any(|&v| v > MASK_LEVEL));
                }
            }
            out
        });
        Self { anomalous, mask }
    }

    /// A slice's: with its slice of a mask volume, the slice is anomalous where the mask marks
    /// anything (whatever its file's folder says); without, it takes its file's label.
    pub fn slice(file_anomalous: bool, mask: Option<&[f32]>) -> Self {
        let mask: Option<Vec<bool>> = mask.map(|m| m.iter().map(|&v| v > MASK_LEVEL).collect());
        let anomalous = match &mask {
            Some(m) => m.iter().any(|&v| v),
            None => file_anomalous,
        };
        Self { anomalous, mask }
    }

    /// The mask pixel metrics use: the mask, or all normal for a normal image; `None` for an
    /// anomalous image without one (it counts for the image-level metrics only).
    pub fn pixel_mask(&self, width: usize, height: usize) -> Option<Vec<bool>> {
        match (&self.mask, self.anomalous) {
            (Some(m), _) => Some(m.clone()),
            (None, false) => Some(vec![false; width * height]),
            (None, true) => None,
        }
    }
}

pub struct Scored<'a> {
    pub category: &'a str,
    pub anomalous: bool,
    pub score: f32,
    /// Pixel scores at the image's size, row-major.
    pub map: Vec<f32>,
    pub width: usize,
    pub height: usize,
    /// The defect mask at the image's size; `None` for a normal image (all normal) or an
    /// anomalous one without a mask (then it counts in the image-level metrics only).
    pub mask: Option<Vec<bool>>,
}

impl Evaluation {
    pub fn new() -> Self {
        Self::default()
    }

    /// An evaluation whose report says which protocol made the maps it was given (see
    /// [`Protocol::view`]).
    pub fn with_protocol(protocol: Protocol) -> Self {
        Self {
            protocol: Some(protocol),
            ..Self::default()
        }
    }

    /// Add one scored image. Returns `false` when it is anomalous without a mask (image-level only).
    pub fn add(&mut self, image: Scored) -> Result<bool, String> {
        let n = image.width * image.height;
        if image.map.len() != n {
            return Err(format!(
                "the map has {} values for a {}x{} image",
                image.map.len(),
                image.width,
                image.height
            ));
        }
        *self
            .counts
            .per_category
            .entry(image.category.to_string())
            .or_default() += 1;
        self.image_scores.push(image.score);
        self.image_labels.push(image.anomalous);
        let mask = match (image.mask, image.anomalous) {
            (Some(m), _) if m.len() != n => {
                return Err(format!("the mask has {} pixels, the image {n}", m.len()));
            }
            (Some(m), _) => m,
            (None, false) => vec![false; n],
            (None, true) => {
                self.counts.anomalous_without_mask += 1;
                return Ok(false);
            }
        };
        self.pixel_scores.extend_from_slice(&image.map);
        self.pixel_labels.extend_from_slice(&mask);
        self.maps.push((image.map, mask, image.width, image.height));
        Ok(true)
    }

    /// Count a test file that could not be read.
    pub fn skip_unreadable(&mut self) {
        self.counts.skipped_unreadable += 1;
    }

    /// Every metric over what was added.
    pub fn report(&self) -> Result<EvalReport, EvalError> {
        let (ps, pl) = (&self.pixel_scores, &self.pixel_labels);
        let (is, il) = (&self.image_scores, &self.image_labels);
        let masked: Vec<MaskedMap> = self
            .maps
            .iter()
            .map(|(scores, mask, width, height)| MaskedMap {
                scores,
                mask,
                width: *width,
                height: *height,
            })
            .collect();
        type Computed = Result<f64, MetricError>;
        let all: [(&str, &'static str, Computed); 6] = [
            ("pixel_auroc", "pixel AUROC", auroc(ps, pl)),
            ("pixel_ap", "pixel AP", average_precision(ps, pl)),
            ("image_auroc", "image AUROC", auroc(is, il)),
            ("pixel_f1_max", "pixel F1-max", f1_max(ps, pl).map(|f| f.0)),
            ("image_f1_max", "image F1-max", f1_max(is, il).map(|f| f.0)),
            ("pro", "PRO (FPR ≤ 0.3)", pro(&masked, 0.3)),
        ];
        let mut metrics = Vec::with_capacity(all.len());
        for (key, label, value) in all {
            let value = value.map_err(|source| EvalError { label, source })?;
            metrics.push(Metric {
                key: key.into(),
                label: label.into(),
                value,
            });
        }
        let counts = EvalCounts {
            images: is.len(),
            anomalous_images: il.iter().filter(|&&l| l).count(),
            normal_images: il.iter().filter(|&&l| !l).count(),
            pixels: ps.len(),
            anomalous_pixels: pl.iter().filter(|&&l| l).count(),
            ..self.counts.clone()
        };
        Ok(EvalReport {
            metrics,
            counts,
            model: None,
            seconds: None,
            protocol: self.protocol.unwrap_or(Protocol::Full),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(
        category: &str,
        anomalous: bool,
        map: [f32; 4],
        mask: Option<[bool; 4]>,
    ) -> Scored<'_> {
        Scored {
            category,
            anomalous,
            score: map.iter().copied().fold(f32::MIN, f32::max),
            map: map.to_vec(),
            width: 2,
            height: 2,
            mask: mask.map(|m| m.to_vec()),
        }
    }

    #[test]
    fn a_perfect_detector_scores_one_everywhere() {
        let mut e = Evaluation::new();
        e.add(image("good", false, [0.1, 0.1, 0.2, 0.1], None))
            .unwrap();
        e.add(image(
            "cut",
            true,
            [0.1, 0.9, 0.1, 0.1],
            Some([false, true, false, false]),
        ))
        .unwrap();
        assert!(
            !e.add(image("cut", true, [0.1, 0.8, 0.1, 0.1], None))
                .unwrap()
        );
        e.skip_unreadable();
        let r = e.report().unwrap();
        for m in &r.metrics {
            assert_eq!(m.value, 1.0, "{}", m.key);
        }
        assert_eq!(r.counts.images, 3);
        assert_eq!(r.counts.pixels, 8);
        assert_eq!(r.counts.anomalous_without_mask, 1);
        assert_eq!(r.counts.skipped_unreadable, 1);
        assert_eq!(r.counts.per_category["cut"], 2);
        assert_eq!(r.get("pro"), Some(1.0));
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<EvalReport>(&json).unwrap(), r);
    }

    #[test]
    fn the_papers_protocol_resizes_map_and_mask_to_240() {
        // A 2×2 patch grid, a 480×360 image whose mask marks its right half.
        let grid = [0.0, 1.0, 0.0, 1.0];
        let mask: Vec<bool> = (0..480 * 360).map(|i| i % 480 >= 240).collect();
        let (map, mask, w, h) =
            Protocol::Paper.view(&grid, (2, 2), vec![0.0; 480 * 360], (480, 360), Some(mask));
        assert_eq!((w, h, map.len()), (240, 240, 240 * 240));
        let mask = mask.unwrap();
        assert!(!mask[0] && !mask[119] && mask[120] && mask[239]);
        assert_eq!(map[0], 0.0);
        assert_eq!(map[239], 1.0);
        let (map, _, w, h) = Protocol::Full.view(&grid, (2, 2), vec![0.5; 6], (3, 2), None);
        assert_eq!((map, w, h), (vec![0.5; 6], 3, 2));
    }

    #[test]
    fn an_undefined_metric_is_named() {
        let mut e = Evaluation::new();
        e.add(image("good", false, [0.1; 4], None)).unwrap();
        let err = e.report().unwrap_err().to_string();
        assert!(err.starts_with("pixel AUROC:"), "{err}");
    }
}
