//! The hot corner of a raster-order head, and the per-position standardisation that removes it.
//!
//! Fit on stationary texture images (no position is special) and score more of them: with the
//! paper's squared error the dilated head's top-left 4×4 patches — which see no context at all —
//! score higher on every image; standardised per position they do not.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::ops::ControlFlow;

use burn::tensor::Device;
use common::golden::rgba_texture;
use common::{TINY_CONFIG, TINY_HF};
use dino_ar::backbone::load_backbone;
use dino_ar::bundle::Bundle;
use dino_ar::detector::{Detector, NormalGrid, fit_model};
use dino_ar::preprocess::RgbImage;
use dino_ar::spec::{FitSpec, InputSize, PositionNorm};

const SIZE: usize = 128; // an 8×8 grid

/// Mean patch score of the top-left 4×4 block and of the rest, over `images` scored images.
fn corner_and_rest(norm: PositionNorm) -> (f32, f32) {
    let device = Device::flex();
    let backbone = load_backbone(TINY_HF, Some(TINY_CONFIG), &device)
        .unwrap()
        .model;
    let normals: Vec<NormalGrid> = (0..24)
        .map(|k| {
            let img = RgbImage::from_rgba8(&rgba_texture(k, SIZE, false), SIZE, SIZE).unwrap();
            pollster::block_on(NormalGrid::embed(&backbone, &img, (SIZE, SIZE)))
                .unwrap()
                .0
        })
        .collect();
    let (grids, sizes) = NormalGrid::stack(&normals, (64, 8, 8), &device).unwrap();
    let spec = FitSpec {
        size: InputSize::square(SIZE),
        hidden: 32,
        epochs: 60,
        batch_size: 8,
        position_norm: norm,
        ..FitSpec::default()
    };
    let bytes = pollster::block_on(fit_model(grids, &sizes, &backbone, &spec, |_| {
        ControlFlow::Continue(())
    }))
    .unwrap();
    let bundle = Bundle::read(&bytes).unwrap();
    assert_eq!(
        bundle.meta.spec.position_norm, norm,
        "the bundle says which"
    );
    let det = Detector::new(backbone, &bundle).unwrap();
    let (mut corner, mut rest) = (0.0, 0.0);
    for k in 100..108 {
        let img = RgbImage::from_rgba8(&rgba_texture(k, SIZE, false), SIZE, SIZE).unwrap();
        let r = pollster::block_on(det.score(&img)).unwrap();
        for (i, s) in r.grid.iter().enumerate() {
            if i / 8 < 4 && i % 8 < 4 {
                corner += s / 16.0;
            } else {
                rest += s / 48.0;
            }
        }
    }
    (corner / 8.0, rest / 8.0)
}

#[test]
fn standardising_per_position_removes_the_hot_corner() {
    let (corner, rest) = corner_and_rest(PositionNorm::None);
    eprintln!("squared error: corner {corner}, rest {rest}");
    assert!(
        corner > 1.2 * rest,
        "squared error: the context-free corner should be hot ({corner} vs {rest})"
    );
    let (corner, rest) = corner_and_rest(PositionNorm::Standardise);
    eprintln!("standardised: corner {corner}, rest {rest}");
    // In units of each position's spread: the corner is no hotter than the rest.
    assert!(
        corner < rest + 0.5,
        "standardised: the corner is still hot ({corner} vs {rest})"
    );
}

#[test]
fn the_knn_baseline_refuses_position_standardisation() {
    let spec = FitSpec {
        method: dino_ar::spec::Method::Knn,
        position_norm: PositionNorm::Standardise,
        ..FitSpec::default()
    };
    let e = spec.validate().unwrap_err().to_string();
    assert!(e.contains("`positionNorm`"), "{e}");
}
