//! `scores.csv`: one row per image of a scoring run, written the same way by the CLI and the page
//! (which calls this through the wasm). An image that could not be scored keeps its row, with the
//! reason in the verdict column.

use serde::Deserialize;

use crate::score::verdict;

pub const HEADER: [&str; 5] = ["file", "score", "score_top1", "threshold", "verdict"];

/// One image's line.
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScoreRow {
    pub file: String,
    /// The image score (map maximum); absent when the image could not be scored.
    #[serde(default)]
    pub score: Option<f32>,
    #[serde(default)]
    pub score_top1: Option<f32>,
    pub threshold: f32,
    /// Why the image could not be scored.
    #[serde(default)]
    pub error: Option<String>,
}

fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The whole file: header, then one line per row (numbers in their shortest exact form).
pub fn write(rows: &[ScoreRow]) -> String {
    let mut out = HEADER.join(",") + "\n";
    for r in rows {
        let num = |v: Option<f32>| v.map(|v| v.to_string()).unwrap_or_default();
        let verdict = match (&r.error, r.score) {
            (Some(e), _) => format!("error: {e}"),
            (None, Some(s)) => verdict(s, r.threshold).to_string(),
            (None, None) => "error: no score".to_string(),
        };
        let line = [
            field(&r.file),
            num(r.score),
            num(r.score_top1),
            r.threshold.to_string(),
            field(&verdict),
        ];
        out += &(line.join(",") + "\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_quote_what_needs_it_and_keep_failures() {
        let rows = [
            ScoreRow {
                file: "a,b.png".into(),
                score: Some(0.5),
                score_top1: Some(0.25),
                threshold: 0.5,
                error: None,
            },
            ScoreRow {
                file: "c.gif".into(),
                score: None,
                score_top1: None,
                threshold: 0.5,
                error: Some("not an image, \"GIF\"".into()),
            },
        ];
        assert_eq!(
            write(&rows),
            "file,score,score_top1,threshold,verdict\n\
             \"a,b.png\",0.5,0.25,0.5,normal\n\
             c.gif,,,0.5,\"error: not an image, \"\"GIF\"\"\"\n"
        );
    }
}
