//! The drawing rule: an anomaly map over its image. Colormaps, blending and the threshold contour
//! are defined here once; the CLI's overlay PNGs and the page's viewer, thumbnails and PNG export
//! (through the wasm) all call [`render`], so they draw the same pixels.
//!
//! Scores are shown in the model's display units ([`crate::score::Calibration::display`]): a
//! typical normal patch is 0 (faint), the calibrated threshold and above is 1 (the hot end), the
//! same for every image of the dataset, so a normal image stays dark.
//!
//! To add a colormap: a case in [`Colormap`] with its stops, and its name in the test below.

use serde::{Deserialize, Serialize};

use crate::score::is_anomalous;
// Where a map's scores sit (threshold and display range) is the scoring rule's; drawing reads it.
pub use crate::score::Scale;

named_choice! {
    /// A colour scale from 0 (cold) to 1 (hot), sampled at evenly spaced stops.
    pub enum Colormap ("colormap") {
        /// Perceptually uniform and readable with colour-blindness: the default.
        Inferno = "inferno", "inferno";
        Jet = "jet", "jet";
    }
}

const INFERNO: [[u8; 3]; 9] = [
    [0, 0, 4],
    [31, 12, 72],
    [85, 15, 109],
    [136, 34, 106],
    [186, 54, 85],
    [227, 89, 51],
    [249, 140, 10],
    [249, 201, 50],
    [252, 255, 164],
];

const JET: [[u8; 3]; 9] = [
    [0, 0, 128],
    [0, 0, 255],
    [0, 128, 255],
    [0, 255, 255],
    [128, 255, 128],
    [255, 255, 0],
    [255, 128, 0],
    [255, 0, 0],
    [128, 0, 0],
];

/// The contour's colour: cyan, absent from both colormaps' hot ends.
pub const CONTOUR_RGB: [u8; 3] = [0, 255, 255];

impl Colormap {
    fn stops(self) -> &'static [[u8; 3]] {
        match self {
            Colormap::Inferno => &INFERNO,
            Colormap::Jet => &JET,
        }
    }

    /// The colour of `t` in [0, 1] (clamped), interpolated linearly between the stops. Continuous
    /// in `t` (no lookup table): scores that differ in their last bits (native vs wasm) get
    /// colours that differ by at most one level.
    pub fn color(self, t: f32) -> [u8; 3] {
        let stops = self.stops();
        let x = t.clamp(0.0, 1.0) * (stops.len() - 1) as f32;
        let k = (x.floor() as usize).min(stops.len() - 2);
        let f = x - k as f32;
        let (a, b) = (stops[k], stops[k + 1]);
        std::array::from_fn(|c| (a[c] as f32 + (b[c] as f32 - a[c] as f32) * f).round() as u8)
    }
}

/// How the map is drawn; the defaults are what the CLI writes and what the page starts with.
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct OverlayStyle {
    pub colormap: Colormap,
    /// Opacity of the hottest colour; a display value `t` is blended at `opacity · (¼ + ¾·t)`.
    pub opacity: f32,
    /// Outline the pixels above the threshold.
    pub contour: bool,
}

impl Default for OverlayStyle {
    fn default() -> Self {
        Self {
            colormap: Colormap::Inferno,
            opacity: 0.7,
            contour: true,
        }
    }
}

impl OverlayStyle {
    /// A style, checked ([`OverlayStyle::validate`]).
    pub fn new(colormap: Colormap, opacity: f32, contour: bool) -> Result<Self, String> {
        let style = Self {
            colormap,
            opacity,
            contour,
        };
        style.validate()?;
        Ok(style)
    }

    /// The one check of a style, wherever it comes from (a CLI flag, a JS option).
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.opacity) {
            return Err(format!("opacity must be in [0, 1], got {}", self.opacity));
        }
        Ok(())
    }
}

/// The contour's half-width in pixels: about 1/400 of the image's longer side, at least one
/// pixel, so it stays visible when a large image is shown small.
pub fn contour_radius(width: usize, height: usize) -> usize {
    ((width.max(height) as f64 / 400.0).round() as usize).max(1)
}

/// RGBA pixels: `base` (RGBA, `width × height`) with `map` (one score per pixel, row-major) blended
/// over it and, if the style says so, the edge of the above-threshold region drawn in
/// [`CONTOUR_RGB`]. Alpha is 255 everywhere.
pub fn render(
    base: &[u8],
    width: usize,
    height: usize,
    map: &[f32],
    scale: &Scale,
    style: &OverlayStyle,
) -> Result<Vec<u8>, String> {
    let n = width * height;
    if base.len() != n * 4 {
        return Err(format!(
            "overlay: the image has {} bytes, expected {width}x{height}x4 = {}",
            base.len(),
            n * 4
        ));
    }
    if map.len() != n {
        return Err(format!(
            "overlay: the map has {} values, expected {width}x{height} = {n}",
            map.len()
        ));
    }
    style.validate()?;
    let opacity = style.opacity;
    let mut out = Vec::with_capacity(n * 4);
    for (px, &s) in base.chunks_exact(4).zip(map) {
        let t = scale.display(s);
        let c = style.colormap.color(t);
        let alpha = opacity * (0.25 + 0.75 * t);
        for k in 0..3 {
            let v = px[k] as f32 * (1.0 - alpha) + c[k] as f32 * alpha;
            out.push(v.round().clamp(0.0, 255.0) as u8);
        }
        out.push(255);
    }
    if style.contour {
        draw_contour(&mut out, width, height, map, scale.threshold);
    }
    Ok(out)
}

/// Paint the edge of `{ map > threshold }` (4-neighbourhood; outside the image counts as below),
/// thickened to [`contour_radius`].
fn draw_contour(rgba: &mut [u8], width: usize, height: usize, map: &[f32], threshold: f32) {
    let above = |x: isize, y: isize| {
        x >= 0
            && y >= 0
            && (x as usize) < width
            && (y as usize) < height
            && is_anomalous(map[y as usize * width + x as usize], threshold)
    };
    let r = contour_radius(width, height) as isize;
    for y in 0..height as isize {
        for x in 0..width as isize {
            if !above(x, y)
                || (above(x - 1, y) && above(x + 1, y) && above(x, y - 1) && above(x, y + 1))
            {
                continue;
            }
            for yy in (y - r + 1).max(0)..(y + r).min(height as isize) {
                for xx in (x - r + 1).max(0)..(x + r).min(width as isize) {
                    let i = (yy as usize * width + xx as usize) * 4;
                    rgba[i..i + 3].copy_from_slice(&CONTOUR_RGB);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCALE: Scale = Scale {
        threshold: 0.5,
        display_low: 0.0,
        display_high: 0.5,
    };

    #[test]
    fn colormaps_run_cold_to_hot_and_parse_by_name() {
        assert_eq!(Colormap::Inferno.color(0.0), INFERNO[0]);
        assert_eq!(Colormap::Inferno.color(1.0), INFERNO[8]);
        assert_eq!(Colormap::Jet.color(2.0), JET[8]);
        assert_eq!(Colormap::Jet.color(-1.0), JET[0]);
        for &c in Colormap::ALL {
            assert_eq!(c.name().parse::<Colormap>().unwrap(), c);
        }
        let e = "viridis".parse::<Colormap>().unwrap_err().to_string();
        assert!(
            e.contains("`viridis`") && e.contains("`inferno`, `jet`"),
            "{e}"
        );
    }

    #[test]
    fn blending_follows_the_display_value() {
        let base = [100u8, 100, 100, 255].repeat(2);
        let style = OverlayStyle {
            contour: false,
            opacity: 1.0,
            ..OverlayStyle::default()
        };
        let out = render(&base, 2, 1, &[0.0, 0.5], &SCALE, &style).unwrap();
        // t = 0: a quarter of the coldest colour over the image; t = 1: the hot colour alone.
        assert_eq!(&out[..4], &[75, 75, 76, 255]);
        assert_eq!(&out[4..], &[252, 255, 164, 255]);
    }

    #[test]
    fn the_contour_outlines_scores_strictly_above_the_threshold() {
        // A 5×5 map: 1.0 in the centre 3×3, and one pixel exactly on the threshold.
        let mut map = vec![0.0f32; 25];
        for y in 1..4 {
            for x in 1..4 {
                map[y * 5 + x] = 1.0;
            }
        }
        map[0] = 0.5;
        let base = [0u8, 0, 0, 255].repeat(25);
        let out = render(&base, 5, 5, &map, &SCALE, &OverlayStyle::default()).unwrap();
        let cyan = |x: usize, y: usize| out[(y * 5 + x) * 4..][..3] == CONTOUR_RGB;
        assert!(cyan(1, 1) && cyan(3, 3) && cyan(2, 1));
        assert!(!cyan(2, 2), "the inside is not edge");
        assert!(!cyan(0, 0), "a score on the threshold is not above it");
        assert!(render(&base, 5, 4, &map, &SCALE, &OverlayStyle::default()).is_err());
    }
}
