//! The spatial autoregressive head: masked convolutions over the embedding grid that predict
//! every embedding from the ones before it in raster order (rows above, and the same row to the
//! left), in one pass.
//!
//! Two shapes of head, one interface: [`raster`] is the paper's single stack of masked `k × k`
//! convolutions; [`gated`] is the two-stack PixelCNN that has no blind spot. Each is laid out by a
//! *plan* (every masked layer's bundle name, widths, mask and dilation): the same plan
//! initialises it, loads it from a bundle, exports it and yields its receptive field.

mod gated;
mod masked;
mod raster;

use std::collections::BTreeSet;

use burn::module::Module;
use burn::tensor::{Device, FloatDType, Tensor, TensorData};
use serde::{Deserialize, Serialize};

pub use masked::{MaskKind, MaskedConv2d};

use crate::infra::readback::{ReadBackError, read_back};
use crate::infra::rng::Rng;
use crate::weights::{TensorFile, WeightsError};

named_choice! {
    /// The head's shape: the paper's single stack of raster-masked convolutions (`dilated`, its
    /// default, or `standard`), or the two-stack `gated` head without a blind spot.
    ///
    /// To add a variant: a case here, its plan and field in [`ArConfig::plan`] and
    /// [`ArConfig::receptive_field`] (and its stack in [`ArHead`] if it is not a raster stack),
    /// then its tests in `ar_native.rs`.
    pub enum Variant ("variant") {
        Dilated = "dilated", "dilated (dilation 4, the paper)";
        Standard = "standard", "standard (dilation 1)";
        Gated = "gated", "gated two-stack (no blind spot)";
    }
}

/// One masked convolution of a head, as its plan lays it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerPlan {
    /// Its tensors in a bundle are `{name}.weight` and `{name}.bias`.
    pub name: String,
    /// (in, out) channels.
    pub widths: (usize, usize),
    pub kind: MaskKind,
    pub dilation: usize,
}

impl LayerPlan {
    fn taps(&self, kernel: usize) -> Vec<(isize, isize)> {
        self.kind.taps(kernel, self.dilation)
    }
}

/// A set of grid offsets `(dy, dx)`, ordered in raster order.
type Offsets = BTreeSet<(isize, isize)>;

/// Every `s + t`: what a layer reading taps `t` from something that read `s` reads.
fn spread(seen: &Offsets, taps: &[(isize, isize)]) -> Offsets {
    seen.iter()
        .flat_map(|&(y, x)| taps.iter().map(move |&(ty, tx)| (y + ty, x + tx)))
        .collect()
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
    /// The paper's head for `channels`-d embeddings: 5 dilated masked layers of 256 channels,
    /// kernel 3 (the fit specification's defaults are these).
    pub fn new(channels: usize) -> Self {
        Self {
            channels,
            hidden: 256,
            layers: 5,
            kernel: 3,
            variant: Variant::Dilated,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.kernel.is_multiple_of(2) || self.kernel < 3 {
            // A 1 × 1 mask-A kernel sees nothing at all.
            return Err(format!(
                "AR kernel size must be odd and ≥ 3, got {}",
                self.kernel
            ));
        }
        if self.layers == 0 || self.hidden == 0 || self.channels == 0 {
            return Err("AR head needs at least one layer and non-zero widths".into());
        }
        if self.variant == Variant::Gated && self.layers < 3 {
            // Without a block the vertical stack never reaches the output.
            return Err(format!(
                "the gated AR head needs at least 3 layers (its input pair, one gated block, its \
                 output), got {}",
                self.layers
            ));
        }
        Ok(())
    }

    /// Every masked layer of the head, in the order [`ArHead`] holds them.
    pub fn plan(&self) -> Vec<LayerPlan> {
        match self.variant {
            Variant::Dilated => raster::plan(self, 4),
            Variant::Standard => raster::plan(self, 1),
            Variant::Gated => gated::plan(self),
        }
    }

    /// The grid offsets `(dy, dx)` whose embeddings the prediction at a position can see — its
    /// causal receptive field — read from the layers' own masks and dilations, not drawn by hand:
    /// the prediction at `(i, j)` depends on the input at `(i + dy, j + dx)` for each offset
    /// (zero padding drops those outside the grid). Sorted in raster order; never `(0, 0)` or
    /// anything after it. The raster stacks' fields have holes (with dilation 4 the immediate
    /// left and upper neighbours are among them: the "blind spot"); the gated head's has none.
    pub fn receptive_field(&self) -> Vec<(isize, isize)> {
        let plan = self.plan();
        let field = match self.variant {
            Variant::Dilated | Variant::Standard => raster::field(&plan, self.kernel),
            Variant::Gated => gated::field(&plan, self.kernel),
        };
        field.into_iter().collect()
    }

    /// The offsets before the prediction, within the field's reach, that the head cannot see —
    /// its blind spot: every `(dy, dx)` in raster order before `(0, 0)` with `dy` and `dx` inside
    /// the field's extent that the field lacks. Empty for the gated head; for the raster stacks the
    /// upper-right cone a masked `k × k` stack never reaches, and with dilation the gaps between
    /// its taps (the immediate neighbours among them).
    pub fn blind_spot(&self) -> Vec<(isize, isize)> {
        let field = self.receptive_field();
        let seen: Offsets = field.iter().copied().collect();
        let (Some(top), Some(left), Some(right)) = (
            field.iter().map(|o| o.0).min(),
            field.iter().map(|o| o.1).min(),
            field.iter().map(|o| o.1).max(),
        ) else {
            return Vec::new();
        };
        (top..=0)
            .flat_map(|dy| (left..=right).map(move |dx| (dy, dx)))
            .filter(|&o| o < (0, 0) && !seen.contains(&o))
            .collect()
    }
}

/// The two shapes a head can have; [`ArHead`] hides which.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // one head per detector: its inline size does not matter
enum Stack {
    Raster(raster::RasterStack),
    Gated(gated::GatedStack),
}

/// An AR head of any [`Variant`]: predicts every embedding of a grid from the ones before it.
#[derive(Module, Debug)]
pub struct ArHead {
    #[module(skip)]
    config: ArConfig,
    stack: Stack,
}

impl ArHead {
    /// Freshly initialised weights, drawn from `rng` layer by layer in plan order.
    pub fn new(config: &ArConfig, rng: &mut Rng, device: &Device) -> Result<Self, WeightsError> {
        Self::build(config, |layer| {
            Ok(MaskedConv2d::new(
                layer.widths,
                config.kernel,
                layer.dilation,
                layer.kind,
                rng,
                device,
            ))
        })
    }

    /// Weights from a tensor file: `{name}.weight` `[out, in, rows, cols]` and `{name}.bias`
    /// `[out]` for each layer of the plan (`layers.{i}` for the raster heads).
    pub fn from_file(
        file: &TensorFile,
        config: &ArConfig,
        device: &Device,
    ) -> Result<Self, WeightsError> {
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
        Self::build(config, |layer| {
            let (inp, out) = layer.widths;
            let (rows, cols) = layer.kind.shape(config.kernel);
            let w = tensor(format!("{}.weight", layer.name), vec![out, inp, rows, cols])?;
            let b = tensor(format!("{}.bias", layer.name), vec![out])?;
            Ok(MaskedConv2d::from_tensors(
                Tensor::from_data(w, device),
                Tensor::from_data(b, device),
                layer.dilation,
                layer.kind,
            ))
        })
    }

    fn build(
        config: &ArConfig,
        layer: impl FnMut(&LayerPlan) -> Result<MaskedConv2d, WeightsError>,
    ) -> Result<Self, WeightsError> {
        config.validate().map_err(WeightsError::Config)?;
        let layers = config
            .plan()
            .iter()
            .map(layer)
            .collect::<Result<Vec<_>, _>>()?;
        let stack = match config.variant {
            Variant::Dilated | Variant::Standard => Stack::Raster(raster::RasterStack { layers }),
            Variant::Gated => Stack::Gated(gated::GatedStack::from_layers(layers)),
        };
        Ok(Self {
            config: config.clone(),
            stack,
        })
    }

    pub fn config(&self) -> &ArConfig {
        &self.config
    }

    /// Predict every embedding of `x: [B, C, h, w]` from the ones before it, in one pass.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match &self.stack {
            Stack::Raster(s) => s.forward(x),
            Stack::Gated(s) => s.forward(x),
        }
    }

    /// The same head computing in `dtype` (scoring only: training and `export` are f32's). Its
    /// input and output stay f32.
    pub fn with_dtype(self, dtype: FloatDType) -> Self {
        if dtype == FloatDType::F32 {
            return self;
        }
        let half = |layers: Vec<MaskedConv2d>| -> Vec<MaskedConv2d> {
            layers.into_iter().map(|l| l.with_dtype(dtype)).collect()
        };
        let stack = match self.stack {
            Stack::Raster(s) => Stack::Raster(raster::RasterStack {
                layers: half(s.layers),
            }),
            Stack::Gated(s) => Stack::Gated(gated::GatedStack::from_layers(half(s.into_layers()))),
        };
        Self {
            config: self.config,
            stack,
        }
    }

    /// The weights as host tensors `(name, shape, values)`, masked taps zeroed, for saving.
    /// Asynchronous: it must also work on WebGPU in the browser.
    pub async fn export(&self) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>, ReadBackError> {
        let layers = match &self.stack {
            Stack::Raster(s) => s.layers(),
            Stack::Gated(s) => s.layers(),
        };
        let mut out = Vec::new();
        for (plan, layer) in self.config.plan().into_iter().zip(layers) {
            let w = layer.masked_weight();
            let shape = w.dims().to_vec();
            let w = read_back(w, "AR head weights").await?;
            let b = layer.bias.val();
            let bshape = b.dims().to_vec();
            let b = read_back(b, "AR head biases").await?;
            out.push((format!("{}.weight", plan.name), shape, w));
            out.push((format!("{}.bias", plan.name), bshape, b));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let blind = c.blind_spot();
        assert!(blind.contains(&(0, -1)) && blind.contains(&(-1, 0)));
        assert!(blind.iter().all(|o| *o < (0, 0) && !field.contains(o)));
        // The standard stack's classic blind spot: up one row, two to the right.
        c.variant = Variant::Standard;
        assert!(c.receptive_field().contains(&(-1, 1)));
        assert!(c.blind_spot().contains(&(-1, 2)) && !c.blind_spot().contains(&(0, -1)));
    }

    #[test]
    fn the_gated_field_has_no_holes() {
        // 5 layers: the input pair, blocks at dilations 1, 2, 4, the output. Every offset before
        // the prediction within 8 rows up and 8 columns either side is seen; nothing else.
        let c = ArConfig {
            variant: Variant::Gated,
            ..ArConfig::new(8)
        };
        let above = (-8..=-1).flat_map(|dy| (-8..=8).map(move |dx| (dy, dx)));
        let left = (-8..=-1).map(|dx| (0, dx));
        let expected: Vec<_> = above.chain(left).collect();
        assert_eq!(c.receptive_field(), expected);
        // Even the smallest gated head sees both immediate neighbours.
        let three = ArConfig {
            layers: 3,
            ..c.clone()
        };
        let field = three.receptive_field();
        assert!(
            field.contains(&(-1, 0)) && field.contains(&(0, -1)),
            "{field:?}"
        );
        assert_eq!(field.len(), 2 * 5 + 2);
        assert!(three.blind_spot().is_empty() && c.blind_spot().is_empty());
        let two = ArConfig { layers: 2, ..c };
        assert!(two.validate().unwrap_err().contains("at least 3 layers"));
    }

    #[test]
    fn plans_run_channels_hidden_channels() {
        let widths = |c: ArConfig| c.plan().iter().map(|l| l.widths).collect::<Vec<_>>();
        assert_eq!(
            widths(ArConfig::new(384)),
            vec![(384, 256), (256, 256), (256, 256), (256, 256), (256, 384)]
        );
        let gated = ArConfig {
            layers: 3,
            variant: Variant::Gated,
            ..ArConfig::new(384)
        };
        let names: Vec<_> = gated.plan().into_iter().map(|l| l.name).collect();
        assert_eq!(
            names,
            [
                "v_in",
                "h_in",
                "blocks.0.v",
                "blocks.0.h",
                "blocks.0.v_to_h",
                "blocks.0.h_out",
                "out"
            ]
        );
        assert_eq!(
            widths(gated),
            vec![
                (384, 256),
                (384, 256),
                (256, 512),
                (256, 512),
                (512, 512),
                (256, 256),
                (256, 384)
            ]
        );
    }
}
