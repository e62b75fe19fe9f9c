//! A head without a blind spot: the gated two-stack PixelCNN (van den Oord et al., 2016,
//! "Conditional Image Generation with PixelCNN Decoders").
//!
//! A *vertical* stack sees only the rows above (its first layer hides the own row; later layers
//! may read their own row, which by then holds nothing but rows above). A *horizontal* stack sees
//! the same row to the left and, through a 1 × 1 link, the vertical stack at its own position.
//! Together every position before the prediction within reach is seen — no holes, unlike the
//! single stack of masked `k × k` convolutions ([`super::raster`]). Each block gates its features
//! (`tanh(a) · σ(b)`) and the horizontal stack is residual. Dilations 1, 2, 4 (repeating) widen
//! the reach while keeping it contiguous.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::{relu, sigmoid};

use super::masked::{MaskKind, MaskedConv2d};
use super::{ArConfig, LayerPlan, Offsets, spread};

/// Dilation of block `b`: 1, 2, 4, 1, 2, 4, … — sums of ±1, ±2, ±4 cover every offset up to ±7,
/// so the field stays contiguous however many blocks there are.
fn block_dilation(b: usize) -> usize {
    1 << (b % 3)
}

/// `v_in`, `h_in` (channels → hidden), `blocks.{b}.{v,h,v_to_h,h_out}` for the `layers − 2`
/// gated blocks, `out` (hidden → channels). `layers` counts the input pair, each block and `out`;
/// at least 3, since only a block links the vertical stack to the output.
pub fn plan(config: &ArConfig) -> Vec<LayerPlan> {
    let (c, h) = (config.channels, config.hidden);
    let layer = |name: String, widths, kind, dilation| LayerPlan {
        name,
        widths,
        kind,
        dilation,
    };
    let mut plan = vec![
        layer("v_in".into(), (c, h), MaskKind::VerticalA, 1),
        layer("h_in".into(), (c, h), MaskKind::HorizontalA, 1),
    ];
    for b in 0..config.layers.saturating_sub(2) {
        let d = block_dilation(b);
        plan.extend([
            layer(format!("blocks.{b}.v"), (h, 2 * h), MaskKind::VerticalB, d),
            layer(
                format!("blocks.{b}.h"),
                (h, 2 * h),
                MaskKind::HorizontalB,
                d,
            ),
            layer(
                format!("blocks.{b}.v_to_h"),
                (2 * h, 2 * h),
                MaskKind::Pointwise,
                1,
            ),
            layer(format!("blocks.{b}.h_out"), (h, h), MaskKind::Pointwise, 1),
        ]);
    }
    plan.push(layer("out".into(), (h, c), MaskKind::Pointwise, 1));
    plan
}

/// The offsets the output reads, following [`GatedStack::forward`] through the plan's taps.
pub fn field(plan: &[LayerPlan], kernel: usize) -> Offsets {
    let origin = Offsets::from([(0, 0)]);
    let taps = |i: usize| plan[i].taps(kernel);
    let mut v = spread(&origin, &taps(0));
    let mut h = spread(&origin, &taps(1));
    let blocks = (plan.len() - 3) / 4;
    for b in 0..blocks {
        let at = 2 + 4 * b;
        let vf = spread(&v, &taps(at));
        let mut hf = spread(&h, &taps(at + 1));
        hf.extend(spread(&vf, &taps(at + 2)));
        v = vf;
        h.extend(spread(&hf, &taps(at + 3)));
    }
    spread(&h, &taps(plan.len() - 1))
}

/// `tanh(a) · σ(b)` over the two halves of the channels.
fn gate(x: Tensor<4>) -> Tensor<4> {
    let c = x.dims()[1] / 2;
    let a = x.clone().narrow(1, 0, c);
    let b = x.narrow(1, c, c);
    a.tanh() * sigmoid(b)
}

#[derive(Module, Debug)]
pub struct GatedBlock {
    v: MaskedConv2d,
    h: MaskedConv2d,
    v_to_h: MaskedConv2d,
    h_out: MaskedConv2d,
}

impl GatedBlock {
    fn forward(&self, v: Tensor<4>, h: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let vf = self.v.forward(v);
        let hf = self.h.forward(h.clone()) + self.v_to_h.forward(vf.clone());
        (gate(vf), self.h_out.forward(gate(hf)) + h)
    }
}

#[derive(Module, Debug)]
pub struct GatedStack {
    v_in: MaskedConv2d,
    h_in: MaskedConv2d,
    blocks: Vec<GatedBlock>,
    out: MaskedConv2d,
}

impl GatedStack {
    /// The stack from its layers in [`plan`] order (`2 + 4 × blocks + 1` of them).
    pub fn from_layers(mut layers: Vec<MaskedConv2d>) -> Self {
        let out = layers.pop().expect("a gated plan ends with `out`");
        let mut it = layers.into_iter();
        let (v_in, h_in) = (it.next(), it.next());
        let mut blocks = Vec::new();
        while let (Some(v), Some(h), Some(v_to_h), Some(h_out)) =
            (it.next(), it.next(), it.next(), it.next())
        {
            blocks.push(GatedBlock {
                v,
                h,
                v_to_h,
                h_out,
            });
        }
        Self {
            v_in: v_in.expect("a gated plan starts with `v_in`"),
            h_in: h_in.expect("a gated plan starts with `h_in`"),
            blocks,
            out,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let (v, h) = (self.v_in.forward(x.clone()), self.h_in.forward(x));
        let (_, h) = self
            .blocks
            .iter()
            .fold((v, h), |(v, h), block| block.forward(v, h));
        self.out.forward(relu(h))
    }

    /// The layers in [`plan`] order, by value (the inverse of [`Self::from_layers`]).
    pub fn into_layers(self) -> Vec<MaskedConv2d> {
        let mut all = vec![self.v_in, self.h_in];
        for b in self.blocks {
            all.extend([b.v, b.h, b.v_to_h, b.h_out]);
        }
        all.push(self.out);
        all
    }

    /// The layers in [`plan`] order.
    pub fn layers(&self) -> Vec<&MaskedConv2d> {
        let mut all = vec![&self.v_in, &self.h_in];
        for b in &self.blocks {
            all.extend([&b.v, &b.h, &b.v_to_h, &b.h_out]);
        }
        all.push(&self.out);
        all
    }
}
