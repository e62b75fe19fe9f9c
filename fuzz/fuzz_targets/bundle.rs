//! A model bundle: safetensors with the JSON description (format 1 and 2) under `dino_ar`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = dino_ar::bundle::Bundle::read(data);
});
