//! A model bundle: safetensors with the JSON description (format 1 and 2) under `dino_ar`.
#![no_main]
#[path = "../harness.rs"]
mod harness;
libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::bundle(data));
