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
    let values = t
        .into_data_async()
        .await
        .map_err(|e| fail(format!("{e:?}")))?
        .try_into_vec::<f32>()
        .map_err(|e| fail(format!("{e:?}")))?;
    // A NaN or an infinity would pass through the metrics and the overlay as a silently wrong
    // answer: f16 overflowing is the likely cause on a GPU.
    let bad = values.iter().filter(|v| !v.is_finite()).count();
    if bad > 0 {
        return Err(ReadBackError {
            what,
            detail: format!(
                "{bad} of {} values are not finite (NaN or infinite): the computation \
                 overflowed; with precision f16, use f32",
                values.len()
            ),
        });
    }
    Ok(values)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use burn::tensor::{Device, Tensor, TensorData};

    use super::read_back;

    #[test]
    fn non_finite_values_are_an_error_not_an_answer() {
        let device = Device::flex();
        let t = Tensor::<1>::from_data(
            TensorData::new(vec![1.0, f32::NAN, f32::INFINITY], [3]),
            &device,
        );
        let e = pollster::block_on(read_back(t, "patch scores"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("patch scores")
                && e.contains("2 of 3 values are not finite")
                && e.contains("f16"),
            "{e}"
        );
        let fine = Tensor::<1>::from_data(TensorData::new(vec![1.0, -2.0], [2]), &device);
        assert_eq!(
            pollster::block_on(read_back(fine, "x")).unwrap(),
            vec![1.0, -2.0]
        );
    }
}
