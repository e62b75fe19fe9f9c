//! The screening loop in the CLI: a model goes on learning from new normal images (`fit
//! --resume`, from a folder or a marks CSV), its threshold is set again by a rule (`calibrate`),
//! and every version is kept with what it learned from.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::path::{Path, PathBuf};

use common::cli::{fails_with, fixture, ok, run, temp};
use dino_ar::bundle::{Bundle, Step};
use dino_ar::infra::rng::Rng;
use dino_ar::marks::{Mark, Marked, fingerprint, to_csv};
use dino_ar::threshold::{Rule, choose};

/// Stripes of a given frequency with noise (a "lighting" the model may not have seen), and a
/// bright square for a defect.
fn texture(rng: &mut Rng, freq: f64, defect: bool) -> image::RgbImage {
    let phase = rng.next_f64() * 6.0;
    let (dx, dy) = (
        8 + (rng.next_u64() % 30) as u32,
        8 + (rng.next_u64() % 30) as u32,
    );
    image::RgbImage::from_fn(64, 64, |x, y| {
        if defect && (dx..dx + 14).contains(&x) && (dy..dy + 14).contains(&y) {
            return image::Rgb([250, 20, 20]);
        }
        let v = 110.0 + 60.0 * (x as f64 * freq + phase).sin() + 20.0 * rng.next_f64();
        image::Rgb([v as u8, (v * 0.9) as u8, (v * 0.8) as u8])
    })
}

fn folder(root: &Path, name: &str, n: usize, freq: f64, defect: bool, seed: u64) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = Rng::new(seed);
    for i in 0..n {
        texture(&mut rng, freq, defect)
            .save(dir.join(format!("{i:03}.png")))
            .unwrap();
    }
    dir
}

/// `score` of `dir` with `model`: each file's score from scores.csv.
fn scores(backbone: &str, model: &Path, dir: &Path, out: &Path) -> Vec<f32> {
    ok(&run(&[
        "score",
        "--backbone",
        backbone,
        "--model",
        model.to_str().unwrap(),
        dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    let csv = std::fs::read_to_string(out.join("scores.csv")).unwrap();
    csv.lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect()
}

fn bundle(p: &Path) -> Bundle {
    Bundle::read(&std::fs::read(p).unwrap()).unwrap()
}

fn mean(v: &[f32]) -> f32 {
    v.iter().sum::<f32>() / v.len() as f32
}

#[test]
fn a_model_learns_from_new_normals_and_is_calibrated_by_a_rule() {
    let root = temp("learn-data");
    let backbone = fixture("tiny/hf.safetensors");
    let train = folder(&root, "train", 8, 0.4, false, 1);
    // Normal images under another "lighting": the model flags them at first.
    let shifted = folder(&root, "shifted", 6, 1.3, false, 2);
    let good = folder(&root, "good", 5, 0.4, false, 3);
    let spot = folder(&root, "spot", 4, 0.4, true, 4);
    let out = temp("learn-out");
    let model = out.join("model.safetensors");
    let m = model.to_str().unwrap();
    let fit = |extra: &[&str]| {
        let mut args = vec!["fit", "--backbone", &backbone, "--out", m, "--size", "64"];
        args.extend(["--holdout", "0.25", "--no-cache"]);
        args.extend(extra);
        run(&args)
    };
    ok(&fit(&[
        "--normal",
        train.to_str().unwrap(),
        "--epochs",
        "4",
    ]));
    let v1 = bundle(&model);
    assert_eq!(v1.meta.version(), 1);
    assert_eq!(v1.meta.history[0].step, Step::Fit);
    assert_eq!(v1.meta.calibration.rule(), Rule::Quantile(0.99));
    let before = scores(&backbone, &model, &shifted, &out.join("s1"));

    // Go on learning from the shifted normals, at the same path: the first version is kept.
    let err = ok(&fit(&[
        "--resume",
        m,
        "--normal",
        shifted.to_str().unwrap(),
        "--epochs",
        "8",
    ]));
    assert!(
        err.contains("resuming") && err.contains("model.v1.safetensors"),
        "{err}"
    );
    let kept = bundle(&out.join("model.v1.safetensors"));
    assert_eq!(kept.meta, v1.meta, "the first version is kept as it was");
    let v2 = bundle(&model);
    assert_eq!(v2.meta.version(), 2);
    let learn = &v2.meta.history[1];
    assert_eq!(
        (learn.step, learn.images, learn.epochs),
        (Step::Learn, 6, Some(8))
    );
    // The spec is the model's, with the flag given (epochs) over it.
    assert_eq!(v2.meta.spec.epochs, 8);
    assert_eq!(v2.meta.spec.size, v1.meta.spec.size);
    let mut prints: Vec<String> = (0..6)
        .map(|i| fingerprint(&std::fs::read(shifted.join(format!("{i:03}.png"))).unwrap()))
        .collect();
    let mut learned = learn.normal.clone();
    prints.sort();
    learned.sort();
    assert_eq!(learned, prints, "the files' fingerprints, not the images");
    assert_eq!(v2.meta.train_images, v1.meta.train_images + 4);
    let after = scores(&backbone, &model, &shifted, &out.join("s2"));
    // A few steps on a tiny random backbone: every one lower, not by much (the library's test
    // of fine-tuning shows the size of it on grids).
    assert!(
        after.iter().zip(&before).all(|(a, b)| a < b) && mean(&after) < 0.97 * mean(&before),
        "learning from them lowers their scores: {before:?} → {after:?}"
    );

    // What makes another model is refused, naming it.
    let o = fit(&[
        "--resume",
        m,
        "--normal",
        shifted.to_str().unwrap(),
        "--hidden",
        "8",
    ]);
    fails_with(&o, &["hidden", "fit a new model"]);

    // Calibrate by F1 on normal and anomalous folders: the threshold the library's rule picks
    // on the scores `score` writes.
    let normal = scores(&backbone, &model, &good, &out.join("g"));
    let anomalous = scores(&backbone, &model, &spot, &out.join("a"));
    // `calibrate` of the model on the good images (and the anomalous ones, when given) by `rule`.
    let calibrate = |rule: &str, anomalous: bool, out: &Path| {
        let mut args = vec!["calibrate", "--backbone", &backbone, "--model", m];
        args.extend(["--normal", good.to_str().unwrap(), "--rule", rule]);
        if anomalous {
            args.extend(["--anomalous", spot.to_str().unwrap()]);
        }
        args.extend(["--out", out.to_str().unwrap()]);
        run(&args)
    };
    let m3 = out.join("f1.safetensors");
    let err = ok(&calibrate("f1", true, &m3));
    let expected = choose(Rule::F1, &normal, &anomalous).unwrap();
    let v3 = bundle(&m3);
    assert_eq!(v3.meta.calibration.threshold, expected.threshold, "{err}");
    assert_eq!(v3.meta.calibration.rule(), Rule::F1);
    assert_eq!(v3.meta.calibration.anomalous_images, 4);
    assert_eq!(v3.meta.history.last().unwrap().step, Step::Calibrate);
    assert_eq!(v3.meta.history.last().unwrap().anomalous.len(), 4);
    assert_eq!(
        v3.tensors.tensors, v2.tensors.tensors,
        "calibration changes no tensor"
    );

    // A false-alarm rate on too few images is set, and says how many it needs.
    let m4 = out.join("fpr.safetensors");
    let err = ok(&calibrate("fpr:0.01", false, &m4));
    assert!(err.contains("at least 100 normal images"), "{err}");
    let max = normal.iter().copied().fold(f32::MIN, f32::max);
    assert_eq!(bundle(&m4).meta.calibration.threshold, max);
    fails_with(
        &calibrate("recall:0.9", false, &m4),
        &["recall:0.9", "anomalous"],
    );
    fails_with(&calibrate("fpr:3", false, &m4), &["fpr", "between 0 and 1"]);
}

#[test]
fn the_same_marks_make_the_same_model_as_the_same_folder() {
    let root = temp("learn-marks");
    let backbone = fixture("tiny/hf.safetensors");
    let train = folder(&root, "train", 6, 0.4, false, 5);
    let batch = folder(&root, "batch", 5, 1.1, false, 6);
    let out = temp("learn-marks-out");
    let m1 = out.join("m1.safetensors");
    let fit = |extra: &[&str], to: &Path| {
        let mut args = vec!["fit", "--backbone", &backbone, "--size", "64", "--no-cache"];
        args.extend(["--out", to.to_str().unwrap()]);
        args.extend(extra);
        ok(&run(&args));
    };
    fit(&["--normal", train.to_str().unwrap(), "--epochs", "2"], &m1);

    // Three of the batch marked normal, one anomalous, under other names in another folder.
    let copies = root.join("copies");
    std::fs::create_dir_all(copies.join("sub")).unwrap();
    let picked = root.join("picked");
    std::fs::create_dir_all(&picked).unwrap();
    let mut marks = Vec::new();
    for (i, mark) in [
        (0, Mark::Normal),
        (2, Mark::Normal),
        (3, Mark::Anomalous),
        (4, Mark::Normal),
    ] {
        let bytes = std::fs::read(batch.join(format!("{i:03}.png"))).unwrap();
        std::fs::write(copies.join(format!("sub/renamed-{i}.png")), &bytes).unwrap();
        if mark == Mark::Normal {
            std::fs::write(picked.join(format!("{i:03}.png")), &bytes).unwrap();
        }
        marks.push(Marked {
            file: format!("{i:03}.png"),
            slice: None,
            fingerprint: fingerprint(&bytes),
            mark,
        });
    }
    // An unmarked file among the copies is left alone.
    std::fs::copy(batch.join("001.png"), copies.join("other.png")).unwrap();
    let csv = root.join("marks.csv");
    std::fs::write(&csv, to_csv(&marks)).unwrap();

    let (a, b) = (out.join("a.safetensors"), out.join("b.safetensors"));
    let common = [
        "--resume",
        m1.to_str().unwrap(),
        "--epochs",
        "3",
        "--holdout",
        "0.34",
    ];
    let mut with_marks = common.to_vec();
    with_marks.extend([
        "--marks",
        csv.to_str().unwrap(),
        "--images",
        copies.to_str().unwrap(),
    ]);
    fit(&with_marks, &a);
    let mut with_folder = common.to_vec();
    with_folder.extend(["--normal", picked.to_str().unwrap()]);
    fit(&with_folder, &b);
    let (a, b) = (bundle(&a), bundle(&b));
    assert_eq!(a.meta.history[1].images, 3);
    assert_eq!(a.meta, b.meta);
    assert_eq!(a.tensors.tensors, b.tensors.tensors);

    // A marked file that is not there is named.
    std::fs::remove_file(copies.join("sub/renamed-2.png")).unwrap();
    let mut args = vec!["fit", "--backbone", &backbone, "--out", "/nonexistent/x"];
    args.extend(with_marks.iter().copied());
    fails_with(
        &run(&args),
        &["002.png", &marks[1].fingerprint, "not found"],
    );
}

#[test]
fn a_knn_model_adds_the_new_normals_to_its_bank() {
    let root = temp("learn-knn");
    let backbone = fixture("tiny/hf.safetensors");
    let train = folder(&root, "train", 6, 0.4, false, 7);
    let shifted = folder(&root, "shifted", 4, 1.3, false, 8);
    let out = temp("learn-knn-out");
    let (m1, m2) = (out.join("m1.safetensors"), out.join("m2.safetensors"));
    let common = [
        "--backbone",
        &backbone,
        "--size",
        "64",
        "--no-cache",
        "--holdout",
        "0.25",
    ];
    let mut args = vec![
        "fit",
        "--method",
        "knn",
        "--normal",
        train.to_str().unwrap(),
    ];
    args.extend(common);
    args.extend(["--out", m1.to_str().unwrap()]);
    ok(&run(&args));
    let before = scores(&backbone, &m1, &shifted, &out.join("s1"));
    let mut args = vec![
        "fit",
        "--resume",
        m1.to_str().unwrap(),
        "--normal",
        shifted.to_str().unwrap(),
    ];
    args.extend(common);
    args.extend(["--out", m2.to_str().unwrap()]);
    ok(&run(&args));
    let (b1, b2) = (bundle(&m1), bundle(&m2));
    // 64² at patch 16: 16 patches per image; 3 of the 4 new images train (one is held out).
    let (n1, n2) = (b1.meta.bank_size.unwrap(), b2.meta.bank_size.unwrap());
    assert_eq!(
        n2,
        n1 + 3 * 16,
        "the bank grows by the new training images' patches"
    );
    let learn = &b2.meta.history[1];
    assert_eq!((learn.step, learn.epochs), (Step::Learn, None));
    let after = scores(&backbone, &m2, &shifted, &out.join("s2"));
    assert!(mean(&after) < mean(&before), "{before:?} → {after:?}");
}
