//! The picture path the CLI and the page share: sniffing, then decoding (EXIF orientation, 16 bit).
#![no_main]
#[path = "../harness.rs"]
mod harness;
libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::picture(data));
