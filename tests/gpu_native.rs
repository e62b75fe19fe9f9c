//! The native GPU path (`--device gpu`: burn's wgpu backend on Vulkan / Metal / DX12): the same
//! parity with Hugging Face `DINOv3ViTModel` and PyTorch's AR head as on burn-flex, and a training
//! run that lands where the CPU's does. CI runs these on Mesa's software Vulkan driver (lavapipe);
//! without any adapter they are skipped with a message, unless `DINO_AR_REQUIRE_GPU` is set.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::ops::ControlFlow;

use burn::tensor::{DType, Device, Tensor, TensorData};
use common::*;
use dino_ar::ar::Variant;
use dino_ar::backbone::{DinoV3, load_backbone};
use dino_ar::infra::compute::Precision;
use dino_ar::train::fit;

fn embed(model: &DinoV3, pixels_fixture: &[u8]) -> (Vec<f32>, Vec<f32>) {
    let (shape, pixels) = fixture_tensor(pixels_fixture, "pixel_values");
    let out = model
        .forward(model.pixels_tensor(pixels, shape[2], shape[3]).unwrap())
        .unwrap();
    let patch = out.patch_tokens.into_data().try_into_vec::<f32>().unwrap();
    let cls = out.cls_token.into_data().try_into_vec::<f32>().unwrap();
    (patch, cls)
}

#[test]
fn backbones_match_the_reference_on_the_gpu() {
    let Some(gpu) = gpu_or_skip("backbones_match_the_reference_on_the_gpu") else {
        return;
    };
    /// (name, weights, config, [(pixels, reference)]).
    type Case<'a> = (&'a str, &'a [u8], &'a str, &'a [(&'a [u8], &'a [u8])]);
    let cases: [Case; 3] = [
        (
            "tiny HF safetensors",
            TINY_HF,
            TINY_CONFIG,
            &[
                (TINY_PIXELS_224, TINY_REF_224),
                (TINY_PIXELS_128X192, TINY_REF_128X192),
            ],
        ),
        (
            "tiny Meta bf16",
            TINY_META_BF16,
            TINY_CONFIG,
            &[(TINY_PIXELS_224, TINY_REF_224)],
        ),
        (
            "tiny SwiGLU",
            SWIGLU_HF,
            SWIGLU_CONFIG,
            &[(SWIGLU_PIXELS, SWIGLU_REF)],
        ),
    ];
    for (case, weights, config, inputs) in cases {
        let model = load_backbone(weights, Some(config), &gpu.device)
            .unwrap_or_else(|e| panic!("{case}: {e}"))
            .model;
        for (pixels, reference_bytes) in inputs {
            let (patch, cls) = embed(&model, pixels);
            assert_matches(
                &format!("{case} on {}", gpu.label),
                &patch,
                &cls,
                &reference(reference_bytes),
            );
        }
    }
}

#[test]
fn the_full_vits16_matches_the_reference_on_the_gpu_when_generated() {
    let test = "the_full_vits16_matches_the_reference_on_the_gpu_when_generated";
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/full");
    if !dir.join("hf.safetensors").is_file() {
        eprintln!(
            "SKIPPED {test}: {} is absent (python tools/fixtures/make_fixtures.py --full)",
            dir.display()
        );
        return;
    }
    let Some(gpu) = gpu_or_skip(test) else {
        return;
    };
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let config = String::from_utf8(read("config.json")).unwrap();
    let model = load_backbone(&read("hf.safetensors"), Some(&config), &gpu.device)
        .unwrap()
        .model;
    for size in ["224x224", "448x448"] {
        let (patch, cls) = embed(&model, &read(&format!("pixels_{size}.safetensors")));
        let r = reference(&read(&format!("ref_{size}.safetensors")));
        assert_matches(
            &format!("full ViT-S/16 {size} on the GPU"),
            &patch,
            &cls,
            &r,
        );
    }
    // And in half precision, where the adapter has it: the error BENCHMARKS.md §6 reports.
    let (model, note) = model.with_precision(Precision::F16);
    if let Some(why) = note {
        eprintln!("{test}: f16 not checked: {why}");
        return;
    }
    for size in ["224x224", "448x448"] {
        let (patch, cls) = embed(&model, &read(&format!("pixels_{size}.safetensors")));
        let r = reference(&read(&format!("ref_{size}.safetensors")));
        assert_near_in_f16(&format!("full ViT-S/16 {size}"), &patch, &cls, &r);
    }
}

/// f16 keeps 11 significant bits: within 2 % of the embeddings' largest value of the reference,
/// and not equal to it (the error shows that f16 really ran). Prints the errors.
fn assert_near_in_f16(case: &str, patch: &[f32], cls: &[f32], r: &Reference) {
    let (dp, dc) = (
        max_abs_diff(patch, &r.patch_tokens),
        max_abs_diff(cls, &r.cls_token),
    );
    let largest = r.patch_tokens.iter().fold(0f32, |m, v| m.max(v.abs()));
    let mean = patch
        .iter()
        .zip(&r.patch_tokens)
        .map(|(a, b)| (a - b).abs())
        .sum::<f32>()
        / patch.len() as f32;
    eprintln!(
        "{case} in f16: max-abs error patch tokens {dp:.2e} (mean {mean:.2e}), cls {dc:.2e}; \
         largest value {largest:.2}"
    );
    assert!(
        dp.max(dc) <= 2e-2 * largest && dp > 1e-6,
        "{case} in f16: max-abs error patch {dp:e}, cls {dc:e} against values up to {largest}"
    );
}

/// The AR head fixtures (PyTorch's weights, input and output) of each variant.
const AR_HEADS: [(&[u8], Variant); 3] = [
    (
        include_bytes!("fixtures/ar/head_dilated.safetensors"),
        Variant::Dilated,
    ),
    (
        include_bytes!("fixtures/ar/head_standard.safetensors"),
        Variant::Standard,
    ),
    (
        include_bytes!("fixtures/ar/head_gated.safetensors"),
        Variant::Gated,
    ),
];

#[test]
fn ar_heads_match_pytorch_on_the_gpu() {
    let Some(gpu) = gpu_or_skip("ar_heads_match_pytorch_on_the_gpu") else {
        return;
    };
    for (bytes, variant) in AR_HEADS {
        check_ar_head(bytes, variant, &gpu.device);
    }
}

/// Training is the same arithmetic on either device: the same seed gives the same losses and
/// the same head (feature noise off: its draws come from each device's own generator).
#[test]
fn training_on_the_gpu_follows_the_cpu() {
    let Some(gpu) = gpu_or_skip("training_on_the_gpu_follows_the_cpu") else {
        return;
    };
    let spec = dino_ar::spec::FitSpec {
        noise_prob: 0.0,
        epochs: 10,
        ..synthetic::small_spec()
    };
    let (c, h, w) = (synthetic::C, synthetic::H, synthetic::W);
    let values = synthetic::normal_grids(12, 5);
    let run = |device: &Device| {
        let grids = Tensor::<4>::from_data(TensorData::new(values.clone(), [12, c, h, w]), device);
        let mut losses = Vec::new();
        let head = pollster::block_on(fit(grids.clone(), &spec, |p| {
            losses.push(p.loss);
            ControlFlow::Continue(())
        }))
        .unwrap();
        let pred = head
            .forward(grids)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        (losses, pred)
    };
    let (cpu_losses, cpu_pred) = run(&Device::flex());
    let (gpu_losses, gpu_pred) = run(&gpu.device);
    assert_eq!(cpu_losses.len(), gpu_losses.len());
    let dl = max_abs_diff(&cpu_losses, &gpu_losses);
    let dp = max_abs_diff(&cpu_pred, &gpu_pred);
    assert!(
        dl <= TOLERANCE && dp <= TOLERANCE,
        "GPU training differs from the CPU's: losses by {dl:e}, predictions by {dp:e}"
    );
}

/// An input whose attention would not fit in one GPU buffer is refused before any work is queued,
/// with the size that would fit — not a panic or a lost device at read-back.
#[test]
fn an_input_too_large_for_the_gpu_says_what_to_lower() {
    let Some(gpu) = gpu_or_skip("an_input_too_large_for_the_gpu_says_what_to_lower") else {
        return;
    };
    let model = load_backbone(TINY_HF, Some(TINY_CONFIG), &gpu.device)
        .unwrap()
        .model;
    // 65 541 tokens: 34 GB of attention scores, more than any GPU takes in one buffer.
    let side = dino_ar::backbone::config::MAX_INPUT_SIDE;
    let e = model
        .pixels_tensor(vec![0.0; 3 * side * side], side, side)
        .unwrap_err();
    assert!(
        e.contains("more than this GPU takes in one") && e.contains("smaller size"),
        "{e}"
    );
    // The device is still usable afterwards.
    let (patch, cls) = embed(&model, TINY_PIXELS_224);
    assert_matches("after the refusal", &patch, &cls, &reference(TINY_REF_224));
}

/// Training grids that would not fit in one GPU buffer stay on the host and go to the GPU a batch
/// at a time: the AR head trains on them; a kNN bank, which needs them together on the device, is
/// refused saying what to lower. Runs where the limit is small enough to exceed cheaply
/// (lavapipe's 128 MiB in CI).
#[test]
fn training_grids_too_large_for_one_gpu_buffer_train_by_batches() {
    let test = "training_grids_too_large_for_one_gpu_buffer_train_by_batches";
    let Some(gpu) = gpu_or_skip(test) else {
        return;
    };
    let limit =
        dino_ar::infra::compute::buffer_limit(&gpu.device).expect("a GPU records its limit");
    if limit > 512 << 20 {
        eprintln!(
            "SKIPPED {test}: this GPU takes {limit} bytes in one buffer, too many to exceed here"
        );
        return;
    }
    let (d, g) = (64, 16);
    let one = d * g * g * 4;
    // Over the limit even without the few held out for calibration.
    let count = limit as usize / one + 16;
    let normals: Vec<_> = (0..count)
        .map(|k| dino_ar::detector::NormalGrid {
            grid: (0..d * g * g)
                .map(|i| ((i * 7 + k * 13) % 29) as f32 / 29.0)
                .collect(),
            width: 256,
            height: 256,
        })
        .collect();
    let (grids, sizes) =
        dino_ar::detector::NormalGrid::stack(&normals, (d, g, g), &gpu.device).unwrap();
    assert!(grids.on_the_host(), "{count} grids over the GPU's limit");
    // The tiny fixture's width is the grids' 64 channels.
    let backbone = load_backbone(TINY_HF, Some(TINY_CONFIG), &gpu.device)
        .unwrap()
        .model;
    let spec = |method| dino_ar::spec::FitSpec {
        method,
        size: dino_ar::spec::InputSize::square(256),
        hidden: 8,
        layers: 1,
        epochs: 1,
        batch_size: 512,
        holdout: 0.002,
        ..dino_ar::spec::FitSpec::default()
    };
    let mut steps = 0;
    let bundle = pollster::block_on(dino_ar::detector::fit_model(
        grids.clone(),
        &sizes,
        &backbone,
        &spec(dino_ar::spec::Method::Ar),
        |p| {
            steps = p.steps;
            ControlFlow::Continue(())
        },
    ))
    .unwrap_or_else(|e| panic!("the AR head on {count} grids kept on the host: {e}"));
    assert!(!bundle.is_empty() && steps > 0);
    let Err(e) = pollster::block_on(dino_ar::detector::fit_model(
        grids,
        &sizes,
        &backbone,
        &spec(dino_ar::spec::Method::Knn),
        |_| ControlFlow::Continue(()),
    )) else {
        panic!("a kNN bank of {count} grids over the GPU's limit was accepted");
    };
    let e = e.to_string();
    assert!(
        e.contains("kNN bank") && e.contains("fewer images") && e.contains("AR head"),
        "{e}"
    );
}

/// The GPU's f16 path, or `None` (skipped, saying why) where the adapter has no f16 arithmetic.
/// CI's lavapipe has it (`shaderFloat16`), so there `DINO_AR_REQUIRE_GPU` makes a skip a failure.
fn f16_gpu_or_skip(test: &str) -> Option<dino_ar::infra::compute::Compute> {
    let gpu = gpu_or_skip(test)?;
    match Precision::F16.on(&gpu.device) {
        (Precision::F16, None) => Some(gpu),
        (_, why) if std::env::var_os("DINO_AR_REQUIRE_GPU").is_some() => {
            panic!("{test}: DINO_AR_REQUIRE_GPU is set but {why:?}")
        }
        (_, why) => {
            eprintln!("SKIPPED {test}: {}", why.unwrap_or_default());
            None
        }
    }
}

/// Half precision: the weights live in f16 on the device and the embeddings stay near the f32
/// reference ([`assert_near_in_f16`]).
#[test]
fn half_precision_stays_near_the_reference_on_the_gpu() {
    let test = "half_precision_stays_near_the_reference_on_the_gpu";
    let Some(gpu) = f16_gpu_or_skip(test) else {
        return;
    };
    /// (name, weights, config, pixels, reference).
    type Case<'a> = (&'a str, &'a [u8], &'a str, &'a [u8], &'a [u8]);
    let cases: [Case; 3] = [
        (
            "tiny HF",
            TINY_HF,
            TINY_CONFIG,
            TINY_PIXELS_224,
            TINY_REF_224,
        ),
        (
            "tiny Meta bf16",
            TINY_META_BF16,
            TINY_CONFIG,
            TINY_PIXELS_128X192,
            TINY_REF_128X192,
        ),
        (
            "tiny SwiGLU",
            SWIGLU_HF,
            SWIGLU_CONFIG,
            SWIGLU_PIXELS,
            SWIGLU_REF,
        ),
    ];
    for (case, weights, config, pixels, reference_bytes) in cases {
        let model = load_backbone(weights, Some(config), &gpu.device)
            .unwrap()
            .model;
        let (model, note) = model.with_precision(Precision::F16);
        assert_eq!((model.precision(), note), (Precision::F16, None), "{case}");
        let q = model.blocks[0].attention.q.weight_t.val();
        assert_eq!(q.dtype(), DType::F16, "{case}: weights on the device");
        let (patch, cls) = embed(&model, pixels);
        assert_near_in_f16(case, &patch, &cls, &reference(reference_bytes));
    }
}

/// The AR heads in f16 (as a detector with an f16 backbone scores): near PyTorch's f32 output.
#[test]
fn ar_heads_in_half_precision_stay_near_pytorch() {
    let test = "ar_heads_in_half_precision_stay_near_pytorch";
    let Some(gpu) = f16_gpu_or_skip(test) else {
        return;
    };
    for (bytes, variant) in AR_HEADS {
        let (head, input, expected) = ar_head_fixture(bytes, variant, &gpu.device);
        let head = head.with_dtype(burn::tensor::FloatDType::F16);
        let out = head.forward(input);
        assert_eq!(out.dtype(), DType::F32, "{variant:?}: f32 out");
        let out = out.into_data().try_into_vec::<f32>().unwrap();
        let d = max_abs_diff(&out, &expected);
        let largest = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
        eprintln!("{variant:?} head in f16: max-abs error {d:.2e}, largest value {largest:.2}");
        assert!(
            d <= 2e-2 * largest && d > 1e-7,
            "{variant:?} head in f16: {d:e} from PyTorch's f32 (values up to {largest})"
        );
    }
}

/// f16 asked for where it cannot run falls back to f32 and says why.
#[test]
fn half_precision_on_the_cpu_falls_back_to_f32_saying_why() {
    let model = load_backbone(TINY_HF, Some(TINY_CONFIG), &Device::flex())
        .unwrap()
        .model;
    let (model, note) = model.with_precision(Precision::F16);
    assert_eq!(model.precision(), Precision::F32);
    assert!(note.is_some_and(|n| n.contains("GPU")));
    let (patch, cls) = embed(&model, TINY_PIXELS_224);
    assert_matches("the f32 fallback", &patch, &cls, &reference(TINY_REF_224));
}

/// The linear layers' WGSL kernel (`backbone::gpu_linear`) against burn's own matmul on the same
/// GPU, on shapes that leave partial row blocks and column groups (37 rows: 4 full rows of the
/// last 8-row block; 20 columns: 5 of a 16-wide group), with and without a bias, from inputs that
/// are views (a transpose, a slice) rather than whole buffers.
#[test]
fn the_gpu_linear_kernel_matches_burns_matmul() {
    use dino_ar::backbone::gpu_linear;
    let Some(gpu) = gpu_or_skip("the_gpu_linear_kernel_matches_burns_matmul") else {
        return;
    };
    let device = &gpu.device;
    let values = |n: usize, seed: u64| dino_ar::infra::rng::Rng::new(seed).uniform(-1.0, 1.0, n);
    let tensor =
        |v: Vec<f32>, shape: [usize; 2]| Tensor::<2>::from_data(TensorData::new(v, shape), device);
    for (m, k, n) in [(37, 12, 20), (1, 4, 4), (201, 64, 256), (70, 256, 64)] {
        let x = tensor(values(m * k, 1), [m, k]);
        // Wᵀ as a transposed view, and the bias as a slice of a longer vector.
        let w = tensor(values(n * k, 2), [n, k]).transpose();
        let b = Tensor::<1>::from_data(TensorData::new(values(n + 3, 3), [n + 3]), device)
            .slice(1..n + 1);
        assert!(gpu_linear::applies(&x, &w, Some(&b)), "{m}×{k}×{n}");
        for bias in [Some(b.clone()), None] {
            let expected = match &bias {
                Some(b) => x.clone().matmul(w.clone()) + b.clone().unsqueeze::<2>(),
                None => x.clone().matmul(w.clone()),
            };
            let ours = gpu_linear::linear(x.clone(), w.clone(), bias.clone());
            assert_eq!(ours.dims(), [m, n]);
            let ours = ours.into_data().try_into_vec::<f32>().unwrap();
            let expected = expected.into_data().try_into_vec::<f32>().unwrap();
            let worst = max_abs_diff(&ours, &expected);
            assert!(
                worst <= 1e-5 * k as f32,
                "{m}×{k}×{n}, bias {}: off by {worst:e}",
                bias.is_some()
            );
        }
    }
    // Shapes the kernel does not take keep burn's matmul: widths not multiples of 4, shapes that
    // do not agree, the CPU.
    let x = tensor(values(8, 1), [2, 4]);
    assert!(!gpu_linear::applies(
        &x,
        &tensor(values(32, 2), [8, 4]),
        None
    ));
    let b = Tensor::<1>::from_data(TensorData::new(values(8, 3), [8]), device);
    assert!(!gpu_linear::applies(
        &x,
        &tensor(values(16, 2), [4, 4]),
        Some(&b)
    ));
    let odd = tensor(values(6, 1), [2, 3]);
    assert!(!gpu_linear::applies(
        &odd,
        &tensor(values(12, 2), [3, 4]),
        None
    ));
    let cpu = Tensor::<2>::from_data(TensorData::new(values(8, 1), [2, 4]), &Device::flex());
    assert!(!gpu_linear::applies(
        &cpu,
        &cpu.clone().reshape([4, 2]),
        None
    ));
}
