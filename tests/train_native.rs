//! Training the AR head on synthetic normal grids, and scoring a planted anomaly.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::ops::ControlFlow;

use burn::tensor::{Device, Tensor, TensorData};
use common::synthetic::{C, H, W, normal_grids, small_spec};
use dino_ar::score::patch_scores;
use dino_ar::spec::FitSpec;
use dino_ar::train::{Progress, TrainError, fit};

#[test]
fn fitting_lowers_the_loss_and_reports_every_step() {
    let device = Device::flex();
    let n = 24;
    let grids = Tensor::from_data(TensorData::new(normal_grids(n, 1), [n, C, H, W]), &device);
    let spec = FitSpec {
        epochs: 40,
        batch_size: 8,
        ..small_spec()
    };
    let mut seen: Vec<Progress> = Vec::new();
    let head = pollster::block_on(fit(grids, &spec, |p| {
        seen.push(p);
        ControlFlow::Continue(())
    }))
    .unwrap();
    assert_eq!(seen.len(), 40 * 3, "one report per step");
    assert_eq!((seen[0].epoch, seen[0].step, seen[0].steps), (1, 1, 3));
    let first: f32 = seen[..3].iter().map(|p| p.loss).sum::<f32>() / 3.0;
    let last: f32 = seen[seen.len() - 3..].iter().map(|p| p.loss).sum::<f32>() / 3.0;
    assert!(last < 0.3 * first, "loss went from {first} to {last}");

    // A planted anomaly in an unseen normal grid stands out in the patch scores.
    let mut test = normal_grids(1, 99);
    let (ay, ax) = (5, 4);
    for c in 0..C {
        test[c * H * W + ay * W + ax] += if c % 2 == 0 { 2.5 } else { -2.5 };
    }
    let x = Tensor::from_data(TensorData::new(test, [1, C, H, W]), &device);
    let scores = patch_scores(head.forward(x.clone()), x)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    // The defect is predicted from clean context, so it scores far above every position before
    // it in raster order (those are untouched by it, by causality).
    let at = ay * W + ax;
    let before = scores[..at].iter().copied().fold(0.0, f32::max);
    assert!(
        scores[at] > 5.0 * before,
        "defect {} vs clean context max {before}",
        scores[at]
    );
}

#[test]
fn fitting_can_be_cancelled_and_checks_its_input() {
    let device = Device::flex();
    let grids = Tensor::from_data(TensorData::new(normal_grids(4, 2), [4, C, H, W]), &device);
    let spec = FitSpec {
        epochs: 5,
        batch_size: 2,
        ..small_spec()
    };
    let mut calls = 0;
    let r = pollster::block_on(fit(grids.clone(), &spec, |_| {
        calls += 1;
        if calls == 2 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }));
    assert_eq!(r.err(), Some(TrainError::Cancelled));
    assert_eq!(calls, 2);
    let wrong = FitSpec { kernel: 4, ..spec };
    let e = pollster::block_on(fit(grids, &wrong, |_| ControlFlow::Continue(())))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("`kernel`") && e.contains("odd"), "{e}");
}

/// Grids kept on the host (what a set too large for one GPU buffer becomes) train to the same head
/// as the same grids on the device: the batches are the same rows in the same order, noise and all.
#[test]
fn grids_kept_on_the_host_train_the_same_head() {
    use dino_ar::grids::Grids;
    let device = Device::flex();
    let n = 10;
    let values = normal_grids(n, 3);
    let spec = FitSpec {
        epochs: 3,
        batch_size: 4,
        noise_prob: 0.5,
        ..small_spec()
    };
    let on_device = Tensor::from_data(TensorData::new(values.clone(), [n, C, H, W]), &device);
    let on_host = Grids::on_host(values, [n, C, H, W], &device);
    assert!(on_host.on_the_host() && !Grids::from(on_device.clone()).on_the_host());
    let mut losses = [Vec::new(), Vec::new()];
    let [a, b] = &mut losses;
    let x = Tensor::from_data(TensorData::new(normal_grids(1, 7), [1, C, H, W]), &device);
    let predict = |grids: Grids, seen: &mut Vec<f32>| {
        let head = pollster::block_on(fit(grids, &spec, |p| {
            seen.push(p.loss);
            ControlFlow::Continue(())
        }))
        .unwrap();
        head.forward(x.clone())
            .into_data()
            .try_into_vec::<f32>()
            .unwrap()
    };
    let from_device = predict(on_device.into(), a);
    let from_host = predict(on_host, b);
    assert_eq!(losses[0].len(), 3 * 3);
    assert_eq!(losses[0], losses[1], "the same steps, the same losses");
    assert_eq!(from_device, from_host);
}
