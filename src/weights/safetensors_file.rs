//! safetensors: an 8-byte header length, a JSON header, then the raw data.
//!
//! Parsed by hand rather than through the `safetensors` crate so that every failure can say which
//! tensor is cut short or malformed; writing uses the crate (see [`write_f32`]).

use std::collections::BTreeMap;

use super::{Dtype, FileFormat, RawTensor, TensorFile, WeightsError, elements};
use crate::limits::MAX_HEADER_BYTES;

#[derive(serde::Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

pub(super) fn read(bytes: &[u8]) -> Result<TensorFile, WeightsError> {
    if bytes.len() < 8 {
        return Err(WeightsError::NotWeights(format!(
            "only {} bytes, too short for a safetensors header",
            bytes.len()
        )));
    }
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let looks_like_json = bytes.get(8) == Some(&b'{');
    if !looks_like_json || header_len < 2 {
        return Err(WeightsError::NotWeights(
            "neither a safetensors file nor a PyTorch .pth (zip) checkpoint".into(),
        ));
    }
    if header_len > MAX_HEADER_BYTES {
        return Err(WeightsError::TooLarge(format!(
            "its header claims {header_len} bytes; at most {MAX_HEADER_BYTES} are read"
        )));
    }
    let header_end = 8 + header_len as usize;
    if header_end > bytes.len() {
        return Err(WeightsError::Truncated(format!(
            "the safetensors header claims {header_len} bytes but the file has only {}",
            bytes.len()
        )));
    }
    let header: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&bytes[8..header_end])
        .map_err(|e| {
            WeightsError::Corrupt(format!("the safetensors header is not valid JSON: {e}"))
        })?;
    let data = &bytes[header_end..];

    let mut tensors = BTreeMap::new();
    let mut metadata = BTreeMap::new();
    for (name, value) in header {
        if name == "__metadata__" {
            if let serde_json::Value::Object(map) = value {
                for (k, v) in map {
                    if let serde_json::Value::String(s) = v {
                        metadata.insert(k, s);
                    }
                }
            }
            continue;
        }
        let entry: Entry = serde_json::from_value(value).map_err(|e| {
            WeightsError::Corrupt(format!(
                "header entry for tensor `{name}` is malformed: {e}"
            ))
        })?;
        let dtype = parse_dtype(&entry.dtype);
        let [begin, end] = entry.data_offsets;
        if end > data.len() {
            return Err(WeightsError::Truncated(format!(
                "tensor `{name}` needs bytes {begin}..{end} of the data section, but it holds only {}",
                data.len()
            )));
        }
        let numel = elements(&name, &entry.shape)?;
        let expected = dtype.size().map(|s| s * numel);
        if begin > end || expected.is_some_and(|n| n != end - begin) {
            return Err(WeightsError::Corrupt(format!(
                "tensor `{name}` ({} {:?}) spans {} bytes",
                entry.dtype,
                entry.shape,
                end.saturating_sub(begin)
            )));
        }
        tensors.insert(
            name,
            RawTensor {
                dtype,
                shape: entry.shape,
                bytes: data[begin..end].to_vec(),
            },
        );
    }
    Ok(TensorFile {
        format: FileFormat::Safetensors,
        tensors,
        metadata,
    })
}

fn parse_dtype(s: &str) -> Dtype {
    match s {
        "F32" => Dtype::F32,
        "F16" => Dtype::F16,
        "BF16" => Dtype::BF16,
        "F64" => Dtype::F64,
        "I64" => Dtype::I64,
        "I32" => Dtype::I32,
        "I16" => Dtype::I16,
        "I8" => Dtype::I8,
        "U8" => Dtype::U8,
        "BOOL" => Dtype::Bool,
        other => Dtype::Other(other.to_string()),
    }
}

/// Serialise f32 tensors (name, shape, values) with optional string metadata.
pub fn write_f32(
    tensors: &[(&str, Vec<usize>, &[f32])],
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<Vec<u8>, WeightsError> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
                .map(|v| (name.to_string(), v))
                .map_err(|e| WeightsError::Corrupt(format!("cannot write tensor `{name}`: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::tensor::serialize(views, metadata)
        .map_err(|e| WeightsError::Corrupt(format!("cannot write safetensors: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        write_f32(
            &[
                ("a", vec![2, 3], &[1., 2., 3., 4., 5., 6.]),
                ("b", vec![1], &[7.]),
            ],
            None,
        )
        .unwrap()
    }

    #[test]
    fn round_trip() {
        let f = TensorFile::from_bytes(&sample()).unwrap();
        assert_eq!(f.format, FileFormat::Safetensors);
        let a = f.get("a").unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.to_f32("a").unwrap(), vec![1., 2., 3., 4., 5., 6.]);
    }

    #[test]
    fn truncation_names_the_tensor() {
        let bytes = sample();
        let e = TensorFile::from_bytes(&bytes[..bytes.len() - 2]).unwrap_err();
        assert!(matches!(e, WeightsError::Truncated(_)), "{e}");
        assert!(e.to_string().contains("tensor `"), "{e}");
        let e = TensorFile::from_bytes(&bytes[..20]).unwrap_err();
        assert!(matches!(e, WeightsError::Truncated(_)), "{e}");
        assert!(e.to_string().contains("header claims"), "{e}");
    }
}
