//! A lost WebGPU device falls back to the CPU backend and says so. In a test binary (a page) of
//! its own: destroying the device poisons every other WebGPU test in the same page.
#![cfg(target_arch = "wasm32")]

mod common;

use common::{TINY_CONFIG, TINY_HF, golden};
use dino_ar::infra::compute::{DeviceChoice, Precision};
use dino_ar::web::{Session, lose_webgpu_device_for_tests};
use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

async fn sleep(ms: i32) {
    let promise = Promise::new(&mut |resolve, _| {
        let set_timeout: Function = Reflect::get(&js_sys::global(), &"setTimeout".into())
            .unwrap()
            .dyn_into()
            .unwrap();
        set_timeout
            .call2(&JsValue::NULL, &resolve, &ms.into())
            .unwrap();
    });
    JsFuture::from(promise).await.unwrap();
}

#[wasm_bindgen_test]
async fn a_lost_device_falls_back_to_the_cpu_and_says_so() {
    let s = Session::create(DeviceChoice::Gpu, Precision::F32)
        .await
        .unwrap();
    assert!(s.backend().starts_with("webgpu"), "{}", s.backend());
    s.load_backbone(TINY_HF, Some(TINY_CONFIG)).unwrap();
    s.load_model(golden::BUNDLE).unwrap();
    s.score(&golden::defective(), golden::SIZE, golden::SIZE)
        .await
        .unwrap();

    lose_webgpu_device_for_tests();
    for _ in 0..100 {
        if s.backend().starts_with("cpu") {
            break;
        }
        sleep(20).await;
    }
    assert!(
        s.backend().starts_with("cpu (WebGPU device lost"),
        "{}",
        s.backend()
    );
    // What lived on the lost device is gone: the next call says so instead of failing obscurely.
    let e = s
        .score(&golden::defective(), golden::SIZE, golden::SIZE)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("load the backbone and model again"), "{e}");
    // Reloading works on the CPU.
    s.load_backbone(TINY_HF, Some(TINY_CONFIG)).unwrap();
    s.load_model(golden::BUNDLE).unwrap();
    let r = s
        .score(&golden::defective(), golden::SIZE, golden::SIZE)
        .await
        .unwrap();
    assert_eq!(r.map.len(), golden::SIZE * golden::SIZE);
    // New detectors asking for WebGPU are told why they cannot have it; "auto" takes the CPU.
    let e = Session::create(DeviceChoice::Gpu, Precision::F32)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("lost earlier"), "{e}");
    let auto = Session::create(DeviceChoice::Auto, Precision::F32)
        .await
        .unwrap();
    assert!(auto.backend().starts_with("cpu"), "{}", auto.backend());
}
