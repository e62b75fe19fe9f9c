//! Fused, vectorised CPU kernels for the backbone's steps where burn-flex calls a scalar libm
//! function per element or runs on one thread: the exact GELU's `erf` (every MLP), the attention
//! (a scalar `exp` per score), and the bias and residual adds (element-wise ops, which burn-flex
//! runs on one thread: what kept more threads from helping). The GELU and the softmax were ~25 % of
//! a native forward pass and more in the browser (BENCHMARKS.md, table 2); RoPE's in-place form
//! lives with its tables in `rope.rs`.
//!
//! Each kernel is one pass over the tensor's own memory — burn-flex hands a uniquely owned,
//! contiguous tensor over without a copy (`into_data`) and takes it back the same way
//! (`from_data`) — written as branch-free arithmetic that LLVM vectorises (SSE/AVX natively,
//! `simd128` in wasm) and split over rayon's threads where there are any (natively, and in the
//! threaded browser build). Only for burn-flex and for tensors that need no gradient (the frozen
//! backbone): on a GPU the backend's own fused kernels are used, never a read-back.

use burn::tensor::{Device, Tensor, TensorData};

/// Elements per task: large enough that splitting costs nothing, small enough to spread a
/// 224² MLP activation (~300 k values) over 16 threads.
const CHUNK: usize = 16 * 1024;

/// Whether `x` can take the fused path: a burn-flex tensor outside any autodiff graph.
pub fn applies<const D: usize>(x: &Tensor<D>) -> bool {
    x.device() == Device::flex() && !x.is_require_grad() && !backend_kernels_asked()
}

/// `DINO_AR_BACKEND_KERNELS=1` (native only) takes the backend's own ops for every kernel here (and
/// RoPE's tensor form, and the GPU's linear layers in `gpu_linear.rs`): the A/B switch behind
/// BENCHMARKS.md's comparisons, in one binary.
pub(crate) fn backend_kernels_asked() -> bool {
    #[cfg(not(target_arch = "wasm32"))]
    {
        static ASKED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *ASKED.get_or_init(|| std::env::var_os("DINO_AR_BACKEND_KERNELS").is_some_and(|v| v == "1"))
    }
    #[cfg(target_arch = "wasm32")]
    false
}

/// Runs `f(first_row, rows)` on `x`'s values in place, in chunks of whole rows of `row` values, on
/// all threads.
pub fn in_place<const D: usize>(
    x: Tensor<D>,
    row: usize,
    f: impl Fn(usize, &mut [f32]) + Send + Sync,
) -> Tensor<D> {
    let device = x.device();
    let mut data = x.into_data();
    let values = data
        .as_mut_slice::<f32>()
        .expect("the CPU kernels run on f32 tensors (the backbone's only dtype)");
    let rows = CHUNK.div_ceil(row).max(1);
    for_each_chunk(values, rows * row, |i, chunk| f(i * rows, chunk));
    Tensor::from_data(data, &device)
}

/// Runs `f(index, chunk)` on consecutive chunks of `chunk` values: on rayon's threads where there
/// are any (natively, and in the threaded browser build), one after another in the one-thread build.
fn for_each_chunk(values: &mut [f32], chunk: usize, f: impl Fn(usize, &mut [f32]) + Send + Sync) {
    #[cfg(any(not(target_arch = "wasm32"), target_feature = "atomics"))]
    {
        use rayon::prelude::*;
        values
            .par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    }
    #[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
    values
        .chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, c)| f(i, c));
}

/// The threads [`for_each_chunk`] spreads work over.
fn threads() -> usize {
    #[cfg(any(not(target_arch = "wasm32"), target_feature = "atomics"))]
    let threads = rayon::current_num_threads();
    #[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
    let threads = 1;
    threads
}

/// `y + bias` over the last axis (burn-flex broadcasts it on one thread).
pub fn add_bias<const D: usize>(y: Tensor<D>, bias: Tensor<1>) -> Tensor<D> {
    let bias = owned_values(bias);
    in_place(y, bias.len(), |_, rows| {
        for row in rows.chunks_exact_mut(bias.len()) {
            row.iter_mut().zip(&bias).for_each(|(y, b)| *y += b);
        }
    })
}

/// `a + b`, written into `b`'s memory (burn-flex adds on one thread).
pub fn add<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    assert_eq!(a.dims(), b.dims(), "the CPU add takes tensors of one shape");
    let a = owned_values(a);
    in_place(b, 1, |first, chunk| {
        chunk.iter_mut().zip(&a[first..]).for_each(|(b, a)| *b += a)
    })
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
    in_place(x, 1, |_, values| {
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
///
/// `n` is rounded by adding and subtracting 1.5·2²³ rather than by `round()`: x86-64's baseline
/// (SSE2) has no rounding instruction, so `round()` is a libm call per element and the loop around
/// it stays scalar (measured: the softmax was a third of a native 448² forward).
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    /// 1.5·2²³: adding it leaves `round(v)` in the low mantissa bits, for |v| < 2²².
    const ROUNDER: f32 = 12_582_912.0;
    // A select rather than `max`, which would turn NaN into −87.
    let x = if x < -87.0 { -87.0 } else { x };
    let shifted = x * std::f32::consts::LOG2_E + ROUNDER;
    let n = shifted - ROUNDER;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // shifted's bits are ROUNDER's plus n: 2ⁿ's bits are (n + 127) << 23.
    let biased = shifted
        .to_bits()
        .wrapping_sub(ROUNDER.to_bits())
        .wrapping_add(127);
    p * f32::from_bits(biased << 23)
}

/// `r ← e^(r − max r)` in place; returns `1 / Σ` (the softmax is the row times it).
#[inline(always)]
fn exp_shifted_row(r: &mut [f32]) -> f32 {
    let max = reduce_lanes(r, f32::NEG_INFINITY, f32::max);
    r.iter_mut().for_each(|v| *v = exp_nonpositive(*v - max));
    1.0 / reduce_lanes(r, 0.0, |a, b| a + b)
}

/// Lanes of a reduction's partial results.
const LANES: usize = 8;

/// `r.fold(init, f)` in `LANES` independent partial results: LLVM does not reorder a float
/// reduction itself, so a plain fold (and the loop around it) would stay scalar.
#[inline(always)]
fn reduce_lanes(r: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut lanes = [init; LANES];
    let chunks = r.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l = f(*l, v);
        }
    }
    rest.iter()
        .fold(lanes.into_iter().fold(init, &f), |a, &v| f(a, v))
}

/// Multi-head `softmax(q·kᵀ·scale)·v` for token-major `[b, t, heads·head_dim]` tensors (the
/// projections' own layout: no split into heads, no merge after), a block of query rows at a time:
/// per block and head one gemm into a `rows × t` scratch that stays in cache, the vector softmax
/// over it, one gemm into the output. burn-flex's own kernel takes a scalar `exp` per score (and
/// below 512 tokens materialises all `[b, heads, t, t]` scores); at 448² (789 tokens) that was most
/// of the backbone's remaining distance to PyTorch (BENCHMARKS.md, §2).
pub fn attention(q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, heads: usize, scale: f32) -> Tensor<3> {
    let [b, t, width] = q.dims();
    assert_eq!(
        width % heads,
        0,
        "{width} channels do not split into {heads} heads"
    );
    let d = width / heads;
    let device = q.device();
    let (q, k, v) = (owned_values(q), owned_values(k), owned_values(v));
    let rows = query_rows_per_task(t);
    // `rows` query rows of one image, all heads: a contiguous run of the token-major output.
    let block = |image: usize, first: usize, out: &mut [f32]| {
        let n = out.len() / width;
        let mut scores = vec![0.0f32; n * t];
        let mut inv_sums = vec![0.0f32; n];
        for head in 0..heads {
            // One head is a `[tokens, d]` matrix with row stride `width` inside the token-major
            // buffers: gemm reads it in place.
            let at = |row: usize| (image * t + row) * width + head * d;
            let span = |rows: usize| (rows - 1) * width + d;
            let qh = &q[at(first)..][..span(n)];
            let (kh, vh) = (&k[at(0)..][..span(t)], &v[at(0)..][..span(t)]);
            let out_head = &mut out[head * d..][..span(n)];
            // SAFETY (both calls): each operand is read or written through the pointer of a slice
            // and strides that stay inside it — `n × d` (q rows), `t × d` (k, v) and `n × d`
            // (output) with row stride `width`, exactly the spans sliced above — and `n × t` of
            // `scores` with row stride `t`.
            unsafe {
                // scores = scale · q_rows · kᵀ (kᵀ read through k's strides: no transposed copy)
                gemm::gemm(
                    n,
                    t,
                    d,
                    scores.as_mut_ptr(),
                    1,
                    t as isize,
                    false,
                    qh.as_ptr(),
                    1,
                    width as isize,
                    kh.as_ptr(),
                    width as isize,
                    1,
                    0.0,
                    scale,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            for (row, inv) in scores.chunks_exact_mut(t).zip(&mut inv_sums) {
                *inv = exp_shifted_row(row);
            }
            unsafe {
                // out_rows = e^scores · v
                gemm::gemm(
                    n,
                    d,
                    t,
                    out_head.as_mut_ptr(),
                    1,
                    width as isize,
                    false,
                    scores.as_ptr(),
                    1,
                    t as isize,
                    vh.as_ptr(),
                    1,
                    width as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            // Normalising a row's d outputs costs less than its t probabilities.
            for (i, inv) in inv_sums.iter().enumerate() {
                out_head[i * width..][..d]
                    .iter_mut()
                    .for_each(|x| *x *= inv);
            }
        }
    };
    let mut out = vec![0.0f32; b * t * width];
    for_each_chunk(&mut out, t * width, |image, o| {
        for_each_chunk(o, rows * width, |i, o| block(image, i * rows, o))
    });
    Tensor::from_data(TensorData::new(out, [b, t, width]), &device)
}

/// A tensor's values in row-major order of its logical shape (copied only from a strided view or
/// a shared buffer).
fn owned_values<const D: usize>(x: Tensor<D>) -> Vec<f32> {
    x.into_data()
        .try_into_vec::<f32>()
        .expect("the CPU kernels run on f32 tensors (the backbone's only dtype)")
}

/// Query rows per attention task: about two tasks per thread for one image (448² runs one image at
/// a time), but at least 16 rows (fewer waste gemm's micro-kernel) and at most 64 (a task's
/// `rows × t` scores, 200 KB at 789 tokens, stay in L2).
fn query_rows_per_task(t: usize) -> usize {
    t.div_ceil(2 * threads()).clamp(16, 64)
}

#[cfg(test)]
mod tests {
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
        // The attention's softmax: each row through `exp_shifted_row`, times the returned 1/Σ.
        let mut ours = values(x.clone());
        for r in ours.chunks_exact_mut(cols) {
            let inv = exp_shifted_row(r);
            r.iter_mut().for_each(|v| *v *= inv);
        }
        let theirs = values(softmax(x, 1));
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() <= 1e-6 + 1e-5 * b, "{a} vs {b}");
        }
    }

    #[test]
    fn attention_matches_the_backend() {
        let device = Device::flex();
        // A batch of two with a token count no block size divides, one past 512 tokens (where
        // burn-flex switches to its tiled kernel, and where the 448² backbone's 789 lie), one tiny.
        for [b, h, t, d] in [[2, 3, 70, 16], [1, 2, 601, 8], [3, 1, 17, 4]] {
            let make = |seed: usize| {
                let xs: Vec<f32> = (0..b * t * h * d)
                    .map(|i| (((i + seed) * 7919) % 997) as f32 / 997.0 * 4.0 - 2.0)
                    .collect();
                Tensor::<3>::from_data(TensorData::new(xs, [b, t, h * d]), &device)
            };
            let (q, k, v) = (make(1), make(2), make(3));
            let scale = (d as f32).powf(-0.5);
            let ours = attention(q.clone(), k.clone(), v.clone(), h, scale);
            let split = |y: Tensor<3>| y.reshape([b, t, h, d]).swap_dims(1, 2);
            let options = AttentionModuleOptions {
                scale: Some(scale as f64),
                softcap: None,
                is_causal: false,
            };
            let theirs = backend_attention(split(q), split(k), split(v), None, None, options);
            let theirs = values(theirs.swap_dims(1, 2).reshape([b, t, h * d]));
            let worst = values(ours)
                .iter()
                .zip(&theirs)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(worst <= 1e-5, "{b}×{h}×{t}×{d}: max |Δ| {worst}");
        }
    }

    #[test]
    fn adds_match_the_backend() {
        let device = Device::flex();
        let (rows, cols) = (3 * CHUNK / 100 + 7, 100);
        let xs: Vec<f32> = (0..rows * cols).map(|i| (i % 113) as f32 * 0.25).collect();
        let ys: Vec<f32> = (0..rows * cols).map(|i| (i % 71) as f32 * -0.5).collect();
        let bias: Vec<f32> = (0..cols).map(|i| i as f32 * 0.125).collect();
        let x = Tensor::<2>::from_data(TensorData::new(xs, [rows, cols]), &device);
        let y = Tensor::<2>::from_data(TensorData::new(ys, [rows, cols]), &device);
        let bias = Tensor::<1>::from_data(TensorData::new(bias, [cols]), &device);
        let theirs = values(x.clone() + y.clone() + bias.clone().unsqueeze::<2>());
        let ours = values(add_bias(add(x, y), bias));
        assert_eq!(ours, theirs);
    }
}
