//! `dino-ar fit` → `score` → `eval` end to end on a small synthetic MVTec-style dataset, with the
//! tiny fixture backbone; plus the errors a user meets on the way.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dino_ar::infra::rng::Rng;

fn fixture(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dino-ar"))
        .args(args)
        .output()
        .expect("run dino-ar")
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn fails_with(o: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected failure, stderr: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks `{n}`: {err}");
    }
}

/// A striped texture with noise; `defect` paints a bright square and returns its mask.
fn texture(rng: &mut Rng, size: u32, defect: bool) -> (image::RgbImage, image::GrayImage) {
    let phase = rng.next_f64() * 6.0;
    let mut img = image::RgbImage::new(size, size);
    let mut mask = image::GrayImage::new(size, size);
    let (dx, dy) = (
        5 + (rng.next_u64() % 30) as u32,
        5 + (rng.next_u64() % 30) as u32,
    );
    for y in 0..size {
        for x in 0..size {
            let v = 110.0 + 60.0 * ((x as f64 * 0.4 + phase).sin()) + 20.0 * rng.next_f64();
            let mut p = [v as u8, (v * 0.9) as u8, (v * 0.8) as u8];
            if defect && (dx..dx + 14).contains(&x) && (dy..dy + 14).contains(&y) {
                p = [250, 20, 20];
                mask.put_pixel(x, y, image::Luma([255]));
            }
            img.put_pixel(x, y, image::Rgb(p));
        }
    }
    (img, mask)
}

fn dataset(root: &Path) {
    let mut rng = Rng::new(3);
    for dir in ["train/good", "test/good", "test/spot", "ground_truth/spot"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    for i in 0..10 {
        texture(&mut rng, 64, false)
            .0
            .save(root.join(format!("train/good/{i:03}.png")))
            .unwrap();
    }
    for i in 0..4 {
        texture(&mut rng, 64, false)
            .0
            .save(root.join(format!("test/good/{i:03}.png")))
            .unwrap();
        let (img, mask) = texture(&mut rng, 64, true);
        img.save(root.join(format!("test/spot/{i:03}.png")))
            .unwrap();
        // Masks at another size and without the `_mask` suffix for half of them: both tolerated.
        if i % 2 == 0 {
            mask.save(root.join(format!("ground_truth/spot/{i:03}_mask.png")))
                .unwrap();
        } else {
            image::imageops::resize(&mask, 32, 32, image::imageops::FilterType::Nearest)
                .save(root.join(format!("ground_truth/spot/{i:03}.png")))
                .unwrap();
        }
    }
    std::fs::write(root.join("train/good/broken.png"), b"not a png").unwrap();
    // Files that are not images at all: named and skipped, never silently left out.
    std::fs::write(root.join("train/good/notes.txt"), b"scanned on monday").unwrap();
    std::fs::write(
        root.join("train/good/tiny.gif"),
        b"GIF89a\x01\x00\x01\x00\x00;",
    )
    .unwrap();
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dino-ar-pipeline-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn check_metrics(json_path: &Path) {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json_path).unwrap()).unwrap();
    let metrics = v["metrics"].as_array().unwrap();
    let keys: Vec<&str> = metrics.iter().map(|m| m["key"].as_str().unwrap()).collect();
    for k in [
        "pixel_auroc",
        "pixel_ap",
        "image_auroc",
        "pixel_f1_max",
        "pro",
    ] {
        assert!(keys.contains(&k), "{k} missing: {v}");
    }
    for m in metrics {
        let x = m["value"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&x), "{m}");
    }
    assert!(
        v["model"]["epochs"].as_u64().is_some(),
        "the model's spec: {v}"
    );
    assert_eq!(v["counts"]["images"], 8);
    assert_eq!(v["counts"]["anomalous_images"], 4);
    assert_eq!(v["counts"]["anomalous_without_mask"], 0);
}

#[test]
fn fit_score_eval_with_the_ar_head_and_the_knn_baseline() {
    let root = temp("data");
    dataset(&root);
    let backbone = fixture("tiny/hf.safetensors");
    for method in ["ar", "knn"] {
        let out = temp(method);
        let model = out.join("model.safetensors");
        let o = run(&[
            "fit",
            "--backbone",
            &backbone,
            "--normal",
            root.join("train/good").to_str().unwrap(),
            "--out",
            model.to_str().unwrap(),
            "--size",
            "64",
            "--epochs",
            "3",
            "--method",
            method,
            "--holdout",
            "0.2",
            "--cache",
            out.join("cache").to_str().unwrap(),
        ]);
        ok(&o);
        let err = String::from_utf8_lossy(&o.stderr);
        for name in ["broken.png", "notes.txt", "tiny.gif"] {
            assert!(err.contains(name), "{name} is named: {err}");
        }
        assert!(err.contains("skipped 3 of 13 files"), "{err}");
        assert!(err.contains("fit on 8 images (2 held out)"), "{err}");

        let json = out.join("metrics.json");
        let o = run(&[
            "eval",
            "--backbone",
            &backbone,
            "--model",
            model.to_str().unwrap(),
            "--data",
            root.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ]);
        ok(&o);
        check_metrics(&json);

        // `dino-ar score` of `inputs` (files or folders) into `dir`.
        let score = |inputs: &[&Path], dir: &Path| {
            let mut args = vec!["score", "--backbone", &backbone];
            args.extend(["--model", model.to_str().unwrap()]);
            args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
            args.extend(["--out", dir.to_str().unwrap()]);
            ok(&run(&args));
        };

        let scores = out.join("scores");
        let spot = root.join("test/spot/000.png");
        let good = root.join("test/good/000.png");
        score(&[&spot, &good], &scores);
        let csv = std::fs::read_to_string(scores.join("scores.csv")).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], dino_ar::scores_csv::HEADER.join(","));
        assert_eq!(lines.len(), 3, "{csv}");
        assert!(
            lines[1].contains("spot/000.png") && lines[2].contains("good/000.png"),
            "{csv}"
        );
        let overlay = image::open(scores.join("000_overlay.png")).unwrap();
        assert_eq!((overlay.width(), overlay.height()), (64, 64));
        // Two inputs named 000.png: the second overlay is numbered, not written over the first.
        assert!(scores.join("000_2_overlay.png").exists());

        // A folder stands for its images.
        let folder = out.join("scores_folder");
        score(&[&root.join("test/good")], &folder);
        let csv = std::fs::read_to_string(folder.join("scores.csv")).unwrap();
        let good = std::fs::read_dir(root.join("test/good")).unwrap().count();
        assert_eq!(csv.lines().count(), good + 1, "{csv}");
    }
}

#[test]
fn fit_and_score_errors_are_clear() {
    let root = temp("errors");
    std::fs::create_dir_all(root.join("empty")).unwrap();
    let backbone = fixture("tiny/hf.safetensors");
    let out = root.join("m.safetensors");
    let o = run(&[
        "fit",
        "--backbone",
        &backbone,
        "--normal",
        root.join("empty").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--size",
        "64",
        "--no-cache",
    ]);
    fails_with(&o, &["empty", "no images"]);
    let o = run(&[
        "fit",
        "--backbone",
        &backbone,
        "--normal",
        root.join("empty").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--size",
        "60",
        "--no-cache",
    ]);
    fails_with(&o, &["--size 60", "multiple of the patch size"]);

    // A bundle fit on the tiny backbone, scored with the SwiGLU backbone: refused, by name.
    let data = root.join("normals");
    std::fs::create_dir_all(&data).unwrap();
    let mut rng = Rng::new(9);
    for i in 0..3 {
        texture(&mut rng, 32, false)
            .0
            .save(data.join(format!("{i}.png")))
            .unwrap();
    }
    ok(&run(&[
        "fit",
        "--backbone",
        &backbone,
        "--normal",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--size",
        "32",
        "--method",
        "knn",
        "--no-cache",
    ]));
    let img = data.join("0.png");
    let o = run(&[
        "score",
        "--backbone",
        &fixture("tiny_swiglu/hf.safetensors"),
        "--model",
        out.to_str().unwrap(),
        img.to_str().unwrap(),
        "--out",
        root.join("s").to_str().unwrap(),
    ]);
    fails_with(&o, &["m.safetensors", "trained on another backbone"]);
    // Backbone weights where a model is expected.
    let o = run(&[
        "score",
        "--backbone",
        &backbone,
        "--model",
        &backbone,
        img.to_str().unwrap(),
        "--out",
        root.join("s").to_str().unwrap(),
    ]);
    fails_with(&o, &["not a dino-ar model bundle"]);
}

/// The metrics `eval --json` wrote, by key.
fn metrics(json_path: &Path) -> Vec<(String, f64)> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json_path).unwrap()).unwrap();
    v["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["key"].as_str().unwrap().to_string(),
                m["value"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// `fit → eval` with `--device gpu` lands where `--device cpu` does: the same threshold and the
/// same metrics, within the parity tolerance (feature noise off: its draws are the device's own).
#[test]
fn fit_and_eval_on_the_gpu_match_the_cpu() {
    if common::gpu_or_skip("fit_and_eval_on_the_gpu_match_the_cpu").is_none() {
        return;
    }
    let root = temp("gpu-data");
    dataset(&root);
    let backbone = fixture("tiny/hf.safetensors");
    let mut results = Vec::new();
    for device in ["cpu", "gpu"] {
        let out = temp(&format!("on-{device}"));
        let model = out.join("model.safetensors");
        let o = run(&[
            "fit",
            "--device",
            device,
            "--backbone",
            &backbone,
            "--normal",
            root.join("train/good").to_str().unwrap(),
            "--out",
            model.to_str().unwrap(),
            "--size",
            "64",
            "--epochs",
            "3",
            "--noise-prob",
            "0",
            "--holdout",
            "0.2",
            "--no-cache",
        ]);
        ok(&o);
        let err = String::from_utf8_lossy(&o.stderr);
        let line = err
            .lines()
            .find(|l| l.starts_with("device: "))
            .unwrap_or("");
        assert!(line.starts_with(&format!("device: {device}")), "{err}");
        let json = out.join("metrics.json");
        ok(&run(&[
            "eval",
            "--device",
            device,
            "--backbone",
            &backbone,
            "--model",
            model.to_str().unwrap(),
            "--data",
            root.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ]));
        let bundle = dino_ar::bundle::Bundle::read(&std::fs::read(&model).unwrap()).unwrap();
        results.push((bundle.meta.calibration.threshold, metrics(&json)));
    }
    let ((t_cpu, m_cpu), (t_gpu, m_gpu)) = (&results[0], &results[1]);
    assert!(
        (t_cpu - t_gpu).abs() <= 1e-4 * t_cpu.abs().max(1.0),
        "threshold: cpu {t_cpu}, gpu {t_gpu}"
    );
    assert_eq!(m_cpu.len(), m_gpu.len());
    for ((key, a), (_, b)) in m_cpu.iter().zip(m_gpu) {
        assert!((a - b).abs() <= 1e-3, "{key}: cpu {a}, gpu {b}");
    }
}

#[test]
fn a_device_that_is_not_there_is_named() {
    let o = run(&["bench", "heads", "--device", "tpu"]);
    fails_with(&o, &["tpu", "auto", "cpu", "gpu"]);
}
