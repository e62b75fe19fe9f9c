//! The spatial autoregressive head: PixelCNN-style masked convolutions over the embedding grid.
//!
//! Raster-scan order: the prediction at (i, j) may only see embeddings strictly before it (rows
//! above, and the same row to the left). The first layer uses mask A (centre excluded), later
//! layers mask B (centre kept): stacked, every output depends only on inputs strictly before it.
//! The mask multiplies the weight inside `forward`, so no optimiser step can leak the future.

use burn::module::{Module, Param};
use burn::tensor::activation::relu;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::readback::{ReadBackError, read_back};
use crate::rng::Rng;
use crate::spec::FitSpec;
use crate::weights::{TensorFile, WeightsError};

/// Mask A hides the centre tap (first layer); mask B keeps it (later layers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MaskKind {
    A,
    B,
}

/// The `k × k` raster mask: 1 for taps strictly before the centre (and the centre for mask B).
pub fn raster_mask(kind: MaskKind, kernel: usize) -> Vec<f32> {
    let centre = (kernel / 2) * kernel + kernel / 2;
    (0..kernel * kernel)
        .map(|i| match kind {
            MaskKind::A => (i < centre) as u8 as f32,
            MaskKind::B => (i <= centre) as u8 as f32,
        })
        .collect()
}

/// A 2-D convolution whose weight is masked in raster order; zero padding keeps the grid size.
#[derive(Module, Debug)]
pub struct MaskedConv2d {
    /// `[out, in, k, k]`, PyTorch layout.
    pub weight: Param<Tensor<4>>,
    pub bias: Param<Tensor<1>>,
    /// `[1, 1, k, k]`, broadcast over output and input channels.
    mask: Tensor<4>,
    kernel: usize,
    dilation: usize,
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
        let bound = 1.0 / ((in_ch * kernel * kernel) as f64).sqrt();
        let shape = [out_ch, in_ch, kernel, kernel];
        let weight = rng.uniform(-bound, bound, shape.iter().product());
        let bias = rng.uniform(-bound, bound, out_ch);
        Self::from_tensors(
            Tensor::from_data(TensorData::new(weight, shape), device),
            Tensor::from_data(TensorData::new(bias, [out_ch]), device),
            dilation,
            kind,
        )
    }

    pub fn from_tensors(
        weight: Tensor<4>,
        bias: Tensor<1>,
        dilation: usize,
        kind: MaskKind,
    ) -> Self {
        let kernel = weight.dims()[2];
        let device = weight.device();
        let mask = Tensor::from_data(
            TensorData::new(raster_mask(kind, kernel), [1, 1, kernel, kernel]),
            &device,
        );
        Self {
            weight: Param::from_tensor(weight),
            bias: Param::from_tensor(bias),
            mask,
            kernel,
            dilation,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let pad = self.dilation * (self.kernel / 2);
        conv2d(
            x,
            self.weight.val() * self.mask.clone(),
            Some(self.bias.val()),
            ConvOptions::new([1, 1], [pad, pad], [self.dilation, self.dilation], 1),
        )
    }
}

named_choice! {
    /// `dilated` (dilation 4 on every layer, the paper's default) or `standard` (dilation 1).
    ///
    /// To add a variant: a case here (its name, label and, below, its dilation), then its test in
    /// `ar_native.rs`.
    pub enum Variant ("variant") {
        Dilated = "dilated", "dilated (dilation 4, the paper)";
        Standard = "standard", "standard (dilation 1)";
    }
}

impl Variant {
    pub fn dilation(self) -> usize {
        match self {
            Variant::Dilated => 4,
            Variant::Standard => 1,
        }
    }
}

/// Shape of the AR head; stored in every model bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArConfig {
    /// Embedding width (the backbone's hidden size), in and out.
    pub channels: usize,
    pub hidden: usize,
    pub layers: usize,
    pub kernel: usize,
    pub variant: Variant,
}

impl ArConfig {
    /// The paper's head (the defaults of [`FitSpec`]) for `channels`-d embeddings.
    pub fn new(channels: usize) -> Self {
        FitSpec::default().ar_config(channels)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.kernel.is_multiple_of(2) {
            return Err(format!("AR kernel size must be odd, got {}", self.kernel));
        }
        if self.layers == 0 || self.hidden == 0 || self.channels == 0 {
            return Err("AR head needs at least one layer and non-zero widths".into());
        }
        Ok(())
    }

    /// The grid offsets `(dy, dx)` whose embeddings the prediction at a position can see — its
    /// causal receptive field — read from the layers' own masks and dilation, not drawn by hand:
    /// the prediction at `(i, j)` depends on the input at `(i + dy, j + dx)` for each offset
    /// (zero padding drops those outside the grid). Sorted in raster order; never `(0, 0)` or
    /// anything after it. With dilation > 1 it has holes — the immediate left and upper
    /// neighbours are among them (the "blind spot").
    pub fn receptive_field(&self) -> Vec<(isize, isize)> {
        let k = self.kernel;
        let c = (k / 2) as isize;
        let d = self.variant.dilation() as isize;
        // From the output back to the input: the last layer first, the first (mask A) last.
        let mut seen = std::collections::BTreeSet::from([(0isize, 0isize)]);
        for layer in (0..self.layers).rev() {
            let mask = raster_mask(kind_of(layer), k);
            let taps: Vec<(isize, isize)> = (0..k * k)
                .filter(|&t| mask[t] > 0.0)
                .map(|t| (d * ((t / k) as isize - c), d * ((t % k) as isize - c)))
                .collect();
            seen = seen
                .iter()
                .flat_map(|&(y, x)| taps.iter().map(move |&(ty, tx)| (y + ty, x + tx)))
                .collect();
        }
        seen.into_iter().collect()
    }

    /// (in, out) channels of each layer.
    pub fn widths(&self) -> Vec<(usize, usize)> {
        (0..self.layers)
            .map(|i| {
                let inp = if i == 0 { self.channels } else { self.hidden };
                let out = if i + 1 == self.layers {
                    self.channels
                } else {
                    self.hidden
                };
                (inp, out)
            })
            .collect()
    }
}

/// The stack of masked convolutions: ReLU between layers, none after the last.
#[derive(Module, Debug)]
pub struct ArHead {
    pub layers: Vec<MaskedConv2d>,
}

fn kind_of(layer: usize) -> MaskKind {
    if layer == 0 { MaskKind::A } else { MaskKind::B }
}

impl ArHead {
    /// Freshly initialised weights, drawn from `rng`.
    pub fn new(config: &ArConfig, rng: &mut Rng, device: &Device) -> Result<Self, WeightsError> {
        config.validate().map_err(WeightsError::Config)?;
        let layers = config
            .widths()
            .into_iter()
            .enumerate()
            .map(|(i, widths)| {
                let dilation = config.variant.dilation();
                MaskedConv2d::new(widths, config.kernel, dilation, kind_of(i), rng, device)
            })
            .collect();
        Ok(Self { layers })
    }

    /// Weights from a tensor file: `layers.{i}.weight` `[out, in, k, k]`, `layers.{i}.bias`.
    pub fn from_file(
        file: &TensorFile,
        config: &ArConfig,
        device: &Device,
    ) -> Result<Self, WeightsError> {
        config.validate().map_err(WeightsError::Config)?;
        let k = config.kernel;
        let tensor = |name: String, shape: Vec<usize>| -> Result<TensorData, WeightsError> {
            let t = file
                .get(&name)
                .ok_or_else(|| WeightsError::MissingTensor(name.clone()))?;
            if t.shape != shape {
                return Err(WeightsError::ShapeMismatch {
                    name,
                    found: t.shape.clone(),
                    expected: shape,
                });
            }
            Ok(TensorData::new(t.to_f32(&name)?, shape))
        };
        let mut layers = Vec::new();
        for (i, (inp, out)) in config.widths().into_iter().enumerate() {
            let w = tensor(format!("layers.{i}.weight"), vec![out, inp, k, k])?;
            let b = tensor(format!("layers.{i}.bias"), vec![out])?;
            layers.push(MaskedConv2d::from_tensors(
                Tensor::from_data(w, device),
                Tensor::from_data(b, device),
                config.variant.dilation(),
                kind_of(i),
            ));
        }
        Ok(Self { layers })
    }

    /// Predict every embedding of `x: [B, C, h, w]` from the ones before it, in one pass.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let last = self.layers.len() - 1;
        self.layers.iter().enumerate().fold(x, |x, (i, layer)| {
            let y = layer.forward(x);
            if i < last { relu(y) } else { y }
        })
    }

    /// The weights as host tensors `(name, shape, values)`, masked taps zeroed, for saving.
    /// Asynchronous: it must also work on WebGPU in the browser.
    pub async fn export(&self) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>, ReadBackError> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let w = layer.weight.val() * layer.mask.clone();
            let shape = w.dims().to_vec();
            let w = read_back(w, "AR head weights").await?;
            let b = layer.bias.val();
            let bshape = b.dims().to_vec();
            let b = read_back(b, "AR head biases").await?;
            out.push((format!("layers.{i}.weight"), shape, w));
            out.push((format!("layers.{i}.bias"), bshape, b));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_follow_raster_order() {
        assert_eq!(
            raster_mask(MaskKind::A, 3),
            vec![1., 1., 1., 1., 0., 0., 0., 0., 0.]
        );
        assert_eq!(
            raster_mask(MaskKind::B, 3),
            vec![1., 1., 1., 1., 1., 0., 0., 0., 0.]
        );
        let a5 = raster_mask(MaskKind::A, 5);
        assert_eq!(a5.iter().sum::<f32>(), 12.0);
        assert_eq!(a5[12], 0.0);
    }

    #[test]
    fn even_kernels_are_refused() {
        let mut c = ArConfig::new(8);
        c.kernel = 4;
        assert!(c.validate().unwrap_err().contains("odd"));
    }

    #[test]
    fn the_receptive_field_is_strictly_in_the_past() {
        let mut c = ArConfig::new(8);
        for variant in Variant::ALL {
            c.variant = *variant;
            let field = c.receptive_field();
            assert!(!field.is_empty());
            assert!(field.iter().all(|&o| o < (0, 0)), "{variant:?}: {field:?}");
        }
        // One standard 3×3 mask-A layer sees exactly its four earlier taps.
        let one = ArConfig {
            layers: 1,
            variant: Variant::Standard,
            ..ArConfig::new(8)
        };
        assert_eq!(
            one.receptive_field(),
            vec![(-1, -1), (-1, 0), (-1, 1), (0, -1)]
        );
        // The paper's dilated head never sees the immediate left or upper neighbour.
        c.variant = Variant::Dilated;
        let field = c.receptive_field();
        assert!(!field.contains(&(0, -1)) && !field.contains(&(-1, 0)));
    }

    #[test]
    fn widths_run_channels_hidden_channels() {
        let c = ArConfig::new(384);
        assert_eq!(
            c.widths(),
            vec![(384, 256), (256, 256), (256, 256), (256, 256), (256, 384)]
        );
    }
}
