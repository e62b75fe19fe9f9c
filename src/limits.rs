//! The largest inputs the readers accept, stated once. Each is checked *before* anything of that
//! size is allocated or inflated, and the error names the limit and the value found: a 377-byte
//! file cannot make a reader ask for gigabytes, and a compressed file stops inflating at the limit.

/// An input file read whole (a picture, a NIfTI volume, a DICOM file): its bytes and what they
/// decode to must fit the page's memory (wasm32: 4 GiB in all). Room for a float32 volume of
/// [`MAX_VOXELS`]; a file past it is refused before a byte of it is read.
pub const MAX_FILE_BYTES: u64 = 3 << 29;

/// Voxels in one volume (NIfTI, a DICOM series or multi-frame file): 1 GiB as f32.
pub const MAX_VOXELS: usize = 1 << 28;

/// A decoded picture's longest side, in pixels.
pub const MAX_IMAGE_SIDE: usize = 16_384;

/// What a picture decoder may allocate for one image (a 16-bit RGBA image of 8 192² pixels), and
/// what one compressed DICOM frame (JPEG, JPEG 2000) may decode to.
pub const MAX_IMAGE_BYTES: u64 = 512 << 20;

/// The model's input side, in pixels (the backbone's grid is this over its patch size).
pub const MAX_INPUT_SIDE: usize = 4096;

/// A safetensors file's JSON header, in bytes.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// What a compressed input may inflate to, in bytes (a `.nii.gz`, a deflated DICOM data set).
pub const MAX_INFLATED_BYTES: u64 = 2 << 30;

/// The elements of one tensor in a weights file (4 GiB as f32; ViT-7B's largest is far below).
pub const MAX_TENSOR_ELEMENTS: usize = 1 << 30;
