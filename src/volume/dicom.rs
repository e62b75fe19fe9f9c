//! DICOM: single files and series (several files, one slice each; or one multi-frame file) into a
//! [`Volume`], in pure Rust so the page reads them too.
//!
//! Written from PS3.5 (data structures and encodings) rather than through the dicom-rs crates: a
//! DICOM image needs a dozen attributes and the pixel data, the dicom-rs stack (dictionary,
//! object model, the transfer-syntax registry, whose default plugin registry does not work on
//! wasm32) would add a second large build to a CI on two cores, and every refusal here names the
//! file and the attribute. Transfer syntaxes read: implicit and explicit VR little endian,
//! explicit big endian, deflated, RLE lossless, JPEG baseline / extended (8-bit) / lossless
//! (through the pure-Rust `jpeg-decoder`). Others (JPEG-LS, JPEG 2000, HTJ2K, video) are named in
//! the error with a way to convert them.

use crate::limits::MAX_INFLATED_BYTES;
use std::io::Read;

use super::{MAX_VOXELS, Volume, VolumeError};

/// One DICOM file: the attributes a volume needs and its frames as intensities (after the
/// rescale slope and intercept: Hounsfield units for CT).
#[derive(Debug, Clone)]
pub struct DicomImage {
    pub rows: usize,
    pub columns: usize,
    /// Each frame, `rows × columns` values, row-major.
    pub frames: Vec<Vec<f32>>,
    pub modality: Option<String>,
    pub series: Option<String>,
    pub instance: Option<i64>,
    /// ImagePositionPatient (mm, LPS).
    pub position: Option<[f64; 3]>,
    /// ImageOrientationPatient: the row direction, then the column direction (LPS).
    pub orientation: Option<[f64; 6]>,
    /// PixelSpacing: between rows, between columns (mm).
    pub spacing: Option<[f64; 2]>,
    pub slice_thickness: Option<f64>,
    pub slice_spacing: Option<f64>,
    /// 8-bit unsigned samples, no rescale.
    pub eight_bit: bool,
    pub notes: Vec<String>,
}

/// Does `bytes` look like a DICOM file (the `DICM` marker after the 128-byte preamble)?
pub fn looks_like(bytes: &[u8]) -> bool {
    bytes.len() >= 132 && &bytes[128..132] == b"DICM"
}

struct Syntax {
    explicit: bool,
    big: bool,
    deflated: bool,
    pixels: Pixels,
}

#[derive(Clone, Copy, PartialEq)]
enum Pixels {
    Native,
    Rle,
    Jpeg,
}

fn syntax(uid: &str) -> Result<Syntax, VolumeError> {
    let s = |explicit, big, deflated, pixels| Syntax {
        explicit,
        big,
        deflated,
        pixels,
    };
    Ok(match uid {
        "1.2.840.10008.1.2" => s(false, false, false, Pixels::Native),
        "1.2.840.10008.1.2.1" => s(true, false, false, Pixels::Native),
        "1.2.840.10008.1.2.1.99" => s(true, false, true, Pixels::Native),
        "1.2.840.10008.1.2.2" => s(true, true, false, Pixels::Native),
        "1.2.840.10008.1.2.5" => s(true, false, false, Pixels::Rle),
        "1.2.840.10008.1.2.4.50"
        | "1.2.840.10008.1.2.4.51"
        | "1.2.840.10008.1.2.4.57"
        | "1.2.840.10008.1.2.4.70" => s(true, false, false, Pixels::Jpeg),
        other => {
            let name = match other {
                "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => "JPEG-LS",
                "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => "JPEG 2000",
                "1.2.840.10008.1.2.4.201"
                | "1.2.840.10008.1.2.4.202"
                | "1.2.840.10008.1.2.4.203" => "High-Throughput JPEG 2000",
                u if u.starts_with("1.2.840.10008.1.2.4.10") => "MPEG video",
                _ => "an unknown transfer syntax",
            };
            return Err(unsupported!(
                "transfer syntax {other} ({name}) is not decoded here: decompress the file first \
                 (e.g. `gdcmconv --raw in.dcm out.dcm` or `dcmdjpls`/`dcmdjp2k`), or convert the \
                 series to NIfTI with `dcm2niix`"
            ));
        }
    })
}

/// A cursor over a data set in one encoding.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    explicit: bool,
    big: bool,
}

enum Value<'a> {
    Bytes(&'a [u8]),
    /// Encapsulated pixel data: its fragments (the basic offset table left out).
    Fragments(Vec<&'a [u8]>),
    Skipped,
}

/// A data element: its tag, its VR (two spaces in implicit syntaxes) and its value.
type Element<'a> = ((u16, u16), [u8; 2], Value<'a>);

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const ITEM_END: (u16, u16) = (0xFFFE, 0xE00D);
const SEQUENCE_END: (u16, u16) = (0xFFFE, 0xE0DD);
const PIXEL_DATA: (u16, u16) = (0x7FE0, 0x0010);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], VolumeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return Err(truncated!(
                "truncated: the file ends at byte {} inside {what}, which needs {n} bytes from \
                 byte {}",
                self.data.len(),
                self.pos
            ));
        };
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn u16(&mut self, what: &str) -> Result<u16, VolumeError> {
        let b: [u8; 2] = self.take(2, what)?.try_into().unwrap();
        Ok(if self.big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }
    fn u32(&mut self, what: &str) -> Result<u32, VolumeError> {
        let b: [u8; 4] = self.take(4, what)?.try_into().unwrap();
        Ok(if self.big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }
    fn tag(&mut self) -> Result<(u16, u16), VolumeError> {
        Ok((self.u16("a tag")?, self.u16("a tag")?))
    }

    /// The next element: tag, VR (explicit syntaxes) and value; `None` at the end.
    fn element(&mut self) -> Result<Option<Element<'a>>, VolumeError> {
        if self.pos >= self.data.len() {
            return Ok(None);
        }
        let tag = self.tag()?;
        if tag.0 == 0xFFFE {
            // An item or delimiter where an element was expected (inside a skipped sequence).
            let len = self.u32("an item length")?;
            return Ok(Some((tag, *b"  ", self.value(tag, *b"  ", len)?)));
        }
        let what = format!("element ({:04X},{:04X})", tag.0, tag.1);
        let (vr, len) = if self.explicit {
            let vr: [u8; 2] = self.take(2, &what)?.try_into().unwrap();
            let long = matches!(
                &vr,
                b"OB"
                    | b"OD"
                    | b"OF"
                    | b"OL"
                    | b"OV"
                    | b"OW"
                    | b"SQ"
                    | b"SV"
                    | b"UC"
                    | b"UN"
                    | b"UR"
                    | b"UT"
                    | b"UV"
            );
            if long {
                self.take(2, &what)?;
                (vr, self.u32(&what)?)
            } else {
                (vr, self.u16(&what)? as u32)
            }
        } else {
            (*b"  ", self.u32(&what)?)
        };
        Ok(Some((tag, vr, self.value(tag, vr, len)?)))
    }

    fn value(&mut self, tag: (u16, u16), vr: [u8; 2], len: u32) -> Result<Value<'a>, VolumeError> {
        let what = format!("element ({:04X},{:04X})", tag.0, tag.1);
        if len != UNDEFINED {
            return Ok(Value::Bytes(self.take(len as usize, &what)?));
        }
        if tag == PIXEL_DATA {
            return self.fragments().map(Value::Fragments);
        }
        if &vr == b"SQ" || &vr == b"UN" || &vr == b"  " || tag == ITEM {
            self.skip_undefined(tag == ITEM)?;
            return Ok(Value::Skipped);
        }
        Err(corrupt!(
            "{what} has an undefined length, which its VR does not allow"
        ))
    }

    /// Past a sequence (or an item) of undefined length, nested ones included.
    fn skip_undefined(&mut self, item: bool) -> Result<(), VolumeError> {
        let end = if item { ITEM_END } else { SEQUENCE_END };
        loop {
            let Some((tag, _, _)) = self.element()? else {
                return Err("truncated: the file ends inside a sequence".into());
            };
            if tag == end {
                return Ok(());
            }
        }
    }

    fn fragments(&mut self) -> Result<Vec<&'a [u8]>, VolumeError> {
        let mut out = Vec::new();
        let mut first = true;
        loop {
            let tag = self.tag()?;
            let len = self.u32("a pixel data fragment")?;
            match tag {
                SEQUENCE_END => return Ok(out),
                ITEM => {
                    let bytes = self.take(len as usize, "a pixel data fragment")?;
                    if !first {
                        out.push(bytes);
                    }
                    first = false; // the basic offset table
                }
                other => {
                    return Err(corrupt!(
                        "encapsulated pixel data holds ({:04X},{:04X}) where a fragment belongs",
                        other.0,
                        other.1
                    ));
                }
            }
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .to_string()
}

/// Decimal strings (`DS`, backslash-separated).
fn numbers(b: &[u8]) -> Vec<f64> {
    text(b)
        .split('\\')
        .filter_map(|t| t.trim().parse::<f64>().ok())
        .collect()
}

#[derive(Default)]
struct Attributes<'a> {
    syntax: Option<String>,
    rows: Option<usize>,
    columns: Option<usize>,
    bits_allocated: Option<usize>,
    bits_stored: Option<usize>,
    signed: bool,
    samples: usize,
    planar: bool,
    photometric: String,
    frames: usize,
    slope: Option<f64>,
    intercept: Option<f64>,
    modality: Option<String>,
    series: Option<String>,
    instance: Option<i64>,
    position: Option<[f64; 3]>,
    orientation: Option<[f64; 6]>,
    spacing: Option<[f64; 2]>,
    thickness: Option<f64>,
    between: Option<f64>,
    pixels: Option<Value<'a>>,
}

impl<'a> Attributes<'a> {
    fn set(&mut self, tag: (u16, u16), value: Value<'a>, big: bool) {
        let Value::Bytes(b) = value else {
            if tag == PIXEL_DATA {
                self.pixels = Some(value);
            }
            return;
        };
        let us = |b: &[u8]| {
            b.get(..2).map(|x| {
                let x: [u8; 2] = x.try_into().unwrap();
                (if big {
                    u16::from_be_bytes(x)
                } else {
                    u16::from_le_bytes(x)
                }) as usize
            })
        };
        let n = numbers(b);
        match tag {
            (0x0002, 0x0010) => self.syntax = Some(text(b)),
            (0x0008, 0x0060) => self.modality = Some(text(b)).filter(|m| !m.is_empty()),
            (0x0018, 0x0050) => self.thickness = n.first().copied(),
            (0x0018, 0x0088) => self.between = n.first().copied(),
            (0x0020, 0x000E) => self.series = Some(text(b)),
            (0x0020, 0x0013) => self.instance = n.first().map(|&v| v as i64),
            (0x0020, 0x0032) if n.len() == 3 => self.position = Some([n[0], n[1], n[2]]),
            (0x0020, 0x0037) if n.len() == 6 => {
                self.orientation = Some([n[0], n[1], n[2], n[3], n[4], n[5]])
            }
            (0x0028, 0x0002) => self.samples = us(b).unwrap_or(1),
            (0x0028, 0x0004) => self.photometric = text(b),
            (0x0028, 0x0006) => self.planar = us(b) == Some(1),
            (0x0028, 0x0008) => self.frames = n.first().map_or(1, |&v| v.max(1.0) as usize),
            (0x0028, 0x0010) => self.rows = us(b),
            (0x0028, 0x0011) => self.columns = us(b),
            (0x0028, 0x0030) if n.len() == 2 => self.spacing = Some([n[0], n[1]]),
            (0x0028, 0x0100) => self.bits_allocated = us(b),
            (0x0028, 0x0101) => self.bits_stored = us(b),
            (0x0028, 0x0103) => self.signed = us(b) == Some(1),
            (0x0028, 0x1052) => self.intercept = n.first().copied(),
            (0x0028, 0x1053) => self.slope = n.first().copied(),
            PIXEL_DATA => self.pixels = Some(Value::Bytes(b)),
            _ => {}
        }
    }
}

/// Read one DICOM file.
pub fn read(bytes: &[u8]) -> Result<DicomImage, VolumeError> {
    parse(bytes, image)
}

/// The SeriesInstanceUID of a DICOM file, without decoding its pixels (to group files into
/// series before reading them).
pub fn series_uid(bytes: &[u8]) -> Result<Option<String>, VolumeError> {
    parse(bytes, |a, _| Ok(a.series))
}

/// Parse the file's attributes (up to and including the pixel data, not decoded) and hand them
/// to `then` with the transfer syntax.
fn parse<T>(
    bytes: &[u8],
    then: impl FnOnce(Attributes<'_>, &Syntax) -> Result<T, VolumeError>,
) -> Result<T, VolumeError> {
    let mut attrs = Attributes {
        samples: 1,
        frames: 1,
        ..Default::default()
    };
    // The file meta information (group 0002) is explicit VR little endian, after the preamble.
    let (start, uid) = if looks_like(bytes) {
        let mut meta = Cursor {
            data: bytes,
            pos: 132,
            explicit: true,
            big: false,
        };
        loop {
            let at = meta.pos;
            if at + 2 > bytes.len() || u16::from_le_bytes([bytes[at], bytes[at + 1]]) != 0x0002 {
                break;
            }
            let Some((tag, _, value)) = meta.element()? else {
                break;
            };
            attrs.set(tag, value, false);
        }
        let uid = attrs
            .syntax
            .clone()
            .ok_or("the file meta information has no transfer syntax (0002,0010)")?;
        (meta.pos, uid)
    } else if bytes.len() >= 8 && bytes[0] == 0x08 && bytes[1] == 0x00 {
        // No preamble: an old (ACR-NEMA style) file, implicit VR little endian.
        (0, "1.2.840.10008.1.2".to_string())
    } else {
        return Err("not a DICOM file: no `DICM` marker at byte 128".into());
    };
    let syntax = syntax(&uid)?;
    let inflated;
    let data = if syntax.deflated {
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(&bytes[start..])
            .take(MAX_INFLATED_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("the deflated data set cannot be inflated: {e}"))?;
        // Inflating stops one byte past the limit: more than that is refused, not cut short.
        if out.len() as u64 > MAX_INFLATED_BYTES {
            return Err(too_large!(
                "the deflated data set inflates past the {MAX_INFLATED_BYTES} bytes read"
            ));
        }
        inflated = out;
        &inflated[..]
    } else {
        &bytes[start..]
    };
    let mut cursor = Cursor {
        data,
        pos: 0,
        explicit: syntax.explicit,
        big: syntax.big,
    };
    while let Some((tag, _, value)) = cursor.element()? {
        attrs.set(tag, value, syntax.big);
        if tag == PIXEL_DATA {
            break;
        }
    }
    then(attrs, &syntax)
}

fn image(a: Attributes<'_>, syntax: &Syntax) -> Result<DicomImage, VolumeError> {
    let missing = |what: &str| format!("no {what}: not an image (or not one this reader knows)");
    let rows = a.rows.ok_or_else(|| missing("Rows (0028,0010)"))?;
    let columns = a.columns.ok_or_else(|| missing("Columns (0028,0011)"))?;
    let bits = a
        .bits_allocated
        .ok_or_else(|| missing("BitsAllocated (0028,0100)"))?;
    let pixels = a.pixels.ok_or_else(|| missing("PixelData (7FE0,0010)"))?;
    if rows == 0 || columns == 0 {
        return Err(corrupt!(
            "the image is empty ({rows} rows × {columns} columns)"
        ));
    }
    let per_frame = rows
        .checked_mul(columns)
        .filter(|&n| n.saturating_mul(a.frames) <= MAX_VOXELS)
        .ok_or_else(|| {
            too_large!(
                "{rows} rows × {columns} columns × {} frames is more than the {MAX_VOXELS} voxels \
                 read",
                a.frames
            )
        })?;
    if ![1, 3].contains(&a.samples) {
        return Err(unsupported!(
            "{} samples per pixel: only grey (1) and colour (3) images are read",
            a.samples
        ));
    }
    if a.photometric.starts_with("PALETTE") {
        return Err("a palette-colour image: its values are indices, not intensities".into());
    }
    let stored = a.bits_stored.filter(|&b| b >= 1).unwrap_or(bits).min(bits);
    let mut notes = Vec::new();
    let frames: Vec<Vec<f32>> = match (syntax.pixels, pixels) {
        (Pixels::Native, Value::Bytes(b)) => {
            if ![8, 16, 32].contains(&bits) {
                return Err(unsupported!(
                    "BitsAllocated {bits}: native pixel data of 8, 16 or 32 bits is read"
                ));
            }
            let size = bits / 8 * a.samples;
            let need = per_frame * size * a.frames;
            if b.len() < need {
                return Err(truncated!(
                    "truncated pixel data: {} bytes, {rows}×{columns}×{} frames of {bits}-bit \
                     samples need {need}",
                    b.len(),
                    a.frames
                ));
            }
            (0..a.frames)
                .map(|f| {
                    let frame = &b[f * per_frame * size..(f + 1) * per_frame * size];
                    native(
                        frame, per_frame, bits, stored, a.signed, a.samples, a.planar, syntax.big,
                    )
                })
                .collect()
        }
        (Pixels::Rle, Value::Fragments(fragments)) => {
            if fragments.len() < a.frames {
                return Err(corrupt!(
                    "RLE pixel data has {} fragments for {} frames",
                    fragments.len(),
                    a.frames
                ));
            }
            fragments[..a.frames]
                .iter()
                .map(|f| {
                    let raw = rle(f, per_frame, bits / 8, a.samples)?;
                    Ok(native(
                        &raw, per_frame, bits, stored, a.signed, a.samples, true, false,
                    ))
                })
                .collect::<Result<_, VolumeError>>()?
        }
        (Pixels::Jpeg, Value::Fragments(fragments)) => {
            // One fragment per frame, or every fragment for a single frame.
            let streams: Vec<Vec<u8>> = if a.frames == 1 {
                vec![fragments.concat()]
            } else if fragments.len() == a.frames {
                fragments.iter().map(|f| f.to_vec()).collect()
            } else {
                return Err(unsupported!(
                    "JPEG pixel data has {} fragments for {} frames: frames split over several \
                     fragments are not read",
                    fragments.len(),
                    a.frames
                ));
            };
            streams
                .iter()
                .map(|s| jpeg(s, rows, columns, a.signed, stored))
                .collect::<Result<_, VolumeError>>()?
        }
        _ => return Err("the pixel data is not encoded as its transfer syntax says".into()),
    };
    if a.samples == 3 {
        notes.push("colour pixels read as grey (the mean of R, G and B)".into());
    }
    let (slope, intercept) = (a.slope.unwrap_or(1.0), a.intercept.unwrap_or(0.0));
    let rescaled = slope != 1.0 || intercept != 0.0;
    let frames = if rescaled {
        frames
            .into_iter()
            .map(|f| {
                f.into_iter()
                    .map(|v| (v as f64 * slope + intercept) as f32)
                    .collect()
            })
            .collect()
    } else {
        frames
    };
    if a.photometric == "MONOCHROME1" {
        notes.push("MONOCHROME1: higher values are shown darker by viewers; read as stored".into());
    }
    Ok(DicomImage {
        rows,
        columns,
        frames,
        modality: a.modality,
        series: a.series,
        instance: a.instance,
        position: a.position,
        orientation: a.orientation,
        spacing: a.spacing,
        slice_thickness: a.thickness,
        slice_spacing: a.between,
        eight_bit: bits == 8 && !a.signed && !rescaled,
        notes,
    })
}

/// Native samples → intensities (colour → the mean of its samples).
#[allow(clippy::too_many_arguments)]
fn native(
    b: &[u8],
    pixels: usize,
    bits: usize,
    stored: usize,
    signed: bool,
    samples: usize,
    planar: bool,
    big: bool,
) -> Vec<f32> {
    let size = bits / 8;
    let sample = |i: usize| -> f32 {
        let s = &b[i * size..(i + 1) * size];
        let raw: u64 = match size {
            1 => s[0] as u64,
            2 => {
                let x = [s[0], s[1]];
                (if big {
                    u16::from_be_bytes(x)
                } else {
                    u16::from_le_bytes(x)
                }) as u64
            }
            _ => {
                let x = [s[0], s[1], s[2], s[3]];
                (if big {
                    u32::from_be_bytes(x)
                } else {
                    u32::from_le_bytes(x)
                }) as u64
            }
        };
        // Only the stored bits count; signed values are two's complement in them.
        let raw = raw & ((1u64 << stored) - 1);
        if signed && raw >> (stored - 1) & 1 == 1 {
            (raw as i64 - (1i64 << stored)) as f32
        } else {
            raw as f32
        }
    };
    (0..pixels)
        .map(|p| {
            if samples == 1 {
                sample(p)
            } else {
                let at = |c: usize| {
                    if planar {
                        c * pixels + p
                    } else {
                        p * samples + c
                    }
                };
                (0..samples).map(|c| sample(at(c))).sum::<f32>() / samples as f32
            }
        })
        .collect()
}

/// One RLE-compressed frame (PS3.5 annex G) → native bytes, planar by sample, little endian (as
/// [`native`] reads them with `planar`). Segment `c·size + k` holds byte `k` (most significant
/// first) of sample `c`.
fn rle(
    fragment: &[u8],
    pixels: usize,
    size: usize,
    samples: usize,
) -> Result<Vec<u8>, VolumeError> {
    if fragment.len() < 64 {
        return Err("an RLE frame shorter than its 64-byte header".into());
    }
    let word =
        |i: usize| u32::from_le_bytes(fragment[4 * i..4 * i + 4].try_into().unwrap()) as usize;
    let segments = word(0);
    if segments != size * samples {
        return Err(corrupt!(
            "an RLE frame with {segments} segments where the image needs {}",
            size * samples
        ));
    }
    let mut out = vec![0u8; pixels * size * samples];
    for seg in 0..segments {
        let start = word(1 + seg);
        let end = if seg + 1 < segments {
            word(2 + seg)
        } else {
            fragment.len()
        };
        if start > end || end > fragment.len() {
            return Err(corrupt!("RLE segment {seg} lies outside its frame"));
        }
        let decoded = packbits(&fragment[start..end], pixels)?;
        let (c, k) = (seg / size, size - 1 - seg % size);
        for (p, &v) in decoded.iter().enumerate() {
            out[(c * pixels + p) * size + k] = v;
        }
    }
    Ok(out)
}

fn packbits(src: &[u8], pixels: usize) -> Result<Vec<u8>, VolumeError> {
    let mut out = Vec::with_capacity(pixels);
    let mut i = 0;
    while i < src.len() && out.len() < pixels {
        let n = src[i] as i8;
        i += 1;
        if n >= 0 {
            let count = n as usize + 1;
            let run = src
                .get(i..i + count)
                .ok_or("an RLE literal run goes past its segment")?;
            out.extend_from_slice(run);
            i += count;
        } else if n != -128 {
            let v = *src
                .get(i)
                .ok_or("an RLE repeat run goes past its segment")?;
            out.extend(std::iter::repeat_n(v, (1 - n as isize) as usize));
            i += 1;
        }
    }
    if out.len() < pixels {
        return Err(corrupt!(
            "an RLE segment decodes to {} bytes, the frame needs {pixels}",
            out.len()
        ));
    }
    out.truncate(pixels);
    Ok(out)
}

fn jpeg(
    stream: &[u8],
    rows: usize,
    columns: usize,
    signed: bool,
    stored: usize,
) -> Result<Vec<f32>, VolumeError> {
    let mut decoder = jpeg_decoder::Decoder::new(stream);
    let pixels = decoder
        .decode()
        .map_err(|e| format!("the JPEG pixel data cannot be decoded: {e}"))?;
    let info = decoder.info().ok_or("the JPEG stream has no frame")?;
    if (info.height as usize, info.width as usize) != (rows, columns) {
        return Err(corrupt!(
            "the JPEG frame is {}×{}, the DICOM header says {rows}×{columns}",
            info.width,
            info.height
        ));
    }
    let sign = |v: u32| -> f32 {
        if signed && stored > 0 && v >> (stored - 1) & 1 == 1 {
            (v as i64 - (1i64 << stored)) as f32
        } else {
            v as f32
        }
    };
    Ok(match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => pixels.iter().map(|&v| sign(v as u32)).collect(),
        jpeg_decoder::PixelFormat::L16 => pixels
            .chunks_exact(2)
            .map(|b| sign(u16::from_ne_bytes([b[0], b[1]]) as u32))
            .collect(),
        jpeg_decoder::PixelFormat::RGB24 => pixels
            .chunks_exact(3)
            .map(|p| (p[0] as f32 + p[1] as f32 + p[2] as f32) / 3.0)
            .collect(),
        jpeg_decoder::PixelFormat::CMYK32 => {
            return Err("a CMYK JPEG: not a medical image encoding".into());
        }
    })
}

/// The files of one series (each a slice, or one multi-frame file) as a volume: slices sorted
/// along the normal of their orientation by position (else by instance number), the affine from
/// ImageOrientationPatient / ImagePositionPatient / PixelSpacing (DICOM's LPS turned into NIfTI's
/// RAS), intensities after each file's rescale. `images` pairs each file's name with its image.
pub fn volume(images: Vec<(String, DicomImage)>) -> Result<Volume, VolumeError> {
    let Some((first_name, first)) = images.first() else {
        return Err("no DICOM files".into());
    };
    let (rows, columns) = (first.rows, first.columns);
    let mut notes: Vec<String> = Vec::new();
    let uids: std::collections::BTreeSet<&str> = images
        .iter()
        .filter_map(|(_, i)| i.series.as_deref())
        .collect();
    if uids.len() > 1 {
        return Err(series!(
            "the files hold {} series ({}): give one series per volume",
            uids.len(),
            uids.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    for (name, i) in &images {
        if (i.rows, i.columns) != (rows, columns) {
            return Err(series!(
                "{name} is {}×{} pixels, {first_name} {rows}×{columns}: one series has one size",
                i.columns,
                i.rows
            ));
        }
        for n in &i.notes {
            if !notes.contains(n) {
                notes.push(n.clone());
            }
        }
    }
    let orientation = first.orientation;
    let (x, y) = match orientation {
        Some(o) => ([o[0], o[1], o[2]], [o[3], o[4], o[5]]),
        None => {
            notes.push("no ImageOrientationPatient: axes taken as they are stored".into());
            ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0])
        }
    };
    let normal = [
        x[1] * y[2] - x[2] * y[1],
        x[2] * y[0] - x[0] * y[2],
        x[0] * y[1] - x[1] * y[0],
    ];
    let dot = |a: [f64; 3], b: [f64; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
    // Every (file, frame) with its position, if known.
    let mut slices: Vec<(usize, usize, Option<[f64; 3]>)> = Vec::new();
    for (f, (_, img)) in images.iter().enumerate() {
        let step = img.slice_spacing.or(img.slice_thickness).unwrap_or(1.0);
        for k in 0..img.frames.len() {
            let at = img.position.map(|p| {
                let d = step * k as f64;
                [
                    p[0] + d * normal[0],
                    p[1] + d * normal[1],
                    p[2] + d * normal[2],
                ]
            });
            slices.push((f, k, at));
        }
        if img.frames.len() > 1 {
            notes.push(format!(
                "a multi-frame file: frames {step} mm apart along the slice normal \
                 (per-frame positions are not read)"
            ));
        }
    }
    if slices.len().saturating_mul(rows * columns) > MAX_VOXELS {
        return Err(too_large!(
            "{} slices of {columns}×{rows} is more than the {MAX_VOXELS} voxels read",
            slices.len()
        ));
    }
    if slices.iter().all(|s| s.2.is_some()) && orientation.is_some() {
        slices.sort_by(|a, b| dot(a.2.unwrap(), normal).total_cmp(&dot(b.2.unwrap(), normal)));
        for w in slices.windows(2) {
            if (dot(w[0].2.unwrap(), normal) - dot(w[1].2.unwrap(), normal)).abs() < 1e-4 {
                return Err(series!(
                    "{} and {} lie at the same position: two acquisitions in one series? give \
                     one of them",
                    images[w[0].0].0,
                    images[w[1].0].0
                ));
            }
        }
    } else if images.iter().all(|(_, i)| i.instance.is_some()) {
        notes.push("no positions: slices ordered by InstanceNumber".into());
        slices.sort_by_key(|s| (images[s.0].1.instance, s.1));
    } else if images.len() > 1 {
        notes.push("no positions or instance numbers: slices in the order given".into());
    }
    let [dr, dc] = first.spacing.unwrap_or_else(|| {
        notes.push("no PixelSpacing: 1 mm taken".into());
        [1.0, 1.0]
    });
    let n = slices.len();
    let origin = slices[0].2.unwrap_or([0.0; 3]);
    let step = match (slices[0].2, slices[n - 1].2) {
        (Some(a), Some(b)) if n > 1 => {
            let d = 1.0 / (n - 1) as f64;
            [(b[0] - a[0]) * d, (b[1] - a[1]) * d, (b[2] - a[2]) * d]
        }
        _ => {
            let t = first.slice_spacing.or(first.slice_thickness).unwrap_or(1.0);
            [normal[0] * t, normal[1] * t, normal[2] * t]
        }
    };
    // LPS → RAS: x and y change sign.
    let sign = [-1.0, -1.0, 1.0];
    let affine = std::array::from_fn(|r| {
        [
            sign[r] * x[r] * dc,
            sign[r] * y[r] * dr,
            sign[r] * step[r],
            sign[r] * origin[r],
        ]
    });
    let mut data = Vec::with_capacity(n * rows * columns);
    for (f, k, _) in &slices {
        data.extend_from_slice(&images[*f].1.frames[*k]);
    }
    Ok(Volume {
        dims: [columns, rows, n],
        data,
        affine,
        space_code: if orientation.is_some() { 1 } else { 0 },
        modality: first.modality.clone(),
        eight_bit: images.iter().all(|(_, i)| i.eight_bit),
        notes,
    })
}
