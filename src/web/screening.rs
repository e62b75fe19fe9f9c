//! The screening loop's rules for the page's own thread (no detector): marks as CSV, the
//! threshold rules and the ROC of marked scores, learning's defaults — the library's
//! (`crate::marks`, `crate::threshold`), so the page previews a rule exactly as `calibrate` will
//! apply it.

use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::convert::{from_js, js_err, to_js};
use crate::marks::{self, Marked};
use crate::threshold::{self, Rule};

/// Marks as the CSV a colleague (or `dino-ar fit --marks`) reads: `file,slice,fingerprint,mark`.
#[wasm_bindgen(js_name = marksToCsv)]
pub fn marks_to_csv(
    #[wasm_bindgen(unchecked_param_type = "Marked[]")] marks: JsValue,
) -> Result<String, JsValue> {
    let marks: Vec<Marked> = from_js(marks, "marks").map_err(js_err)?;
    Ok(marks::to_csv(&marks))
}

/// Marks from such a CSV; a line that cannot be read is an error naming its number.
#[wasm_bindgen(js_name = marksFromCsv, unchecked_return_type = "Marked[]")]
pub fn marks_from_csv(text: &str) -> Result<JsValue, JsValue> {
    to_js(&marks::from_csv(text).map_err(js_err)?)
}

/// The threshold `rule` picks on image scores (`quantile:Q`, `fpr:RATE`, `f1`, `recall:RATE`,
/// `manual:T`), with what it rests on and how it does — the rule `calibrate` applies.
#[wasm_bindgen(js_name = chooseThreshold, unchecked_return_type = "Choice")]
pub fn choose_threshold(rule: &str, normal: &[f32], anomalous: &[f32]) -> Result<JsValue, JsValue> {
    let rule: Rule = rule.parse().map_err(js_err)?;
    to_js(&threshold::choose(rule, normal, anomalous).map_err(js_err)?)
}

/// The ROC curve of marked scores, from flagging none to flagging all.
#[wasm_bindgen(js_name = rocCurve, unchecked_return_type = "RocPoint[]")]
pub fn roc_curve(normal: &[f32], anomalous: &[f32]) -> Result<JsValue, JsValue> {
    to_js(&threshold::roc(normal, anomalous))
}

/// `(false-alarm rate, recall)` of a threshold on marked scores (`recall` null without
/// anomalous ones): where the operating point sits.
#[wasm_bindgen(js_name = thresholdRates, unchecked_return_type = "{ falseAlarmRate: number; recall: number | null }")]
pub fn threshold_rates(
    threshold: f32,
    normal: &[f32],
    anomalous: &[f32],
) -> Result<JsValue, JsValue> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Rates {
        false_alarm_rate: f64,
        recall: Option<f64>,
    }
    let (false_alarm_rate, recall) = threshold::rates(threshold, normal, anomalous);
    to_js(&Rates {
        false_alarm_rate,
        recall,
    })
}

/// What the page's *Learn from my marks* passes to `learn`: `{ epochs, batchSize }`, a few passes
/// in small batches from the model's weights (`learn` itself takes the model's own settings
/// unless told).
#[wasm_bindgen(js_name = learnDefaults, unchecked_return_type = "{ epochs: number; batchSize: number }")]
pub fn learn_defaults() -> Result<JsValue, JsValue> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Defaults {
        epochs: usize,
        batch_size: usize,
    }
    to_js(&Defaults {
        epochs: crate::train::LEARN_EPOCHS,
        batch_size: crate::train::LEARN_BATCH_SIZE,
    })
}
