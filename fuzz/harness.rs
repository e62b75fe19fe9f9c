//! What each fuzz target does with its bytes, in one place: the libFuzzer targets
//! (`fuzz_targets/*.rs`) and the replay under `cargo test` (`tests/fuzz_replay.rs`) both include
//! this file, so the inputs CI replays exercise exactly the code the long runs fuzzed.
//!
//! Every function must return for any bytes: a value or a named error, never a panic, a hang or an
//! allocation past the limits in `dino_ar::limits`.

/// What a target does with one input.
#[allow(dead_code)]
pub type Target = fn(&[u8]);

/// The targets by name, as `cargo fuzz run NAME` and the corpus folders `fuzz/corpus/NAME` call them.
#[allow(dead_code)]
pub const TARGETS: [(&str, Target); 6] = [
    ("nifti", nifti),
    ("dicom", dicom),
    ("weights", weights),
    ("bundle", bundle),
    ("picture", picture),
    ("text", text),
];

/// NIfTI-1/2, plain and gzip.
pub fn nifti(data: &[u8]) {
    let _ = dino_ar::volume::nifti::read(data);
}

/// A DICOM file as the input path reads it (a one-file series) and its series UID.
pub fn dicom(data: &[u8]) {
    let _ = dino_ar::input::series_uid("f.dcm", data);
    if let Ok(v) = dino_ar::input::read_series(vec![("f.dcm".to_string(), data.to_vec())]) {
        // What a volume promises the code that slices it.
        assert_eq!(
            v.data.len(),
            v.dims.iter().product::<usize>(),
            "voxels for its dims"
        );
    }
}

/// Weights: safetensors or PyTorch's zip + pickle `.pth`, every tensor read to f32.
pub fn weights(data: &[u8]) {
    if let Ok(file) = dino_ar::weights::TensorFile::from_bytes(data) {
        for name in file.names().map(str::to_string).collect::<Vec<_>>() {
            let _ = file.get(&name).map(|t| t.to_f32(&name));
        }
    }
}

/// A model bundle: safetensors with the JSON description (format 1 and 2).
pub fn bundle(data: &[u8]) {
    let _ = dino_ar::bundle::Bundle::read(data);
}

/// The picture path the CLI and the page share: sniffing, then decoding.
pub fn picture(data: &[u8]) {
    let _ = dino_ar::input::sniff("f", data);
    if let Ok(img) = dino_ar::input::decode_picture(data) {
        assert_eq!(
            img.data.len(),
            img.width * img.height * 3,
            "RGB for its size"
        );
    }
}

/// Text a person or another tool hands over: the JS API's option objects (read through JSON, as
/// `web::convert` does), a Hugging Face `config.json`, a marks CSV, an interrupted scores.csv,
/// a threshold rule.
pub fn text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let spec = dino_ar::spec::FitSpec::from_json(text);
    if let (Ok(spec), Ok(serde_json::Value::Object(overrides))) =
        (&spec, serde_json::from_str::<serde_json::Value>(text))
    {
        let _ = spec.resumed(&overrides);
    }
    if let Ok(random) = serde_json::from_str::<dino_ar::backbone::random::RandomBackbone>(text) {
        let _ = random.config().validate();
    }
    let _ = serde_json::from_str::<Vec<dino_ar::scores_csv::ScoreRow>>(text);
    let _ = serde_json::from_str::<Vec<dino_ar::marks::Marked>>(text);
    let _ = dino_ar::backbone::BackboneConfig::vits16().with_hf_config(text);
    let _ = dino_ar::marks::from_csv(text);
    let _ = dino_ar::scores_csv::finished(text);
    let _ = text.parse::<dino_ar::threshold::Rule>();
}
