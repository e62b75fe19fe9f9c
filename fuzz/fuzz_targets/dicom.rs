//! A DICOM file as the input path reads it (one file, a one-file series) and its series UID.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = dino_ar::input::series_uid("f.dcm", data);
    let _ = dino_ar::input::read_series(vec![("f.dcm".to_string(), data.to_vec())]);
});
