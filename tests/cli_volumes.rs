//! Volumes through the CLI: a model scores NIfTI volumes as it scores their slices saved as PNGs,
//! `fit` holds out whole volumes for calibration, `score` writes a row per slice and per volume and a NIfTI anomaly map on the input's
//! grid, `eval` reads NIfTI masks and BMAD's layout, `--protocol paper` evaluates at 240×240; and
//! the refusals a window makes (a CT window on a picture, "as is" on a float volume).
#![cfg(not(target_arch = "wasm32"))]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dino_ar::infra::rng::Rng;
use dino_ar::volume::{Plane, SliceWriter, Volume, nifti};

const SIDE: usize = 64;
const SLICES: usize = 4;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dino-ar"))
        .args(args)
        .output()
        .expect("run dino-ar")
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "stderr: {err}");
    err
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dino-ar-volumes-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn backbone() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tiny/hf.safetensors")
        .to_string_lossy()
        .into_owned()
}

/// One 8-bit slice (row-major): stripes and noise, a bright square where `spot` says.
fn slice(rng: &mut Rng, spot: Option<(usize, usize)>) -> (Vec<u8>, Vec<bool>) {
    let phase = rng.next_f64() * 6.0;
    let mut px = Vec::with_capacity(SIDE * SIDE);
    let mut mask = Vec::with_capacity(SIDE * SIDE);
    for y in 0..SIDE {
        for x in 0..SIDE {
            let inside = spot
                .is_some_and(|(sx, sy)| (sx..sx + 14).contains(&x) && (sy..sy + 14).contains(&y));
            let v = 110.0 + 60.0 * (x as f64 * 0.4 + phase).sin() + 20.0 * rng.next_f64();
            px.push(if inside { 250 } else { v as u8 });
            mask.push(inside);
        }
    }
    (px, mask)
}

/// An oblique, flipped grid: the slices must come out as they went in all the same.
fn grid(values: Vec<f32>) -> Volume {
    let (s, c) = (20f64.to_radians().sin(), 20f64.to_radians().cos());
    Volume {
        dims: [SIDE, SIDE, SLICES],
        data: values,
        affine: [[-c, s, 0., 5.], [s, c, 0., 6.], [0., 0., 3., 7.]],
        space_code: 1,
        modality: None,
        eight_bit: false,
        notes: vec![],
    }
}

/// A volume whose axial slices (as the library shows them) are `slices`.
fn volume(slices: &[Vec<f32>]) -> Volume {
    let empty = grid(vec![0.0; SIDE * SIDE * SLICES]);
    let mut w = SliceWriter::new(empty.geometry(Plane::Axial));
    for (n, s) in slices.iter().enumerate() {
        w.put(n, s);
    }
    grid(w.into_data())
}

/// NIfTI bytes: float32 (`write_gz`), or uint8 by rewriting its header's type and its voxels.
fn nifti_bytes(v: &Volume, eight_bit: bool) -> Vec<u8> {
    let gz = nifti::write_gz(v, "test");
    if !eight_bit {
        return gz;
    }
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut plain)
        .unwrap();
    plain[70..72].copy_from_slice(&2i16.to_le_bytes());
    plain[72..74].copy_from_slice(&8i16.to_le_bytes());
    plain.truncate(352);
    plain.extend(v.data.iter().map(|&x| x as u8));
    plain
}

fn png(path: &Path, px: &[u8]) {
    image::GrayImage::from_raw(SIDE as u32, SIDE as u32, px.to_vec())
        .unwrap()
        .save(path)
        .unwrap();
}

/// The same slices twice: as uint8 NIfTI volumes (`vol`) and as PNG files (`png`), in the MVTec
/// layout with masks (NIfTI for the volumes).
fn datasets(root: &Path) -> (PathBuf, PathBuf) {
    let (vol, pngs) = (root.join("vol"), root.join("png"));
    for base in [&vol, &pngs] {
        for dir in ["train/good", "test/good", "test/spot", "ground_truth/spot"] {
            std::fs::create_dir_all(base.join(dir)).unwrap();
        }
    }
    let mut rng = Rng::new(11);
    let mut make = |dir: &str, name: &str, spots: bool| {
        let mut slices = Vec::new();
        let mut masks = Vec::new();
        for n in 0..SLICES {
            let spot = (spots && n % 2 == 1).then_some((5 + 10 * n, 20));
            let (px, mask) = slice(&mut rng, spot);
            png(&pngs.join(format!("{dir}/{name}_{n}.png")), &px);
            if spots {
                let m: Vec<u8> = mask.iter().map(|&b| if b { 255 } else { 0 }).collect();
                png(
                    &pngs.join(format!("ground_truth/spot/{name}_{n}_mask.png")),
                    &m,
                );
            }
            slices.push(px.iter().map(|&v| v as f32).collect::<Vec<f32>>());
            masks.push(mask.iter().map(|&b| b as u8 as f32).collect::<Vec<f32>>());
        }
        std::fs::write(
            vol.join(format!("{dir}/{name}.nii")),
            nifti_bytes(&volume(&slices), true),
        )
        .unwrap();
        if spots {
            std::fs::write(
                vol.join(format!("ground_truth/spot/{name}_mask.nii.gz")),
                nifti_bytes(&volume(&masks), false),
            )
            .unwrap();
        }
    };
    for i in 0..3 {
        make("train/good", &format!("n{i}"), false);
    }
    make("test/good", "g", false);
    make("test/spot", "s", true);
    // The PNG run has no normal slices in test/spot: the volume's unmarked slices are normal,
    // so they go to test/good there.
    for n in (0..SLICES).step_by(2) {
        std::fs::rename(
            pngs.join(format!("test/spot/s_{n}.png")),
            pngs.join(format!("test/good/s_{n}.png")),
        )
        .unwrap();
        std::fs::remove_file(pngs.join(format!("ground_truth/spot/s_{n}_mask.png"))).unwrap();
    }
    (vol, pngs)
}

fn fit(normal: &Path, model: &Path, extra: &[&str]) -> String {
    let backbone = backbone();
    let mut args = vec![
        "fit",
        "--backbone",
        &backbone,
        "--normal",
        normal.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
        "--size",
        "64",
        "--epochs",
        "3",
        "--holdout",
        "0.25",
        "--no-cache",
    ];
    args.extend(extra);
    ok(&run(&args))
}

fn eval(model: &Path, data: &Path, json: &Path, extra: &[&str]) -> serde_json::Value {
    let backbone = backbone();
    let mut args = vec![
        "eval",
        "--backbone",
        &backbone,
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ];
    args.extend(extra);
    ok(&run(&args));
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
}

/// `dino-ar score` of `inputs` with `model` into `out`; its scores.csv.
fn score(model: &Path, inputs: &[&Path], out: &Path) -> String {
    let backbone = backbone();
    let mut args = vec![
        "score",
        "--backbone",
        &backbone,
        "--model",
        model.to_str().unwrap(),
    ];
    args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
    args.extend(["--out", out.to_str().unwrap()]);
    ok(&run(&args));
    std::fs::read_to_string(out.join("scores.csv")).unwrap()
}

#[test]
fn volumes_fit_score_and_eval_as_their_slices_do() {
    let root = temp("data");
    let (vol, pngs) = datasets(&root);
    let out = temp("out");
    let (m_vol, m_png) = (out.join("vol.safetensors"), out.join("png.safetensors"));
    let err = fit(&vol.join("train/good"), &m_vol, &[]);
    assert!(err.contains("4 of 4 axial slices"), "{err}");
    // A quarter of 12 slices is 3: one whole volume (4 slices) is held out, never a volume's
    // slices on both sides of the split.
    assert!(err.contains("fit on 8 images (4 held out)"), "{err}");
    let err = fit(&pngs.join("train/good"), &m_png, &[]);
    assert!(err.contains("fit on 9 images (3 held out)"), "{err}");
    // The same model scores the volumes and their slices saved as PNGs alike: a slice through
    // the "as is" window is the decoded picture, value for value.
    let r_vol = eval(&m_vol, &vol, &out.join("vol.json"), &[]);
    let r_png = eval(&m_vol, &pngs, &out.join("png.json"), &[]);
    for (a, b) in r_vol["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .zip(r_png["metrics"].as_array().unwrap())
    {
        assert_eq!(a["key"], b["key"]);
        let (x, y) = (a["value"].as_f64().unwrap(), b["value"].as_f64().unwrap());
        assert!(
            (x - y).abs() < 1e-5,
            "{}: {x} (volumes) vs {y} (PNG)",
            a["key"]
        );
    }
    for k in ["images", "anomalous_images", "pixels", "anomalous_pixels"] {
        assert_eq!(r_vol["counts"][k], r_png["counts"][k], "{k}");
    }
    assert_eq!(r_vol["counts"]["images"], 8);
    assert_eq!(r_vol["counts"]["anomalous_images"], 2);
    assert_eq!(r_vol["counts"]["pixels"], 8 * SIDE * SIDE);

    let paper = eval(
        &m_vol,
        &vol,
        &out.join("paper.json"),
        &["--protocol", "paper"],
    );
    assert_eq!(paper["protocol"], "paper");
    assert_eq!(paper["counts"]["pixels"], 8 * 240 * 240);

    // Score: a row per slice, one for the volume, a NIfTI map on the input's grid, overlays.
    let scores = out.join("scores");
    let spot = vol.join("test/spot/s.nii");
    let csv = score(&m_vol, &[&spot], &scores);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "file,score,score_top1,threshold,verdict,slice,worst_slice,note"
    );
    assert_eq!(lines.len(), 1 + SLICES + 1, "{csv}");
    let field = |line: &str, k: usize| line.split(',').nth(k).unwrap().to_string();
    let slice_scores: Vec<f32> = lines[1..=SLICES]
        .iter()
        .map(|l| field(l, 1).parse().unwrap())
        .collect();
    let worst: usize = field(lines[SLICES + 1], 6).parse().unwrap();
    let best = slice_scores.iter().copied().fold(f32::MIN, f32::max);
    assert_eq!(slice_scores[worst], best);
    assert_eq!(field(lines[SLICES + 1], 1).parse::<f32>().unwrap(), best);
    assert!(worst % 2 == 1, "the worst slice has the spot: {csv}");
    let map = nifti::read(&std::fs::read(scores.join("s_anomaly.nii.gz")).unwrap()).unwrap();
    let input = nifti::read(&std::fs::read(&spot).unwrap()).unwrap();
    assert_eq!(map.dims, input.dims);
    for r in 0..3 {
        for c in 0..4 {
            assert!((map.affine[r][c] - input.affine[r][c]).abs() < 1e-5);
        }
    }
    let g = map.geometry(Plane::Axial);
    let worst_map = map.slice(&g, worst);
    assert_eq!(worst_map.iter().copied().fold(f32::MIN, f32::max), best);
    let overlays = std::fs::read_dir(scores.join("s_overlays"))
        .unwrap()
        .count();
    assert_eq!(overlays, SLICES);
}

#[test]
fn windows_refuse_what_they_cannot_read() {
    let root = temp("windows");
    let (vol, pngs) = datasets(&root);
    let out = temp("windows-out");
    // A float volume under "as is", beside a truncated one: both named, the pictures fit.
    let mixed = root.join("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    for f in std::fs::read_dir(pngs.join("train/good")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, mixed.join(f.file_name().unwrap())).unwrap();
    }
    let floats = volume(&vec![vec![-500.0; SIDE * SIDE]; SLICES]);
    std::fs::write(mixed.join("ct.nii.gz"), nifti_bytes(&floats, false)).unwrap();
    let whole = nifti_bytes(&floats, true);
    std::fs::write(mixed.join("cut.nii"), &whole[..whole.len() / 2]).unwrap();
    let err = fit(&mixed, &out.join("m.safetensors"), &["--window", "as-is"]);
    assert!(
        err.contains("ct.nii.gz") && err.contains("not 8-bit"),
        "{err}"
    );
    assert!(
        err.contains("cut.nii") && err.contains("truncated"),
        "{err}"
    );
    assert!(err.contains("skipped 2 of 14 files"), "{err}");
    // The default window (`auto`) reads any input: the float volume fits by its percentiles
    // beside the pictures; only the truncated file is skipped.
    let err = fit(&mixed, &out.join("auto.safetensors"), &[]);
    assert!(err.contains("skipped 1 of 14 files"), "{err}");
    assert!(
        err.contains(&format!("{SLICES} of {SLICES} axial slices")),
        "{err}"
    );
    // One volume given as a file, not a folder, with the defaults: a first run succeeds.
    let err = fit(&mixed.join("ct.nii.gz"), &out.join("one.safetensors"), &[]);
    assert!(err.contains("fit on"), "{err}");

    // A CT-windowed model: the volumes fit, a picture is refused in its row.
    let ct = out.join("ct.safetensors");
    let err = fit(&vol.join("train/good"), &ct, &["--window", "ct:127.5,255"]);
    assert!(err.contains("fit on 8 images (4 held out)"), "{err}");
    let backbone = backbone();
    let scores = out.join("scores");
    let picture = pngs.join("test/good/g_0.png");
    let csv = score(&ct, &[&picture, &vol.join("test/good/g.nii")], &scores);
    assert!(csv.contains("Hounsfield"), "{csv}");
    assert_eq!(csv.lines().count(), 1 + 1 + SLICES + 1, "{csv}");

    let o = run(&[
        "fit",
        "--backbone",
        &backbone,
        "--normal",
        "x",
        "--out",
        "y",
        "--window",
        "ct:40",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("ct:CENTRE,WIDTH"),
        "{err}"
    );
}

#[test]
fn bmad_layouts_evaluate() {
    // Brain: {train,test}/{good,Ungood}/{img,label}; a picture-level split without img/.
    let root = temp("bmad");
    let mut rng = Rng::new(5);
    for dir in [
        "train/good/img",
        "test/good/img",
        "test/Ungood/img",
        "test/Ungood/label",
        "valid/good",
        "valid/Ungood",
    ] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    for i in 0..6 {
        png(
            &root.join(format!("train/good/img/{i:05}_60.png")),
            &slice(&mut rng, None).0,
        );
    }
    for i in 0..2 {
        png(
            &root.join(format!("test/good/img/{i:05}_61.png")),
            &slice(&mut rng, None).0,
        );
        let (px, mask) = slice(&mut rng, Some((20, 20)));
        png(&root.join(format!("test/Ungood/img/{i:05}_62.png")), &px);
        let m: Vec<u8> = mask.iter().map(|&b| if b { 255 } else { 0 }).collect();
        png(&root.join(format!("test/Ungood/label/{i:05}_62.png")), &m);
        png(
            &root.join(format!("valid/good/{i}.png")),
            &slice(&mut rng, None).0,
        );
        png(
            &root.join(format!("valid/Ungood/{i}.png")),
            &slice(&mut rng, Some((9, 9))).0,
        );
        // A validation split with masks, for `fit --valid`.
        for dir in [
            "valid_px/good/img",
            "valid_px/Ungood/img",
            "valid_px/Ungood/label",
        ] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        png(
            &root.join(format!("valid_px/good/img/{i}.png")),
            &slice(&mut rng, None).0,
        );
        let (px, mask) = slice(&mut rng, Some((30, 12)));
        png(&root.join(format!("valid_px/Ungood/img/{i}.png")), &px);
        let m: Vec<u8> = mask.iter().map(|&b| if b { 255 } else { 0 }).collect();
        png(&root.join(format!("valid_px/Ungood/label/{i}.png")), &m);
    }
    let out = temp("bmad-out");
    let model = out.join("m.safetensors");
    let err = fit(&root.join("train/good"), &model, &[]);
    assert!(err.contains("fit on 4 images (2 held out)"), "{err}");
    let r = eval(&model, &root, &out.join("test.json"), &[]);
    assert_eq!(r["counts"]["images"], 4);
    assert_eq!(r["counts"]["anomalous_without_mask"], 0);
    assert_eq!(r["counts"]["per_category"]["Ungood"], 2);
    // valid/ holds pictures only (image level): pixel metrics cannot be computed without masks.
    let backbone = backbone();
    let o = run(&[
        "eval",
        "--backbone",
        &backbone,
        "--model",
        model.to_str().unwrap(),
        "--data",
        root.to_str().unwrap(),
        "--split",
        "valid",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no mask for") && err.contains("valid/Ungood/0.png"),
        "{err}"
    );

    // `fit --valid`: the epoch with the best validation pixel AP is kept and recorded.
    let chosen = out.join("chosen.safetensors");
    let valid = root.join("valid_px");
    let err = fit(
        &root.join("train/good"),
        &chosen,
        &["--valid", valid.to_str().unwrap()],
    );
    assert!(
        err.contains("validation: 4 images") && err.contains("kept epoch"),
        "{err}"
    );
    let bundle = dino_ar::bundle::Bundle::read(&std::fs::read(&chosen).unwrap()).unwrap();
    let v = bundle
        .meta
        .validation
        .expect("the bundle records the choice");
    assert!(
        (1..=3).contains(&v.epoch) && (0.0..=1.0).contains(&v.validation_pixel_ap),
        "{v:?}"
    );
    assert_eq!(v.images, 4);
    let o = run(&[
        "fit",
        "--backbone",
        &backbone,
        "--normal",
        root.join("train/good").to_str().unwrap(),
        "--out",
        out.join("k.safetensors").to_str().unwrap(),
        "--method",
        "knn",
        "--valid",
        valid.to_str().unwrap(),
        "--size",
        "64",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("kNN baseline has no epochs"),
        "{err}"
    );
}

#[test]
fn dicom_series_fit_and_score_as_volumes() {
    let dicom = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dicom");
    let out = temp("dicom");
    let model = out.join("ct.safetensors");
    // The five files of the fixture series are one volume (sorted by position, not by name).
    let err = fit(
        &dicom.join("series"),
        &model,
        &["--window", "ct-soft-tissue"],
    );
    assert!(
        err.contains("series ") && err.contains("axial slices"),
        "{err}"
    );
    let scores = out.join("scores");
    let inputs = [
        dicom.join("series"),
        dicom.join("MR_small.dcm"),
        dicom.join("MR_small_jpeg_ls_lossless.dcm"),
    ];
    let csv = score(&model, &inputs.each_ref().map(|p| p.as_path()), &scores);
    let volume_rows: Vec<&str> = csv
        .lines()
        .filter(|l| l.contains(",,") && !l.contains("error"))
        .collect();
    assert!(
        csv.contains("JPEG-LS"),
        "the JPEG-LS file is named in its row: {csv}"
    );
    assert!(
        csv.contains("MR volume under the model's CT window"),
        "an MR file under a CT window is warned about: {csv}"
    );
    assert!(volume_rows.len() >= 2, "{csv}");
    let map = nifti::read(&std::fs::read(scores.join("series_anomaly.nii.gz")).unwrap()).unwrap();
    assert_eq!(
        map.dims,
        [10, 12, 5],
        "the series' map on its voxel grid (columns, rows, slices)"
    );
}
