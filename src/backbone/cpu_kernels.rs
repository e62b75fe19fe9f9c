//! Fused, vectorised CPU kernels for the two element-wise steps where burn-flex calls a scalar libm
//! function per element on one thread: the exact GELU's `erf` (every MLP) and the softmax's `exp`
//! (every attention). Together they were ~25 % of a native forward pass and more in the browser
//! (BENCHMARKS.md, table 2).
//!
//! Each kernel is one pass over the tensor's own memory — burn-flex hands a uniquely owned,
//! contiguous tensor over without a copy (`into_data`) and takes it back the same way
//! (`from_data`) — written as branch-free arithmetic that LLVM vectorises (SSE/AVX natively,
//! `simd128` in wasm) and split over rayon's threads where there are any (natively, and in the
//! threaded browser build). Only for burn-flex and for tensors that need no gradient (the frozen
//! backbone): on a GPU the backend's own fused kernels are used, never a read-back.

use burn::tensor::{Device, Tensor};

/// Elements per task: large enough that splitting costs nothing, small enough to spread a
/// 224² MLP activation (~300 k values) over 16 threads.
const CHUNK: usize = 16 * 1024;

/// Whether `x` can take the fused path: a burn-flex tensor outside any autodiff graph.
pub fn applies<const D: usize>(x: &Tensor<D>) -> bool {
    x.device() == Device::flex() && !x.is_require_grad() && !backend_kernels_asked()
}

/// `DINO_AR_BACKEND_KERNELS=1` (native only) takes burn-flex's own GELU and attention instead:
/// the A/B switch behind BENCHMARKS.md's comparison, in one binary.
fn backend_kernels_asked() -> bool {
    #[cfg(not(target_arch = "wasm32"))]
    {
        static ASKED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *ASKED.get_or_init(|| std::env::var_os("DINO_AR_BACKEND_KERNELS").is_some_and(|v| v == "1"))
    }
    #[cfg(target_arch = "wasm32")]
    false
}

/// Runs `f` on `x`'s values in place, in chunks of whole rows of `row` values, on all threads.
fn in_place<const D: usize>(
    x: Tensor<D>,
    row: usize,
    f: impl Fn(&mut [f32]) + Send + Sync,
) -> Tensor<D> {
    let device = x.device();
    let mut data = x.into_data();
    let values = data
        .as_mut_slice::<f32>()
        .expect("the CPU kernels run on f32 tensors (the backbone's only dtype)");
    let chunk = CHUNK.div_ceil(row).max(1) * row;
    #[cfg(any(not(target_arch = "wasm32"), target_feature = "atomics"))]
    {
        use rayon::prelude::*;
        values.par_chunks_mut(chunk).for_each(f);
    }
    #[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
    values.chunks_mut(chunk).for_each(f);
    Tensor::from_data(data, &device)
}

/// Abramowitz & Stegun 7.1.28: `erf(u) ≈ 1 − (1 + a₁u + … + a₆u⁶)^−16` for `u ≥ 0`, |error| ≤ 3e-7.
const ERF_AS_7_1_28: [f32; 6] = [
    0.070_523_08,
    0.042_282_01,
    0.009_270_527,
    0.000_152_014_3,
    0.000_276_567_2,
    0.000_043_063_8,
];

/// The exact GELU `x·Φ(x) = 0.5·(x + |x|·erf(|x|/√2))`, within 1e-6 of libm's erf form.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    in_place(x, 1, |values| {
        values.iter_mut().for_each(|x| *x = gelu_one(*x))
    })
}

#[inline(always)]
fn gelu_one(x: f32) -> f32 {
    let [a1, a2, a3, a4, a5, a6] = ERF_AS_7_1_28;
    let a = x.abs();
    let u = a * std::f32::consts::FRAC_1_SQRT_2;
    let poly = 1.0 + u * (a1 + u * (a2 + u * (a3 + u * (a4 + u * (a5 + u * a6)))));
    // poly^-16 by four squarings of the reciprocal; |x|·erf = |x|·(1 − poly^-16) (this form keeps
    // gelu(+∞) = +∞, and NaN for −∞ and NaN, as the libm form gives).
    let mut r = 1.0 / poly;
    r *= r;
    r *= r;
    r *= r;
    r *= r;
    0.5 * (x + a * (1.0 - r))
}

/// `e^x` for `x ≤ 0` (softmax arguments after the row maximum is taken off), relative error
/// < 4e-7 (a few ulp): `x = n·ln2 + r` with |r| ≤ ln2/2, a degree-6 polynomial for `e^r`, `2^n`
/// built in the exponent bits. Below −87 (where `e^x` is under f32's smallest normal) it returns e^−87
/// (~1.6e-38, nothing next to the row's 1); NaN stays NaN.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // A select rather than `max`, which would turn NaN into −87.
    let x = if x < -87.0 { -87.0 } else { x };
    let n = (x * std::f32::consts::LOG2_E).round();
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let scale = f32::from_bits(((n as i32 + 127) << 23) as u32);
    p * scale
}

/// Softmax over the last axis (rows of `row` values), in place.
pub fn softmax_rows<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let row = x.dims()[D - 1];
    in_place(x, row, move |values| {
        for r in values.chunks_exact_mut(row) {
            let max = r.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let mut sum = 0.0;
            for v in r.iter_mut() {
                *v = exp_nonpositive(*v - max);
                sum += *v;
            }
            let inv = 1.0 / sum;
            r.iter_mut().for_each(|v| *v *= inv);
        }
    })
}

/// Up to this many tokens attention takes [`attention`]; beyond, burn-flex's tiled (flash) kernel,
/// which never materialises the scores: at 448² (789 tokens) it was faster than two matmuls around
/// the fused softmax, scalar `exp` and all (BENCHMARKS.md, §7). burn-flex itself switches from its
/// naive kernel to the tiled one at 512.
pub const ATTENTION_MAX_TOKENS: usize = 512;

/// `softmax(q·kᵀ·scale)·v` for `[b, heads, t, head_dim]` tensors, through two gemm matmuls and the
/// fused softmax. Materialises the `[b, heads, t, t]` scores, as burn-flex's own kernel does below
/// [`ATTENTION_MAX_TOKENS`].
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, scale: f32) -> Tensor<4> {
    let scores = (q * scale).matmul(k.swap_dims(2, 3));
    softmax_rows(scores).matmul(v)
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;
    use burn::tensor::activation::{gelu as backend_gelu, softmax};
    use burn::tensor::module::attention as backend_attention;
    use burn::tensor::ops::AttentionModuleOptions;

    use super::*;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn gelu_matches_the_backend_erf_gelu() {
        let device = Device::flex();
        let mut xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.005).collect();
        xs.extend([-1e30, -1e4, -40.0, -1e-6, 0.0, 1e-6, 40.0, 1e4, 1e30]);
        xs.extend([f32::INFINITY, f32::NEG_INFINITY, f32::NAN]);
        // Longer than one chunk, so that the split over threads is exercised.
        xs.extend((0..3 * CHUNK).map(|i| ((i * 7919) % 2001) as f32 * 0.004 - 4.0));
        let n = xs.len();
        let x = Tensor::<3>::from_data(TensorData::new(xs.clone(), [1, 1, n]), &device);
        let ours = values(gelu(x.clone()));
        let theirs = values(backend_gelu(x));
        for ((x, a), b) in xs.iter().zip(&ours).zip(&theirs) {
            if !b.is_finite() {
                assert!(
                    a == b || (a.is_nan() && b.is_nan()),
                    "gelu({x}): {a} vs {b}"
                );
                continue;
            }
            let tol = 1e-6 * x.abs().max(1.0);
            assert!((a - b).abs() <= tol, "gelu({x}): {a} vs {b}");
        }
    }

    #[test]
    fn exp_is_within_4e_7_relative() {
        for i in 0..87_000 {
            let x = -(i as f32) * 0.001;
            let (a, b) = (exp_nonpositive(x), x.exp());
            assert!((a - b).abs() <= 4e-7 * b, "exp({x}): {a} vs {b}");
        }
        assert_eq!(exp_nonpositive(-1e30), exp_nonpositive(-87.0));
        assert!(exp_nonpositive(-1e30) < 2e-38);
        assert!(exp_nonpositive(f32::NAN).is_nan());
    }

    #[test]
    fn softmax_matches_the_backend() {
        let device = Device::flex();
        let (rows, cols) = (37, 789);
        let xs: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919) % 1013) as f32 * 0.05 - 25.0)
            .collect();
        let x = Tensor::<2>::from_data(TensorData::new(xs, [rows, cols]), &device);
        let ours = values(softmax_rows(x.clone()));
        let theirs = values(softmax(x, 1));
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() <= 1e-6 + 1e-5 * b, "{a} vs {b}");
        }
    }

    #[test]
    fn attention_matches_the_backend() {
        let device = Device::flex();
        let [b, h, t, d] = [2, 3, 70, 16];
        let make = |seed: usize| {
            let xs: Vec<f32> = (0..b * h * t * d)
                .map(|i| (((i + seed) * 7919) % 997) as f32 / 997.0 * 4.0 - 2.0)
                .collect();
            Tensor::<4>::from_data(TensorData::new(xs, [b, h, t, d]), &device)
        };
        let (q, k, v) = (make(1), make(2), make(3));
        let scale = (d as f32).powf(-0.5);
        let ours = values(attention(q.clone(), k.clone(), v.clone(), scale));
        let options = AttentionModuleOptions {
            scale: Some(scale as f64),
            softcap: None,
            is_causal: false,
        };
        let theirs = values(backend_attention(q, k, v, None, None, options));
        let worst = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst <= 1e-5, "max |Δ| {worst}");
    }
}
