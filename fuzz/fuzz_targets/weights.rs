//! Weights files: safetensors and PyTorch's zip + pickle `.pth`, told apart by their first bytes.
#![no_main]
#[path = "../harness.rs"]
mod harness;
libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::weights(data));
