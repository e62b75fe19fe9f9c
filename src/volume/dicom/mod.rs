//! DICOM: single files and series (several files, one slice each; or one multi-frame file) into a
//! [`Volume`], in pure Rust so the page reads them too.
//!
//! Written from PS3.5 (data structures and encodings) rather than through the dicom-rs crates: a
//! DICOM image needs a dozen attributes and the pixel data, the dicom-rs stack (dictionary,
//! object model, the transfer-syntax registry, whose default plugin registry does not work on
//! wasm32) would add a second large build to a CI on two cores, and every refusal here names the
//! file and the attribute. Transfer syntaxes read: implicit and explicit VR little endian,
//! explicit big endian, deflated, RLE lossless, JPEG baseline / extended (8-bit) / lossless
//! (the pure-Rust `jpeg-decoder`), JPEG 2000 lossless and lossy (the pure-Rust `hayro-jpeg2000`).
//! Others (JPEG-LS, HTJ2K, video) are named in the error with a way to convert them. Pixels:
//! grey, RGB, YBR_FULL / YBR_FULL_422, palette colour, 1 to 32 bits; what each becomes is in
//! [`pixels`]. A data set written in implicit VR under an explicit-VR transfer syntax (a common
//! writer bug), or the reverse, is told from its first element and read, as pydicom does.

mod pixels;

use crate::limits::{MAX_IMAGE_BYTES, MAX_INFLATED_BYTES};
use std::io::Read;

use super::{MAX_VOXELS, Volume, VolumeError};
use pixels::{Codec, Colour, Layout, LutSource, Palette};

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
    codec: Codec,
    /// Why the data set was read in another VR encoding than its transfer syntax says.
    note: Option<&'static str>,
}

fn syntax(uid: &str) -> Result<Syntax, VolumeError> {
    let s = |explicit, big, deflated, codec| Syntax {
        explicit,
        big,
        deflated,
        codec,
        note: None,
    };
    Ok(match uid {
        "1.2.840.10008.1.2" => s(false, false, false, Codec::Native),
        "1.2.840.10008.1.2.1" => s(true, false, false, Codec::Native),
        "1.2.840.10008.1.2.1.99" => s(true, false, true, Codec::Native),
        "1.2.840.10008.1.2.2" => s(true, true, false, Codec::Native),
        "1.2.840.10008.1.2.5" => s(true, false, false, Codec::Rle),
        "1.2.840.10008.1.2.4.50"
        | "1.2.840.10008.1.2.4.51"
        | "1.2.840.10008.1.2.4.57"
        | "1.2.840.10008.1.2.4.70" => s(true, false, false, Codec::Jpeg),
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => {
            s(true, false, false, Codec::Jpeg2000)
        }
        other => {
            let name = match other {
                "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => "JPEG-LS",
                "1.2.840.10008.1.2.4.201"
                | "1.2.840.10008.1.2.4.202"
                | "1.2.840.10008.1.2.4.203" => "High-Throughput JPEG 2000",
                u if u.starts_with("1.2.840.10008.1.2.4.10") => "MPEG video",
                _ => "an unknown transfer syntax",
            };
            return Err(unsupported!(
                "transfer syntax {other} ({name}) is not decoded here: decompress the file first \
                 (e.g. `gdcmconv --raw in.dcm out.dcm` or `dcmdjpls`), or convert the series to \
                 NIfTI with `dcm2niix`"
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
    /// Undefined-length sequences and items open around `pos`.
    depth: usize,
}

/// How deep undefined-length sequences and items may nest: real data sets go a few levels; a
/// file of nothing but item headers must not recurse until the stack runs out.
const MAX_NESTING: usize = 64;

enum Value<'a> {
    Bytes(&'a [u8]),
    /// Encapsulated pixel data: its fragments (the basic offset table left out).
    Fragments(Vec<&'a [u8]>),
    Skipped,
}

/// A data element: its tag, its VR (two spaces in implicit syntaxes) and its value.
type Element<'a> = ((u16, u16), [u8; 2], Value<'a>);

/// Every value representation PS3.5 defines.
const VRS: [[u8; 2]; 34] = [
    *b"AE", *b"AS", *b"AT", *b"CS", *b"DA", *b"DS", *b"DT", *b"FD", *b"FL", *b"IS", *b"LO", *b"LT",
    *b"OB", *b"OD", *b"OF", *b"OL", *b"OV", *b"OW", *b"PN", *b"SH", *b"SL", *b"SQ", *b"SS", *b"ST",
    *b"SV", *b"TM", *b"UC", *b"UI", *b"UL", *b"UN", *b"UR", *b"US", *b"UT", *b"UV",
];

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
        if &vr == b"UN" {
            // An undefined-length UN is a sequence whose items are in implicit VR little endian,
            // whatever the data set's encoding (PS3.5 6.2.2).
            let (explicit, big) = (self.explicit, self.big);
            (self.explicit, self.big) = (false, false);
            let skipped = self.skip_undefined(false);
            (self.explicit, self.big) = (explicit, big);
            skipped?;
            return Ok(Value::Skipped);
        }
        if &vr == b"SQ" || &vr == b"  " || tag == ITEM {
            self.skip_undefined(tag == ITEM)?;
            return Ok(Value::Skipped);
        }
        Err(corrupt!(
            "{what} has an undefined length, which its VR does not allow"
        ))
    }

    /// Past a sequence (or an item) of undefined length, nested ones included.
    fn skip_undefined(&mut self, item: bool) -> Result<(), VolumeError> {
        if self.depth >= MAX_NESTING {
            return Err(corrupt!(
                "sequences nested more than {MAX_NESTING} deep at byte {}",
                self.pos
            ));
        }
        self.depth += 1;
        let end = if item { ITEM_END } else { SEQUENCE_END };
        let skipped = loop {
            match self.element() {
                Ok(Some((tag, _, _))) if tag == end => break Ok(()),
                Ok(Some(_)) => {}
                Ok(None) => break Err("truncated: the file ends inside a sequence".into()),
                Err(e) => break Err(e),
            }
        };
        self.depth -= 1;
        skipped
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
    /// PALETTE COLOR's red, green and blue LUTs: descriptors (entries, first value, bits), data.
    lut_descriptors: [Option<[u16; 3]>; 3],
    lut_data: [Option<&'a [u8]>; 3],
    pixels: Option<Value<'a>>,
    /// PixelData's VR (explicit syntaxes): big-endian 8-bit samples in OW words are swapped.
    pixel_vr: [u8; 2],
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
            (0x0028, e @ 0x1101..=0x1103) if b.len() >= 6 => {
                let word = |i: usize| us(&b[2 * i..]).unwrap_or(0) as u16;
                self.lut_descriptors[(e - 0x1101) as usize] = Some([word(0), word(1), word(2)]);
            }
            (0x0028, e @ 0x1201..=0x1203) => self.lut_data[(e - 0x1201) as usize] = Some(b),
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
            depth: 0,
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
        // No preamble: an old (ACR-NEMA style) file, little endian; implicit VR unless its first
        // element says otherwise (below).
        (0, "1.2.840.10008.1.2".to_string())
    } else if bytes.len() >= 8 && bytes[0] == 0x00 && bytes[1] == 0x08 {
        // No preamble, group 0008 in big endian: explicit VR big endian (there is no implicit one).
        (0, "1.2.840.10008.1.2.2".to_string())
    } else {
        return Err("not a DICOM file: no `DICM` marker at byte 128".into());
    };
    let mut syntax = syntax(&uid)?;
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
    // The first element tells the VR encoding the writer used: an explicit VR is two capital
    // letters after the tag, where an implicit one has the low bytes of its length (pydicom
    // checks the same).
    if let Some(&[a, b]) = data.get(4..6) {
        let letters = [a, b];
        if syntax.explicit && !letters.iter().all(u8::is_ascii_uppercase) {
            syntax.explicit = false;
            syntax.note = Some(
                "the data set is written in implicit VR though its transfer syntax says explicit \
                 (a writer's error): read as implicit VR",
            );
        } else if !syntax.explicit && VRS.contains(&letters) {
            syntax.explicit = true;
            syntax.note = Some(
                "the data set is written in explicit VR though its transfer syntax says implicit \
                 (a writer's error): read as explicit VR",
            );
        }
    }
    let mut cursor = Cursor {
        data,
        pos: 0,
        explicit: syntax.explicit,
        big: syntax.big,
        depth: 0,
    };
    while let Some((tag, vr, value)) = cursor.element()? {
        attrs.set(tag, value, syntax.big);
        if tag == PIXEL_DATA {
            attrs.pixel_vr = vr;
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
    let photometric = a.photometric.as_str();
    let ybr_422 = photometric == "YBR_FULL_422";
    let native = matches!(syntax.codec, Codec::Native | Codec::Rle);
    // Whether a JPEG's three components are YBR (the decoder then turns them into RGB), by
    // pydicom's rule rather than by the header alone.
    let jpeg_ybr = match (&syntax.codec, &pixels) {
        (Codec::Jpeg, Value::Fragments(f)) if a.samples == 3 => f
            .first()
            .is_some_and(|s| pixels::jpeg_is_ybr(s, photometric)),
        _ => false,
    };
    let colour = match photometric {
        "PALETTE COLOR" => {
            let luts = std::array::from_fn(|c| {
                let (descriptor, data) = (a.lut_descriptors[c]?, a.lut_data[c]?);
                Some(LutSource { descriptor, data })
            });
            Colour::Palette(Box::new(Palette::read(luts, a.signed, syntax.big)?))
        }
        "YBR_FULL" | "YBR_FULL_422" if native => Colour::Ybr,
        _ if a.samples == 3 => Colour::Rgb,
        _ => Colour::Grey,
    };
    if matches!(colour, Colour::Ybr) && bits != 8 {
        return Err(unsupported!(
            "{photometric} with {bits}-bit samples: YBR is read in 8 bits"
        ));
    }
    if matches!(colour, Colour::Palette(_)) && a.samples != 1 {
        return Err(corrupt!(
            "a palette-colour image with {} samples per pixel; its indices are one sample",
            a.samples
        ));
    }
    let stored = a.bits_stored.filter(|&b| b >= 1).unwrap_or(bits).min(bits);
    let layout = Layout {
        rows,
        columns,
        samples: a.samples,
        bits,
        stored,
        signed: a.signed,
        planar: a.planar,
        big: syntax.big,
    };
    let mut notes = Vec::new();
    notes.extend(syntax.note.map(String::from));
    let samples: Vec<Vec<f32>> = match (syntax.codec, pixels) {
        // Big endian stores 8-bit samples in OW as 16-bit words: each pair comes swapped
        // (PS3.5 8.1.1; pydicom's `be_swap_ow`).
        (Codec::Native, Value::Bytes(b)) if syntax.big && bits == 8 && &a.pixel_vr == b"OW" => {
            let swapped: Vec<u8> = b.chunks(2).flat_map(|w| w.iter().rev().copied()).collect();
            native_frames(&swapped, &layout, a.frames, ybr_422)?
        }
        (Codec::Native, Value::Bytes(b)) => native_frames(b, &layout, a.frames, ybr_422)?,
        (Codec::Rle, Value::Fragments(fragments)) => {
            if fragments.len() < a.frames {
                return Err(corrupt!(
                    "RLE pixel data has {} fragments for {} frames",
                    fragments.len(),
                    a.frames
                ));
            }
            if ![8, 16, 32].contains(&bits) {
                return Err(unsupported!(
                    "BitsAllocated {bits}: RLE pixel data of 8, 16 or 32 bits is read"
                ));
            }
            fragments[..a.frames]
                .iter()
                .map(|f| {
                    let raw = pixels::rle(f, per_frame, bits / 8, a.samples)?;
                    Ok(layout.native(&raw, true, false))
                })
                .collect::<Result<_, VolumeError>>()?
        }
        (Codec::Jpeg, _) if bits > 16 || stored > 16 => {
            return Err(corrupt!(
                "JPEG pixel data with BitsAllocated {bits} and BitsStored {stored}: JPEG holds \
                 at most 16 bits"
            ));
        }
        (codec @ (Codec::Jpeg | Codec::Jpeg2000), Value::Fragments(fragments)) => {
            // A compressed frame's size comes from headers alone (an empty JPEG 2000 code-block
            // decodes to zeros): its decode is bounded like a picture's.
            let decoded = (per_frame * a.samples * 4) as u64;
            if decoded > MAX_IMAGE_BYTES {
                return Err(too_large!(
                    "a compressed frame of {columns}×{rows}×{} samples decodes to {decoded} bytes, \
                     more than the {MAX_IMAGE_BYTES} a frame may take",
                    a.samples
                ));
            }
            // One fragment per frame, or every fragment for a single frame.
            let streams: Vec<Vec<u8>> = if a.frames == 1 {
                vec![fragments.concat()]
            } else if fragments.len() == a.frames {
                fragments.iter().map(|f| f.to_vec()).collect()
            } else {
                return Err(unsupported!(
                    "compressed pixel data has {} fragments for {} frames: frames split over \
                     several fragments are not read",
                    fragments.len(),
                    a.frames
                ));
            };
            streams
                .iter()
                .map(|s| match codec {
                    Codec::Jpeg => pixels::jpeg(s, &layout, jpeg_ybr),
                    _ => pixels::jpeg2000(s, &layout),
                })
                .collect::<Result<_, VolumeError>>()?
        }
        _ => return Err("the pixel data is not encoded as its transfer syntax says".into()),
    };
    let frames: Vec<Vec<f32>> = samples
        .into_iter()
        .map(|f| colour.grey(f, a.samples))
        .collect();
    // Every codec's frame must hold the image the header describes, whatever its stream said.
    if let Some(f) = frames.iter().find(|f| f.len() != per_frame) {
        return Err(corrupt!(
            "a frame decodes to {} pixels, the header says {rows}×{columns}",
            f.len()
        ));
    }
    let eight_bit = match &colour {
        Colour::Palette(p) => p.eight_bit,
        Colour::Ybr | Colour::Rgb => bits == 8,
        Colour::Grey => bits == 8 && !a.signed,
    };
    match &colour {
        Colour::Palette(_) => {
            notes.push("palette colour read as grey (its LUT, then the mean of R, G and B)".into())
        }
        Colour::Ybr | Colour::Rgb => {
            notes.push("colour pixels read as grey (the mean of R, G and B)".into())
        }
        Colour::Grey => {}
    }
    // The modality LUT (rescale) maps grey values; colour and palette pixels are not rescaled.
    let (slope, intercept) = match colour {
        Colour::Grey => (a.slope.unwrap_or(1.0), a.intercept.unwrap_or(0.0)),
        _ => (1.0, 0.0),
    };
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
    if photometric == "MONOCHROME1" {
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
        eight_bit: eight_bit && !rescaled,
        notes,
    })
}

/// Native (uncompressed) pixel data → each frame's samples: 1-bit frames packed end to end,
/// YBR_FULL_422's shared chroma repeated, 8 to 32-bit samples as stored.
fn native_frames(
    b: &[u8],
    layout: &Layout,
    frames: usize,
    ybr_422: bool,
) -> Result<Vec<Vec<f32>>, VolumeError> {
    let (rows, columns, bits) = (layout.rows, layout.columns, layout.bits);
    let values = layout.pixels() * layout.samples;
    let (need, frame_bytes) = match bits {
        1 => (values.saturating_mul(frames).div_ceil(8), 0),
        8 if ybr_422 => {
            if columns % 2 == 1 || layout.planar {
                return Err(corrupt!(
                    "YBR_FULL_422 with {columns} columns{}: pairs of pixels share their chroma, \
                     interleaved",
                    if layout.planar { ", planar" } else { "" }
                ));
            }
            // Two bytes a pixel: Y Y Cb Cr for each pair.
            (2 * layout.pixels() * frames, 2 * layout.pixels())
        }
        8 | 16 | 32 => (values * bits / 8 * frames, values * bits / 8),
        _ => {
            return Err(unsupported!(
                "BitsAllocated {bits}: native pixel data of 1, 8, 16 or 32 bits is read"
            ));
        }
    };
    if b.len() < need {
        return Err(truncated!(
            "truncated pixel data: {} bytes, {rows}×{columns}×{frames} frames of {}{bits}-bit \
             samples need {need}",
            b.len(),
            if ybr_422 { "YBR_FULL_422 " } else { "" }
        ));
    }
    Ok((0..frames)
        .map(|f| match bits {
            1 => layout.bits(b, f),
            _ => {
                let frame = &b[f * frame_bytes..(f + 1) * frame_bytes];
                if ybr_422 {
                    let full = pixels::upsample_422(frame, rows, columns);
                    layout.native(&full, false, layout.big)
                } else {
                    layout.native(frame, layout.planar, layout.big)
                }
            }
        })
        .collect())
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
