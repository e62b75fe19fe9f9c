//! Backbone parity with Hugging Face `DINOv3ViTModel` on burn-flex, and weight-file errors.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::collections::BTreeMap;

use burn::tensor::Device;
use common::*;
use dino_ar::backbone::{DinoV3, Layout, load_backbone};
use dino_ar::weights::{FileFormat, TensorFile, WeightsError, write_safetensors_f32};

fn run(model: &DinoV3, pixels_fixture: &[u8]) -> (Vec<f32>, Vec<f32>) {
    let (shape, pixels) = fixture_tensor(pixels_fixture, "pixel_values");
    embed(model, pixels, shape[2], shape[3])
}

fn embed(model: &DinoV3, pixels: Vec<f32>, h: usize, w: usize) -> (Vec<f32>, Vec<f32>) {
    let out = model
        .forward(model.pixels_tensor(pixels, h, w).unwrap())
        .unwrap();
    let patch = out.patch_tokens.into_data().try_into_vec::<f32>().unwrap();
    let cls = out.cls_token.into_data().try_into_vec::<f32>().unwrap();
    (patch, cls)
}

fn check(case: &str, weights: &[u8], config: &str, cases: &[(&[u8], &[u8])]) {
    let device = Device::flex();
    let model = load_backbone(weights, Some(config), &device)
        .unwrap_or_else(|e| panic!("{case}: {e}"))
        .model;
    for (pixels, reference_bytes) in cases {
        let (patch, cls) = run(&model, pixels);
        let r = reference(reference_bytes);
        assert_eq!(
            patch.len(),
            r.patch_tokens.len(),
            "{case}: patch token count"
        );
        assert_matches(case, &patch, &cls, &r);
    }
}

const TINY_CASES: [(&[u8], &[u8]); 2] = [
    (TINY_PIXELS_224, TINY_REF_224),
    (TINY_PIXELS_128X192, TINY_REF_128X192),
];

#[test]
fn hf_safetensors_matches_reference_square_and_non_square() {
    check(
        "tiny HF safetensors (f32)",
        TINY_HF,
        TINY_CONFIG,
        &TINY_CASES,
    );
}

#[test]
fn meta_pth_matches_reference_square_and_non_square() {
    check(
        "tiny Meta .pth (f16, torch.save)",
        TINY_META_PTH,
        TINY_CONFIG,
        &TINY_CASES,
    );
}

#[test]
fn meta_keys_in_bf16_safetensors_match_reference() {
    check(
        "tiny Meta keys in safetensors (bf16)",
        TINY_META_BF16,
        TINY_CONFIG,
        &TINY_CASES,
    );
}

#[test]
fn swiglu_layout_matches_reference_in_both_key_layouts() {
    check(
        "tiny SwiGLU HF",
        SWIGLU_HF,
        SWIGLU_CONFIG,
        &[(SWIGLU_PIXELS, SWIGLU_REF)],
    );
    check(
        "tiny SwiGLU Meta",
        SWIGLU_META,
        SWIGLU_CONFIG,
        &[(SWIGLU_PIXELS, SWIGLU_REF)],
    );
}

#[test]
fn layout_and_architecture_are_read_from_the_weights() {
    let device = Device::flex();
    let hf = load_backbone(TINY_HF, None, &device).unwrap();
    assert_eq!(hf.layout, Layout::HuggingFace);
    assert_eq!(hf.format, FileFormat::Safetensors);
    let c = &hf.model.config;
    assert_eq!(
        (c.hidden_size, c.num_layers, c.num_registers, c.patch_size),
        (64, 2, 4, 16)
    );
    assert_eq!(c.intermediate_size, 256);
    // Without config.json the head count follows DINOv3's head width of 64.
    assert_eq!(c.num_heads, 1);
    let meta = load_backbone(TINY_META_PTH, Some(TINY_CONFIG), &device).unwrap();
    assert_eq!(meta.layout, Layout::Meta);
    assert_eq!(meta.format, FileFormat::TorchZip);
    assert_eq!(meta.model.config.num_heads, 2);
}

#[test]
fn fingerprint_identifies_weights_not_file_layout() {
    let device = Device::flex();
    let fp = |w: &[u8], cfg: &str| {
        load_backbone(w, Some(cfg), &device)
            .unwrap()
            .model
            .fingerprint
    };
    let hf = fp(TINY_HF, TINY_CONFIG);
    assert_eq!(hf.len(), 16);
    // Same values (the weights are bf16-exact) in the other layout and dtype: same backbone.
    // (The fp16 .pth rounds the smallest weights differently, so it is rightly another one.)
    assert_eq!(fp(TINY_META_BF16, TINY_CONFIG), hf);
    assert_ne!(fp(SWIGLU_HF, SWIGLU_CONFIG), hf);
    let one_head = load_backbone(TINY_HF, None, &device)
        .unwrap()
        .model
        .fingerprint;
    assert_ne!(
        one_head, hf,
        "the head count changes the model, so the fingerprint"
    );
}

#[test]
fn wrong_head_count_is_a_different_model() {
    // Guards the config path: the fixture has 2 heads, so inferring 1 must not match.
    let device = Device::flex();
    let model = load_backbone(TINY_HF, None, &device).unwrap().model;
    let (patch, _) = run(&model, TINY_PIXELS_224);
    let r = reference(TINY_REF_224);
    assert!(max_abs_diff(&patch, &r.patch_tokens) > 1e-2);
}

// ---- preprocessing: decode + antialiased resize + normalisation, against torch ----

fn check_image(png: &[u8], reference_bytes: &[u8]) {
    let (shape, expected) = fixture_tensor(reference_bytes, "pixel_values");
    let (h, w) = (shape[2], shape[3]);
    let pixels = dino_ar::input::decode_picture(png)
        .unwrap()
        .to_model_input(h, w);
    let d = max_abs_diff(&pixels, &expected);
    // Float summation order differs from torch's; 1e-4 (normalised units) is ~1/170 of one 8-bit step.
    assert!(d <= 1e-4, "preprocessed pixels differ from torch by {d:e}");
    let device = Device::flex();
    let model = load_backbone(TINY_HF, Some(TINY_CONFIG), &device)
        .unwrap()
        .model;
    let (patch, cls) = embed(&model, pixels, h, w);
    assert_matches(
        "image end to end",
        &patch,
        &cls,
        &reference(reference_bytes),
    );
}

#[test]
fn rgb8_png_preprocesses_like_torch_when_shrinking_and_growing() {
    check_image(
        include_bytes!("fixtures/tiny/image_rgb8.png"),
        include_bytes!("fixtures/tiny/image_rgb8_224x224.safetensors"),
    );
}

#[test]
fn grey16_png_keeps_full_precision_and_becomes_rgb() {
    check_image(
        include_bytes!("fixtures/tiny/image_grey16.png"),
        include_bytes!("fixtures/tiny/image_grey16_128x192.safetensors"),
    );
}

// ---- the full-size random ViT-S/16, generated on demand ----

#[test]
fn full_vits16_matches_reference_when_generated() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/full");
    if !dir.join("hf.safetensors").is_file() {
        eprintln!(
            "SKIPPED full_vits16_matches_reference_when_generated: {} is absent; generate it with \
             `python tools/fixtures/make_fixtures.py --full`",
            dir.display()
        );
        return;
    }
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let config = String::from_utf8(read("config.json")).unwrap();
    for weights in ["hf.safetensors", "meta.pth"] {
        let model = load_backbone(&read(weights), Some(&config), &Device::flex())
            .unwrap()
            .model;
        assert_eq!(model.config.num_heads, 6);
        for size in ["224x224", "448x448"] {
            let (patch, cls) = run(&model, &read(&format!("pixels_{size}.safetensors")));
            let r = reference(&read(&format!("ref_{size}.safetensors")));
            assert_matches(&format!("full ViT-S/16 {weights} {size}"), &patch, &cls, &r);
        }
    }
}

// ---- bad weight files: each gets an error that names the problem ----

fn load_err(bytes: &[u8]) -> WeightsError {
    match load_backbone(bytes, Some(TINY_CONFIG), &Device::flex()) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

/// The tiny HF weights as f32 tensors, to edit and re-save.
fn tiny_tensors() -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let file = TensorFile::from_bytes(TINY_HF).unwrap();
    file.tensors
        .iter()
        .map(|(k, t)| (k.clone(), (t.shape.clone(), t.to_f32(k).unwrap())))
        .collect()
}

fn save(tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>) -> Vec<u8> {
    let list: Vec<(&str, Vec<usize>, &[f32])> = tensors
        .iter()
        .map(|(k, (s, v))| (k.as_str(), s.clone(), v.as_slice()))
        .collect();
    write_safetensors_f32(&list, None).unwrap()
}

#[test]
fn not_a_weights_file() {
    let e = load_err(include_bytes!("fixtures/tiny/image_rgb8.png"));
    assert!(matches!(e, WeightsError::NotWeights(_)), "{e}");
    assert!(e.to_string().contains("PNG image"), "{e}");
    let e = load_err(b"this is a text file, clearly not weights");
    assert!(e.to_string().starts_with("not a weights file"), "{e}");
}

#[test]
fn truncated_files() {
    for (what, bytes) in [("safetensors", TINY_HF), ("pth", TINY_META_PTH)] {
        for cut in [bytes.len() / 2, bytes.len() - 100] {
            let e = load_err(&bytes[..cut]);
            assert!(
                matches!(e, WeightsError::Truncated(_)),
                "{what} cut at {cut}: {e}"
            );
            assert!(
                e.to_string().starts_with("weights file is truncated"),
                "{e}"
            );
        }
    }
}

#[test]
fn unknown_layout() {
    let mut t = BTreeMap::new();
    t.insert(
        "encoder.conv.weight".to_string(),
        (vec![2, 2], vec![0.0; 4]),
    );
    let e = load_err(&save(&t));
    assert!(matches!(e, WeightsError::UnknownLayout(_)), "{e}");
    assert!(e.to_string().contains("encoder.conv.weight"), "{e}");
    t.insert(
        "embeddings.position_embeddings".to_string(),
        (vec![1], vec![0.0]),
    );
    assert!(load_err(&save(&t)).to_string().contains("DINOv2"));
}

#[test]
fn missing_tensor_is_named() {
    let mut t = tiny_tensors();
    t.remove("layer.1.attention.v_proj.weight");
    let e = load_err(&save(&t));
    assert_eq!(
        e,
        WeightsError::MissingTensor("layer.1.attention.v_proj.weight".into())
    );
    assert_eq!(
        e.to_string(),
        "missing tensor `layer.1.attention.v_proj.weight`"
    );
}

#[test]
fn wrong_shape_is_named_with_both_shapes() {
    let mut t = tiny_tensors();
    t.insert(
        "layer.0.mlp.down_proj.weight".into(),
        (vec![64, 128], vec![0.0; 64 * 128]),
    );
    let e = load_err(&save(&t));
    assert_eq!(
        e.to_string(),
        "tensor `layer.0.mlp.down_proj.weight` has shape [64, 128] but the config needs [64, 256]"
    );
}

#[test]
fn unsupported_dtype_is_named() {
    let file = TensorFile::from_bytes(TINY_HF).unwrap();
    let ints = vec![0u8; 64 * 8];
    let mut views = Vec::new();
    for (name, t) in &file.tensors {
        let v = if name == "norm.bias" {
            safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![64], &ints).unwrap()
        } else {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.shape.clone(), &t.bytes)
                .unwrap()
        };
        views.push((name.clone(), v));
    }
    let bytes = safetensors::tensor::serialize(views, None).unwrap();
    let e = load_err(&bytes);
    assert_eq!(
        e.to_string(),
        "tensor `norm.bias` has unsupported dtype int64 (supported: float32, float16, bfloat16)"
    );
}

#[test]
fn prefixed_keys_and_nested_checkpoints_load() {
    let t: BTreeMap<_, _> = tiny_tensors()
        .into_iter()
        .map(|(k, v)| (format!("backbone.{k}"), v))
        .collect();
    let model = load_backbone(&save(&t), Some(TINY_CONFIG), &Device::flex())
        .unwrap()
        .model;
    let (patch, cls) = run(&model, TINY_PIXELS_224);
    assert_matches("prefixed keys", &patch, &cls, &reference(TINY_REF_224));
}

#[test]
fn bad_input_sizes_are_errors_not_panics() {
    let model = load_backbone(TINY_HF, Some(TINY_CONFIG), &Device::flex())
        .unwrap()
        .model;
    let e = model
        .pixels_tensor(vec![0.0; 3 * 100 * 100], 100, 100)
        .unwrap_err();
    assert!(e.contains("100x100") && e.contains("patch size 16"), "{e}");
    let e = model.pixels_tensor(vec![0.0; 10], 16, 16).unwrap_err();
    assert!(e.contains("10 values"), "{e}");
}

// ---- generated random backbones ----

#[test]
fn a_random_backbone_has_the_same_fingerprint_everywhere() {
    use common::random_backbone::{FINGERPRINT, SEED, config};
    let bytes = dino_ar::backbone::random::random_weights(&config(), SEED).unwrap();
    let loaded = load_backbone(&bytes, None, &Device::flex()).unwrap();
    // tests/web.rs checks the same value in the browser's wasm.
    assert_eq!(loaded.model.fingerprint, FINGERPRINT);
}
