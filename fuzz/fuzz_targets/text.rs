//! Text a person or another tool hands over: fit options (JSON, as the JS API reads them), a marks
//! CSV, an interrupted run's scores.csv, a threshold rule.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = dino_ar::spec::FitSpec::from_json(text);
    let _ = dino_ar::marks::from_csv(text);
    let _ = dino_ar::scores_csv::finished(text);
    let _ = text.parse::<dino_ar::threshold::Rule>();
});
