//! In headless Chromium, on WebGPU (SwiftShader is fine) and on the CPU backend compiled to wasm:
//! backbone parity with the reference, the AR head's parity, and training with autodiff.
//! Run with `wasm-pack test --headless --chrome -- --test web`.
//! Every read-back here is asynchronous, as it must be on WebGPU in a browser.
#![cfg(target_arch = "wasm32")]

mod common;

use std::ops::ControlFlow;

use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use dino_ar::ar::{ArConfig, ArHead, Variant};
use dino_ar::backbone::{DinoV3, load_backbone};
use dino_ar::infra::compute::Precision;
use dino_ar::spec::{FitSpec, InputSize, Method};
use dino_ar::train::fit;
use dino_ar::web::{FitProgress, Session};
use dino_ar::weights::{TensorFile, WeightsError};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// The WebGPU device, initialised once (before any tensor exists) by the library and shared.
async fn webgpu() -> Device {
    let (device, label) = dino_ar::web::webgpu()
        .await
        .expect("WebGPU adapter (Chromium needs --enable-unsafe-webgpu)");
    web_sys::console::log_1(&format!("WebGPU adapter: {label}").into());
    device
}

async fn run(model: &DinoV3, pixels_fixture: &[u8]) -> (Vec<f32>, Vec<f32>) {
    let (shape, pixels) = fixture_tensor(pixels_fixture, "pixel_values");
    let input = model.pixels_tensor(pixels, shape[2], shape[3]).unwrap();
    let out = model.forward(input).unwrap();
    let patch = out.patch_tokens.into_data_async().await.unwrap();
    let cls = out.cls_token.into_data_async().await.unwrap();
    (
        patch.try_into_vec::<f32>().unwrap(),
        cls.try_into_vec::<f32>().unwrap(),
    )
}

async fn check(
    case: &str,
    device: &Device,
    weights: &[u8],
    config: &str,
    cases: &[(&[u8], &[u8])],
) {
    let model = load_backbone(weights, Some(config), device)
        .unwrap_or_else(|e| panic!("{case}: {e}"))
        .model;
    for (pixels, reference_bytes) in cases {
        let (patch, cls) = run(&model, pixels).await;
        assert_matches(case, &patch, &cls, &reference(reference_bytes));
    }
}

const TINY_CASES: [(&[u8], &[u8]); 2] = [
    (TINY_PIXELS_224, TINY_REF_224),
    (TINY_PIXELS_128X192, TINY_REF_128X192),
];

#[wasm_bindgen_test]
async fn webgpu_hf_safetensors_matches_reference() {
    let d = webgpu().await;
    check(
        "WebGPU HF safetensors",
        &d,
        TINY_HF,
        TINY_CONFIG,
        &TINY_CASES,
    )
    .await;
}

#[wasm_bindgen_test]
async fn webgpu_meta_pth_matches_reference() {
    let d = webgpu().await;
    check(
        "WebGPU Meta .pth",
        &d,
        TINY_META_PTH,
        TINY_CONFIG,
        &TINY_CASES,
    )
    .await;
}

#[wasm_bindgen_test]
async fn webgpu_meta_bf16_safetensors_matches_reference() {
    let d = webgpu().await;
    check(
        "WebGPU Meta bf16 safetensors",
        &d,
        TINY_META_BF16,
        TINY_CONFIG,
        &TINY_CASES,
    )
    .await;
}

#[wasm_bindgen_test]
async fn webgpu_swiglu_matches_reference() {
    let d = webgpu().await;
    check(
        "WebGPU SwiGLU",
        &d,
        SWIGLU_HF,
        SWIGLU_CONFIG,
        &[(SWIGLU_PIXELS, SWIGLU_REF)],
    )
    .await;
}

#[wasm_bindgen_test]
async fn wasm_cpu_matches_reference_in_both_formats() {
    let d = Device::flex();
    check("wasm CPU HF", &d, TINY_HF, TINY_CONFIG, &TINY_CASES).await;
    check(
        "wasm CPU Meta .pth",
        &d,
        TINY_META_PTH,
        TINY_CONFIG,
        &TINY_CASES,
    )
    .await;
}

#[wasm_bindgen_test]
fn wasm_bad_weights_are_errors_not_panics() {
    let d = Device::flex();
    let err = |bytes: &[u8]| match load_backbone(bytes, Some(TINY_CONFIG), &d) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    };
    assert!(matches!(
        err(&TINY_HF[..TINY_HF.len() / 2]),
        WeightsError::Truncated(_)
    ));
    assert!(matches!(
        err(&TINY_META_PTH[..TINY_META_PTH.len() - 64]),
        WeightsError::Truncated(_)
    ));
    assert!(matches!(
        err(b"not weights at all"),
        WeightsError::NotWeights(_)
    ));
}

async fn ar_head_parity(device: &Device) {
    let bytes: &[u8] = include_bytes!("fixtures/ar/head_dilated.safetensors");
    let config = ArConfig {
        channels: 16,
        hidden: 12,
        layers: 5,
        kernel: 3,
        variant: Variant::Dilated,
    };
    let head = ArHead::from_file(&TensorFile::from_bytes(bytes).unwrap(), &config, device).unwrap();
    let (shape, input) = fixture_tensor(bytes, "input");
    let x = Tensor::from_data(
        TensorData::new(input, [shape[0], shape[1], shape[2], shape[3]]),
        device,
    );
    let out = head
        .forward(x)
        .into_data_async()
        .await
        .unwrap()
        .try_into_vec::<f32>()
        .unwrap();
    let d = max_abs_diff(&out, &fixture_tensor(bytes, "output").1);
    assert!(d <= 1e-4, "AR head differs from PyTorch by {d:e}");
}

async fn training_lowers_the_loss(device: &Device) {
    use common::synthetic::{C, H, W, normal_grids, small_spec};
    let grids = Tensor::from_data(TensorData::new(normal_grids(8, 1), [8, C, H, W]), device);
    let spec = FitSpec {
        epochs: 15,
        batch_size: 4,
        ..small_spec()
    };
    let mut losses = Vec::new();
    fit(grids, &spec, |p| {
        losses.push(p.loss);
        ControlFlow::Continue(())
    })
    .await
    .unwrap();
    let (first, last) = (
        losses[0] + losses[1],
        losses[losses.len() - 2] + losses[losses.len() - 1],
    );
    assert!(last < 0.5 * first, "loss went from {first} to {last}");
}

#[wasm_bindgen_test]
async fn webgpu_ar_head_matches_pytorch() {
    ar_head_parity(&webgpu().await).await;
}

#[wasm_bindgen_test]
async fn webgpu_training_with_autodiff_lowers_the_loss() {
    training_lowers_the_loss(&webgpu().await).await;
}

#[wasm_bindgen_test]
async fn wasm_cpu_ar_head_and_training() {
    ar_head_parity(&Device::flex()).await;
    training_lowers_the_loss(&Device::flex()).await;
}

async fn session_fit_load_score(kind: &str) {
    use common::golden;
    let s = Session::create(kind.parse().unwrap(), Precision::F32)
        .await
        .unwrap();
    // Errors before anything is loaded, and the session stays usable after them.
    let e = s
        .score(&golden::rgba_texture(1, 64, false), 64, 64)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no model loaded"), "{e}");
    let e = s.load_model(b"garbage").err().unwrap().to_string();
    assert!(e.contains("load the backbone"), "{e}");
    let e = s
        .load_backbone(&TINY_HF[..1000], None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("truncated"), "{e}");
    s.load_backbone(TINY_HF, Some(TINY_CONFIG)).unwrap();

    let images: Vec<(Vec<u8>, usize, usize)> = (0..6)
        .map(|k| (golden::rgba_texture(10 + k, 64, false), 64, 64))
        .collect();
    let options = FitSpec {
        epochs: 3,
        size: InputSize::square(64),
        ..FitSpec::default()
    };
    let mut steps = 0;
    let mut embedded = 0;
    let bundle = s
        .fit_pictures(&images, &options, |p| match p {
            FitProgress::Embedded { image, images } => {
                assert_eq!((image, images), (embedded + 1, 6));
                embedded = image;
            }
            FitProgress::Trained(_) => steps += 1,
        })
        .await
        .unwrap();
    assert_eq!(embedded, 6, "every normal image reports its embedding");
    assert_eq!(steps, 3, "one step per epoch with 5 training images");
    let e = s.load_model(TINY_HF).err().unwrap().to_string();
    assert!(e.contains("not a dino-ar model bundle"), "{e}");
    let info = s.load_model(&bundle).unwrap();
    assert_eq!((info.input_height, info.input_width), (64, 64));
    let r = s
        .score(&golden::rgba_texture(99, 64, true), 64, 64)
        .await
        .unwrap();
    assert_eq!(r.map.len(), 64 * 64);
    assert!(r.score.max.is_finite() && r.threshold.is_finite());
    let e = s.score(&[], 0, 0).await.err().unwrap().to_string();
    assert!(e.contains("empty"), "{e}");
    // A model fit on another backbone is refused, and the loaded one stays in place.
    s.load_backbone(SWIGLU_HF, Some(SWIGLU_CONFIG)).unwrap();
    let e = s.load_model(&bundle).err().unwrap().to_string();
    assert!(e.contains("trained on another backbone"), "{e}");
    let e = s.score(&[0; 16], 2, 2).await.err().unwrap().to_string();
    assert!(
        e.contains("no model loaded"),
        "the other backbone dropped the model: {e}"
    );
    s.load_backbone(TINY_HF, Some(TINY_CONFIG)).unwrap();
    s.load_model(&bundle).unwrap();
    let e = s
        .score(&[0; 16], 20_000, 20_000)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("largest side accepted"), "{e}");
    // Cancelling mid-run rejects with a clear message.
    let e = s
        .fit_pictures(&images, &options, |_| s.cancel())
        .await
        .err()
        .unwrap();
    assert_eq!(e.to_string(), "training cancelled");
}

#[wasm_bindgen_test]
async fn session_on_cpu_fits_loads_and_scores() {
    session_fit_load_score("cpu").await;
}

#[wasm_bindgen_test]
async fn session_on_webgpu_fits_loads_and_scores() {
    webgpu().await;
    session_fit_load_score("gpu").await;
}

/// A model fit natively (the CLI's path, golden file) scores the same here; one fit here equals it.
async fn golden_cross_check(kind: &str) {
    use common::golden::{self, SEED, SIZE};
    let s = Session::create(kind.parse().unwrap(), Precision::F32)
        .await
        .unwrap();
    s.load_backbone(TINY_HF, Some(TINY_CONFIG)).unwrap();
    let expected_map = fixture_tensor(golden::MAP, "map").1;

    // CLI → page.
    s.load_model(golden::BUNDLE).unwrap();
    let r = s.score(&golden::defective(), SIZE, SIZE).await.unwrap();
    let d = max_abs_diff(&r.map, &expected_map);
    assert!(
        d <= 1e-3,
        "{kind}: golden bundle scores differently in the page: {d:e}"
    );

    // Page → CLI: the bundle fit here holds the same bank and calibration.
    let options = FitSpec {
        method: Method::Knn,
        size: InputSize::square(SIZE),
        seed: SEED,
        ..FitSpec::default()
    };
    let bytes = s
        .fit_pictures(&golden::normals(), &options, |_| {})
        .await
        .unwrap();
    let ours = dino_ar::bundle::Bundle::read(&bytes).unwrap();
    let theirs = dino_ar::bundle::Bundle::read(golden::BUNDLE).unwrap();
    let bank =
        |b: &dino_ar::bundle::Bundle| b.tensors.get("memory_bank").unwrap().to_f32("m").unwrap();
    assert!(
        max_abs_diff(&bank(&ours), &bank(&theirs)) <= 1e-3,
        "{kind}: memory banks differ"
    );
    let (a, b) = (
        ours.meta.calibration.threshold,
        theirs.meta.calibration.threshold,
    );
    assert!((a - b).abs() <= 1e-3, "{kind}: thresholds {a} vs {b}");
    s.load_model(&bytes).unwrap();
    let r = s.score(&golden::defective(), SIZE, SIZE).await.unwrap();
    assert!(
        max_abs_diff(&r.map, &expected_map) <= 1e-3,
        "{kind}: page-fit model scores differently"
    );
}

#[wasm_bindgen_test]
async fn cli_and_page_bundles_score_alike_on_cpu() {
    golden_cross_check("cpu").await;
}

#[wasm_bindgen_test]
async fn cli_and_page_bundles_score_alike_on_webgpu() {
    webgpu().await;
    golden_cross_check("gpu").await;
}

/// The random-backbone generator gives the same weights in wasm as natively: the fingerprint
/// `tests/backbone_native.rs` checks.
#[wasm_bindgen_test]
fn a_random_backbone_has_the_same_fingerprint_in_wasm() {
    use common::random_backbone::{FINGERPRINT, SEED, config};
    let bytes = dino_ar::backbone::random::random_weights(&config(), SEED).unwrap();
    let loaded = load_backbone(&bytes, None, &Device::flex()).unwrap();
    assert_eq!(loaded.model.fingerprint, FINGERPRINT);
}
