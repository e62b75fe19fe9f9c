//! 2-D rotary position embedding of DINOv3.
//!
//! Patch (i, j) of an h×w grid sits at y = 2(i+0.5)/h − 1, x = 2(j+0.5)/w − 1. Each head's
//! channels are rotated by angles 2π·[y/p₀ … y/pₖ, x/p₀ … x/pₖ] (tiled twice, "rotate half"
//! convention) with periods pₖ = θ^(k / (head_dim/4)). The prefix tokens (CLS, registers) are not
//! rotated. No training-time shift/jitter/rescale: this is inference.

use burn::tensor::{Device, Tensor, TensorData};

/// Periods `theta^(k / (head_dim/4))` for `k < head_dim/4`.
pub fn periods(theta: f64, head_dim: usize) -> Vec<f64> {
    let quarter = head_dim / 4;
    (0..quarter)
        .map(|k| theta.powf(k as f64 / quarter as f64))
        .collect()
}

/// cos / sin tables for one grid's tokens, shaped `[1, 1, prefix + h·w, head_dim]` to broadcast
/// over batch and heads. The prefix tokens get cos 1, sin 0 (not rotated), and the first half of
/// `sin` is negated, so that `rotate_half(x)·sin` becomes `swap_halves(x)·sin`: three element-wise
/// passes per tensor, no slicing of prefix and patches.
pub struct RopeTables {
    cos: Tensor<4>,
    sin: Tensor<4>,
}

impl RopeTables {
    pub fn new(periods: &[f64], h: usize, w: usize, prefix: usize, device: &Device) -> Self {
        let quarter = periods.len();
        let head_dim = 4 * quarter;
        let t = prefix + h * w;
        let mut cos = Vec::with_capacity(t * head_dim);
        let mut sin = Vec::with_capacity(t * head_dim);
        cos.resize(prefix * head_dim, 1.0);
        sin.resize(prefix * head_dim, 0.0);
        let tau = 2.0 * std::f64::consts::PI;
        for i in 0..h {
            let y = 2.0 * (i as f64 + 0.5) / h as f64 - 1.0;
            for j in 0..w {
                let x = 2.0 * (j as f64 + 0.5) / w as f64 - 1.0;
                let half: Vec<f64> = periods
                    .iter()
                    .map(|p| tau * y / p)
                    .chain(periods.iter().map(|p| tau * x / p))
                    .collect();
                for sign in [-1.0, 1.0] {
                    cos.extend(half.iter().map(|a| a.cos() as f32));
                    sin.extend(half.iter().map(|a| (sign * a.sin()) as f32));
                }
            }
        }
        let shape = [1, 1, t, head_dim];
        Self {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
        }
    }

    /// Rotate the patch tokens of `x: [B, heads, prefix + h·w, head_dim]`:
    /// `x·cos + rotate_half(x)·sin` with `rotate_half(x) = [−x₂, x₁]`.
    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let d = x.dims()[3];
        let swapped = Tensor::cat(
            vec![
                x.clone().narrow(3, d / 2, d / 2),
                x.clone().narrow(3, 0, d / 2),
            ],
            3,
        );
        x * self.cos.clone() + swapped * self.sin.clone()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn periods_match_dinov3_vits16() {
        let p = super::periods(100.0, 64);
        assert_eq!(p.len(), 16);
        assert_eq!(p[0], 1.0);
        assert!((p[8] - 10.0).abs() < 1e-12);
    }
}
