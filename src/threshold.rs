//! Threshold rules: how a model's verdict threshold is chosen from image scores — the one place
//! the CLI's `calibrate`, the JS API's `calibrate` and the page's rule picker call.
//!
//! An image is anomalous when its score is *above* the threshold ([`crate::score::is_anomalous`]),
//! so every rule below places the threshold *on* a score it leaves unflagged (ties with it are
//! unflagged too):
//!
//! - `quantile:Q` — the Q quantile (numpy's linear interpolation) of the normal scores: how `fit`
//!   has always set it, on its held-out normal images.
//! - `fpr:R` — "flag at most R of normal images": the (k+1)-th highest normal score, k = ⌊R·n⌋,
//!   so at most k normal images score above it. With fewer than ⌈1/R⌉ normal scores k is 0 and
//!   the threshold is their maximum; a warning says how many the rate needs.
//! - `f1` — the threshold with the highest F1 on the marked images (anomalous ones positive); of
//!   equal F1s the highest threshold (the fewest alarms).
//! - `recall:R` — the highest threshold that flags at least ⌈R·m⌉ of the m marked anomalous
//!   images: the highest marked score below the ⌈R·m⌉-th highest anomalous score (or just below
//!   that score when nothing marked is lower).
//! - `manual:T` — T itself: a person moved the operating point (the page's slider).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::score::quantile;

/// How a threshold is chosen; written `quantile:0.99`, `fpr:0.01`, `f1`, `recall:0.95`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// The quantile of normal images' scores (the held-out calibration of `fit`).
    Quantile(f64),
    /// At most this share of normal images flagged.
    FalseAlarms(f64),
    /// The best F1 on marked normal and anomalous images.
    F1,
    /// At least this share of marked anomalous images flagged.
    Recall(f64),
    /// Set by hand (the page's slider): the threshold itself.
    Manual(f32),
}

/// The rules' spellings, for help texts and error messages.
pub const RULES: &str = "quantile:Q, fpr:RATE, f1, recall:RATE or manual:THRESHOLD (e.g. fpr:0.01)";

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ThresholdError {
    #[error("unknown threshold rule `{0}`: expected {RULES}")]
    Unknown(String),
    #[error(
        "threshold rule `{rule}`: {value} is not a share between 0 and 1 (or, for manual, a number)"
    )]
    Share { rule: String, value: String },
    #[error("the threshold rule {0} needs scores of normal images, and none were given")]
    NoNormal(Rule),
    #[error(
        "the threshold rule {0} needs scores of anomalous images: mark (or give) some anomalous images"
    )]
    NoAnomalous(Rule),
    #[error("a {which} image's score is not a number (NaN): it cannot be ranked")]
    NotANumber { which: &'static str },
}

impl Rule {
    /// Whether the rule ranks marked anomalous images (so needs some).
    pub fn needs_anomalous(&self) -> bool {
        matches!(self, Rule::F1 | Rule::Recall(_))
    }

    fn check(self) -> Result<Self, ThresholdError> {
        let share = match self {
            Rule::Quantile(v) | Rule::Recall(v) => (0.0..=1.0).contains(&v),
            // A rate of 1 would flag every normal image: no threshold says that.
            Rule::FalseAlarms(v) => (0.0..1.0).contains(&v),
            Rule::F1 => true,
            Rule::Manual(t) => t.is_finite(),
        };
        match share {
            true => Ok(self),
            false => Err(ThresholdError::Share {
                rule: self.to_string(),
                value: match self {
                    Rule::Quantile(v) | Rule::FalseAlarms(v) | Rule::Recall(v) => v.to_string(),
                    Rule::F1 => String::new(),
                    Rule::Manual(t) => t.to_string(),
                },
            }),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Quantile(q) => write!(f, "quantile:{q}"),
            Rule::FalseAlarms(r) => write!(f, "fpr:{r}"),
            Rule::F1 => write!(f, "f1"),
            Rule::Recall(r) => write!(f, "recall:{r}"),
            Rule::Manual(t) => write!(f, "manual:{t}"),
        }
    }
}

impl FromStr for Rule {
    type Err = ThresholdError;
    fn from_str(s: &str) -> Result<Self, ThresholdError> {
        let s = s.trim();
        let (name, value) = match s.split_once(':') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (s, None),
        };
        let share = |v: Option<&str>| -> Result<f64, ThresholdError> {
            let v = v.ok_or_else(|| ThresholdError::Unknown(s.into()))?;
            // "1%" is read as 0.01: people write rates that way.
            let (v, scale) = match v.strip_suffix('%') {
                Some(p) => (p.trim(), 0.01),
                None => (v, 1.0),
            };
            v.parse::<f64>()
                .map(|x| x * scale)
                .map_err(|_| ThresholdError::Share {
                    rule: name.into(),
                    value: v.into(),
                })
        };
        let rule = match name.to_ascii_lowercase().as_str() {
            "quantile" | "q" => Rule::Quantile(share(value)?),
            "fpr" | "false-alarms" => Rule::FalseAlarms(share(value)?),
            "f1" if value.is_none() => Rule::F1,
            "recall" => Rule::Recall(share(value)?),
            "manual" => {
                let v = value.ok_or_else(|| ThresholdError::Unknown(s.into()))?;
                Rule::Manual(v.parse().map_err(|_| ThresholdError::Share {
                    rule: name.into(),
                    value: v.into(),
                })?)
            }
            _ => return Err(ThresholdError::Unknown(s.into())),
        };
        rule.check()
    }
}

impl Serialize for Rule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A threshold and what it rests on: the rule, how many scores, and how it does on them.
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Choice {
    pub threshold: f32,
    /// `quantile:0.99`, `fpr:0.01`, `f1` or `recall:0.95`.
    #[cfg_attr(target_arch = "wasm32", tsify(type = "string"))]
    pub rule: Rule,
    /// Normal images' scores it rests on.
    pub normal: usize,
    /// Anomalous images' scores it rests on.
    pub anomalous: usize,
    /// Share of those normal images scoring above the threshold.
    pub false_alarm_rate: f64,
    /// Share of those anomalous images scoring above it; `null` with none.
    pub recall: Option<f64>,
    /// Too few scores to support the rule, said in words (e.g. a 1 % rate on 30 images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// How `threshold` does on the scores: (false-alarm rate, recall or `None` without anomalous).
pub fn rates(threshold: f32, normal: &[f32], anomalous: &[f32]) -> (f64, Option<f64>) {
    let share = |s: &[f32]| s.iter().filter(|&&x| x > threshold).count() as f64 / s.len() as f64;
    let fpr = if normal.is_empty() {
        0.0
    } else {
        share(normal)
    };
    (fpr, (!anomalous.is_empty()).then(|| share(anomalous)))
}

/// The threshold `rule` picks on these image scores (see the module's doc for each rule).
pub fn choose(rule: Rule, normal: &[f32], anomalous: &[f32]) -> Result<Choice, ThresholdError> {
    let rule = rule.check()?;
    for (which, s) in [("normal", normal), ("anomalous", anomalous)] {
        if s.iter().any(|x| x.is_nan()) {
            return Err(ThresholdError::NotANumber { which });
        }
    }
    if rule.needs_anomalous() && anomalous.is_empty() {
        return Err(ThresholdError::NoAnomalous(rule));
    }
    if matches!(rule, Rule::Quantile(_) | Rule::FalseAlarms(_)) && normal.is_empty() {
        return Err(ThresholdError::NoNormal(rule));
    }
    let n = normal.len();
    let (threshold, warning) = match rule {
        Rule::Quantile(q) => {
            let needed = needed_for(1.0 - q);
            let warning = (q > 0.0 && q < 1.0 && n < needed).then(|| {
                format!(
                    "the {q} quantile of {n} normal score{} is close to their maximum: \
                     {needed} normal images are needed to place it",
                    if n == 1 { "" } else { "s" }
                )
            });
            (quantile(normal, q), warning)
        }
        Rule::FalseAlarms(r) => {
            let mut sorted = normal.to_vec();
            sorted.sort_unstable_by(|a, b| b.total_cmp(a));
            let k = (r * n as f64 + 1e-9).floor() as usize;
            let needed = needed_for(r);
            let warning = (r > 0.0 && n < needed).then(|| {
                format!(
                    "a false-alarm rate of {} needs at least {needed} normal images; with {n} \
                     the threshold is their maximum",
                    percent(r)
                )
            });
            (sorted[k.min(n - 1)], warning)
        }
        Rule::F1 => (
            best_f1(normal, anomalous),
            few_anomalous(anomalous.len(), 10),
        ),
        Rule::Manual(t) => (t, None),
        Rule::Recall(r) => {
            let m = anomalous.len();
            let wanted = ((r * m as f64 - 1e-9).ceil() as usize).clamp(1, m);
            let mut sorted = anomalous.to_vec();
            sorted.sort_unstable_by(|a, b| b.total_cmp(a));
            let last_flagged = sorted[wanted - 1];
            let below = normal
                .iter()
                .chain(anomalous)
                .copied()
                .filter(|&x| x < last_flagged)
                .max_by(f32::total_cmp);
            let warning = few_anomalous(m, needed_for(1.0 - r));
            (below.unwrap_or_else(|| last_flagged.next_down()), warning)
        }
    };
    let (false_alarm_rate, recall) = rates(threshold, normal, anomalous);
    let warning = match (warning, n == 0) {
        (None, true) => {
            Some("no normal images were scored: the false-alarm rate is unknown".into())
        }
        (w, _) => w,
    };
    Ok(Choice {
        threshold,
        rule,
        normal: n,
        anomalous: anomalous.len(),
        false_alarm_rate,
        recall,
        warning,
    })
}

/// Images needed before a share this small can be seen once: ⌈1/share⌉.
fn needed_for(share: f64) -> usize {
    if share <= 0.0 {
        return 1;
    }
    (1.0 / share - 1e-9).ceil() as usize
}

fn percent(r: f64) -> String {
    format!("{}%", (r * 1e4).round() / 1e2)
}

fn few_anomalous(m: usize, needed: usize) -> Option<String> {
    (m < needed).then(|| {
        format!(
            "only {m} marked anomalous image{}: the threshold follows {} closely; \
             {needed} or more make it steadier",
            if m == 1 { "" } else { "s" },
            if m == 1 { "it" } else { "them" }
        )
    })
}

/// Every cut between distinct marked scores, highest F1 first, then the highest threshold.
fn best_f1(normal: &[f32], anomalous: &[f32]) -> f32 {
    let mut candidates: Vec<f32> = normal.iter().chain(anomalous).copied().collect();
    candidates.sort_unstable_by(|a, b| b.total_cmp(a));
    candidates.dedup();
    // Below the lowest score: everything flagged.
    candidates.push(candidates[candidates.len() - 1].next_down());
    let mut best = (f64::NEG_INFINITY, candidates[0]);
    for t in candidates {
        let tp = anomalous.iter().filter(|&&x| x > t).count() as f64;
        let fp = normal.iter().filter(|&&x| x > t).count() as f64;
        let f1 = 2.0 * tp / (2.0 * tp + fp + (anomalous.len() as f64 - tp));
        // Descending thresholds: only a strictly better F1 moves the choice down.
        if f1 > best.0 {
            best = (f1, t);
        }
    }
    best.1
}

/// One point of the ROC curve of marked scores: flag above `threshold`.
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RocPoint {
    pub threshold: f32,
    pub false_alarm_rate: f64,
    pub recall: f64,
}

/// The ROC curve of the marked scores, from flagging nothing to flagging everything (one point
/// per distinct score, the page's curve and operating point).
pub fn roc(normal: &[f32], anomalous: &[f32]) -> Vec<RocPoint> {
    let mut cuts: Vec<f32> = normal
        .iter()
        .chain(anomalous)
        .copied()
        .filter(|x| !x.is_nan())
        .collect();
    cuts.sort_unstable_by(|a, b| b.total_cmp(a));
    cuts.dedup();
    if let Some(&low) = cuts.last() {
        cuts.push(low.next_down());
    }
    cuts.into_iter()
        .map(|threshold| {
            let (false_alarm_rate, recall) = rates(threshold, normal, anomalous);
            RocPoint {
                threshold,
                false_alarm_rate,
                recall: recall.unwrap_or(0.0),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(rule: &str, normal: &[f32], anomalous: &[f32]) -> Choice {
        choose(rule.parse().unwrap(), normal, anomalous).unwrap()
    }

    #[test]
    fn rules_read_and_write_their_spelling() {
        for s in [
            "quantile:0.99",
            "fpr:0.01",
            "f1",
            "recall:0.95",
            "manual:1.25",
        ] {
            assert_eq!(s.parse::<Rule>().unwrap().to_string(), s);
        }
        assert_eq!("fpr:1%".parse::<Rule>().unwrap(), Rule::FalseAlarms(0.01));
        assert_eq!(" F1 ".parse::<Rule>().unwrap(), Rule::F1);
        for bad in [
            "fpr",
            "fpr:2",
            "fpr:1",
            "recall:-0.1",
            "f1:3",
            "top:5",
            "quantile:x",
        ] {
            let e = bad.parse::<Rule>().unwrap_err().to_string();
            assert!(e.contains(bad.split(':').next().unwrap()), "{bad}: {e}");
        }
    }

    #[test]
    fn quantile_is_fits_calibration() {
        let c = pick("quantile:0.5", &[1.0, 2.0, 3.0, 4.0], &[]);
        assert_eq!(c.threshold, 2.5);
        assert_eq!(c.false_alarm_rate, 0.5);
        // 0.99 of three scores is their maximum, and it says so.
        let c = pick("quantile:0.99", &[1.0, 3.0, 2.0], &[]);
        assert!((c.threshold - 2.98).abs() < 1e-6);
        assert!(c.warning.unwrap().contains("100 normal images"));
    }

    #[test]
    fn false_alarm_rate_flags_at_most_its_share_with_ties_unflagged() {
        let normal: Vec<f32> = (1..=200).map(|i| i as f32).collect();
        // 1 % of 200: two may score above, so the third highest.
        let c = pick("fpr:0.01", &normal, &[]);
        assert_eq!(
            (c.threshold, c.false_alarm_rate, c.warning),
            (198.0, 0.01, None)
        );
        // Ties: the score at the cut and all equal to it stay unflagged, even if fewer than k
        // are then above.
        let c = pick("fpr:0.25", &[1.0, 5.0, 5.0, 5.0, 2.0, 3.0, 4.0, 5.0], &[]);
        assert_eq!((c.threshold, c.false_alarm_rate), (5.0, 0.0));
        // Too few for the rate: the maximum, with the count it needs.
        let c = pick("fpr:0.01", &[0.3, 0.9, 0.5], &[]);
        assert_eq!(c.threshold, 0.9);
        assert!(c.warning.unwrap().contains("at least 100 normal images"));
        assert_eq!(pick("fpr:0", &[0.3, 0.9], &[]).threshold, 0.9);
        assert!(matches!(
            choose(Rule::FalseAlarms(0.1), &[], &[1.0]),
            Err(ThresholdError::NoNormal(_))
        ));
    }

    #[test]
    fn f1_picks_the_best_cut_and_the_highest_of_equals() {
        // Separable: the cut just under the lowest anomalous score, on the highest normal.
        let c = pick("f1", &[0.1, 0.2, 0.3], &[0.5, 0.6]);
        assert_eq!(
            (c.threshold, c.false_alarm_rate, c.recall),
            (0.3, 0.0, Some(1.0))
        );
        // Overlap: normals 1..4, anomalous {3.5, 5, 6}. Cut at 3 → tp 3, fp 1 (4): F1 6/7; at 4
        // → tp 2, fp 0: F1 0.8; cut at 3 wins.
        let c = pick("f1", &[1.0, 2.0, 3.0, 4.0], &[3.5, 5.0, 6.0]);
        assert_eq!(c.threshold, 3.0);
        // Equal F1 at two cuts: above the normals (tp 2, fn 2: 2/3) and below everything
        // (tp 4, fp 4: 2/3). The higher one, the fewer alarms.
        let c = pick("f1", &[8.0, 7.0, 6.0, 5.0], &[10.0, 9.0, 4.0, 3.0]);
        assert_eq!(c.threshold, 8.0);
        let c = pick("f1", &[], &[2.0, 3.0]);
        assert_eq!(c.threshold, 2.0f32.next_down());
        assert!(c.warning.is_some());
        assert!(matches!(
            choose(Rule::F1, &[1.0], &[]),
            Err(ThresholdError::NoAnomalous(_))
        ));
    }

    #[test]
    fn recall_flags_the_share_asked_at_the_highest_threshold() {
        let normal = [0.1, 0.2, 0.45, 0.9];
        let anomalous = [0.3, 0.5, 0.7, 0.8];
        // 0.75 of 4 → 3 flagged: the third highest is 0.5; the highest marked score below it
        // is the normal 0.45.
        let c = pick("recall:0.75", &normal, &anomalous);
        assert_eq!((c.threshold, c.recall), (0.45, Some(0.75)));
        assert_eq!(c.false_alarm_rate, 0.25);
        // Everything: just under the lowest anomalous score's neighbour below, the normal 0.2.
        assert_eq!(pick("recall:1", &normal, &anomalous).threshold, 0.2);
        // Nothing lower marked: just under the score itself.
        let c = pick("recall:1", &[], &[0.4, 0.6]);
        assert_eq!((c.threshold, c.recall), (0.4f32.next_down(), Some(1.0)));
        assert!(c.warning.unwrap().contains("no normal images"));
    }

    #[test]
    fn roc_runs_from_nothing_flagged_to_everything() {
        let r = roc(&[0.1, 0.3], &[0.2, 0.4]);
        let pts: Vec<(f64, f64)> = r.iter().map(|p| (p.false_alarm_rate, p.recall)).collect();
        assert_eq!(
            pts,
            [(0.0, 0.0), (0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (1.0, 1.0)]
        );
        assert!(choose(Rule::F1, &[f32::NAN], &[1.0]).is_err());
        let c = choose(Rule::Manual(0.25), &[0.1, 0.3], &[0.2, 0.4]).unwrap();
        assert_eq!(
            (c.threshold, c.false_alarm_rate, c.recall),
            (0.25, 0.5, Some(0.5))
        );
    }
}
