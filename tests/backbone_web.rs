//! Backbone parity inside headless Chromium: on WebGPU (SwiftShader is fine) and on the CPU
//! backend compiled to wasm. Run with `wasm-pack test --headless --chrome -- --test backbone_web`.
//! Every read-back here is asynchronous, as it must be on WebGPU in a browser.
#![cfg(target_arch = "wasm32")]

mod common;

use std::cell::RefCell;

use burn::tensor::Device;
use common::*;
use dino_ar::backbone::{DinoV3, load_backbone};
use dino_ar::weights::WeightsError;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

thread_local! {
    static WEBGPU: RefCell<Option<Device>> = const { RefCell::new(None) };
}

/// The WebGPU device, initialised once (before any tensor exists) and shared by all tests.
async fn webgpu() -> Device {
    if let Some(d) = WEBGPU.with(|w| w.borrow().clone()) {
        return d;
    }
    let device = Device::wgpu_options()
        .init_async()
        .await
        .expect("WebGPU adapter (Chromium needs --enable-unsafe-webgpu)");
    WEBGPU.with(|w| *w.borrow_mut() = Some(device.clone()));
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
