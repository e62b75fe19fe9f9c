//! Fixtures and comparisons shared by the native and the in-browser parity tests.
//!
//! Fixtures are compiled in (`include_bytes!`) so the same code runs in wasm, where there is no
//! file system. They are made by `tools/fixtures/make_fixtures.py`.
#![allow(dead_code)]

use dino_ar::weights::TensorFile;

pub const TINY_CONFIG: &str = include_str!("../fixtures/tiny/config.json");
pub const TINY_HF: &[u8] = include_bytes!("../fixtures/tiny/hf.safetensors");
pub const TINY_META_PTH: &[u8] = include_bytes!("../fixtures/tiny/meta.pth");
pub const TINY_META_BF16: &[u8] = include_bytes!("../fixtures/tiny/meta_bf16.safetensors");
pub const TINY_PIXELS_224: &[u8] = include_bytes!("../fixtures/tiny/pixels_224x224.safetensors");
pub const TINY_REF_224: &[u8] = include_bytes!("../fixtures/tiny/ref_224x224.safetensors");
pub const TINY_PIXELS_128X192: &[u8] =
    include_bytes!("../fixtures/tiny/pixels_128x192.safetensors");
pub const TINY_REF_128X192: &[u8] = include_bytes!("../fixtures/tiny/ref_128x192.safetensors");

pub const SWIGLU_CONFIG: &str = include_str!("../fixtures/tiny_swiglu/config.json");
pub const SWIGLU_HF: &[u8] = include_bytes!("../fixtures/tiny_swiglu/hf.safetensors");
pub const SWIGLU_META: &[u8] = include_bytes!("../fixtures/tiny_swiglu/meta_bf16.safetensors");
pub const SWIGLU_PIXELS: &[u8] =
    include_bytes!("../fixtures/tiny_swiglu/pixels_96x160.safetensors");
pub const SWIGLU_REF: &[u8] = include_bytes!("../fixtures/tiny_swiglu/ref_96x160.safetensors");

/// Parity bound of the backbone against the reference implementation.
pub const TOLERANCE: f32 = 1e-4;

/// A tensor of a fixture file, with its shape.
pub fn fixture_tensor(bytes: &[u8], name: &str) -> (Vec<usize>, Vec<f32>) {
    let file = TensorFile::from_bytes(bytes).expect("fixture reads");
    let t = file
        .get(name)
        .unwrap_or_else(|| panic!("fixture lacks `{name}`"));
    (t.shape.clone(), t.to_f32(name).unwrap())
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length differs");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The reference patch tokens and CLS token of a `ref_*.safetensors` fixture.
pub struct Reference {
    pub patch_tokens: Vec<f32>,
    pub patch_shape: Vec<usize>,
    pub cls_token: Vec<f32>,
}

pub fn reference(bytes: &[u8]) -> Reference {
    let (patch_shape, patch_tokens) = fixture_tensor(bytes, "patch_tokens");
    let (_, cls_token) = fixture_tensor(bytes, "cls_token");
    Reference {
        patch_tokens,
        patch_shape,
        cls_token,
    }
}

/// Assert both outputs match the reference within [`TOLERANCE`], naming the case on failure.
pub fn assert_matches(case: &str, patch: &[f32], cls: &[f32], r: &Reference) {
    let dp = max_abs_diff(patch, &r.patch_tokens);
    let dc = max_abs_diff(cls, &r.cls_token);
    assert!(
        dp <= TOLERANCE && dc <= TOLERANCE,
        "{case}: max-abs difference patch tokens {dp:e}, cls {dc:e} (tolerance {TOLERANCE:e})"
    );
}

/// Synthetic embedding grids for training tests.
pub mod synthetic {
    use dino_ar::ar::{ArConfig, Variant};
    use dino_ar::infra::rng::Rng;
    use dino_ar::spec::FitSpec;

    pub const C: usize = 6;
    pub const H: usize = 8;
    pub const W: usize = 8;

    /// "Normal" grids: smooth waves whose phase differs per image, so each embedding is predictable
    /// from its raster predecessors but no single constant fits all images.
    pub fn normal_grids(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        let mut out = Vec::with_capacity(n * C * H * W);
        for _ in 0..n {
            let phase = rng.next_f64() * std::f64::consts::TAU;
            for c in 0..C {
                for y in 0..H {
                    for x in 0..W {
                        let v = ((x as f64 * 0.7 + y as f64 * 0.3 + phase)
                            * (1.0 + c as f64 * 0.2))
                            .sin();
                        out.push(v as f32);
                    }
                }
            }
        }
        out
    }

    /// A small, quick AR head: 3 layers of 24 channels, dilation 1.
    pub fn small_spec() -> FitSpec {
        FitSpec {
            hidden: 24,
            layers: 3,
            kernel: 3,
            variant: Variant::Standard,
            ..FitSpec::default()
        }
    }

    pub fn small_config() -> ArConfig {
        small_spec().ar_config(C)
    }
}

/// The golden cross-check shared by the native and in-browser tests: a kNN model fit on small
/// synthetic RGBA textures with the tiny backbone, and one defective image to score.
pub mod golden {
    use dino_ar::infra::rng::Rng;

    pub const SIZE: usize = 32;
    pub const SEED: u64 = 42;
    pub const BUNDLE: &[u8] = include_bytes!("../fixtures/golden/knn_bundle.safetensors");
    pub const MAP: &[u8] = include_bytes!("../fixtures/golden/knn_map.safetensors");

    /// Stripes with a per-image phase; `defect` paints a red square.
    pub fn rgba_texture(seed: u64, size: usize, defect: bool) -> Vec<u8> {
        let mut rng = Rng::new(seed);
        let phase = rng.next_f64() * 6.0;
        let mut out = Vec::with_capacity(size * size * 4);
        for y in 0..size {
            for x in 0..size {
                let v =
                    (110.0 + 60.0 * (x as f64 * 0.4 + phase).sin() + 20.0 * rng.next_f64()) as u8;
                let red = defect
                    && (size / 3..size / 3 + 8).contains(&x)
                    && (size / 3..size / 3 + 8).contains(&y);
                out.extend_from_slice(&if red {
                    [250, 20, 20, 255]
                } else {
                    [v, v, v, 255]
                });
            }
        }
        out
    }

    pub fn normals() -> Vec<(Vec<u8>, usize, usize)> {
        (0..6)
            .map(|k| (rgba_texture(100 + k, SIZE, false), SIZE, SIZE))
            .collect()
    }

    pub fn defective() -> Vec<u8> {
        rgba_texture(7, SIZE, true)
    }
}

/// The native GPU (`--device gpu`), or `None` after saying why the GPU test `test` is skipped.
/// `DINO_AR_REQUIRE_GPU=1` (set by `tools/test.sh`, which installs Mesa's lavapipe) turns the skip
/// into a failure, so that CI cannot pass without running the GPU path.
#[cfg(not(target_arch = "wasm32"))]
pub fn gpu_or_skip(test: &str) -> Option<dino_ar::infra::compute::Compute> {
    match dino_ar::infra::compute::open(dino_ar::infra::compute::DeviceChoice::Gpu) {
        Ok(gpu) => {
            eprintln!("{test}: on {}", gpu.label);
            Some(gpu)
        }
        Err(why) if std::env::var_os("DINO_AR_REQUIRE_GPU").is_some() => {
            panic!("{test}: DINO_AR_REQUIRE_GPU is set but {why}")
        }
        Err(why) => {
            eprintln!(
                "SKIPPED {test}: {why} (install Mesa's Vulkan driver: apt-get install mesa-vulkan-drivers)"
            );
            None
        }
    }
}

/// A random backbone made by `dino-ar random-backbone`'s generator: the same on every platform
/// (native and wasm), so its fingerprint is fixed.
pub mod random_backbone {
    use dino_ar::backbone::BackboneConfig;

    pub const SEED: u64 = 7;
    pub const FINGERPRINT: &str = "b915d6c012733969";

    pub fn config() -> BackboneConfig {
        BackboneConfig {
            hidden_size: 128,
            num_layers: 2,
            num_heads: 2,
            intermediate_size: 256,
            ..BackboneConfig::vits16()
        }
    }
}

/// The AR head fixture `bytes` (`tests/fixtures/ar/head_*.safetensors`: 16 channels, hidden 12,
/// 5 layers, 3×3; PyTorch's weights, input and output) of `variant` on `device`: the head, the
/// input and PyTorch's output.
#[cfg(not(target_arch = "wasm32"))]
pub fn ar_head_fixture(
    bytes: &[u8],
    variant: dino_ar::ar::Variant,
    device: &burn::tensor::Device,
) -> (dino_ar::ar::ArHead, burn::tensor::Tensor<4>, Vec<f32>) {
    use burn::tensor::{Tensor, TensorData};
    use dino_ar::ar::{ArConfig, ArHead};
    let config = ArConfig {
        channels: 16,
        hidden: 12,
        layers: 5,
        kernel: 3,
        variant,
    };
    let head = ArHead::from_file(&TensorFile::from_bytes(bytes).unwrap(), &config, device).unwrap();
    let (shape, input) = fixture_tensor(bytes, "input");
    let input = Tensor::<4>::from_data(
        TensorData::new(input, [shape[0], shape[1], shape[2], shape[3]]),
        device,
    );
    let (_, expected) = fixture_tensor(bytes, "output");
    (head, input, expected)
}

/// An AR head fixture run on `device` matches PyTorch's output to 1e-5.
#[cfg(not(target_arch = "wasm32"))]
pub fn check_ar_head(bytes: &[u8], variant: dino_ar::ar::Variant, device: &burn::tensor::Device) {
    let (head, input, expected) = ar_head_fixture(bytes, variant, device);
    let out = head
        .forward(input)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let d = max_abs_diff(&out, &expected);
    assert!(
        d <= 1e-5,
        "{variant:?} head on {device:?} differs from PyTorch by {d:e}"
    );
}

/// Running the CLI from a native integration test, as a user would.
#[cfg(not(target_arch = "wasm32"))]
pub mod cli {
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};

    /// The `dino-ar` binary, ready for arguments.
    pub fn bin() -> Command {
        Command::new(env!("CARGO_BIN_EXE_dino-ar"))
    }

    pub fn run(args: &[&str]) -> Output {
        bin().args(args).output().expect("run dino-ar")
    }

    /// Its stderr, after asserting it succeeded.
    pub fn ok(o: &Output) -> String {
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "stderr: {err}");
        err
    }

    /// Asserting it failed, with each of `needles` in its stderr.
    pub fn fails_with(o: &Output, needles: &[&str]) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "expected failure, stderr: {err}");
        for n in needles {
            assert!(err.contains(n), "stderr lacks `{n}`: {err}");
        }
    }

    /// A fresh folder for test `what`'s files.
    pub fn temp(what: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dino-ar-{}-{what}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A committed fixture's path.
    pub fn fixture(rel: &str) -> String {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(rel)
            .to_string_lossy()
            .into_owned()
    }
}
