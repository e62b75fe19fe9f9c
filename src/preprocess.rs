//! Image → normalised pixel tensor, shared by the CLI and the browser.
//!
//! Decoded picture ([`crate::input`]) or canvas RGBA → RGB in [0, 1] → resize to
//! the model size with antialiased bilinear filtering (the triangle filter of PIL and
//! `torch.nn.functional.interpolate(..., antialias=True)`, widened when shrinking) → ImageNet
//! mean/std, channel-major.

/// ImageNet statistics used by every DINOv3 checkpoint.
pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Training pictures are shrunk to at most this many times the model's longer side first
/// ([`RgbImage::for_training`]).
pub const TRAINING_SIDE_FACTOR: usize = 2;

/// Largest side accepted, to refuse absurd inputs before allocating for them.
pub use crate::limits::MAX_IMAGE_SIDE as MAX_SIDE;

/// An RGB image with interleaved f32 samples in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

pub(crate) fn check_dims(width: usize, height: usize) -> Result<(), String> {
    if width == 0 || height == 0 {
        return Err(format!("image is empty ({width}x{height} pixels)"));
    }
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(format!(
            "image is {width}x{height} pixels; the largest side accepted is {MAX_SIDE}"
        ));
    }
    Ok(())
}

impl RgbImage {
    /// From 8-bit RGBA (a canvas `ImageData`); alpha is dropped as `PIL.Image.convert("RGB")` does.
    pub fn from_rgba8(rgba: &[u8], width: usize, height: usize) -> Result<Self, String> {
        check_dims(width, height)?;
        if rgba.len() != width * height * 4 {
            return Err(format!(
                "RGBA buffer has {} bytes; a {width}x{height} image needs {}",
                rgba.len(),
                width * height * 4
            ));
        }
        let data = rgba
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .map(|v| v as f32 / 255.0)
            .collect();
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// The one pre-resize rule for training pictures, in every front end: a picture larger than
    /// [`TRAINING_SIDE_FACTOR`] times the model's longer side is first shrunk to that (aspect
    /// kept), so a folder of camera images fits in memory; the backbone sees the model size
    /// either way.
    pub fn for_training(self, (h, w): (usize, usize)) -> RgbImage {
        let limit = TRAINING_SIDE_FACTOR * h.max(w);
        let side = self.width.max(self.height);
        if side <= limit {
            return self;
        }
        let s = limit as f64 / side as f64;
        let scaled = |v: usize| ((v as f64 * s).round() as usize).max(1);
        self.resize(scaled(self.height), scaled(self.width))
    }

    /// Resize with antialiased bilinear filtering (align_corners = false).
    pub fn resize(&self, out_h: usize, out_w: usize) -> RgbImage {
        if out_h == self.height && out_w == self.width {
            return self.clone();
        }
        let horizontal = filter_weights(self.width, out_w);
        let vertical = filter_weights(self.height, out_h);
        // Horizontal pass: [h, out_w, 3]
        let mut tmp = vec![0f32; self.height * out_w * 3];
        for y in 0..self.height {
            let row = &self.data[y * self.width * 3..(y + 1) * self.width * 3];
            for (x, (start, w)) in horizontal.iter().enumerate() {
                let mut acc = [0f32; 3];
                for (k, wk) in w.iter().enumerate() {
                    let p = &row[(start + k) * 3..(start + k) * 3 + 3];
                    for c in 0..3 {
                        acc[c] += wk * p[c];
                    }
                }
                tmp[(y * out_w + x) * 3..(y * out_w + x) * 3 + 3].copy_from_slice(&acc);
            }
        }
        // Vertical pass: [out_h, out_w, 3]
        let mut data = vec![0f32; out_h * out_w * 3];
        let stride = out_w * 3;
        for (y, (start, w)) in vertical.iter().enumerate() {
            let out = &mut data[y * stride..(y + 1) * stride];
            for (k, wk) in w.iter().enumerate() {
                let src = &tmp[(start + k) * stride..(start + k + 1) * stride];
                out.iter_mut().zip(src).for_each(|(o, s)| *o += wk * s);
            }
        }
        RgbImage {
            width: out_w,
            height: out_h,
            data,
        }
    }

    /// ImageNet-normalised, channel-major `[3, H, W]`.
    pub fn normalized_chw(&self) -> Vec<f32> {
        let n = self.width * self.height;
        let mut out = vec![0f32; 3 * n];
        for (i, p) in self.data.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * n + i] = (p[c] - MEAN[c]) / STD[c];
            }
        }
        out
    }

    /// The whole path: resize to `height × width` and normalise.
    pub fn to_model_input(&self, height: usize, width: usize) -> Vec<f32> {
        self.resize(height, width).normalized_chw()
    }
}

/// Per output index: first input index and the normalised triangle-filter weights.
fn filter_weights(input: usize, output: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = input as f64 / output as f64;
    let support = scale.max(1.0); // bilinear support 1, widened by the shrink factor
    let inv = 1.0 / support;
    (0..output)
        .map(|i| {
            let center = scale * (i as f64 + 0.5);
            let start = ((center - support + 0.5).floor().max(0.0)) as usize;
            let end = ((center + support + 0.5).floor() as usize).min(input);
            let mut w: Vec<f64> = (start..end)
                .map(|j| (1.0 - ((j as f64 - center + 0.5) * inv).abs()).max(0.0))
                .collect();
            let total: f64 = w.iter().sum();
            w.iter_mut().for_each(|x| *x /= total);
            (start, w.into_iter().map(|x| x as f32).collect())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_image_stays_constant_and_upscale_is_bilinear() {
        let img = RgbImage {
            width: 5,
            height: 3,
            data: vec![0.25; 45],
        };
        let r = img.resize(7, 11);
        assert!(r.data.iter().all(|v| (v - 0.25).abs() < 1e-6));
        // 2 pixels → 4: align_corners=false bilinear gives 0, 0.25, 0.75, 1
        let img = RgbImage {
            width: 2,
            height: 1,
            data: vec![0., 0., 0., 1., 1., 1.],
        };
        let r = img.resize(1, 4);
        let red: Vec<f32> = r.data.chunks(3).map(|p| p[0]).collect();
        assert_eq!(red, vec![0.0, 0.25, 0.75, 1.0]);
    }

    #[test]
    fn shrinking_averages_like_a_box_for_integer_factors() {
        // 4 → 2 with the triangle filter widened to support 2; edge windows are renormalised.
        let img = RgbImage {
            width: 4,
            height: 1,
            data: [0., 1., 2., 3.].iter().flat_map(|&v| [v; 3]).collect(),
        };
        let r = img.resize(1, 2);
        let red: Vec<f32> = r.data.chunks(3).map(|p| p[0]).collect();
        // torch.nn.functional.interpolate(x, size=2, mode="bilinear", antialias=True) gives these.
        assert!((red[0] - 5.0 / 7.0).abs() < 1e-5, "{red:?}");
        assert!((red[1] - 16.0 / 7.0).abs() < 1e-5, "{red:?}");
    }

    #[test]
    fn rgba_size_is_checked() {
        assert!(
            RgbImage::from_rgba8(&[0; 15], 2, 2)
                .unwrap_err()
                .contains("15 bytes")
        );
        assert!(
            RgbImage::from_rgba8(&[], 0, 2)
                .unwrap_err()
                .contains("empty")
        );
    }
}
