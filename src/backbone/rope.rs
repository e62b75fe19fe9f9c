//! 2-D rotary position embedding of DINOv3.
//!
//! Patch (i, j) of an h×w grid sits at y = 2(i+0.5)/h − 1, x = 2(j+0.5)/w − 1. Each head's
//! channels are rotated by angles 2π·[y/p₀ … y/pₖ, x/p₀ … x/pₖ] (tiled twice, "rotate half"
//! convention) with periods pₖ = θ^(k / (head_dim/4)). The prefix tokens (CLS, registers) are not
//! rotated. No training-time shift/jitter/rescale: this is inference.

use burn::tensor::{Device, Tensor, TensorData};

use super::cpu_kernels;

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
    /// The same tables as `[t, head_dim]` values, for the in-place rotation on burn-flex.
    cos_values: Vec<f32>,
    sin_values: Vec<f32>,
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
            cos: Tensor::from_data(TensorData::new(cos.clone(), shape), device),
            sin: Tensor::from_data(TensorData::new(sin.clone(), shape), device),
            cos_values: cos,
            sin_values: sin,
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

    /// The same rotation for token-major `x: [B, prefix + h·w, heads·head_dim]` on burn-flex (the
    /// projections' own layout), in place on all threads: one pass where the tensor form takes a
    /// concatenation and three element-wise ops on one thread.
    pub fn apply_tokens(&self, x: Tensor<3>) -> Tensor<3> {
        let [_, t, width] = x.dims();
        let head_dim = self.cos.dims()[3];
        let half = head_dim / 2;
        assert_eq!(
            t * head_dim,
            self.cos_values.len(),
            "RoPE tables for another grid"
        );
        cpu_kernels::in_place(x, width, |first, rows| {
            for (i, row) in rows.chunks_exact_mut(width).enumerate() {
                let token = (first + i) % t;
                let cos = &self.cos_values[token * head_dim..][..head_dim];
                let sin = &self.sin_values[token * head_dim..][..head_dim];
                for head in row.chunks_exact_mut(head_dim) {
                    let (lo, hi) = head.split_at_mut(half);
                    for j in 0..half {
                        let (a, b) = (lo[j], hi[j]);
                        lo[j] = a * cos[j] + b * sin[j];
                        hi[j] = b * cos[half + j] + a * sin[half + j];
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_in_place_rotation_equals_the_tensor_form() {
        let device = Device::flex();
        let (b, heads, head_dim, prefix, h, w) = (2, 3, 8, 2, 3, 4);
        let tables = RopeTables::new(&periods(100.0, head_dim), h, w, prefix, &device);
        let (t, width) = (prefix + h * w, heads * head_dim);
        let xs: Vec<f32> = (0..b * t * width)
            .map(|i| ((i * 7919) % 997) as f32 / 997.0 - 0.5)
            .collect();
        let x = Tensor::<3>::from_data(TensorData::new(xs, [b, t, width]), &device);
        let split = x.clone().reshape([b, t, heads, head_dim]).swap_dims(1, 2);
        let expected = tables.apply(split).swap_dims(1, 2).reshape([b, t, width]);
        let got = tables.apply_tokens(x);
        let (expected, got) = (expected.into_data(), got.into_data());
        let worst = expected
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .zip(got.as_slice::<f32>().unwrap())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst <= 1e-6, "max |Δ| {worst}");
    }

    #[test]
    fn periods_match_dinov3_vits16() {
        let p = periods(100.0, 64);
        assert_eq!(p.len(), 16);
        assert_eq!(p[0], 1.0);
        assert!((p[8] - 10.0).abs() < 1e-12);
    }
}
