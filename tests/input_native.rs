//! The one input path (`dino_ar::input`): awkward files as phones, scanners and editors write
//! them, decoded as PIL reads them upright (tools/fixtures/make_awkward.py), and what `sniff`
//! tells apart. The page decodes through the same code in the wasm (tests/js/agree.mjs checks the
//! scores agree).
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::{fixture_tensor, max_abs_diff};
use dino_ar::input::{self, Kind};
use dino_ar::preprocess::RgbImage;

const EXPECTED: &[u8] = include_bytes!("fixtures/awkward/expected.safetensors");

fn check(name: &str, tolerance: f32) -> RgbImage {
    let bytes = std::fs::read(format!("tests/fixtures/awkward/{name}")).unwrap();
    let img = input::decode_picture(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let (shape, expected) = fixture_tensor(EXPECTED, name);
    assert_eq!(
        [img.height, img.width, 3],
        shape[..],
        "{name}: size (upright)"
    );
    let d = max_abs_diff(&img.data, &expected);
    assert!(
        d <= tolerance,
        "{name}: decoded RGB differs from PIL by {d}"
    );
    img
}

#[test]
fn a_phone_jpeg_is_turned_upright_by_its_exif_tag() {
    // Stored 56 high and 40 wide, shown 40 high and 56 wide with its red block top-left.
    let img = check("phone_rotated.jpg", 4.0 / 255.0);
    assert_eq!((img.width, img.height), (56, 40));
    let top_left = &img.data[..3];
    assert!(top_left[0] > 0.8 && top_left[1] < 0.4, "{top_left:?}");
}

#[test]
fn sixteen_bit_alpha_and_webp_read_as_pil_reads_them() {
    // 12-bit data in a 16-bit PNG keeps every level (an 8-bit canvas would round 16 levels into one).
    let img = check("grey16_12bit.png", 1e-6);
    let mut levels: Vec<u32> = img
        .data
        .iter()
        .map(|v| (v * 65535.0).round() as u32)
        .collect();
    levels.sort_unstable();
    levels.dedup();
    assert!(levels.len() > 256, "{} distinct levels", levels.len());
    check("rgba.png", 1e-6);
    check("lossless.webp", 1e-6);
}

#[test]
fn sniff_knows_each_file_by_its_content() {
    for (name, kind) in [
        ("phone_rotated.jpg", Kind::Picture("JPEG")),
        ("grey16_12bit.png", Kind::Picture("PNG")),
        ("lossless.webp", Kind::Picture("WebP")),
    ] {
        let bytes = std::fs::read(format!("tests/fixtures/awkward/{name}")).unwrap();
        // Content first: the same bytes under a misleading name are still what they are.
        assert_eq!(input::sniff("renamed.dat", &bytes), Ok(kind), "{name}");
    }
    let nii = std::fs::read("tests/fixtures/volumes/uint8.nii").unwrap();
    assert_eq!(input::sniff("x", &nii), Ok(Kind::Nifti));
    let e = input::read("notes.pdf", b"%PDF-1.7").err().unwrap();
    assert_eq!(e.kind(), "unsupported");
    assert!(
        e.to_string().contains(".pdf") && e.to_string().contains("NIfTI"),
        "{e}"
    );
}

#[test]
fn training_pictures_are_shrunk_by_one_rule() {
    let big = RgbImage {
        width: 170,
        height: 150,
        data: vec![0.5; 170 * 150 * 3],
    };
    // Twice a 32-px model's side: 64 on the longer side, the aspect kept.
    let small = big.clone().for_training((32, 32));
    assert_eq!((small.width, small.height), (64, 56));
    // Small enough already: untouched.
    let same = small.clone().for_training((32, 32));
    assert_eq!(same, small);
}

#[test]
fn a_tiff_whose_planes_are_tiled_is_refused_by_name_not_a_panic() {
    // tifffile.imwrite(path, rgb (3, 36, 40) uint8, photometric="rgb", planarconfig="separate",
    // tile=(16, 16)): the `tiff` crate (0.11) fails an assertion on its partial tiles, found by the
    // third-party corpus (tools/corpus/run.sh). tests/fuzz_replay.rs replays it too.
    let bytes = std::fs::read("tests/fixtures/fuzz/picture_planar_tiles.tif").unwrap();
    let Err(e) = input::decode_picture(&bytes) else {
        panic!("a planar-tiled TIFF was decoded")
    };
    let e = e.to_string();
    assert!(e.contains("separate planes of tiles"), "{e}");
}

#[test]
fn a_jpeg_that_trips_the_decoders_avx2_idct_is_a_named_error() {
    // Found by tests/fuzz_replay.rs's mutator: zune-jpeg 0.5.15's AVX2 IDCT panics on it (on a CPU
    // with AVX2; elsewhere it may decode). Either way: no panic out of the library.
    let bytes = std::fs::read("tests/fixtures/fuzz/picture_zune_avx2_idct.jpg").unwrap();
    if let Err(e) = input::decode_picture(&bytes) {
        assert!(e.to_string().contains("JPEG"), "{e}");
    }
}
