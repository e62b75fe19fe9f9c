//! The picture path the CLI and the page share: sniffing, then decoding (EXIF orientation, 16 bit).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = dino_ar::input::sniff("f", data);
    let _ = dino_ar::input::decode_picture(data);
});
