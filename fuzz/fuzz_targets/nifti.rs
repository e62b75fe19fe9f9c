//! NIfTI-1/2, plain and gzip: any bytes give a volume or a named error, within the limits.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = dino_ar::volume::nifti::read(data);
});
