//! What a person said about scored images: *normal* (a false alarm, or a confirmed normal) or
//! *anomalous* (a confirmed finding, or a miss). Marks name an image by its file, the slice for a
//! volume, and its fingerprint — the first 16 hex digits of the SHA-256 of the file's bytes (what
//! `sha256sum` prints), so a colleague's copy of the same file is the same image and an edited one
//! is not. The images themselves never go into a marks file or a model.
//!
//! The CSV (`file,slice,fingerprint,mark`) is what the page exports and imports and what
//! `dino-ar fit --resume … --marks` and `dino-ar calibrate --marks` read: the same marks make the
//! same model in both.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::scores_csv::{field, split};

/// The file's fingerprint: the first 16 hex digits of its SHA-256.
pub fn fingerprint(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The fingerprint of a DICOM series: of its files' fingerprints, sorted (the files' order on
/// disk or in a drop does not matter).
pub fn series_fingerprint(files: &[&[u8]]) -> String {
    let mut each: Vec<String> = files.iter().map(|b| fingerprint(b)).collect();
    each.sort();
    fingerprint(each.concat().as_bytes())
}

named_choice! {
    /// What a person said an image is.
    pub enum Mark ("mark") {
        Normal = "normal", "normal (a false alarm, or a confirmed normal)";
        Anomalous = "anomalous", "anomalous (a finding, or a miss)";
    }
}

/// One marked image.
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Marked {
    /// The file's name as the run named it (a path relative to the marks file for the CLI).
    pub file: String,
    /// A volume's slice (in the model's plane); `null` (or absent) for a picture.
    #[cfg_attr(target_arch = "wasm32", tsify(optional, type = "number | null"))]
    #[serde(default)]
    pub slice: Option<usize>,
    pub fingerprint: String,
    #[cfg_attr(target_arch = "wasm32", tsify(type = "\"normal\" | \"anomalous\""))]
    pub mark: Mark,
}

impl Marked {
    /// How messages name it: `scan.nii.gz slice 40` or `a.png`.
    pub fn describe(&self) -> String {
        match self.slice {
            Some(n) => format!("{} slice {n}", self.file),
            None => self.file.clone(),
        }
    }
}

const HEADER: [&str; 4] = ["file", "slice", "fingerprint", "mark"];

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MarksError {
    #[error("marks file: line {line}: {message}")]
    Line { line: usize, message: String },
    #[error("marks file: the first line must be `file,slice,fingerprint,mark`, found `{0}`")]
    Header(String),
}

/// The marks as CSV, one line per image (the header first).
pub fn to_csv(marks: &[Marked]) -> String {
    let mut out = HEADER.join(",") + "\n";
    for m in marks {
        let slice = m.slice.map(|n| n.to_string()).unwrap_or_default();
        let line = [
            field(&m.file),
            slice,
            field(&m.fingerprint),
            m.mark.to_string(),
        ];
        out += &(line.join(",") + "\n");
    }
    out
}

/// Marks from CSV (as [`to_csv`] writes it; blank lines are skipped). A line that cannot be read
/// is an error naming its number. An image (fingerprint and slice) marked twice keeps its last
/// line: that is what a corrected mark looks like.
pub fn from_csv(text: &str) -> Result<Vec<Marked>, MarksError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let header = lines.next().map(|(_, l)| l.trim()).unwrap_or_default();
    if split(header).as_deref() != Some(&HEADER.map(String::from)[..]) {
        return Err(MarksError::Header(header.into()));
    }
    let mut marks: Vec<Marked> = Vec::new();
    for (i, line) in lines {
        let bad = |message: String| MarksError::Line {
            line: i + 1,
            message,
        };
        let cells = split(line).ok_or_else(|| bad("an unclosed quote".into()))?;
        let [file, slice, fingerprint, mark] = <[String; 4]>::try_from(cells).map_err(|c| {
            bad(format!(
                "{} fields, expected 4 ({})",
                c.len(),
                HEADER.join(",")
            ))
        })?;
        if file.is_empty() {
            return Err(bad("no file name".into()));
        }
        let slice = match slice.trim() {
            "" => None,
            s => Some(
                s.parse()
                    .map_err(|_| bad(format!("slice `{s}` is not a whole number")))?,
            ),
        };
        let fingerprint = fingerprint.trim().to_ascii_lowercase();
        if fingerprint.len() != 16 || !fingerprint.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad(format!(
                "fingerprint `{fingerprint}` is not 16 hex digits (the start of the file's SHA-256)"
            )));
        }
        let mark: Mark = mark.trim().parse().map_err(|e| bad(format!("{e}")))?;
        let m = Marked {
            file,
            slice,
            fingerprint,
            mark,
        };
        marks.retain(|o| !o.same_image(&m));
        marks.push(m);
    }
    Ok(marks)
}

impl Marked {
    fn same_image(&self, other: &Marked) -> bool {
        self.fingerprint == other.fingerprint && self.slice == other.slice
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_the_start_of_sha256() {
        // sha256("abc") = ba7816bf8f01cfea414140de5dae2223…
        assert_eq!(fingerprint(b"abc"), "ba7816bf8f01cfea");
        assert_eq!(
            series_fingerprint(&[b"a", b"b"]),
            series_fingerprint(&[b"b", b"a"])
        );
    }

    #[test]
    fn marks_round_trip_and_bad_lines_are_named() {
        let marks = vec![
            Marked {
                file: "a, \"odd\".png".into(),
                slice: None,
                fingerprint: "0123456789abcdef".into(),
                mark: Mark::Normal,
            },
            Marked {
                file: "scan.nii.gz".into(),
                slice: Some(40),
                fingerprint: "fedcba9876543210".into(),
                mark: Mark::Anomalous,
            },
        ];
        let csv = to_csv(&marks);
        assert_eq!(from_csv(&csv).unwrap(), marks);
        // A corrected mark: the last line for an image wins.
        let again = csv.clone() + "a.png,,0123456789ABCDEF,anomalous\n";
        let read = from_csv(&again).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(
            (read[1].file.as_str(), read[1].mark),
            ("a.png", Mark::Anomalous)
        );
        let e = from_csv(&(csv.clone() + "b.png,,0123,normal\n")).unwrap_err();
        assert!(e.to_string().contains("line 4") && e.to_string().contains("16 hex"));
        let e = from_csv(&(csv.clone() + "b.png,,0123456789abcdef,fine\n")).unwrap_err();
        assert!(e.to_string().contains("fine"), "{e}");
        let e = from_csv(&(csv + "b.png,x,0123456789abcdef,normal\n")).unwrap_err();
        assert!(e.to_string().contains("slice `x`"), "{e}");
        assert!(matches!(
            from_csv("name,score\n"),
            Err(MarksError::Header(_))
        ));
    }
}
