//! The overlay PNG of one scored image: the library draws it ([`dino_ar::overlay::render`], the
//! same rule the page uses); this file only turns the image into RGBA bytes and encodes the PNG.

use dino_ar::overlay::{OverlayStyle, Scale, render};
use dino_ar::preprocess::RgbImage;

/// PNG bytes (RGB): the image with the map blended over it and the above-threshold region outlined.
pub fn overlay_png(
    image: &RgbImage,
    map: &[f32],
    scale: &Scale,
    style: &OverlayStyle,
) -> Result<Vec<u8>, String> {
    let (w, h) = (image.width, image.height);
    let base: Vec<u8> = image
        .data
        .chunks_exact(3)
        .flat_map(|p| {
            let [r, g, b] = [p[0], p[1], p[2]].map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8);
            [r, g, b, 255]
        })
        .collect();
    let rgba = render(&base, w, h, map, scale, style)?;
    let rgb: Vec<u8> = rgba
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    let img = image::RgbImage::from_raw(w as u32, h as u32, rgb).ok_or("overlay size mismatch")?;
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| format!("cannot encode PNG: {e}"))?;
    Ok(out.into_inner())
}
