//! The masked convolution every AR head is built from, and its masks.
//!
//! A mask zeroes the taps a prediction must not see. It multiplies the weight inside `forward`,
//! so no optimiser step can leak the future.

use burn::module::{Module, Param};
use burn::tensor::module::conv2d;
use burn::tensor::ops::{ConvOptions, PadMode};
use burn::tensor::{Device, FloatDType, Tensor, TensorData};

use crate::infra::rng::Rng;

/// Which taps of a kernel are kept. `A` hides the centre (a head's first layer: nothing may see
/// the patch it predicts), `B` keeps it (later layers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskKind {
    /// `k × k`, raster order: the rows above and the same row's taps left of the centre.
    A,
    /// Raster order with the centre.
    B,
    /// `k × k`, only the rows above (the gated head's first vertical layer).
    VerticalA,
    /// The rows above and the centre row, all of it (later vertical layers: what they read holds
    /// nothing from its own row).
    VerticalB,
    /// `1 × k`, the taps left of the centre (the gated head's first horizontal layer).
    HorizontalA,
    /// `1 × k`, the left taps and the centre.
    HorizontalB,
    /// `1 × 1`, unmasked (mixing channels at one position).
    Pointwise,
}

impl MaskKind {
    /// `(rows, columns)` of the kernel for a head of kernel size `k`.
    pub fn shape(self, k: usize) -> (usize, usize) {
        match self {
            MaskKind::HorizontalA | MaskKind::HorizontalB => (1, k),
            MaskKind::Pointwise => (1, 1),
            _ => (k, k),
        }
    }

    /// The mask, row-major over [`MaskKind::shape`]: 1 for a kept tap.
    pub fn values(self, k: usize) -> Vec<f32> {
        let (rows, cols) = self.shape(k);
        let (cy, cx) = (rows / 2, cols / 2);
        let kept = |y: usize, x: usize| match self {
            MaskKind::A => (y, x) < (cy, cx),
            MaskKind::B => (y, x) <= (cy, cx),
            MaskKind::VerticalA => y < cy,
            MaskKind::VerticalB => y <= cy,
            MaskKind::HorizontalA => x < cx,
            MaskKind::HorizontalB => x <= cx,
            MaskKind::Pointwise => true,
        };
        (0..rows * cols)
            .map(|i| kept(i / cols, i % cols) as u8 as f32)
            .collect()
    }

    /// The grid offsets `(dy, dx)` a layer with this mask reads, relative to the position it
    /// writes, at `dilation`.
    pub fn taps(self, k: usize, dilation: usize) -> Vec<(isize, isize)> {
        let (rows, cols) = self.shape(k);
        let (cy, cx) = ((rows / 2) as isize, (cols / 2) as isize);
        let d = dilation as isize;
        self.values(k)
            .iter()
            .enumerate()
            .filter(|&(_, &m)| m > 0.0)
            .map(|(i, _)| {
                let (y, x) = ((i / cols) as isize, (i % cols) as isize);
                (d * (y - cy), d * (x - cx))
            })
            .collect()
    }
}

/// A 2-D convolution whose weight is masked; zero padding keeps the grid size.
#[derive(Module, Debug)]
pub struct MaskedConv2d {
    /// `[out, in, rows, cols]`, PyTorch layout.
    pub weight: Param<Tensor<4>>,
    pub bias: Param<Tensor<1>>,
    /// `[1, 1, rows, cols]`, broadcast over output and input channels.
    mask: Tensor<4>,
    dilation: usize,
    #[module(skip)]
    kind: MaskKind,
}

impl MaskedConv2d {
    /// PyTorch's `Conv2d` initialisation: U(±1/√fan_in) for weight and bias.
    pub fn new(
        (in_ch, out_ch): (usize, usize),
        kernel: usize,
        dilation: usize,
        kind: MaskKind,
        rng: &mut Rng,
        device: &Device,
    ) -> Self {
        let (rows, cols) = kind.shape(kernel);
        let bound = 1.0 / ((in_ch * rows * cols) as f64).sqrt();
        let shape = [out_ch, in_ch, rows, cols];
        let weight = rng.uniform(-bound, bound, shape.iter().product());
        let bias = rng.uniform(-bound, bound, out_ch);
        Self::from_tensors(
            Tensor::from_data(TensorData::new(weight, shape), device),
            Tensor::from_data(TensorData::new(bias, [out_ch]), device),
            dilation,
            kind,
        )
    }

    /// A layer from its weights; the kernel size is read from the weight (`[out, in, rows,
    /// cols]`, the shape `kind` has at that size).
    pub fn from_tensors(
        weight: Tensor<4>,
        bias: Tensor<1>,
        dilation: usize,
        kind: MaskKind,
    ) -> Self {
        let [_, _, rows, cols] = weight.dims();
        let device = weight.device();
        let mask = Tensor::from_data(
            TensorData::new(kind.values(cols), [1, 1, rows, cols]),
            &device,
        );
        Self {
            weight: Param::from_tensor(weight),
            bias: Param::from_tensor(bias),
            mask,
            dilation,
            kind,
        }
    }

    /// `x` f32 in, f32 out; in between the weight's precision ([`Self::with_dtype`]).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let dtype = self.weight.val().dtype();
        self.forward_in(x.cast(dtype)).cast(FloatDType::F32)
    }

    /// The same layer computing in `dtype`: weight, bias and mask converted on the device (a
    /// head's weights are of ordinary size, unlike LayerScale-folded ones: a plain cast keeps
    /// them).
    pub fn with_dtype(self, dtype: FloatDType) -> Self {
        Self {
            weight: Param::from_tensor(self.weight.val().cast(dtype)),
            bias: Param::from_tensor(self.bias.val().cast(dtype)),
            mask: self.mask.cast(dtype),
            ..self
        }
    }

    fn forward_in(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, rows, cols] = self.mask.dims();
        let d = self.dilation;
        let (cy, cx) = (rows / 2, cols / 2);
        // A one-sided mask keeps a band of the kernel: convolve with that band only, the input
        // padded on the side it reads (a third fewer multiplications for 3 × 3 and 1 × 3). The
        // result is the masked full kernel's, taps for taps.
        let bias = Some(self.bias.val());
        match self.kind {
            MaskKind::VerticalA => self.band(x, (0, cy), cols, d * cx, bias),
            MaskKind::VerticalB => self.band(x, (0, cy + 1), cols, d * cx, bias),
            MaskKind::HorizontalA => self.band(x, (0, 1), cx, 0, bias),
            MaskKind::HorizontalB => self.band(x, (0, 1), cx + 1, 0, bias),
            // Raster order keeps the rows above and the centre row's left part (and centre): two
            // bands, 4 or 5 of a 3 × 3 kernel's 9 taps, so about half the multiplications.
            MaskKind::A | MaskKind::B => {
                let left = cx + (self.kind == MaskKind::B) as usize;
                let centre = self.band(x.clone(), (cy, 1), left, 0, bias);
                match cy {
                    0 => centre,
                    _ => self.band(x, (0, cy), cols, d * cx, None) + centre,
                }
            }
            MaskKind::Pointwise => conv2d(
                x,
                self.masked_weight(),
                bias,
                ConvOptions::new([1, 1], [d * cy, d * cx], [d, d], 1),
            ),
        }
    }

    /// The kernel's rows `first .. first + count` and its first `keep_cols` columns, convolved
    /// with `x` padded on the sides they read: `d · (rows above the centre)` on top (the band's
    /// rows all lie at or above it), `d · cx` on the left and `right` on the right. The output is
    /// cut to the input's size: the taps are the masked full kernel's, taps for taps.
    fn band(
        &self,
        x: Tensor<4>,
        (first, count): (usize, usize),
        keep_cols: usize,
        right: usize,
        bias: Option<Tensor<1>>,
    ) -> Tensor<4> {
        let [_, _, rows, cols] = self.mask.dims();
        let d = self.dilation;
        let (cy, cx) = (rows / 2, cols / 2);
        let [_, _, h, w] = x.dims();
        let weight = self
            .masked_weight()
            .narrow(2, first, count)
            .narrow(3, 0, keep_cols);
        // The band's first row sits `cy - first` rows above the centre: pad the top by that reach.
        let x = x.pad((d * cx, right, d * (cy - first), 0), PadMode::Constant(0.0));
        let y = conv2d(x, weight, bias, ConvOptions::new([1, 1], [0, 0], [d, d], 1));
        // Bands that end short of the centre make the output longer: keep the first rows/columns.
        y.narrow(2, 0, h).narrow(3, 0, w)
    }

    /// The weight as the layer uses it: masked taps zeroed.
    pub fn masked_weight(&self) -> Tensor<4> {
        self.weight.val() * self.mask.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_follow_raster_order() {
        assert_eq!(
            MaskKind::A.values(3),
            vec![1., 1., 1., 1., 0., 0., 0., 0., 0.]
        );
        assert_eq!(
            MaskKind::B.values(3),
            vec![1., 1., 1., 1., 1., 0., 0., 0., 0.]
        );
        let a5 = MaskKind::A.values(5);
        assert_eq!(a5.iter().sum::<f32>(), 12.0);
        assert_eq!(a5[12], 0.0);
    }

    #[test]
    fn two_stack_masks_split_above_and_left() {
        assert_eq!(
            MaskKind::VerticalA.values(3),
            vec![1., 1., 1., 0., 0., 0., 0., 0., 0.]
        );
        assert_eq!(
            MaskKind::VerticalB.values(3),
            vec![1., 1., 1., 1., 1., 1., 0., 0., 0.]
        );
        assert_eq!(MaskKind::HorizontalA.values(5), vec![1., 1., 0., 0., 0.]);
        assert_eq!(MaskKind::HorizontalB.values(3), vec![1., 1., 0.]);
        assert_eq!(MaskKind::Pointwise.values(3), vec![1.]);
        assert_eq!(MaskKind::HorizontalA.taps(3, 2), vec![(0, -2)]);
        assert_eq!(
            MaskKind::VerticalA.taps(3, 4),
            vec![(-4, -4), (-4, 0), (-4, 4)]
        );
    }
}
