//! Metrics against scikit-learn and MVTec AD's reference PRO on committed arrays (with ties).
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::fixture_tensor;
use dino_ar::metrics::{MaskedMap, auroc, average_precision, f1_max, pro};
use dino_ar::weights::TensorFile;

const FIXTURE: &[u8] = include_bytes!("fixtures/metrics.safetensors");

fn expected(name: &str) -> f64 {
    let file = TensorFile::from_bytes(FIXTURE).unwrap();
    let json: serde_json::Value = serde_json::from_str(&file.metadata["expected"]).unwrap();
    json[name].as_f64().unwrap()
}

fn labelled() -> (Vec<f32>, Vec<bool>) {
    let file = TensorFile::from_bytes(FIXTURE).unwrap();
    let labels = file
        .get("labels")
        .unwrap()
        .bytes
        .iter()
        .map(|&b| b != 0)
        .collect();
    (fixture_tensor(FIXTURE, "scores").1, labels)
}

fn close(name: &str, got: f64) {
    let want = expected(name);
    assert!(
        (got - want).abs() < 1e-9,
        "{name}: got {got}, reference {want}"
    );
}

#[test]
fn auroc_matches_sklearn_with_ties() {
    let (s, l) = labelled();
    close("auroc", auroc(&s, &l).unwrap());
}

#[test]
fn average_precision_matches_sklearn_with_ties() {
    let (s, l) = labelled();
    close("average_precision", average_precision(&s, &l).unwrap());
}

#[test]
fn f1_max_matches_sklearn_precision_recall_curve() {
    let (s, l) = labelled();
    close("f1_max", f1_max(&s, &l).unwrap().0);
}

#[test]
fn pro_matches_mvtec_reference() {
    let file = TensorFile::from_bytes(FIXTURE).unwrap();
    let maps = fixture_tensor(FIXTURE, "maps").1;
    let masks: Vec<bool> = file
        .get("masks")
        .unwrap()
        .bytes
        .iter()
        .map(|&b| b != 0)
        .collect();
    let (h, w) = (24, 32);
    let images: Vec<MaskedMap> = (0..3)
        .map(|k| MaskedMap {
            scores: &maps[k * h * w..(k + 1) * h * w],
            mask: &masks[k * h * w..(k + 1) * h * w],
            width: w,
            height: h,
        })
        .collect();
    let got = pro(&images, 0.3).unwrap();
    let want = expected("pro");
    assert!(
        (got - want).abs() < 1e-9,
        "PRO: got {got}, reference {want}"
    );
}

#[test]
fn pro_without_regions_is_an_error() {
    let scores = [0.1f32; 4];
    let mask = [false; 4];
    let e = pro(
        &[MaskedMap {
            scores: &scores,
            mask: &mask,
            width: 2,
            height: 2,
        }],
        0.3,
    )
    .unwrap_err();
    assert!(e.to_string().contains("no anomalous region"), "{e}");
}
