//! NIfTI-1/2, plain and gzip: any bytes give a volume or a named error, within the limits.
#![no_main]
#[path = "../harness.rs"]
mod harness;
libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::nifti(data));
