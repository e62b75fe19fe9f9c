//! Anomaly map over the image: inferno colormap in calibrated display units, threshold contour.

use dino_ar::preprocess::RgbImage;
use dino_ar::score::Calibration;

/// Inferno, sampled at nine evenly spaced points.
const INFERNO: [[f32; 3]; 9] = [
    [0.0, 0.0, 4.0],
    [31.0, 12.0, 72.0],
    [85.0, 15.0, 109.0],
    [136.0, 34.0, 106.0],
    [186.0, 54.0, 85.0],
    [227.0, 89.0, 51.0],
    [249.0, 140.0, 10.0],
    [249.0, 201.0, 50.0],
    [252.0, 255.0, 164.0],
];

pub fn inferno(t: f32) -> [f32; 3] {
    let x = t.clamp(0.0, 1.0) * 8.0;
    let i = (x.floor() as usize).min(7);
    let f = x - i as f32;
    let (a, b) = (INFERNO[i], INFERNO[i + 1]);
    [
        a[0] + (b[0] - a[0]) * f,
        a[1] + (b[1] - a[1]) * f,
        a[2] + (b[2] - a[2]) * f,
    ]
}

/// PNG bytes: the image with the map blended over it and the above-threshold region outlined.
pub fn overlay_png(
    image: &RgbImage,
    map: &[f32],
    calibration: &Calibration,
) -> Result<Vec<u8>, String> {
    let (w, h) = (image.width, image.height);
    let above: Vec<bool> = map.iter().map(|&s| s > calibration.threshold).collect();
    let mut rgb = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let edge = above[i]
                && [(0i64, 1i64), (1, 0), (0, -1), (-1, 0)]
                    .iter()
                    .any(|(dy, dx)| {
                        let (ny, nx) = (y as i64 + dy, x as i64 + dx);
                        ny < 0
                            || nx < 0
                            || ny >= h as i64
                            || nx >= w as i64
                            || !above[ny as usize * w + nx as usize]
                    });
            if edge {
                rgb.extend_from_slice(&[0, 255, 255]);
                continue;
            }
            let t = calibration.display(map[i]);
            let c = inferno(t);
            let alpha = 0.25 + 0.45 * t;
            for (k, ck) in c.iter().enumerate() {
                let v = image.data[i * 3 + k] * 255.0 * (1.0 - alpha) + ck * alpha;
                rgb.push(v.round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    let img = image::RgbImage::from_raw(w as u32, h as u32, rgb).ok_or("overlay size mismatch")?;
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| format!("cannot encode PNG: {e}"))?;
    Ok(out.into_inner())
}
