//! Intensity windows: how raw intensities (Hounsfield units, MR signal, 8-bit pixels) become the
//! grey values in [0, 1] the backbone sees. A model stores its window (in its [`FitSpec`]), so
//! scoring preprocesses exactly as training did, and the window decides what it can read: a CT
//! window needs Hounsfield units (a PNG has none), "as is" needs 8-bit values.
//!
//! [`FitSpec`]: crate::spec::FitSpec

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Volume, finite_range};
use crate::infra::named::SettingError;
use crate::preprocess::RgbImage;

/// CT presets: name, centre (level) and width in Hounsfield units, what it shows.
pub const CT_PRESETS: [(&str, f32, f32, &str); 4] = [
    ("ct-brain", 40.0, 80.0, "brain"),
    ("ct-liver", 30.0, 150.0, "liver"),
    ("ct-soft-tissue", 40.0, 400.0, "soft tissue"),
    ("ct-bone", 400.0, 1800.0, "bone"),
];

/// The default percentile window, per volume (or per picture).
const PERCENTILES: (f32, f32) = (0.5, 99.5);

/// How raw intensities become grey values. Written (CLI, JS, bundle) as `auto`, `as-is`, a CT preset
/// (`ct-brain`, `ct-liver`, `ct-soft-tissue`, `ct-bone`), `ct:CENTRE,WIDTH` (HU), `percentile`
/// (0.5–99.5 % of each volume) or `percentile:LOW,HIGH`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Window {
    /// The default, for any input: pictures and 8-bit volumes as they are, every other volume
    /// through its own percentiles (as [`Window::Percentile`]'s default). The rule is decided per
    /// file, so scoring reads each file as training read one of its kind.
    #[default]
    Auto,
    /// 8-bit pictures and 8-bit volumes as they are (value / 255).
    AsIs,
    /// A CT window: `centre ± width / 2` Hounsfield units map to black … white.
    Ct { centre: f32, width: f32 },
    /// Per volume (or picture): its `low` % … `high` % intensity percentiles map to black … white
    /// (MR, whose scale differs between scanners).
    Percentile { low: f32, high: f32 },
}

impl Window {
    /// The windows a menu offers (a typed `ct:C,W` or `percentile:L,H` is accepted too), each
    /// with a label for people.
    pub fn menu() -> Vec<(String, String)> {
        let mut out = vec![
            (
                Window::Auto.to_string(),
                "auto (pictures as they are, other volumes by percentiles)".to_string(),
            ),
            (
                Window::AsIs.to_string(),
                "as is (8-bit pictures)".to_string(),
            ),
        ];
        for (name, centre, width, what) in CT_PRESETS {
            out.push((
                name.to_string(),
                format!("CT {what} (centre {centre}, width {width} HU)"),
            ));
        }
        out.push((
            Window::percentile().to_string(),
            format!(
                "percentiles {}–{} % per volume (MR)",
                PERCENTILES.0, PERCENTILES.1
            ),
        ));
        out
    }

    fn percentile() -> Window {
        Window::Percentile {
            low: PERCENTILES.0,
            high: PERCENTILES.1,
        }
    }

    /// The (low, high) intensities that become black and white in `volume`, or why this window
    /// cannot read it; with a warning when it reads it against its kind (a CT window on MR).
    pub fn levels(&self, volume: &Volume) -> Result<(Levels, Option<String>), String> {
        match *self {
            Window::Auto if volume.eight_bit => Window::AsIs.levels(volume),
            Window::Auto => Window::percentile().levels(volume),
            Window::AsIs => {
                if volume.eight_bit {
                    Ok((Levels { lo: 0.0, hi: 255.0 }, None))
                } else {
                    let range = volume
                        .range()
                        .map(|(lo, hi)| format!("its values span {lo} … {hi}"))
                        .unwrap_or_else(|| "it has no finite values".into());
                    Err(format!(
                        "the model reads 8-bit images as they are, and this volume is not 8-bit \
                         ({range}): fit a model with a window for it (a CT preset such as \
                         `ct-brain`, or `percentile` for MR)"
                    ))
                }
            }
            Window::Ct { centre, width } => {
                let warning = match volume.modality.as_deref() {
                    Some(m) if !m.eq_ignore_ascii_case("CT") => Some(format!(
                        "a {m} volume under the model's CT window ({self}): its values are not \
                         Hounsfield units, so the map may mean little"
                    )),
                    _ => None,
                };
                Ok((Levels::ct(centre, width), warning))
            }
            Window::Percentile { low, high } => Ok((percentiles(&volume.data, low, high), None)),
        }
    }

    /// A decoded picture (values in [0, 1]) through this window.
    pub fn picture(&self, image: RgbImage) -> Result<RgbImage, String> {
        match *self {
            Window::Auto | Window::AsIs => Ok(image),
            Window::Ct { .. } => Err(format!(
                "the model windows CT volumes ({self}) and a picture file has no Hounsfield \
                 units: give it the CT volumes themselves (NIfTI)"
            )),
            Window::Percentile { low, high } => {
                let levels = percentiles(&image.data, low, high);
                let mut image = image;
                image.data.iter_mut().for_each(|v| *v = levels.grey(*v));
                Ok(image)
            }
        }
    }

    pub fn validate(&self) -> Result<(), SettingError> {
        let bad = |rule: &'static str| {
            Err(SettingError::OutOfRange {
                name: "window",
                rule,
                got: self.to_string(),
            })
        };
        match *self {
            Window::Auto | Window::AsIs => Ok(()),
            Window::Ct { centre, width } => {
                if centre.is_finite() && width.is_finite() && width > 0.0 {
                    Ok(())
                } else {
                    bad("a CT window with a finite centre and a width > 0")
                }
            }
            Window::Percentile { low, high } => {
                if (0.0..100.0).contains(&low) && high > low && high <= 100.0 {
                    Ok(())
                } else {
                    bad("percentiles with 0 ≤ low < high ≤ 100")
                }
            }
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Window::Auto => f.write_str("auto"),
            Window::AsIs => f.write_str("as-is"),
            Window::Ct { centre, width } => {
                match CT_PRESETS.iter().find(|p| p.1 == centre && p.2 == width) {
                    Some(p) => f.write_str(p.0),
                    None => write!(f, "ct:{centre},{width}"),
                }
            }
            Window::Percentile { low, high } if (low, high) == PERCENTILES => {
                f.write_str("percentile")
            }
            Window::Percentile { low, high } => write!(f, "percentile:{low},{high}"),
        }
    }
}

impl FromStr for Window {
    type Err = SettingError;
    fn from_str(s: &str) -> Result<Self, SettingError> {
        let unknown = || SettingError::UnknownChoice {
            what: "window",
            got: s.to_string(),
            choices: Window::menu()
                .iter()
                .map(|(n, _)| format!("`{n}`"))
                .chain(["`ct:CENTRE,WIDTH`".into(), "`percentile:LOW,HIGH`".into()])
                .collect::<Vec<_>>()
                .join(", "),
        };
        let pair = |t: &str| -> Result<(f32, f32), SettingError> {
            let (a, b) = t.split_once(',').ok_or_else(unknown)?;
            let num = |x: &str| x.trim().parse::<f32>().map_err(|_| unknown());
            Ok((num(a)?, num(b)?))
        };
        let s = s.trim();
        let window = if s == "auto" {
            Window::Auto
        } else if s == "as-is" {
            Window::AsIs
        } else if s == "percentile" {
            Window::percentile()
        } else if let Some(p) = CT_PRESETS.iter().find(|p| p.0 == s) {
            Window::Ct {
                centre: p.1,
                width: p.2,
            }
        } else if let Some(t) = s.strip_prefix("ct:") {
            let (centre, width) = pair(t)?;
            Window::Ct { centre, width }
        } else if let Some(t) = s.strip_prefix("percentile:") {
            let (low, high) = pair(t)?;
            Window::Percentile { low, high }
        } else {
            return Err(unknown());
        };
        window.validate()?;
        Ok(window)
    }
}

impl Serialize for Window {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The intensities that become black (`lo`) and white (`hi`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Levels {
    pub lo: f32,
    pub hi: f32,
}

impl Levels {
    fn ct(centre: f32, width: f32) -> Self {
        Levels {
            lo: centre - width / 2.0,
            hi: centre + width / 2.0,
        }
    }

    /// One intensity as grey in [0, 1]; what is not a number becomes black.
    pub fn grey(&self, v: f32) -> f32 {
        if !v.is_finite() {
            return 0.0;
        }
        let span = self.hi - self.lo;
        if span > 0.0 {
            ((v - self.lo) / span).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// A slice (`height × width` intensities, row-major) as a grey picture.
    pub fn image(&self, values: &[f32], width: usize, height: usize) -> RgbImage {
        RgbImage {
            width,
            height,
            data: values.iter().flat_map(|&v| [self.grey(v); 3]).collect(),
        }
    }
}

/// The `low` % and `high` % percentiles of the finite values, from a 65 536-bin histogram (no
/// sorted copy of a volume; exact to 1/65 536 of the range, then interpolated within the bin).
fn percentiles(values: &[f32], low: f32, high: f32) -> Levels {
    const BINS: usize = 65_536;
    let Some((lo, hi)) = finite_range(values) else {
        return Levels { lo: 0.0, hi: 1.0 };
    };
    if hi <= lo {
        return Levels { lo, hi };
    }
    let scale = BINS as f64 / (hi as f64 - lo as f64);
    let bin = |v: f32| (((v as f64 - lo as f64) * scale) as usize).min(BINS - 1);
    let mut counts = vec![0u64; BINS];
    let mut n = 0u64;
    for &v in values.iter().filter(|v| v.is_finite()) {
        counts[bin(v)] += 1;
        n += 1;
    }
    let at = |p: f32| -> f32 {
        // The rank of the p-th percentile among n values (numpy's linear rule), then its value.
        let rank = p as f64 / 100.0 * (n - 1) as f64;
        let mut before = 0u64;
        for (b, &c) in counts.iter().enumerate() {
            if c > 0 && (before + c) as f64 > rank {
                let frac = ((rank - before as f64 + 0.5) / c as f64).clamp(0.0, 1.0);
                return (lo as f64 + (b as f64 + frac) / scale) as f32;
            }
            before += c;
        }
        hi
    };
    let (a, b) = (at(low).max(lo), at(high).min(hi));
    Levels { lo: a, hi: b }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_written_one_way() {
        for (text, window) in [
            ("as-is", Window::AsIs),
            (
                "ct-brain",
                Window::Ct {
                    centre: 40.0,
                    width: 80.0,
                },
            ),
            (
                "ct:-600,1500",
                Window::Ct {
                    centre: -600.0,
                    width: 1500.0,
                },
            ),
            (
                "percentile",
                Window::Percentile {
                    low: 0.5,
                    high: 99.5,
                },
            ),
            (
                "percentile:1,99",
                Window::Percentile {
                    low: 1.0,
                    high: 99.0,
                },
            ),
        ] {
            assert_eq!(text.parse::<Window>().unwrap(), window);
            assert_eq!(window.to_string(), text);
            let json = serde_json::to_string(&window).unwrap();
            assert_eq!(serde_json::from_str::<Window>(&json).unwrap(), window);
        }
        assert_eq!(
            "ct:40,80".parse::<Window>().unwrap().to_string(),
            "ct-brain"
        );
        for bad in [
            "ct:40",
            "ct:40,0",
            "percentile:99,1",
            "hu",
            "ct:a,b",
            "percentile:0,101",
        ] {
            let e = bad.parse::<Window>().unwrap_err().to_string();
            assert!(e.contains("window"), "{bad}: {e}");
        }
    }

    #[test]
    fn ct_levels_clamp_and_nan_is_black() {
        let l = Levels::ct(40.0, 80.0);
        assert_eq!(l.grey(0.0), 0.0);
        assert_eq!(l.grey(40.0), 0.5);
        assert_eq!(l.grey(1000.0), 1.0);
        assert_eq!(l.grey(f32::NAN), 0.0);
    }

    #[test]
    fn percentiles_follow_numpy_within_a_bin() {
        // 10 000 values with a heavy zero background, as a brain MR volume has.
        let mut values: Vec<f32> = (0..10_000)
            .map(|i| {
                if i % 3 == 0 {
                    0.0
                } else {
                    ((i * 7919) % 4099) as f32
                }
            })
            .collect();
        values.push(f32::NAN);
        let l = percentiles(&values, 0.5, 99.5);
        let mut sorted: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f32::total_cmp);
        let exact = |p: f32| {
            let r = p / 100.0 * (sorted.len() - 1) as f32;
            let (i, f) = (r.floor() as usize, r.fract());
            sorted[i] * (1.0 - f) + sorted[(i + 1).min(sorted.len() - 1)] * f
        };
        let bin = 4098.0 / 65_536.0;
        assert!(
            (l.lo - exact(0.5)).abs() <= bin,
            "{} vs {}",
            l.lo,
            exact(0.5)
        );
        assert!(
            (l.hi - exact(99.5)).abs() <= bin,
            "{} vs {}",
            l.hi,
            exact(99.5)
        );
    }

    #[test]
    fn each_window_reads_what_it_can() {
        let volume = |eight_bit: bool, modality: Option<&str>| Volume {
            dims: [2, 2, 1],
            data: vec![-1000.0, 0.0, 40.0, 2000.0],
            affine: [[1., 0., 0., 0.], [0., 1., 0., 0.], [0., 0., 1., 0.]],
            space_code: 1,
            modality: modality.map(String::from),
            eight_bit,
            notes: vec![],
        };
        let e = Window::AsIs.levels(&volume(false, None)).unwrap_err();
        assert!(e.contains("-1000") && e.contains("ct-brain"), "{e}");
        assert!(Window::AsIs.levels(&volume(true, None)).is_ok());
        let ct: Window = "ct-brain".parse().unwrap();
        let (levels, warning) = ct.levels(&volume(false, Some("CT"))).unwrap();
        assert_eq!((levels.lo, levels.hi, warning), (0.0, 80.0, None));
        let (_, warning) = ct.levels(&volume(false, Some("MR"))).unwrap();
        assert!(warning.unwrap().contains("MR volume"));
        let picture = RgbImage {
            width: 1,
            height: 1,
            data: vec![0.2, 0.4, 0.6],
        };
        assert!(
            ct.picture(picture.clone())
                .unwrap_err()
                .contains("Hounsfield")
        );
        assert_eq!(Window::AsIs.picture(picture.clone()).unwrap(), picture);
    }
}
