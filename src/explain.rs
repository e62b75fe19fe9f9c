//! What the AR head saw and what it expected: the embedding grid and the head's prediction of it,
//! each coloured by the same three principal components, so that where they look alike the head
//! predicted well, and where they differ is where the anomaly map is bright.

/// The top `k` principal directions of `n` column vectors of length `c` (`x` is `[c, n]`,
/// row-major), by power iteration with deflation on the `c × c` covariance. Deterministic: the
/// start vectors are fixed and each direction's sign is chosen so its largest entry is positive.
pub fn principal_axes(x: &[f32], c: usize, n: usize, k: usize) -> Vec<Vec<f64>> {
    assert_eq!(x.len(), c * n, "principal_axes: x is not [c, n]");
    let mean: Vec<f64> = (0..c)
        .map(|i| x[i * n..(i + 1) * n].iter().map(|&v| v as f64).sum::<f64>() / n.max(1) as f64)
        .collect();
    let mut cov = vec![0f64; c * c];
    let centred: Vec<f64> = (0..c * n)
        .map(|idx| x[idx] as f64 - mean[idx / n])
        .collect();
    for i in 0..c {
        let ri = &centred[i * n..(i + 1) * n];
        for j in i..c {
            let rj = &centred[j * n..(j + 1) * n];
            let s: f64 = ri.iter().zip(rj).map(|(a, b)| a * b).sum();
            cov[i * c + j] = s;
            cov[j * c + i] = s;
        }
    }
    let mut axes: Vec<Vec<f64>> = Vec::with_capacity(k);
    for a in 0..k.min(c) {
        let mut v: Vec<f64> = (0..c)
            .map(|i| 1.0 + ((i * 7 + a * 13) % 11) as f64)
            .collect();
        let mut value = 0.0;
        for _ in 0..200 {
            let mut w: Vec<f64> = (0..c)
                .map(|i| (0..c).map(|j| cov[i * c + j] * v[j]).sum())
                .collect();
            // Deflate: stay orthogonal to the directions already found.
            for u in &axes {
                let d: f64 = w.iter().zip(u).map(|(p, q)| p * q).sum();
                w.iter_mut().zip(u).for_each(|(p, q)| *p -= d * q);
            }
            let norm = w.iter().map(|p| p * p).sum::<f64>().sqrt();
            if norm < 1e-30 {
                break;
            }
            w.iter_mut().for_each(|p| *p /= norm);
            let converged = (norm - value).abs() <= 1e-10 * norm;
            value = norm;
            v = w;
            if converged {
                break;
            }
        }
        let largest = v
            .iter()
            .copied()
            .fold(0.0f64, |m, p| if p.abs() > m.abs() { p } else { m });
        if largest < 0.0 {
            v.iter_mut().for_each(|p| *p = -*p);
        }
        axes.push(v);
    }
    axes
}

/// RGBA pixels (`n` of them, row-major over the grid) of `actual` and `predicted` (both `[c, n]`)
/// projected on the actual grid's first three principal components, each component stretched so
/// that the actual grid's 2nd–98th percentile spans 0–255; the prediction uses the same stretch,
/// so equal colours mean equal embeddings along those directions.
pub fn pca_colours(actual: &[f32], predicted: &[f32], c: usize, n: usize) -> (Vec<u8>, Vec<u8>) {
    let axes = principal_axes(actual, c, n, 3);
    let project = |x: &[f32], axis: &[f64]| -> Vec<f64> {
        (0..n)
            .map(|p| (0..c).map(|i| x[i * n + p] as f64 * axis[i]).sum())
            .collect()
    };
    let mut a_rgba = vec![255u8; n * 4];
    let mut p_rgba = vec![255u8; n * 4];
    for (ch, axis) in axes.iter().enumerate() {
        let a = project(actual, axis);
        let p = project(predicted, axis);
        let mut sorted = a.clone();
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
        let (lo, hi) = (at(0.02), at(0.98));
        let span = (hi - lo).max(1e-12);
        let byte = |v: f64| (255.0 * ((v - lo) / span).clamp(0.0, 1.0)).round() as u8;
        for i in 0..n {
            a_rgba[i * 4 + ch] = byte(a[i]);
            p_rgba[i * 4 + ch] = byte(p[i]);
        }
    }
    (a_rgba, p_rgba)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_axis_follows_the_largest_spread() {
        // Three channels over 50 points: channel 1 varies most, channel 2 next, channel 0 least.
        let n = 50;
        let mut x = vec![0f32; 3 * n];
        for p in 0..n {
            let t = p as f32 / n as f32 - 0.5;
            x[p] = 0.01 * (p % 3) as f32;
            x[n + p] = 10.0 * t;
            x[2 * n + p] = 2.0 * ((p * 7) % 5) as f32 / 5.0;
        }
        let axes = principal_axes(&x, 3, n, 2);
        assert!(axes[0][1] > 0.99, "{:?}", axes[0]);
        assert!(axes[1][2].abs() > 0.99, "{:?}", axes[1]);
        let dot: f64 = axes[0].iter().zip(&axes[1]).map(|(a, b)| a * b).sum();
        assert!(dot.abs() < 1e-6);
    }

    #[test]
    fn a_perfect_prediction_has_the_same_colours() {
        let (c, n) = (8, 30);
        let x: Vec<f32> = (0..c * n).map(|i| ((i * 37) % 17) as f32 / 17.0).collect();
        let (a, p) = pca_colours(&x, &x, c, n);
        assert_eq!(a, p);
        assert_eq!(a.len(), n * 4);
        let mut off = x.clone();
        off[3] += 5.0; // one patch (channel 0, patch 3) badly predicted
        let (_, q) = pca_colours(&x, &off, c, n);
        assert_ne!(a, q);
    }
}
