//! Going on learning: fine-tuning starts from the model's own weights, and learning new normal
//! images lowers their scores.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::ops::ControlFlow;

use burn::tensor::{Device, Tensor, TensorData};
use common::synthetic::{C, H, W, normal_grids, small_spec};
use dino_ar::ar::ArHead;
use dino_ar::score::patch_scores;
use dino_ar::spec::FitSpec;
use dino_ar::train::{fit, fit_validated};
use dino_ar::weights::{TensorFile, write_safetensors_f32};

fn grids(values: Vec<f32>, n: usize, device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values, [n, C, H, W]), device)
}

/// Normal grids under "another lighting": the same waves, brighter and faster in x.
fn shifted(n: usize, seed: u64) -> Vec<f32> {
    normal_grids(n, seed)
        .chunks(W)
        .enumerate()
        .flat_map(|(row, xs)| {
            let c = (row / H) % C;
            (0..W).map(move |x| 0.8 * xs[(x * 2) % W] + 0.3 + 0.05 * c as f32)
        })
        .collect()
}

fn as_file(head: &ArHead) -> TensorFile {
    let tensors = pollster::block_on(head.export()).unwrap();
    let list: Vec<(&str, Vec<usize>, &[f32])> = tensors
        .iter()
        .map(|(n, s, v)| (n.as_str(), s.clone(), v.as_slice()))
        .collect();
    TensorFile::from_bytes(&write_safetensors_f32(&list, None).unwrap()).unwrap()
}

fn mean_score(head: &ArHead, x: Tensor<4>) -> f32 {
    patch_scores(head.forward(x.clone()), x)
        .mean()
        .into_scalar()
}

#[test]
fn fine_tuning_starts_from_the_models_weights_and_learns_the_new_normals() {
    let device = Device::flex();
    let spec = FitSpec {
        epochs: 30,
        batch_size: 8,
        ..small_spec()
    };
    let base = grids(normal_grids(16, 1), 16, &device);
    let head = pollster::block_on(fit(base.clone(), &spec, |_| ControlFlow::Continue(()))).unwrap();
    let file = as_file(&head);

    let n = 8;
    let new = grids(shifted(n, 2), n, &device);
    let before = mean_score(&head, new.clone());
    let on_base = mean_score(&head, base.clone());
    assert!(
        before > 2.0 * on_base,
        "the new normals look anomalous first: {before} vs {on_base}"
    );

    // One batch of all of them, no noise: the first step's loss is the model's own loss on them.
    let tune = FitSpec {
        epochs: 20,
        batch_size: n,
        noise_prob: 0.0,
        ..spec.clone()
    };
    let mut losses = Vec::new();
    let (tuned, _) = pollster::block_on(fit_validated(
        new.clone().into(),
        &tune,
        None,
        Some(&file),
        |p| {
            losses.push(p.loss);
            ControlFlow::Continue(())
        },
    ))
    .unwrap();
    let own: f32 = (head.forward(new.clone()) - new.clone())
        .powi_scalar(2)
        .mean()
        .into_scalar();
    assert!(
        (losses[0] - own).abs() <= 1e-6 * own.max(1.0),
        "first step {} vs the model's loss {own}",
        losses[0]
    );
    // A fresh head would start far from there.
    let mut fresh = Vec::new();
    pollster::block_on(fit_validated(new.clone().into(), &tune, None, None, |p| {
        fresh.push(p.loss);
        ControlFlow::Break(())
    }))
    .unwrap_err();
    assert!((fresh[0] - own).abs() > 0.1 * own, "{} vs {own}", fresh[0]);

    let after = mean_score(&tuned, new.clone());
    assert!(
        after < 0.5 * before,
        "learning them lowers their scores: {before} → {after}"
    );
    // On them alone the model forgets the old normals: why the new ones *join* the normal set.
    let forgot = mean_score(&tuned, base.clone());
    assert!(forgot > 2.0 * on_base, "{on_base} → {forgot}");
    let joined = Tensor::cat(vec![base.clone(), new.clone()], 0);
    let (both, _) = pollster::block_on(fit_validated(
        joined.into(),
        &FitSpec {
            batch_size: 8,
            ..tune
        },
        None,
        Some(&file),
        |_| ControlFlow::Continue(()),
    ))
    .unwrap();
    let (new_after, old_after) = (mean_score(&both, new), mean_score(&both, base));
    assert!(new_after < 0.5 * before, "{before} → {new_after}");
    assert!(
        old_after < 1.5 * on_base,
        "old normals {on_base} → {old_after}"
    );
}
