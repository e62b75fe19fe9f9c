//! Model bundles (round trip, refusals) and the kNN memory bank.
#![cfg(not(target_arch = "wasm32"))]

use burn::tensor::{Device, Distribution, Tensor};
use dino_ar::bundle::{Bundle, BundleError, BundleMeta, FORMAT_VERSION};
use dino_ar::knn::MemoryBank;
use dino_ar::score::Calibration;
use dino_ar::spec::{FitSpec, Method};

fn meta() -> BundleMeta {
    BundleMeta {
        format_version: FORMAT_VERSION,
        spec: FitSpec::default(),
        calibration: Calibration {
            threshold: 0.5,
            quantile: 0.99,
            display_low: 0.1,
            display_high: 0.5,
            images: 3,
            rule: None,
            anomalous_images: 0,
            warning: None,
        },
        backbone_fingerprint: "0123456789abcdef".into(),
        embedding_dim: 8,
        train_images: 27,
        bank_size: None,
        validation: None,
        created_by: "test".into(),
        history: Vec::new(),
    }
}

#[test]
fn bundles_round_trip_and_refuse_other_backbones() {
    let tensors = vec![("layers.0.bias".to_string(), vec![2], vec![1.0, 2.0])];
    let bytes = Bundle::write(&meta(), &tensors).unwrap();
    let b = Bundle::read(&bytes).unwrap();
    assert_eq!(b.meta, meta());
    assert_eq!(
        b.tensors.get("layers.0.bias").unwrap().to_f32("x").unwrap(),
        vec![1.0, 2.0]
    );
    b.check_backbone("0123456789abcdef").unwrap();
    let e = b.check_backbone("ffffffffffffffff").unwrap_err();
    assert!(matches!(e, BundleError::OtherBackbone { .. }));
    assert!(e.to_string().contains("trained on another backbone"), "{e}");
}

#[test]
fn not_bundles_and_newer_bundles_are_named() {
    let plain = dino_ar::weights::write_safetensors_f32(&[("x", vec![1], &[0.0])], None).unwrap();
    let e = Bundle::read(&plain).err().unwrap();
    assert!(
        e.to_string().starts_with("not a dino-ar model bundle"),
        "{e}"
    );
    let e = Bundle::read(b"garbage bytes here").err().unwrap();
    assert!(e.to_string().contains("not a weights file"), "{e}");
    let mut newer = meta();
    newer.format_version = FORMAT_VERSION + 1;
    let bytes = Bundle::write(&newer, &[]).unwrap();
    assert!(matches!(
        Bundle::read(&bytes).err().unwrap(),
        BundleError::TooNew { .. }
    ));
}

#[test]
fn knn_scores_match_brute_force_across_chunks() {
    let device = Device::flex();
    device.seed(1);
    // 9000 bank patches: more than one similarity chunk.
    let train: Tensor<4> = Tensor::random([1, 4, 90, 100], Distribution::Normal(0.0, 1.0), &device);
    let bank = MemoryBank::from_grids(train.clone());
    assert_eq!(bank.len(), 9000);
    let test: Tensor<4> = Tensor::random([1, 4, 3, 5], Distribution::Normal(0.0, 1.0), &device);
    let got = bank
        .patch_scores(test.clone())
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();

    let host = |t: Tensor<4>| t.into_data().try_into_vec::<f32>().unwrap();
    let (b, q) = (host(train), host(test));
    let unit = |v: Vec<f32>| {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect::<Vec<_>>()
    };
    let patch = |data: &[f32], n: usize, i: usize| unit((0..4).map(|c| data[c * n + i]).collect());
    for (i, &score) in got.iter().enumerate() {
        let qi = patch(&q, 15, i);
        let best = (0..9000)
            .map(|j| {
                patch(&b, 9000, j)
                    .iter()
                    .zip(&qi)
                    .map(|(a, b)| a * b)
                    .sum::<f32>()
            })
            .fold(f32::MIN, f32::max);
        assert!(
            (score - (1.0 - best)).abs() < 1e-4,
            "patch {i}: {score} vs {}",
            1.0 - best
        );
    }
    // A patch that is in the bank scores ~0.
    let again = bank.patch_scores(Tensor::random(
        [1, 4, 1, 1],
        Distribution::Normal(0.0, 1.0),
        &device,
    ));
    assert!(again.into_data().try_into_vec::<f32>().unwrap()[0] >= -1e-5);
}

#[test]
fn format_one_bundles_still_load_with_their_settings() {
    // The first built-in sample's AR head (its metadata, with one tensor of the weights kept) and
    // the golden kNN bank were written by format 1.
    let ar = Bundle::read(include_bytes!(
        "fixtures/golden/format1_ar_bundle.safetensors"
    ))
    .unwrap();
    assert_eq!(ar.meta.format_version, 1);
    assert_eq!(ar.meta.method(), Method::Ar);
    assert_eq!(ar.meta.spec.hidden, 64);
    assert_eq!(ar.meta.spec.quantile, ar.meta.calibration.quantile);
    ar.meta.spec.validate().unwrap();
    let knn = Bundle::read(include_bytes!("fixtures/golden/knn_bundle.safetensors")).unwrap();
    assert_eq!(knn.meta.method(), Method::Knn);
    assert!(knn.meta.bank_size.unwrap() > 0);
}

#[test]
fn the_whole_spec_is_stored() {
    let mut m = meta();
    m.spec.epochs = 7;
    m.spec.noise_scale = 0.5;
    m.spec.holdout = 0.25;
    let b = Bundle::read(&Bundle::write(&m, &[]).unwrap()).unwrap();
    assert_eq!(b.meta.spec, m.spec);
    assert_eq!(b.meta.describe(), "ar (dilated)");
}

/// Every AR variant's head, trained, written into a bundle's tensors and read back, predicts
/// exactly what it predicted before: the plan names and shapes each layer the same way both ways.
#[test]
fn every_ar_variant_survives_its_bundle() {
    use burn::tensor::TensorData;
    use dino_ar::ar::{ArHead, Variant};
    use dino_ar::weights::TensorFile;
    let device = Device::flex();
    let (n, c, h, w) = (4, 5, 6, 7);
    let values = dino_ar::infra::rng::Rng::new(3).uniform(-1.0, 1.0, n * c * h * w);
    let grids: Tensor<4> = Tensor::from_data(TensorData::new(values, [n, c, h, w]), &device);
    for &variant in Variant::ALL {
        let spec = FitSpec {
            variant,
            hidden: 6,
            layers: 4,
            epochs: 2,
            batch_size: 2,
            ..FitSpec::default()
        };
        let head = pollster::block_on(dino_ar::train::fit(grids.clone(), &spec, |_| {
            std::ops::ControlFlow::Continue(())
        }))
        .unwrap();
        let tensors = pollster::block_on(head.export()).unwrap();
        let mut meta = meta();
        meta.spec = spec.clone();
        let bytes = Bundle::write(&meta, &tensors).unwrap();
        let bundle = Bundle::read(&bytes).unwrap();
        let loaded = ArHead::from_file(&bundle.tensors, &spec.ar_config(c), &device).unwrap();
        let host = |t: Tensor<4>| t.into_data().try_into_vec::<f32>().unwrap();
        assert_eq!(
            host(head.forward(grids.clone())),
            host(loaded.forward(grids.clone())),
            "{variant:?}"
        );
        // A bundle missing a layer names the tensor.
        let partial: Vec<_> = tensors.into_iter().skip(2).collect();
        let file = TensorFile::from_bytes(&Bundle::write(&meta, &partial).unwrap()).unwrap();
        let e = ArHead::from_file(&file, &spec.ar_config(c), &device).unwrap_err();
        assert!(e.to_string().contains(".weight"), "{variant:?}: {e}");
    }
}
