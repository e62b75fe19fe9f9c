//! The golden kNN model and map that the in-browser tests compare against: a model fit natively
//! (the CLI's code path) must score the same in the page, and one fit in the page must equal it.
//! `DINO_AR_REGEN_GOLDEN=1 cargo test --test golden_native` rewrites the files; otherwise this test
//! fails when the native result drifts from them.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::ops::ControlFlow;

use burn::tensor::Device;
use common::golden::{self, SEED, SIZE};
use common::{TINY_CONFIG, TINY_HF, fixture_tensor, max_abs_diff};
use dino_ar::backbone::load_backbone;
use dino_ar::bundle::Bundle;
use dino_ar::detector::{Detector, NormalGrid, fit_model};
use dino_ar::preprocess::RgbImage;
use dino_ar::spec::{FitSpec, InputSize, Method};
use dino_ar::weights::{TensorFile, write_safetensors_f32};

fn golden_spec() -> FitSpec {
    FitSpec {
        method: Method::Knn,
        size: InputSize::square(SIZE),
        seed: SEED,
        ..FitSpec::default()
    }
}

#[test]
fn golden_knn_model_and_map_are_current() {
    let device = Device::flex();
    let backbone = load_backbone(TINY_HF, Some(TINY_CONFIG), &device)
        .unwrap()
        .model;
    let normals: Vec<NormalGrid> = golden::normals()
        .iter()
        .map(|(rgba, w, h)| {
            let img = RgbImage::from_rgba8(rgba, *w, *h).unwrap();
            pollster::block_on(NormalGrid::embed(&backbone, &img, (SIZE, SIZE)))
                .unwrap()
                .0
        })
        .collect();
    let (grids, sizes) = NormalGrid::stack(&normals, (64, SIZE / 16, SIZE / 16), &device).unwrap();
    let bundle = pollster::block_on(fit_model(grids, &sizes, &backbone, &golden_spec(), |_| {
        ControlFlow::Continue(())
    }))
    .unwrap();
    let det = Detector::new(backbone, &Bundle::read(&bundle).unwrap()).unwrap();
    let img = RgbImage::from_rgba8(&golden::defective(), SIZE, SIZE).unwrap();
    let map = pollster::block_on(det.score(&img)).unwrap().map;

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden");
    if std::env::var_os("DINO_AR_REGEN_GOLDEN").is_some() {
        std::fs::write(dir.join("knn_bundle.safetensors"), &bundle).unwrap();
        let bytes = write_safetensors_f32(&[("map", vec![SIZE, SIZE], &map)], None).unwrap();
        std::fs::write(dir.join("knn_map.safetensors"), bytes).unwrap();
        return;
    }
    let committed = Bundle::read(golden::BUNDLE).unwrap();
    let fresh = Bundle::read(&bundle).unwrap();
    assert_eq!(fresh.meta.method(), committed.meta.method());
    assert_eq!(fresh.meta.bank_size, committed.meta.bank_size);
    let bank = |f: &TensorFile| f.get("memory_bank").unwrap().to_f32("memory_bank").unwrap();
    assert!(max_abs_diff(&bank(&fresh.tensors), &bank(&committed.tensors)) <= 1e-6);
    let d = max_abs_diff(&map, &fixture_tensor(golden::MAP, "map").1);
    assert!(
        d <= 1e-6,
        "native map drifted from the golden file by {d:e}; regenerate if intended"
    );
}

/// Fingerprints are stable: bundles written before the backbone became burn modules (the golden
/// kNN bank, the built-in sample's head) still match the backbones they were fit on, in both key
/// layouts.
#[test]
fn committed_bundles_still_match_their_backbones() {
    let device = Device::flex();
    let tiny = load_backbone(TINY_HF, Some(TINY_CONFIG), &device)
        .unwrap()
        .model;
    let golden = Bundle::read(golden::BUNDLE).unwrap();
    golden.check_backbone(&tiny.fingerprint).unwrap();
    // Meta's key layout, same (bf16-exact) values.
    let meta_keys: &[u8] = include_bytes!("fixtures/tiny/meta_bf16.safetensors");
    let meta = load_backbone(meta_keys, Some(TINY_CONFIG), &device)
        .unwrap()
        .model;
    golden.check_backbone(&meta.fingerprint).unwrap();
    let sample = load_backbone(
        include_bytes!("../www/sample/backbone/model.safetensors"),
        Some(include_str!("../www/sample/backbone/config.json")),
        &device,
    )
    .unwrap()
    .model;
    Bundle::read(include_bytes!("../www/sample/model.safetensors"))
        .unwrap()
        .check_backbone(&sample.fingerprint)
        .unwrap();
}
