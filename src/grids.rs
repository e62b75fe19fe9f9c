//! The normal images' embedding grids `[N, D, h, w]` while a model is fitted: on the device as one
//! tensor when they fit in one of its buffers, else on the host, a batch at a time going to the
//! device as training and calibration ask for it.
//!
//! Why both: a GPU takes one buffer of at most `max_storage_buffer_binding_size` (128 MiB on
//! lavapipe, 2–4 GiB on desktop GPUs), and a BMAD-sized training set — 7 500 slices at 448², 384
//! channels on a 28×28 grid — is 9 GB. On the CPU, and for sets that fit, one tensor on the device
//! is simplest and fastest (no upload per step).

use std::sync::Arc;

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::compute::buffer_limit;

/// `N` embedding grids of one shape `[D, h, w]`.
#[derive(Clone)]
pub struct Grids {
    values: Values,
    dims: [usize; 4],
    device: Device,
}

#[derive(Clone)]
enum Values {
    /// `[N, D, h, w]` on the device (boxed: a tensor handle is large beside a `Vec`).
    Device(Box<Tensor<4>>),
    /// Row-major `[M, D, h, w]` values on the host, shared (a subset or a clone copies no grid),
    /// and which of them are this set's, in order.
    Host {
        all: Arc<Vec<f32>>,
        rows: Vec<usize>,
    },
}

impl From<Tensor<4>> for Grids {
    fn from(grids: Tensor<4>) -> Self {
        Self {
            dims: grids.dims(),
            device: grids.device(),
            values: Values::Device(Box::new(grids)),
        }
    }
}

impl Grids {
    /// `values` `[N, D, h, w]` (row-major) for `device`: uploaded as one tensor when that fits in
    /// one of its buffers, else kept here and uploaded batch by batch.
    pub fn new(values: Vec<f32>, dims: [usize; 4], device: &Device) -> Self {
        debug_assert_eq!(values.len(), dims.iter().product::<usize>());
        if fits(device, dims) {
            Tensor::from_data(TensorData::new(values, dims), device).into()
        } else {
            Self::on_host(values, dims, device)
        }
    }

    /// Kept on the host whatever their size (what [`Grids::new`] does past the device's limit).
    pub fn on_host(values: Vec<f32>, dims: [usize; 4], device: &Device) -> Self {
        Self {
            values: Values::Host {
                all: Arc::new(values),
                rows: (0..dims[0]).collect(),
            },
            dims,
            device: device.clone(),
        }
    }

    /// `[N, D, h, w]`.
    pub fn dims(&self) -> [usize; 4] {
        self.dims
    }

    pub fn len(&self) -> usize {
        self.dims[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn device(&self) -> Device {
        self.device.clone()
    }

    /// Whether they stay on the host, a batch at a time going to the device.
    pub fn on_the_host(&self) -> bool {
        matches!(self.values, Values::Host { .. })
    }

    /// Grids `rows` (in that order) as a tensor `[rows.len(), D, h, w]` on the device.
    pub fn rows(&self, rows: &[usize]) -> Tensor<4> {
        let [_, d, h, w] = self.dims;
        match &self.values {
            Values::Device(all) => {
                let idx: Vec<i64> = rows.iter().map(|&i| i as i64).collect();
                let idx = TensorData::new(idx, [rows.len()]);
                (**all)
                    .clone()
                    .select(0, Tensor::<1, Int>::from_data(idx, &self.device))
            }
            Values::Host { all, rows: mine } => {
                let mut values = Vec::with_capacity(rows.len() * d * h * w);
                for &i in rows {
                    let at = mine[i] * d * h * w;
                    values.extend_from_slice(&all[at..at + d * h * w]);
                }
                Tensor::from_data(TensorData::new(values, [rows.len(), d, h, w]), &self.device)
            }
        }
    }

    /// Grids `rows` as a new set: on the device if these were; from the host, uploaded when they
    /// now fit in one buffer, else still on the host, sharing the values.
    pub fn subset(&self, rows: &[usize]) -> Self {
        let [_, d, h, w] = self.dims;
        let dims = [rows.len(), d, h, w];
        match &self.values {
            Values::Host { all, rows: mine } if !fits(&self.device, dims) => Self {
                values: Values::Host {
                    all: all.clone(),
                    rows: rows.iter().map(|&i| mine[i]).collect(),
                },
                dims,
                device: self.device.clone(),
            },
            _ => self.rows(rows).into(),
        }
    }

    /// Every grid as one tensor on the device — for the kNN memory bank, which needs them
    /// together. `None` when they were kept on the host because they do not fit.
    pub fn whole(&self) -> Option<Tensor<4>> {
        match &self.values {
            Values::Device(all) => Some((**all).clone()),
            Values::Host { .. } => None,
        }
    }
}

/// Whether `dims` f32 values fit in one buffer of `device` (always, on the CPU).
fn fits(device: &Device, dims: [usize; 4]) -> bool {
    let bytes = 4 * dims.iter().product::<usize>() as u64;
    buffer_limit(device).is_none_or(|limit| bytes <= limit)
}
