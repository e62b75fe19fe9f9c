//! The kNN baseline (AnomalyDINO-style): a memory bank of L2-normalised patch embeddings of the
//! normal images; a test patch scores 1 − its highest cosine similarity to the bank.
//!
//! It exists to measure the AR head against: same maps, same metrics, same bundle file.

use burn::tensor::{Device, Tensor, TensorData};

use crate::infra::readback::{ReadBackError, read_back};
use crate::weights::{TensorFile, WeightsError};

/// Bank rows compared per matmul, bounding the similarity matrix's memory.
const CHUNK: usize = 8192;

pub struct MemoryBank {
    /// `[M, D]`, rows of unit length.
    pub bank: Tensor<2>,
}

fn l2_normalise(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// `[B, D, h, w]` → `[B·h·w, D]`, raster order within each image.
fn patches(grid: Tensor<4>) -> Tensor<2> {
    let [b, d, h, w] = grid.dims();
    grid.reshape([b, d, h * w])
        .swap_dims(1, 2)
        .reshape([b * h * w, d])
}

impl MemoryBank {
    /// All patches of the normal images' grids `[N, D, h, w]`.
    pub fn from_grids(grids: Tensor<4>) -> Self {
        Self {
            bank: l2_normalise(patches(grids)),
        }
    }

    pub fn from_file(file: &TensorFile, dim: usize, device: &Device) -> Result<Self, WeightsError> {
        let name = "memory_bank";
        let t = file
            .get(name)
            .ok_or_else(|| WeightsError::MissingTensor(name.into()))?;
        match t.shape[..] {
            [m, d] if d == dim && m > 0 => {
                let data = TensorData::new(t.to_f32(name)?, [m, d]);
                Ok(Self {
                    bank: Tensor::from_data(data, device),
                })
            }
            _ => Err(WeightsError::ShapeMismatch {
                name: name.into(),
                found: t.shape.clone(),
                expected: vec![t.shape.first().copied().unwrap_or(0), dim],
            }),
        }
    }

    /// This bank with `more`'s patches after its own (a model that learns new normal images).
    pub fn extended(self, more: MemoryBank) -> Self {
        Self {
            bank: Tensor::cat(vec![self.bank, more.bank], 0),
        }
    }

    pub fn len(&self) -> usize {
        self.bank.dims()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `[B, D, h, w]` → `[B, h, w]` scores in [0, 2].
    pub fn patch_scores(&self, grid: Tensor<4>) -> Tensor<3> {
        let [b, _, h, w] = grid.dims();
        let queries = l2_normalise(patches(grid));
        let m = self.len();
        let mut best: Option<Tensor<2>> = None;
        for start in (0..m).step_by(CHUNK) {
            let chunk = self.bank.clone().narrow(0, start, CHUNK.min(m - start));
            let sims = queries.clone().matmul(chunk.transpose()).max_dim(1);
            best = Some(match best {
                None => sims,
                Some(prev) => prev.max_pair(sims),
            });
        }
        let best = best.expect("a memory bank is never empty");
        (best.neg() + 1.0).reshape([b, h, w])
    }

    /// The bank as a host tensor for saving (asynchronous: also runs on WebGPU).
    pub async fn export(&self) -> Result<(String, Vec<usize>, Vec<f32>), ReadBackError> {
        let shape = self.bank.dims().to_vec();
        let values = read_back(self.bank.clone(), "memory bank").await?;
        Ok(("memory_bank".into(), shape, values))
    }
}
