//! A DICOM file as the input path reads it (one file, a one-file series) and its series UID.
#![no_main]
#[path = "../harness.rs"]
mod harness;
libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::dicom(data));
