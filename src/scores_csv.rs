//! `scores.csv`: one row per image of a scoring run, written the same way by the CLI and the page
//! (which calls this through the wasm). An image that could not be scored keeps its row, with the
//! reason in the verdict column. A volume has a row per slice (`slice` set) and one for the whole
//! volume (`worst_slice` says where its score, the highest, is).

use serde::{Deserialize, Serialize};

use crate::score::{ImageScore, verdict};

pub const HEADER: [&str; 8] = [
    "file",
    "score",
    "score_top1",
    "threshold",
    "verdict",
    "slice",
    "worst_slice",
    "note",
];

/// One image's line.
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// A volume's slice (from 0, in the model's plane): this row is that slice.
    #[serde(default)]
    pub slice: Option<usize>,
    /// A volume's row: the slice with the highest score (the volume's score).
    #[serde(default)]
    pub worst_slice: Option<usize>,
    /// What the user should know (how a file was read, a window against its modality).
    #[serde(default)]
    pub note: Option<String>,
}

impl ScoreRow {
    /// A picture's row, or a row with only the file (then `error` or a score is set).
    pub fn new(file: &str, threshold: f32) -> Self {
        Self {
            file: file.to_string(),
            score: None,
            score_top1: None,
            threshold,
            error: None,
            slice: None,
            worst_slice: None,
            note: None,
        }
    }

    pub fn scored(file: &str, score: &ImageScore, threshold: f32) -> Self {
        Self {
            score: Some(score.max),
            score_top1: Some(score.top1),
            ..Self::new(file, threshold)
        }
    }

    /// A file that could not be scored, with why.
    pub fn refused(file: &str, threshold: f32, error: &str) -> Self {
        Self {
            error: Some(error.to_string()),
            ..Self::new(file, threshold)
        }
    }

    /// A volume's rows: one per slice (`slices[n]` is slice n's score), then the volume's own
    /// (the worst slice's score, which slice, and what the reader and the window said).
    pub fn volume(
        file: &str,
        slices: &[ImageScore],
        worst: usize,
        threshold: f32,
        notes: &[String],
    ) -> Vec<Self> {
        let mut rows: Vec<Self> = slices
            .iter()
            .enumerate()
            .map(|(n, s)| Self {
                slice: Some(n),
                ..Self::scored(file, s, threshold)
            })
            .collect();
        if let Some(w) = slices.get(worst) {
            rows.push(Self {
                worst_slice: Some(worst),
                note: (!notes.is_empty()).then(|| notes.join("; ")),
                ..Self::scored(file, w, threshold)
            });
        }
        rows
    }
}

/// The files a scoring run writes for one input, by its stem ([`crate::input::stem`]): the same
/// names from the CLI and the page.
pub mod names {
    use crate::volume::Plane;

    pub fn overlay(stem: &str) -> String {
        format!("{stem}_overlay.png")
    }

    /// A volume's anomaly map on its own voxel grid.
    pub fn anomaly_map(stem: &str) -> String {
        format!("{stem}_anomaly.nii.gz")
    }

    /// The folder (the CLI) or ZIP archive (the page, with `.zip`) of a volume's slice overlays.
    pub fn slice_overlays(stem: &str) -> String {
        format!("{stem}_overlays")
    }

    pub fn slice_overlay(plane: Plane, n: usize) -> String {
        format!("{plane}_{n:04}.png")
    }

    /// One slice's overlay saved on its own (the page's export of the slice shown).
    pub fn slice_overlay_alone(stem: &str, plane: Plane, n: usize) -> String {
        overlay(&format!("{stem}_{plane}_{n:04}"))
    }

    /// The description a NIfTI anomaly map carries.
    pub fn map_description(threshold: f32) -> String {
        format!("dino-ar anomaly map, threshold {threshold}")
    }

    /// Stems made unique within one run: the second `scan` is `scan_2`, and so on.
    #[derive(Default)]
    pub struct Unique(std::collections::HashSet<String>);

    impl Unique {
        pub fn stem(&mut self, stem: &str) -> String {
            let mut name = stem.to_string();
            for k in 2.. {
                if self.0.insert(name.clone()) {
                    break;
                }
                name = format!("{stem}_{k}");
            }
            name
        }
    }
}

/// The fields of one CSV line (RFC 4180 quotes); `None` when a quote is not closed.
pub(crate) fn split(line: &str) -> Option<Vec<String>> {
    let mut cells = vec![String::new()];
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        let cell = cells.last_mut().expect("one cell at least");
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (false, '"') if cell.is_empty() => quoted = true,
            (false, ',') => cells.push(String::new()),
            (_, c) => cell.push(c),
        }
    }
    (!quoted).then_some(cells)
}

/// What an interrupted scoring run left in its `scores.csv` (`text`): the lines of the inputs it
/// finished — a picture's row (or its refusal), a volume's slice rows with its own row after
/// them — and those inputs' names. A torn last line, or a volume's slice rows without the
/// volume's row, are left out: those inputs were not finished. `scores.csv` is written by
/// [`write_header`] and [`write_rows`] an input at a time, so this is every finished input.
pub fn finished(text: &str) -> Result<(String, std::collections::HashSet<String>), String> {
    let mut lines = text.split_inclusive('\n');
    let header = HEADER.join(",") + "\n";
    if lines.next() != Some(header.as_str()) {
        return Err(format!(
            "it is not a scores.csv of this version (its first line is not `{}`)",
            HEADER.join(",")
        ));
    }
    let (mut kept, mut done) = (header, std::collections::HashSet::new());
    let mut pending: Vec<&str> = Vec::new();
    let mut pending_file = String::new();
    for line in lines.filter(|l| l.ends_with('\n')) {
        let Some(cells) = split(line.trim_end_matches(['\n', '\r'])) else {
            continue;
        };
        let [file, _, _, _, _, slice, worst, _] = <[String; 8]>::try_from(cells).map_err(|c| {
            format!(
                "a line has {} fields, not {}: {line:?}",
                c.len(),
                HEADER.len()
            )
        })?;
        if file != pending_file {
            pending.clear();
        }
        match (slice.is_empty(), worst.is_empty()) {
            // A slice of a volume: finished when the volume's own row follows.
            (false, _) => {
                pending_file = file;
                pending.push(line);
            }
            (true, false) if file == pending_file => {
                kept.extend(pending.drain(..));
                kept.push_str(line);
                done.insert(file);
            }
            // A picture, a refusal — or a volume's row without its slices (not written so).
            (true, _) => {
                kept.push_str(line);
                done.insert(file);
            }
        }
    }
    Ok((kept, done))
}

/// The header line that starts a `scores.csv` written an input at a time ([`write_rows`]).
pub fn write_header() -> String {
    HEADER.join(",") + "\n"
}

/// The lines of some rows, without the header: appended to `scores.csv` as each input is done.
pub fn write_rows(rows: &[ScoreRow]) -> String {
    write(rows)
        .split_once('\n')
        .map_or(String::new(), |(_, body)| body.to_string())
}

/// One CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
pub(crate) fn field(s: &str) -> String {
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
        let index = |v: Option<usize>| v.map(|v| v.to_string()).unwrap_or_default();
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
            index(r.slice),
            index(r.worst_slice),
            field(r.note.as_deref().unwrap_or_default()),
        ];
        out += &(line.join(",") + "\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_run_keeps_its_finished_inputs_only() {
        let score = ImageScore {
            max: 0.9,
            top1: 0.5,
        };
        let mut text = write_header();
        text += &write_rows(&[ScoreRow::scored("a,1.png", &score, 0.5)]);
        text += &write_rows(&[ScoreRow::refused("b.gif", 0.5, "not an image")]);
        text += &write_rows(&ScoreRow::volume("v.nii", &[score, score], 1, 0.5, &[]));
        let whole = text.clone();
        // A volume whose slices were written but not its own row, then a torn line.
        text += &write_rows(&[ScoreRow::volume("w.nii", &[score, score], 0, 0.5, &[])[0].clone()]);
        text += "c.png,0.4,0.3,0.5,nor";
        let (kept, done) = finished(&text).unwrap();
        assert_eq!(kept, whole);
        let mut names: Vec<_> = done.into_iter().collect();
        names.sort();
        assert_eq!(names, ["a,1.png", "b.gif", "v.nii"]);
        assert!(finished("file,score\n").unwrap_err().contains("first line"));
        assert_eq!(finished(&write_header()).unwrap().1.len(), 0);
    }

    #[test]
    fn rows_quote_what_needs_it_and_keep_failures() {
        let rows = [
            ScoreRow {
                file: "a,b.png".into(),
                score: Some(0.5),
                score_top1: Some(0.25),
                threshold: 0.5,
                error: None,
                slice: None,
                worst_slice: None,
                note: None,
            },
            ScoreRow {
                file: "v.nii.gz".into(),
                score: Some(0.75),
                score_top1: Some(0.5),
                threshold: 0.5,
                error: None,
                slice: Some(3),
                worst_slice: None,
                note: None,
            },
            ScoreRow {
                file: "v.nii.gz".into(),
                score: Some(0.75),
                score_top1: Some(0.5),
                threshold: 0.5,
                error: None,
                slice: None,
                worst_slice: Some(3),
                note: Some("a 4-D file".into()),
            },
            ScoreRow {
                file: "c.gif".into(),
                score: None,
                score_top1: None,
                threshold: 0.5,
                error: Some("not an image, \"GIF\"".into()),
                slice: None,
                worst_slice: None,
                note: None,
            },
        ];
        assert_eq!(
            write(&rows),
            "file,score,score_top1,threshold,verdict,slice,worst_slice,note\n\
             \"a,b.png\",0.5,0.25,0.5,normal,,,\n\
             v.nii.gz,0.75,0.5,0.5,anomalous,3,,\n\
             v.nii.gz,0.75,0.5,0.5,anomalous,,3,a 4-D file\n\
             c.gif,,,0.5,\"error: not an image, \"\"GIF\"\"\",,,\n"
        );
    }
}
