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

use crate::infra::compute::buffer_fits;

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
        if fits(device, dims) {
            Tensor::from_data(TensorData::new(values, dims), device).into()
        } else {
            Self::on_host(values, dims, device)
        }
    }

    /// Kept on the host whatever their size (what [`Grids::new`] does past the device's limit).
    pub fn on_host(values: Vec<f32>, dims: [usize; 4], device: &Device) -> Self {
        assert_eq!(
            values.len(),
            dims.iter().product::<usize>(),
            "grids of {dims:?} need that many values"
        );
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
        match self.shared(rows) {
            Some(kept) if !fits(&self.device, [rows.len(), d, h, w]) => kept,
            _ => self.rows(rows).into(),
        }
    }

    /// Host grids `rows` as a set sharing these values; `None` for grids on the device.
    fn shared(&self, rows: &[usize]) -> Option<Self> {
        let Values::Host { all, rows: mine } = &self.values else {
            return None;
        };
        let [_, d, h, w] = self.dims;
        Some(Self {
            values: Values::Host {
                all: all.clone(),
                rows: rows.iter().map(|&i| mine[i]).collect(),
            },
            dims: [rows.len(), d, h, w],
            device: self.device.clone(),
        })
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

/// Whether `dims` f32 values fit in one buffer of `device`.
fn fits(device: &Device, dims: [usize; 4]) -> bool {
    buffer_fits(device, 4 * dims.iter().product::<usize>() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(t: Tensor<4>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().unwrap()
    }

    /// Host rows go through the set's index list: a subset of a subset reads the grids it names,
    /// the same as from the device.
    #[test]
    fn host_grids_read_the_rows_their_index_list_names() {
        let device = Device::flex();
        let dims = [5, 2, 1, 1];
        let all: Vec<f32> = (0..10).map(|v| v as f32).collect();
        let on_device = Grids::new(all.clone(), dims, &device);
        assert!(!on_device.on_the_host());
        // What `subset` keeps for a set that does not fit one buffer (every set fits on the CPU).
        let host = Grids::on_host(all, dims, &device);
        // Grids 3, 4, 1 of the five, through two index lists.
        let sub = host
            .shared(&[4, 1, 3, 0])
            .unwrap()
            .shared(&[2, 0, 1])
            .unwrap();
        assert!(sub.on_the_host() && on_device.shared(&[0]).is_none());
        assert_eq!(values(sub.rows(&[1, 0])), [8.0, 9.0, 6.0, 7.0]);
        assert_eq!(values(sub.rows(&[1, 0])), values(on_device.rows(&[4, 3])));
        // A subset that fits goes to the device, with the same rows.
        let up = sub.subset(&[2, 0]);
        assert!(!up.on_the_host());
        assert_eq!(values(up.whole().unwrap()), [2.0, 3.0, 6.0, 7.0]);
    }
}
