//! Text a person or another tool hands over: the JS API's option objects, a config.json, a marks CSV,
//! an interrupted run's scores.csv, a threshold rule.
#![no_main]
#[path = "../harness.rs"]
mod harness;
libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::text(data));
