//! The `dino-ar embed` command end to end: files in, safetensors out, errors on stderr.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

fn out_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dino-ar-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn embed(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dino-ar"))
        .arg("embed")
        .args(args)
        .output()
        .expect("run dino-ar")
}

fn check_output(out: &Path, reference_bytes: &[u8]) {
    let bytes = std::fs::read(out).unwrap();
    let (shape, patch) = fixture_tensor(&bytes, "patch_tokens");
    let (cls_shape, cls) = fixture_tensor(&bytes, "cls_token");
    let r = reference(reference_bytes);
    assert_eq!(shape, r.patch_shape);
    assert_eq!(cls_shape, vec![1, r.cls_token.len()]);
    assert_matches("CLI embed", &patch, &cls, &r);
}

/// `embed` of the tiny HF model's 128×192 pixels into `out`, with `extra` arguments.
fn embed_tiny_pixels(out: &Path, extra: &[&str]) -> std::process::Output {
    let backbone = fixture("tiny/hf.safetensors");
    let pixels = fixture("tiny/pixels_128x192.safetensors");
    let mut args = vec![
        "--backbone",
        backbone.to_str().unwrap(),
        "--pixels",
        pixels.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    embed(&args)
}

#[test]
fn embed_pixels_uses_the_config_beside_the_weights() {
    let out = out_path("pixels.safetensors");
    let o = embed_tiny_pixels(&out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    check_output(&out, TINY_REF_128X192);
}

/// `--precision f16`: on the CPU it runs f32 and says why (the same embeddings as f32); on a GPU
/// with f16 it says so and stays near the reference.
#[test]
fn precision_f16_runs_where_it_can_and_says_so_where_not() {
    let run = |device: &str, name: &str| {
        let out = out_path(name);
        let o = embed_tiny_pixels(&out, &["--device", device, "--precision", "f16"]);
        let stderr = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.success(), "{stderr}");
        (out, stderr)
    };
    let (out, stderr) = run("cpu", "f16_cpu.safetensors");
    assert!(
        stderr.contains("precision: f32 (f16 runs on a GPU; the CPU computes in f32)"),
        "{stderr}"
    );
    check_output(&out, TINY_REF_128X192);
    if gpu_or_skip("precision_f16_runs_where_it_can_and_says_so_where_not").is_none() {
        return;
    }
    let (out, stderr) = run("gpu", "f16_gpu.safetensors");
    if stderr.contains("no shader-f16") {
        eprintln!("SKIPPED the f16 half of the test: {stderr}");
        return;
    }
    assert!(stderr.contains("precision: f16"), "{stderr}");
    let bytes = std::fs::read(out).unwrap();
    let (_, patch) = fixture_tensor(&bytes, "patch_tokens");
    let r = reference(TINY_REF_128X192);
    let error = max_abs_diff(&patch, &r.patch_tokens);
    assert!(
        error > 1e-6 && error < 0.1,
        "f16 embeddings {error:e} from the reference"
    );
}

#[test]
fn embed_image_from_a_meta_checkpoint_with_explicit_config() {
    let out = out_path("image.safetensors");
    let o = embed(&[
        "--backbone",
        fixture("tiny/meta.pth").to_str().unwrap(),
        "--config",
        fixture("tiny/config.json").to_str().unwrap(),
        "--image",
        fixture("tiny/image_rgb8.png").to_str().unwrap(),
        "--size",
        "224",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    check_output(
        &out,
        include_bytes!("fixtures/tiny/image_rgb8_224x224.safetensors"),
    );
}

#[test]
fn errors_name_the_file_and_the_problem() {
    let out = out_path("never.safetensors");
    let png = fixture("tiny/image_rgb8.png");
    let o = embed(&[
        "--backbone",
        png.to_str().unwrap(),
        "--pixels",
        fixture("tiny/pixels_224x224.safetensors").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("image_rgb8.png") && err.contains("not a weights file"),
        "{err}"
    );

    let o = embed(&[
        "--backbone",
        fixture("tiny/hf.safetensors").to_str().unwrap(),
        "--image",
        png.to_str().unwrap(),
        "--size",
        "100x224",
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("--size 100x224") && err.contains("multiple of the patch size"),
        "{err}"
    );

    let o = embed(&[
        "--backbone",
        fixture("tiny/hf.safetensors").to_str().unwrap(),
        "--pixels",
        fixture("tiny/ref_224x224.safetensors").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("ref_224x224.safetensors") && err.contains("`pixel_values`"),
        "{err}"
    );
    assert!(!out.exists(), "no output is written on error");
}

#[test]
fn weights_holding_nan_are_refused_by_tensor_name() {
    use dino_ar::weights::{TensorFile, write_safetensors_f32};
    let file = TensorFile::from_bytes(TINY_HF).unwrap();
    let damaged = "layer.1.mlp.up_proj.weight";
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = file
        .tensors
        .iter()
        .map(|(name, t)| {
            let mut v = t.to_f32(name).unwrap();
            if name == damaged {
                v[7] = f32::NAN;
            }
            (name.clone(), t.shape.clone(), v)
        })
        .collect();
    let list: Vec<(&str, Vec<usize>, &[f32])> = tensors
        .iter()
        .map(|(n, s, v)| (n.as_str(), s.clone(), v.as_slice()))
        .collect();
    let weights = out_path("nan.safetensors");
    std::fs::write(&weights, write_safetensors_f32(&list, None).unwrap()).unwrap();
    let out = out_path("nan_emb.safetensors");
    let o = embed(&[
        "--backbone",
        weights.to_str().unwrap(),
        "--config",
        fixture("tiny/config.json").to_str().unwrap(),
        "--pixels",
        fixture("tiny/pixels_224x224.safetensors").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("nan.safetensors") && err.contains(damaged) && err.contains("NaN"),
        "{err}"
    );
    assert!(!out.exists());
}

/// `bench heads --device gpu` with a kNN bank larger than the GPU takes in one buffer reports that
/// size as skipped, saying how large a bank fits, and finishes — it does not panic at read-back.
#[test]
fn bench_skips_a_knn_bank_too_large_for_the_gpu_saying_what_fits() {
    if gpu_or_skip("bench_skips_a_knn_bank_too_large_for_the_gpu_saying_what_fits").is_none() {
        return;
    }
    // 2 and 5 000 000 images of 16×4×4 grids: 2 KB and 5.1 GB of bank rows.
    let o = Command::new(env!("CARGO_BIN_EXE_dino-ar"))
        .args(["bench", "heads", "--device", "gpu", "--banks", "2,5000000"])
        .args(["--dim", "16", "--grid", "4", "--runs", "1", "--warmup", "0"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout
            .contains("# knn 5000000: skipped, the kNN bank of 5000000 images: a 5120.0 MB buffer")
            && stdout.contains("use banks of at most"),
        "{stdout}"
    );
    assert!(stdout.contains("knn_over_ar_at_2="), "{stdout}");
}
