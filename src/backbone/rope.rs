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

/// cos / sin tables for one grid, shaped `[1, 1, h·w, head_dim]` to broadcast over batch and heads.
pub struct RopeTables {
    cos: Tensor<4>,
    sin: Tensor<4>,
    prefix: usize,
}

impl RopeTables {
    pub fn new(periods: &[f64], h: usize, w: usize, prefix: usize, device: &Device) -> Self {
        let quarter = periods.len();
        let head_dim = 4 * quarter;
        let n = h * w;
        let mut cos = Vec::with_capacity(n * head_dim);
        let mut sin = Vec::with_capacity(n * head_dim);
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
                for _ in 0..2 {
                    cos.extend(half.iter().map(|a| a.cos() as f32));
                    sin.extend(half.iter().map(|a| a.sin() as f32));
                }
            }
        }
        let shape = [1, 1, n, head_dim];
        Self {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
            prefix,
        }
    }

    /// Rotate the patch tokens of `x: [B, heads, prefix + h·w, head_dim]`.
    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, t, d] = x.dims();
        let n = t - self.prefix;
        let prefix = x.clone().narrow(2, 0, self.prefix);
        let patches = x.narrow(2, self.prefix, n);
        let x1 = patches.clone().narrow(3, 0, d / 2);
        let x2 = patches.clone().narrow(3, d / 2, d / 2);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        let patches = patches * self.cos.clone() + rotated * self.sin.clone();
        Tensor::cat(vec![prefix, patches], 2)
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
