//! The paper's head: one stack of raster-masked convolutions, ReLU between them.
//!
//! Layer 0 uses mask A (centre hidden), later layers mask B (centre kept): stacked, every output
//! depends only on inputs strictly before it in raster order. With a 3 × 3 kernel the stack can
//! never reach part of the past (the rows above to the right grow out of reach: the classic
//! PixelCNN blind spot), and with dilation 4 it skips the immediate neighbours too.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;

use super::masked::{MaskKind, MaskedConv2d};
use super::{ArConfig, LayerPlan, Offsets, spread};

/// `layers.{i}`: channels → hidden → … → channels, all at the variant's dilation.
pub fn plan(config: &ArConfig, dilation: usize) -> Vec<LayerPlan> {
    let n = config.layers;
    (0..n)
        .map(|i| LayerPlan {
            name: format!("layers.{i}"),
            widths: (
                if i == 0 {
                    config.channels
                } else {
                    config.hidden
                },
                if i + 1 == n {
                    config.channels
                } else {
                    config.hidden
                },
            ),
            kind: if i == 0 { MaskKind::A } else { MaskKind::B },
            dilation,
        })
        .collect()
}

/// The offsets the output reads: every layer's taps added up, from the input to the output.
pub fn field(plan: &[LayerPlan], kernel: usize) -> Offsets {
    plan.iter().fold(Offsets::from([(0, 0)]), |seen, l| {
        spread(&seen, &l.taps(kernel))
    })
}

#[derive(Module, Debug)]
pub struct RasterStack {
    pub layers: Vec<MaskedConv2d>,
}

impl RasterStack {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let last = self.layers.len() - 1;
        self.layers.iter().enumerate().fold(x, |x, (i, layer)| {
            let y = layer.forward(x);
            if i < last { relu(y) } else { y }
        })
    }

    /// The layers in [`plan`] order.
    pub fn layers(&self) -> Vec<&MaskedConv2d> {
        self.layers.iter().collect()
    }
}
