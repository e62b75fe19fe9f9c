//! Native decoding of every container and pixel layout the CLI accepts, against PIL.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::{fixture_tensor, max_abs_diff};
use dino_ar::input::decode_picture;

const EXPECTED: &[u8] = include_bytes!("fixtures/tiny/decode_expected.safetensors");

fn check(name: &str, bytes: &[u8], tolerance: f32) {
    let img = decode_picture(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let (shape, expected) = fixture_tensor(EXPECTED, name);
    assert_eq!([img.height, img.width, 3], shape[..], "{name}: size");
    let d = max_abs_diff(&img.data, &expected);
    assert!(
        d <= tolerance,
        "{name}: decoded RGB differs from PIL by {d}"
    );
}

macro_rules! case {
    ($test:ident, $file:literal, $tol:expr) => {
        #[test]
        fn $test() {
            check(
                $file,
                include_bytes!(concat!("fixtures/tiny/", $file)),
                $tol,
            );
        }
    };
}

const EXACT: f32 = 1e-6;
case!(
    png_grey_alpha_becomes_rgb_without_alpha,
    "decode_grey_alpha.png",
    EXACT
);
case!(png_rgba8_drops_alpha, "decode_rgba8.png", EXACT);
case!(png_palette_expands, "decode_palette.png", EXACT);
case!(png_rgb16_keeps_sixteen_bits, "decode_rgb16.png", EXACT);
case!(bmp_rgb8, "decode_rgb8.bmp", EXACT);
case!(tiff_rgb8, "decode_rgb8.tiff", EXACT);
// JPEG decoders may differ from libjpeg by a level or two.
case!(jpeg_grey8, "decode_grey8.jpg", 3.0 / 255.0);

#[test]
fn undecodable_bytes_are_an_error_naming_the_problem() {
    let e = decode_picture(b"definitely not an image")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("not a"), "{e}");
    let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;";
    let e = decode_picture(gif).unwrap_err().to_string();
    assert!(
        e.contains("not a supported file") && e.contains("GIF"),
        "{e}"
    );
    let png = include_bytes!("fixtures/tiny/decode_rgba8.png");
    let e = decode_picture(&png[..png.len() / 2])
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a readable PNG image"), "{e}");
}
