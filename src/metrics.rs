//! Detection metrics: AUROC, average precision, F1-max (scikit-learn's definitions, ties handled
//! as thresholds) and PRO (MVTec AD's per-region overlap, integrated up to FPR 0.3).
//!
//! Every function refuses inputs where the metric is undefined (one class only, empty, NaN)
//! with an error that says why, instead of returning NaN.

/// Why a metric could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    #[error("{metric} is undefined: {why}")]
    Undefined { metric: &'static str, why: String },
}

fn undefined(metric: &'static str, why: impl Into<String>) -> MetricError {
    MetricError::Undefined {
        metric,
        why: why.into(),
    }
}

/// Cumulative (false positives, true positives) after each distinct threshold, descending, with
/// the totals of positives and negatives.
struct Curve {
    points: Vec<(f64, f64)>,
    positives: f64,
    negatives: f64,
}

fn curve(metric: &'static str, scores: &[f32], labels: &[bool]) -> Result<Curve, MetricError> {
    if scores.len() != labels.len() {
        return Err(undefined(
            metric,
            format!("{} scores but {} labels", scores.len(), labels.len()),
        ));
    }
    if scores.is_empty() {
        return Err(undefined(metric, "no samples"));
    }
    if let Some(i) = scores.iter().position(|s| s.is_nan()) {
        return Err(undefined(metric, format!("score {i} is NaN")));
    }
    let positives = labels.iter().filter(|&&l| l).count() as f64;
    let negatives = labels.len() as f64 - positives;
    if positives == 0.0 {
        return Err(undefined(
            metric,
            format!(
                "all {} samples are normal (no anomalous sample)",
                labels.len()
            ),
        ));
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_unstable_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut points = Vec::new();
    let (mut fp, mut tp) = (0.0, 0.0);
    for (k, &i) in order.iter().enumerate() {
        if labels[i] {
            tp += 1.0
        } else {
            fp += 1.0
        }
        let last_of_tie = order.get(k + 1).is_none_or(|&j| scores[j] != scores[i]);
        if last_of_tie {
            points.push((fp, tp));
        }
    }
    Ok(Curve {
        points,
        positives,
        negatives,
    })
}

/// Area under the ROC curve (trapezoids between distinct thresholds).
pub fn auroc(scores: &[f32], labels: &[bool]) -> Result<f64, MetricError> {
    let Curve {
        points,
        positives: p,
        negatives: n,
    } = curve("AUROC", scores, labels)?;
    if n == 0.0 {
        return Err(undefined(
            "AUROC",
            format!(
                "all {} samples are anomalous (no normal sample)",
                labels.len()
            ),
        ));
    }
    let mut area = 0.0;
    let (mut fpr0, mut tpr0) = (0.0, 0.0);
    for (fp, tp) in points {
        let (fpr, tpr) = (fp / n, tp / p);
        area += (fpr - fpr0) * (tpr + tpr0) / 2.0;
        (fpr0, tpr0) = (fpr, tpr);
    }
    Ok(area)
}

/// Average precision: Σ (Rₖ − Rₖ₋₁) Pₖ over distinct thresholds.
pub fn average_precision(scores: &[f32], labels: &[bool]) -> Result<f64, MetricError> {
    let Curve {
        points,
        positives: p,
        ..
    } = curve("average precision", scores, labels)?;
    let mut ap = 0.0;
    let mut r0 = 0.0;
    for (fp, tp) in points {
        let (precision, recall) = (tp / (tp + fp), tp / p);
        ap += (recall - r0) * precision;
        r0 = recall;
    }
    Ok(ap)
}

/// The best F1 over all thresholds, and the threshold that reaches it.
pub fn f1_max(scores: &[f32], labels: &[bool]) -> Result<(f64, f32), MetricError> {
    let Curve {
        points,
        positives: p,
        ..
    } = curve("F1-max", scores, labels)?;
    let mut sorted: Vec<f32> = scores.to_vec();
    sorted.sort_unstable_by(|a, b| b.total_cmp(a));
    sorted.dedup();
    let mut best = (0.0, sorted[0]);
    for ((fp, tp), threshold) in points.into_iter().zip(sorted) {
        let (precision, recall) = (tp / (tp + fp), tp / p);
        if precision + recall > 0.0 {
            let f1 = 2.0 * precision * recall / (precision + recall);
            if f1 > best.0 {
                best = (f1, threshold);
            }
        }
    }
    Ok(best)
}

/// One test image for PRO: its anomaly map and ground-truth mask, both `height × width`.
pub struct MaskedMap<'a> {
    pub scores: &'a [f32],
    pub mask: &'a [bool],
    pub width: usize,
    pub height: usize,
}

/// 8-connected components of a mask: a label per pixel (0 = background) and the count.
pub fn connected_components(mask: &[bool], width: usize, height: usize) -> (Vec<u32>, u32) {
    let mut labels = vec![0u32; mask.len()];
    let mut next = 0;
    let mut stack = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || labels[start] != 0 {
            continue;
        }
        next += 1;
        labels[start] = next;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (y, x) = ((i / width) as isize, (i % width) as isize);
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let (ny, nx) = (y + dy, x + dx);
                    if ny < 0 || nx < 0 || ny >= height as isize || nx >= width as isize {
                        continue;
                    }
                    let j = ny as usize * width + nx as usize;
                    if mask[j] && labels[j] == 0 {
                        labels[j] = next;
                        stack.push(j);
                    }
                }
            }
        }
    }
    (labels, next)
}

/// Normalised area under the per-region-overlap curve up to `max_fpr` (MVTec AD uses 0.3).
pub fn pro(maps: &[MaskedMap], max_fpr: f64) -> Result<f64, MetricError> {
    const NAME: &str = "PRO";
    let mut scores = Vec::new();
    let mut fp_change = Vec::new();
    let mut pro_change = Vec::new();
    let (mut normal_pixels, mut regions) = (0usize, 0usize);
    for (k, m) in maps.iter().enumerate() {
        let n = m.width * m.height;
        if m.scores.len() != n || m.mask.len() != n {
            return Err(undefined(
                NAME,
                format!(
                    "image {k}: map and mask must both be {}x{}",
                    m.width, m.height
                ),
            ));
        }
        let (labels, count) = connected_components(m.mask, m.width, m.height);
        let mut sizes = vec![0usize; count as usize + 1];
        labels.iter().for_each(|&l| sizes[l as usize] += 1);
        regions += count as usize;
        normal_pixels += sizes[0];
        scores.extend_from_slice(m.scores);
        for &l in &labels {
            fp_change.push(l == 0);
            pro_change.push(if l == 0 {
                0.0
            } else {
                1.0 / sizes[l as usize] as f64
            });
        }
    }
    if regions == 0 {
        return Err(undefined(NAME, "the ground truth has no anomalous region"));
    }
    if normal_pixels == 0 {
        return Err(undefined(NAME, "the ground truth has no normal pixel"));
    }
    if let Some(i) = scores.iter().position(|s| s.is_nan()) {
        return Err(undefined(NAME, format!("pixel {i} has a NaN score")));
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_unstable_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut fprs = vec![0.0];
    let mut pros = vec![0.0];
    let (mut fp, mut overlap) = (0.0f64, 0.0f64);
    for (k, &i) in order.iter().enumerate() {
        if fp_change[i] {
            fp += 1.0;
        }
        overlap += pro_change[i];
        if order.get(k + 1).is_none_or(|&j| scores[j] != scores[i]) {
            fprs.push((fp / normal_pixels as f64).min(1.0));
            pros.push((overlap / regions as f64).min(1.0));
        }
    }
    fprs.push(1.0);
    pros.push(1.0);
    Ok(area_up_to(&fprs, &pros, max_fpr) / max_fpr)
}

/// Trapezoid area under (x, y) for x ≤ x_max, interpolating at x_max.
fn area_up_to(x: &[f64], y: &[f64], x_max: f64) -> f64 {
    let mut area = 0.0;
    for k in 1..x.len() {
        let (x0, x1, y0, y1) = (x[k - 1], x[k], y[k - 1], y[k]);
        if x1 <= x_max {
            area += (x1 - x0) * (y0 + y1) / 2.0;
        } else {
            if x0 < x_max {
                let y_at = y0 + (y1 - y0) * (x_max - x0) / (x1 - x0);
                area += (x_max - x0) * (y0 + y_at) / 2.0;
            }
            break;
        }
    }
    area
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_inverted_rankings() {
        let s = [0.1, 0.2, 0.8, 0.9];
        let l = [false, false, true, true];
        assert_eq!(auroc(&s, &l).unwrap(), 1.0);
        assert_eq!(average_precision(&s, &l).unwrap(), 1.0);
        let inv = [true, true, false, false];
        assert_eq!(auroc(&s, &inv).unwrap(), 0.0);
    }

    #[test]
    fn ties_count_half() {
        assert_eq!(auroc(&[0.5, 0.5], &[false, true]).unwrap(), 0.5);
    }

    #[test]
    fn single_class_is_an_error_not_nan() {
        let e = auroc(&[0.1, 0.2], &[false, false]).unwrap_err();
        assert!(e.to_string().contains("all 2 samples are normal"), "{e}");
        let e = auroc(&[0.1, 0.2], &[true, true]).unwrap_err();
        assert!(e.to_string().contains("no normal sample"), "{e}");
        assert!(average_precision(&[], &[]).is_err());
    }

    #[test]
    fn components_are_eight_connected() {
        #[rustfmt::skip]
        let m = [
            true, false, false,
            false, true, false,
            false, false, false,
            true, true, false,
        ];
        let (_, n) = connected_components(&m, 3, 4);
        assert_eq!(n, 2);
    }
}
