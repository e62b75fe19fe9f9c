//! Bringing a tensor's values to the host. Always asynchronous: on WebGPU in the browser a
//! synchronous read cannot complete, so every read in the crate goes through here.

use burn::tensor::Tensor;

/// A read-back that failed, naming what was being read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("reading the {what} back from the device failed: {detail}")]
pub struct ReadBackError {
    pub what: &'static str,
    pub detail: String,
}

/// The values of `t` as f32, row-major.
pub async fn read_back<const N: usize>(
    t: Tensor<N>,
    what: &'static str,
) -> Result<Vec<f32>, ReadBackError> {
    // On a GPU, work that failed (most often a buffer over the device's limit) shows up here.
    let hint = if t.device() == burn::tensor::Device::flex() {
        ""
    } else {
        " (on a GPU this usually means a buffer larger than the device takes: lower the batch \
         or input size, or use the CPU)"
    };
    let fail = |detail: String| ReadBackError {
        what,
        detail: format!("{detail}{hint}"),
    };
    t.into_data_async()
        .await
        .map_err(|e| fail(format!("{e:?}")))?
        .try_into_vec::<f32>()
        .map_err(|e| fail(format!("{e:?}")))
}
