//! Weights files: safetensors and PyTorch's zip + pickle `.pth`, told apart by their first bytes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(file) = dino_ar::weights::TensorFile::from_bytes(data) {
        for name in file.names().map(str::to_string).collect::<Vec<_>>() {
            let _ = file.get(&name).map(|t| t.to_f32(&name));
        }
    }
});
