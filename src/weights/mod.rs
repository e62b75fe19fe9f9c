//! Reading tensor files from bytes: safetensors and PyTorch `torch.save` checkpoints.
//!
//! This layer knows file formats, not models: it turns bytes into named host tensors and says
//! precisely what is wrong with a bad file. Mapping names onto a model lives with the model
//! (`backbone::load`). Everything works from a byte slice so the browser can use it unchanged.

mod pth;
mod safetensors_file;

pub use safetensors_file::write_f32 as write_safetensors_f32;

use std::collections::BTreeMap;
use std::fmt;

use crate::limits::MAX_TENSOR_ELEMENTS;

/// Element type of a stored tensor, as the file declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
    Other(String),
}

impl Dtype {
    /// Bytes per element, or `None` for a type this crate cannot even lay out.
    pub fn size(&self) -> Option<usize> {
        Some(match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
            Dtype::Other(_) => return None,
        })
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Dtype::F32 => "float32",
            Dtype::F16 => "float16",
            Dtype::BF16 => "bfloat16",
            Dtype::F64 => "float64",
            Dtype::I64 => "int64",
            Dtype::I32 => "int32",
            Dtype::I16 => "int16",
            Dtype::I8 => "int8",
            Dtype::U8 => "uint8",
            Dtype::Bool => "bool",
            Dtype::Other(s) => s,
        };
        f.write_str(name)
    }
}

/// Which container the bytes were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Safetensors,
    TorchZip,
}

impl fmt::Display for FileFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileFormat::Safetensors => "safetensors",
            FileFormat::TorchZip => "PyTorch checkpoint (torch.save zip)",
        })
    }
}

/// Everything that can be wrong with a weights file. Messages name the tensor and shapes involved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WeightsError {
    #[error("not a weights file: {0}")]
    NotWeights(String),
    #[error("weights file is truncated: {0}")]
    Truncated(String),
    #[error("corrupt weights file: {0}")]
    Corrupt(String),
    /// Past a limit of `crate::limits`: says which, and the value found.
    #[error("weights file too large: {0}")]
    TooLarge(String),
    #[error("unknown weights layout: {0}")]
    UnknownLayout(String),
    #[error("missing tensor `{0}`")]
    MissingTensor(String),
    #[error("tensor `{name}` has shape {found:?} but the config needs {expected:?}")]
    ShapeMismatch {
        name: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error(
        "tensor `{name}` has unsupported dtype {dtype} (supported: float32, float16, bfloat16)"
    )]
    UnsupportedDtype { name: String, dtype: Dtype },
    #[error("invalid config: {0}")]
    Config(String),
    #[error(
        "tensor `{name}` holds {value} at index {index}: the weights are damaged (every value must be finite)"
    )]
    NonFinite {
        name: String,
        index: usize,
        value: f32,
    },
}

/// The element count of a tensor of `shape`, refused past [`MAX_TENSOR_ELEMENTS`] (a product
/// that would overflow included) before anything of that size is allocated.
pub(crate) fn elements(name: &str, shape: &[usize]) -> Result<usize, WeightsError> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= MAX_TENSOR_ELEMENTS)
        .ok_or_else(|| {
            WeightsError::TooLarge(format!(
                "tensor `{name}` has shape {shape:?}: more than the {MAX_TENSOR_ELEMENTS} elements read"
            ))
        })
}

/// One tensor as stored: contiguous little-endian bytes in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl RawTensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The values as f32; fp16 and bf16 are widened exactly, anything else is refused, and so is a
    /// NaN or an infinity (which would silently turn every result into NaN).
    pub fn to_f32(&self, name: &str) -> Result<Vec<f32>, WeightsError> {
        let b = &self.bytes;
        let out: Vec<f32> = match self.dtype {
            Dtype::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => b
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => b
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            _ => {
                return Err(WeightsError::UnsupportedDtype {
                    name: name.to_string(),
                    dtype: self.dtype.clone(),
                });
            }
        };
        debug_assert_eq!(out.len(), self.numel());
        if let Some(index) = out.iter().position(|v| !v.is_finite()) {
            return Err(WeightsError::NonFinite {
                name: name.to_string(),
                index,
                value: out[index],
            });
        }
        Ok(out)
    }
}

/// The named tensors of one file (nested checkpoint dicts are flattened with `.`).
#[derive(Debug, Clone)]
pub struct TensorFile {
    pub format: FileFormat,
    pub tensors: BTreeMap<String, RawTensor>,
    /// The safetensors `__metadata__` strings (empty for checkpoints).
    pub metadata: BTreeMap<String, String>,
}

impl TensorFile {
    /// Recognise the container from its first bytes and read it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WeightsError> {
        if bytes.is_empty() {
            return Err(WeightsError::NotWeights("the file is empty".into()));
        }
        if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
            return pth::read(bytes);
        }
        if let Some(what) = sniff_foreign(bytes) {
            return Err(WeightsError::NotWeights(what));
        }
        safetensors_file::read(bytes)
    }

    pub fn get(&self, name: &str) -> Option<&RawTensor> {
        self.tensors.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }
}

/// Name files that are clearly something else, so the user learns what they picked.
fn sniff_foreign(bytes: &[u8]) -> Option<String> {
    let known: [(&[u8], &str); 8] = [
        (b"\x89PNG", "it is a PNG image"),
        (b"\xff\xd8\xff", "it is a JPEG image"),
        (b"GIF8", "it is a GIF image"),
        (
            b"version https://git-lfs",
            "it is a Git LFS pointer, not the weights themselves (run `git lfs pull`)",
        ),
        (
            b"<!DOCTYPE",
            "it is an HTML page (a login or error page saved instead of the weights?)",
        ),
        (
            b"<html",
            "it is an HTML page (a login or error page saved instead of the weights?)",
        ),
        (b"\x1f\x8b", "it is gzip-compressed; decompress it first"),
        (
            b"\x80\x02\x8a",
            "it is a legacy (pre-1.6) torch.save file; re-save it with a current PyTorch (`torch.save(sd, path)`)",
        ),
    ];
    known
        .iter()
        .find(|(magic, _)| bytes.starts_with(magic))
        .map(|(_, what)| what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A safetensors file of this JSON header and no data.
    fn safetensors(header: &str) -> Vec<u8> {
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(header.as_bytes());
        b
    }

    #[test]
    fn sizes_past_the_limits_are_refused_naming_the_limit() {
        // A header claiming 200 MB.
        let mut huge = 200_000_000u64.to_le_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        let e = TensorFile::from_bytes(&huge).unwrap_err().to_string();
        assert!(e.contains("200000000") && e.contains("100000000"), "{e}");
        // A shape whose element count overflows, and one past the limit: refused, not wrapped.
        for shape in ["[1099511627776, 1099511627776]", "[65536, 65536]"] {
            let header =
                format!(r#"{{"w":{{"dtype":"F32","shape":{shape},"data_offsets":[0,0]}}}}"#);
            let e = TensorFile::from_bytes(&safetensors(&header))
                .unwrap_err()
                .to_string();
            assert!(e.contains("tensor `w`") && e.contains("1073741824"), "{e}");
        }
        assert_eq!(elements("x", &[3, 4]).unwrap(), 12);
    }

    #[test]
    fn empty_and_foreign_files_are_named() {
        let e = TensorFile::from_bytes(&[]).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let e = TensorFile::from_bytes(b"\x89PNG\r\n\x1a\n0000").unwrap_err();
        assert!(e.to_string().contains("PNG image"), "{e}");
        let e = TensorFile::from_bytes(b"hello world, this is text").unwrap_err();
        assert!(matches!(e, WeightsError::NotWeights(_)), "{e}");
    }

    #[test]
    fn half_types_widen_and_ints_are_refused() {
        let t = RawTensor {
            dtype: Dtype::BF16,
            shape: vec![2],
            bytes: [
                half::bf16::from_f32(1.5).to_le_bytes(),
                half::bf16::from_f32(-2.0).to_le_bytes(),
            ]
            .concat(),
        };
        assert_eq!(t.to_f32("x").unwrap(), vec![1.5, -2.0]);
        let t = RawTensor {
            dtype: Dtype::F16,
            shape: vec![1],
            bytes: half::f16::from_f32(0.25).to_le_bytes().to_vec(),
        };
        assert_eq!(t.to_f32("x").unwrap(), vec![0.25]);
        let t = RawTensor {
            dtype: Dtype::I64,
            shape: vec![1],
            bytes: vec![0; 8],
        };
        let e = t.to_f32("blocks.0.x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "tensor `blocks.0.x` has unsupported dtype int64 (supported: float32, float16, bfloat16)"
        );
    }

    #[test]
    fn nan_and_inf_are_refused_by_name() {
        for (bad, shown) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf")] {
            let t = RawTensor {
                dtype: Dtype::F32,
                shape: vec![3],
                bytes: [1.0f32, bad, 2.0]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            };
            let e = t.to_f32("blocks.1.mlp.fc1.weight").unwrap_err().to_string();
            assert!(e.contains("`blocks.1.mlp.fc1.weight` holds"), "{e}");
            assert!(e.contains(shown) && e.contains("index 1"), "{e}");
        }
        let t = RawTensor {
            dtype: Dtype::F16,
            shape: vec![1],
            bytes: half::f16::NAN.to_le_bytes().to_vec(),
        };
        assert!(matches!(t.to_f32("x"), Err(WeightsError::NonFinite { .. })));
    }
}
