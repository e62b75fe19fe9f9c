//! Bad days: a full disk, a killed run. Nothing already written is lost, no file is left torn,
//! and `score --resume` finishes an interrupted run scoring every input exactly once.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cli::{bin, ok, temp};
use dino_ar::infra::rng::Rng;

fn backbone() -> String {
    common::cli::fixture("tiny/hf.safetensors")
}

/// `n` small striped PNGs in `dir`.
fn images(dir: &Path, n: usize, seed: u64) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = Rng::new(seed);
    for i in 0..n {
        let phase = rng.next_f64() * 6.0;
        let img = image::RgbImage::from_fn(48, 48, |x, _| {
            let v = (120.0 + 80.0 * (x as f64 * 0.5 + phase).sin()) as u8;
            image::Rgb([v, v, v])
        });
        img.save(dir.join(format!("{i:03}.png"))).unwrap();
    }
    dir.to_path_buf()
}

fn fit(normal: &Path, out: &Path, epochs: &str) -> Command {
    let mut c = bin();
    c.args([
        "fit",
        "--backbone",
        &backbone(),
        "--size",
        "32",
        "--hidden",
        "8",
    ])
    .args(["--no-cache", "--epochs", epochs, "--normal"])
    .arg(normal)
    .arg("--out")
    .arg(out);
    c
}

fn score(model: &Path, images: &Path, out: &Path, resume: bool) -> Command {
    let mut c = bin();
    c.args(["score", "--backbone", &backbone(), "--model"])
        .arg(model)
        .arg(images)
        .arg("--out")
        .arg(out);
    if resume {
        c.arg("--resume");
    }
    c
}

/// The files scores.csv has a row for, each once (a picture's row per input here).
fn scored_once(csv: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(csv).unwrap();
    assert!(text.ends_with('\n'), "every line whole: {text:?}");
    let files: Vec<String> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect();
    let mut unique = files.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        files.len(),
        "an input scored twice: {files:?}"
    );
    files
}

/// Kill `child` once `ready()` holds (or it ends by itself); whether it was killed midway.
fn kill_when(mut child: std::process::Child, ready: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if ready() {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("the run neither got there nor ended");
}

#[test]
fn a_killed_score_keeps_what_it_finished_and_resume_scores_the_rest_once() {
    let dir = temp("faults-kill-score");
    let normal = images(&dir.join("normal"), 6, 1);
    let batch = images(&dir.join("batch"), 120, 2);
    let model = dir.join("model.safetensors");
    ok(&fit(&normal, &model, "2").output().unwrap());
    let out = dir.join("scores");
    let csv = out.join("scores.csv");
    let rows = || {
        std::fs::read_to_string(&csv)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let child = score(&model, &batch, &out, false)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let killed = kill_when(child, || rows() > 10);
    let before = scored_once(&csv);
    assert!(
        killed && before.len() < 120,
        "killed midway: {} rows",
        before.len()
    );
    let err = ok(&score(&model, &batch, &out, true).output().unwrap());
    assert!(err.contains("resuming"), "{err}");
    let after = scored_once(&csv);
    assert_eq!(after.len(), 120, "every input once");
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "the finished rows stay"
    );
    // No temporary file is left behind by the writes that finished.
    let parts: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .collect();
    assert!(parts.len() <= 1, "{parts:?}");
}

#[test]
fn a_killed_fit_leaves_the_model_that_was_there() {
    let dir = temp("faults-kill-fit");
    let normal = images(&dir.join("normal"), 8, 3);
    let model = dir.join("model.safetensors");
    ok(&fit(&normal, &model, "1").output().unwrap());
    let before = std::fs::read(&model).unwrap();
    // Long enough to be killed while training (or while writing: either way, whole or old).
    let child = fit(&normal, &model, "400")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let killed = kill_when(child, || true);
    assert!(killed, "the fit ended before it could be killed");
    let now = std::fs::read(&model).unwrap();
    assert_eq!(now, before, "the model is the one that was there");
    dino_ar::bundle::Bundle::read(&now).unwrap();
}

/// A small tmpfs, unmounted when dropped (whatever happens in the test).
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(path: PathBuf, size: &str) -> Option<Self> {
        std::fs::create_dir_all(&path).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .ok()?;
        o.status.success().then_some(Self(path))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Fill `dir` to `leave` bytes short of full.
fn fill(dir: &Path, leave: u64) {
    let filler = dir.join("filler");
    let free = fs_free(dir);
    std::fs::write(&filler, vec![0u8; free.saturating_sub(leave) as usize]).unwrap();
}

fn fs_free(dir: &Path) -> u64 {
    let o = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_full_disk_is_an_error_naming_the_file_and_loses_nothing() {
    let dir = temp("faults-full");
    let normal = images(&dir.join("normal"), 6, 4);
    let batch = images(&dir.join("batch"), 12, 5);
    let model = dir.join("model.safetensors");
    ok(&fit(&normal, &model, "2").output().unwrap());
    let Some(disk) = SmallDisk::mount(dir.join("disk"), "4m") else {
        // Mounting needs root (CI and the development machines have it).
        panic!("cannot mount a tmpfs for the full-disk test: run the tests as root");
    };
    let here = disk.0.clone();

    // fit onto a full disk: an error naming the bundle, the model already there untouched.
    let kept = here.join("model.safetensors");
    std::fs::copy(&model, &kept).unwrap();
    let size = std::fs::metadata(&model).unwrap().len();
    fill(&here, size / 2);
    let o = fit(&normal, &kept, "1").output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("cannot write") && err.contains("model.safetensors"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&kept).unwrap(),
        std::fs::read(&model).unwrap()
    );
    std::fs::remove_file(here.join("filler")).unwrap();

    // score onto a disk that fills midway: an error naming the file; the rows written stay whole,
    // and with room again --resume scores each input once.
    let out = here.join("scores");
    std::fs::create_dir_all(&out).unwrap();
    fill(&here, 16 << 10);
    let o = score(&model, &batch, &out, false).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("cannot write") && err.contains(&*out.to_string_lossy()),
        "{err}"
    );
    let before = scored_once(&out.join("scores.csv"));
    assert!(before.len() < 12, "{before:?}");
    std::fs::remove_file(here.join("filler")).unwrap();
    ok(&score(&model, &batch, &out, true).output().unwrap());
    let after = scored_once(&out.join("scores.csv"));
    assert_eq!(after.len(), 12);
    assert_eq!(&after[..before.len()], &before[..]);
    drop(disk);
}

#[test]
fn a_file_past_the_size_limit_is_refused_unread_and_the_rest_are_scored() {
    let dir = temp("faults-huge-file");
    let normal = images(&dir.join("normal"), 4, 5);
    let model = dir.join("model.safetensors");
    ok(&fit(&normal, &model, "1").output().unwrap());
    let batch = images(&dir.join("batch"), 2, 6);
    // 2 GB that take no disk (a sparse file): refused from its size, before a byte is read (read,
    // its zeros would be refused as "not a supported file" instead).
    let huge = batch.join("huge.nii");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(2_000_000_000)
        .unwrap();
    let out = dir.join("scores");
    let err = ok(&score(&model, &batch, &out, false).output().unwrap());
    let csv = std::fs::read_to_string(out.join("scores.csv")).unwrap();
    let row = csv.lines().find(|l| l.contains("huge.nii")).unwrap_or("");
    assert!(
        row.contains("2.00 GB") && row.contains("MAX_FILE_BYTES"),
        "the huge file's row says why: {row}\n{err}"
    );
    assert_eq!(
        csv.lines().count(),
        4,
        "a header and a row per input: {csv}"
    );
}
