//! DICOM pixel data → one grey value per pixel, as pydicom's `pixel_array` reads it: each codec
//! (native, RLE, JPEG, JPEG 2000) gives a frame's samples, then [`Colour`] turns them into grey —
//! YBR into RGB (pydicom's rounding), a palette through its LUTs, colour as the mean of R, G and B.

use super::super::VolumeError;

/// How a transfer syntax stores its pixels.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(super) enum Codec {
    Native,
    Rle,
    Jpeg,
    Jpeg2000,
}

/// The samples of one pixel and what they mean (PhotometricInterpretation).
#[derive(Debug)]
pub(super) enum Colour {
    /// MONOCHROME1/2: one sample, an intensity.
    Grey,
    /// Three samples to average: RGB, or YBR that a JPEG / JPEG 2000 codec has already turned into
    /// RGB (YBR_ICT, YBR_RCT, YBR_FULL_422 inside a JPEG).
    Rgb,
    /// YBR_FULL (and YBR_FULL_422 once its chroma is repeated) in native or RLE data: turned into
    /// RGB here, as PS3.3 C.7.6.3.1.2 defines it.
    Ybr,
    /// One sample, an index into three colour LUTs.
    Palette(Box<Palette>),
}

/// PALETTE COLOR's three LUTs (PS3.3 C.7.6.3.1.5): an index below `first` takes the first entry,
/// one past the last entry takes the last.
#[derive(Debug)]
pub(super) struct Palette {
    pub first: i64,
    pub red: Vec<f32>,
    pub green: Vec<f32>,
    pub blue: Vec<f32>,
    /// Every entry fits in 8 bits (8-bit LUTs).
    pub eight_bit: bool,
}

/// A LUT as the data set holds it: its descriptor (entries, first mapped value, bits) and data.
pub(super) struct LutSource<'a> {
    pub descriptor: [u16; 3],
    pub data: &'a [u8],
}

impl Palette {
    /// The three LUTs, each checked against its descriptor. `signed`: the pixels (and so the
    /// first mapped value) are signed.
    pub fn read(
        luts: [Option<LutSource<'_>>; 3],
        signed: bool,
        big: bool,
    ) -> Result<Self, VolumeError> {
        let names = ["Red", "Green", "Blue"];
        let mut tables = Vec::new();
        let mut first = None;
        let mut eight_bit = true;
        for (lut, name) in luts.into_iter().zip(names) {
            let Some(LutSource { descriptor, data }) = lut else {
                return Err(corrupt!(
                    "a palette-colour image without its {name} LUT ({name}PaletteColorLookupTable \
                     Descriptor and Data): segmented LUTs are not read"
                ));
            };
            let [entries, start, bits] = descriptor;
            // 0 entries means 2^16 (the count does not fit in 16 bits).
            let entries = if entries == 0 {
                1 << 16
            } else {
                entries as usize
            };
            let start = if signed {
                start as i16 as i64
            } else {
                start as i64
            };
            if first.is_some_and(|f| f != start) {
                return Err(unsupported!(
                    "the palette's LUTs start at different values: not read"
                ));
            }
            first = Some(start);
            if ![8, 16].contains(&bits) {
                return Err(corrupt!(
                    "the {name} palette LUT has {bits}-bit entries; 8 or 16 are defined"
                ));
            }
            // 8-bit entries may be packed two to a 16-bit word or each in a word of its own; the
            // data's length tells (as pydicom does).
            let per_entry = if data.len() >= 2 * entries { 2 } else { 1 };
            if data.len() < entries * per_entry {
                return Err(truncated!(
                    "the {name} palette LUT holds {} bytes for {entries} entries",
                    data.len()
                ));
            }
            eight_bit &= bits == 8;
            let table: Vec<f32> = (0..entries)
                .map(|i| match per_entry {
                    1 => data[i] as f32,
                    _ => {
                        let b = [data[2 * i], data[2 * i + 1]];
                        (if big {
                            u16::from_be_bytes(b)
                        } else {
                            u16::from_le_bytes(b)
                        }) as f32
                    }
                })
                .collect();
            tables.push(table);
        }
        let blue = tables.pop().unwrap_or_default();
        let green = tables.pop().unwrap_or_default();
        let red = tables.pop().unwrap_or_default();
        Ok(Self {
            first: first.unwrap_or(0),
            red,
            green,
            blue,
            eight_bit,
        })
    }

    /// The mean of the three colours an index maps to.
    fn grey(&self, index: f32) -> f32 {
        let entry = |table: &[f32]| {
            let i = (index as i64 - self.first).clamp(0, table.len() as i64 - 1) as usize;
            table[i]
        };
        (entry(&self.red) + entry(&self.green) + entry(&self.blue)) / 3.0
    }
}

impl Colour {
    /// A frame's samples (interleaved, `samples` per pixel) → one grey value per pixel.
    pub fn grey(&self, values: Vec<f32>, samples: usize) -> Vec<f32> {
        match (self, samples) {
            (Colour::Palette(p), 1) => values.into_iter().map(|i| p.grey(i)).collect(),
            (_, 1) => values,
            (Colour::Ybr, _) => values
                .chunks_exact(samples)
                .map(|p| {
                    let [r, g, b] = ybr_to_rgb(p[0], p[1], p[2]);
                    (r + g + b) / 3.0
                })
                .collect(),
            _ => values
                .chunks_exact(samples)
                .map(|p| p.iter().sum::<f32>() / samples as f32)
                .collect(),
        }
    }
}

/// PS3.3 C.7.6.3.1.2's YBR_FULL → RGB for 8-bit samples, rounded and clipped as pydicom does
/// (`pydicom.pixels.processing._convert_YBR_FULL_to_RGB`, in f32).
fn ybr_to_rgb(y: f32, cb: f32, cr: f32) -> [f32; 3] {
    let (cb, cr) = (cb - 128.0, cr - 128.0);
    let r = y + 1.402 * cr;
    let g = y + (-0.114 * 1.772 / 0.587) * cb + (-0.299 * 1.402 / 0.587) * cr;
    let b = y + 1.772 * cb;
    [r, g, b].map(|v| (v + 0.5).floor().clamp(0.0, 255.0))
}

/// YBR_FULL_422 native data (two pixels share one Cb and one Cr: `Y Y Cb Cr`) → three samples per
/// pixel, the chroma repeated (PS3.3 C.7.6.3.1.2).
pub(super) fn upsample_422(b: &[u8], rows: usize, columns: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows * columns * 3);
    for pair in b.chunks_exact(4).take(rows * columns / 2) {
        let [y0, y1, cb, cr] = [pair[0], pair[1], pair[2], pair[3]];
        out.extend_from_slice(&[y0, cb, cr, y1, cb, cr]);
    }
    out
}

/// The attributes every codec needs to turn stored samples into values.
pub(super) struct Layout {
    pub rows: usize,
    pub columns: usize,
    pub samples: usize,
    pub bits: usize,
    pub stored: usize,
    pub signed: bool,
    pub planar: bool,
    pub big: bool,
}

impl Layout {
    pub fn pixels(&self) -> usize {
        self.rows * self.columns
    }

    /// One native frame of 8, 16 or 32-bit samples → values, interleaved (`planar` data
    /// reordered). Only the stored bits count; signed values are two's complement in them.
    pub fn native(&self, b: &[u8], planar: bool, big: bool) -> Vec<f32> {
        let size = self.bits / 8;
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
            self.value(raw)
        };
        let (pixels, samples) = (self.pixels(), self.samples);
        (0..pixels * samples)
            .map(|i| {
                let (p, c) = (i / samples, i % samples);
                sample(if planar { c * pixels + p } else { i })
            })
            .collect()
    }

    /// Frame `frame` of 1-bit data: the bits run on across frames (a frame need not start on a
    /// byte), least significant bit first (PS3.5 8.1.1).
    pub fn bits(&self, b: &[u8], frame: usize) -> Vec<f32> {
        let n = self.pixels() * self.samples;
        (0..n)
            .map(|i| {
                let bit = frame * n + i;
                ((b[bit / 8] >> (bit % 8)) & 1) as f32
            })
            .collect()
    }

    fn value(&self, raw: u64) -> f32 {
        let stored = self.stored;
        let raw = raw & ((1u64 << stored) - 1);
        if self.signed && raw >> (stored - 1) & 1 == 1 {
            (raw as i64 - (1i64 << stored)) as f32
        } else {
            raw as f32
        }
    }
}

/// One RLE-compressed frame (PS3.5 annex G) → native bytes, planar by sample, little endian (as
/// [`Layout::native`] reads them with `planar`). Segment `c·size + k` holds byte `k` (most
/// significant first) of sample `c`.
pub(super) fn rle(
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
    // PackBits gives at most 128 bytes for 2: a frame too short to hold the image is refused
    // before its size (from the header alone) is allocated.
    let need = pixels * size * samples;
    if fragment.len().saturating_mul(64) < need {
        return Err(truncated!(
            "an RLE frame of {} bytes cannot hold {rows_cols} values of {size} bytes ({need} bytes \
             even at PackBits' best)",
            fragment.len(),
            rows_cols = pixels * samples
        ));
    }
    let mut out = vec![0u8; need];
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

/// Whether a JPEG frame's three components are YBR by pydicom's rule
/// (`DecodeRunner._conform_jpg_colorspace`): component IDs `R G B` (or `r g b`) mean RGB whatever
/// the header says; a JFIF marker means YBR when the header says neither; else the header's
/// PhotometricInterpretation decides.
pub(super) fn jpeg_is_ybr(stream: &[u8], photometric: &str) -> bool {
    let (mut at, mut jfif, mut ids) = (2usize, false, Vec::new());
    // Marker segments up to the first scan: APPn (JFIF in APP0) and the frame header (SOFn).
    while at + 4 <= stream.len() && stream[at] == 0xFF {
        let marker = stream[at + 1];
        let len = u16::from_be_bytes([stream[at + 2], stream[at + 3]]) as usize;
        let body = stream.get(at + 4..at + 2 + len).unwrap_or(&[]);
        match marker {
            0xE0 if body.starts_with(b"JFIF") => jfif = true,
            0xC0..=0xCF if ![0xC4, 0xC8, 0xCC].contains(&marker) => {
                let count = body.get(5).copied().unwrap_or(0) as usize;
                ids = (0..count)
                    .filter_map(|c| body.get(6 + 3 * c).copied())
                    .collect();
            }
            0xDA => break,
            _ => {}
        }
        at += 2 + len.max(2);
    }
    if ids == [b'R', b'G', b'B'] || ids == [b'r', b'g', b'b'] {
        return false;
    }
    photometric.contains("YBR") || jfif
}

/// One JPEG frame (baseline, extended, lossless) → samples, interleaved; colour comes out as RGB:
/// YBR turned into RGB by the decoder, components that are RGB already ([`jpeg_is_ybr`]:
/// pydicom's rule, whatever the decoder would guess) left as they are.
pub(super) fn jpeg(stream: &[u8], layout: &Layout, ybr: bool) -> Result<Vec<f32>, VolumeError> {
    let mut decoder = jpeg_decoder::Decoder::new(stream);
    if layout.samples == 3 && !ybr {
        decoder.set_color_transform(jpeg_decoder::ColorTransform::RGB);
    }
    let bad = |e: jpeg_decoder::Error| format!("the JPEG pixel data cannot be decoded: {e}");
    // The frame's size from its own header, checked against the DICOM header's (which the
    // voxel limit has bounded) before the decoder allocates for it.
    decoder.read_info().map_err(bad)?;
    let info = decoder.info().ok_or("the JPEG stream has no frame")?;
    if (info.height as usize, info.width as usize) != (layout.rows, layout.columns) {
        return Err(corrupt!(
            "the JPEG frame is {}×{}, the DICOM header says {}×{}",
            info.width,
            info.height,
            layout.columns,
            layout.rows
        ));
    }
    let pixels = decoder.decode().map_err(bad)?;
    let sign = |v: u32| -> f32 {
        let stored = layout.stored;
        if layout.signed && stored > 0 && v >> (stored - 1) & 1 == 1 {
            (v as i64 - (1i64 << stored)) as f32
        } else {
            v as f32
        }
    };
    let grey = matches!(
        info.pixel_format,
        jpeg_decoder::PixelFormat::L8 | jpeg_decoder::PixelFormat::L16
    );
    if grey && layout.samples != 1 {
        return Err(corrupt!(
            "the JPEG frame is grey, the DICOM header says {} samples per pixel",
            layout.samples
        ));
    }
    Ok(match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => pixels.iter().map(|&v| sign(v as u32)).collect(),
        jpeg_decoder::PixelFormat::L16 => pixels
            .chunks_exact(2)
            .map(|b| sign(u16::from_ne_bytes([b[0], b[1]]) as u32))
            .collect(),
        jpeg_decoder::PixelFormat::RGB24 if layout.samples == 3 => {
            pixels.iter().map(|&v| v as f32).collect()
        }
        jpeg_decoder::PixelFormat::RGB24 => {
            return Err(corrupt!(
                "the JPEG frame is colour, the DICOM header says {} sample per pixel",
                layout.samples
            ));
        }
        jpeg_decoder::PixelFormat::CMYK32 => {
            return Err("a CMYK JPEG: not a medical image encoding".into());
        }
    })
}

/// One JPEG 2000 frame (a codestream, or a JP2 file) → samples, interleaved, as OpenJPEG gives
/// them to pydicom: rounded half to even, clipped to the component's range, the reversible or
/// irreversible colour transform undone (RGB out). Where the codestream's sign disagrees with
/// PixelRepresentation, the values are read in the precision as PixelRepresentation says (as
/// pydicom's `apply_j2k_sign_correction`).
pub(super) fn jpeg2000(stream: &[u8], layout: &Layout) -> Result<Vec<f32>, VolumeError> {
    let bad =
        |e: hayro_jpeg2000::DecodeError| format!("the JPEG 2000 pixel data cannot be decoded: {e}");
    let settings = hayro_jpeg2000::DecodeSettings {
        resolve_palette_indices: false,
        ..Default::default()
    };
    let image = hayro_jpeg2000::Image::new(stream, &settings).map_err(bad)?;
    let (width, height) = (image.width() as usize, image.height() as usize);
    if (height, width) != (layout.rows, layout.columns) {
        return Err(corrupt!(
            "the JPEG 2000 frame is {width}×{height}, the DICOM header says {}×{}",
            layout.columns,
            layout.rows
        ));
    }
    // The decoder allocates a plane for every component the codestream declares: checked against
    // the header before it does.
    let signs = codestream_signs(stream);
    if signs.len() != layout.samples {
        return Err(corrupt!(
            "the JPEG 2000 codestream has {} components, the DICOM header says {} samples per \
             pixel",
            signs.len(),
            layout.samples
        ));
    }
    let mut context = hayro_jpeg2000::DecoderContext::default();
    let decoded = image.decode(&mut context).map_err(bad)?;
    let components = decoded.components();
    if components.len() != layout.samples {
        return Err(corrupt!(
            "the JPEG 2000 frame has {} components, the DICOM header says {} samples per pixel",
            components.len(),
            layout.samples
        ));
    }
    let pixels = layout.pixels();
    let mut out = vec![0.0f32; pixels * layout.samples];
    for (c, component) in components.iter().enumerate() {
        let precision = component.bit_depth().clamp(1, 32) as u32;
        let signed = signs.get(c).copied().unwrap_or(false);
        let span = 1i64 << precision;
        // The decoder adds the unsigned level shift to every component; a signed one takes it off.
        let (shift, low, high) = match signed {
            true => (span / 2, -span / 2, span / 2 - 1),
            false => (0, 0, span - 1),
        };
        let samples = component.samples();
        if samples.len() < pixels {
            return Err(corrupt!(
                "JPEG 2000 component {c} holds {} samples for {pixels} pixels",
                samples.len()
            ));
        }
        for (p, &v) in samples[..pixels].iter().enumerate() {
            // `as` saturates (NaN to 0): a wild sample from a crafted stream is clipped, not
            // an overflow.
            let mut v = (v.round_ties_even() as i64)
                .saturating_sub(shift)
                .clamp(low, high);
            if layout.samples == 1 && signed != layout.signed {
                // Sign-extend (or drop the sign) in the codestream's precision.
                let masked = v & (span - 1);
                v = if layout.signed && masked >= span / 2 {
                    masked - span
                } else {
                    masked
                };
            }
            out[p * layout.samples + c] = v as f32;
        }
    }
    Ok(out)
}

/// Each component's sign from the codestream's SIZ marker (Ssiz's top bit); the decoder reads
/// every component as unsigned. The codestream is the stream itself or, in a JP2 file, the first
/// place its SOC and SIZ markers start; empty where there is none.
fn codestream_signs(stream: &[u8]) -> Vec<bool> {
    const SOC_SIZ: [u8; 4] = [0xFF, 0x4F, 0xFF, 0x51];
    let Some(start) = stream.windows(4).position(|w| w == SOC_SIZ) else {
        return Vec::new();
    };
    let stream = &stream[start..];
    // SOC, SIZ, Lsiz, Rsiz, 8 × 4 bytes of sizes and offsets, Csiz, then 3 bytes a component.
    if stream.len() < 42 {
        return Vec::new();
    }
    let count = u16::from_be_bytes([stream[40], stream[41]]) as usize;
    (0..count)
        .map_while(|c| stream.get(42 + 3 * c).map(|s| s & 0x80 != 0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_palette_clips_indices_to_its_entries_as_the_standard_says() {
        // 300 8-bit entries, packed one a byte; the first maps index 10.
        let data: Vec<u8> = (0..300).map(|i| (i % 251) as u8).collect();
        let lut = || {
            Some(LutSource {
                descriptor: [300, 10, 8],
                data: &data,
            })
        };
        let p = Palette::read([lut(), lut(), lut()], false, false).unwrap();
        assert!(p.eight_bit);
        assert_eq!(p.grey(0.0), 0.0, "below the first value: the first entry");
        assert_eq!(p.grey(10.0), 0.0);
        // Entry 290 (index 300): past 256, where an 8-bit index would wrap.
        assert_eq!(p.grey(300.0), (290 % 251) as f32);
        assert_eq!(p.grey(5000.0), (299 % 251) as f32, "past the end: the last");
        let short = Palette::read(
            [
                Some(LutSource {
                    descriptor: [0, 0, 16],
                    data: &data,
                }),
                lut(),
                lut(),
            ],
            false,
            false,
        )
        .unwrap_err();
        assert!(short.to_string().contains("65536 entries"), "{short}");
        let segmented = Palette::read([None, lut(), lut()], false, false).unwrap_err();
        assert!(segmented.to_string().contains("segmented"), "{segmented}");
    }

    #[test]
    fn a_short_rle_frame_is_refused_before_its_image_is_allocated() {
        // A 64-byte header claiming 3 segments for a 16 384² image of 32-bit samples (3 GiB).
        let mut frame = vec![0u8; 64];
        frame[0] = 12;
        let e = rle(&frame, 16_384 * 16_384, 4, 3).unwrap_err();
        assert!(e.to_string().contains("cannot hold"), "{e}");
    }

    #[test]
    fn ybr_turns_into_rgb_as_pydicom_rounds_it() {
        assert_eq!(ybr_to_rgb(128.0, 128.0, 128.0), [128.0, 128.0, 128.0]);
        // Near pure red: R = 76 + 1.402·127 = 254.05, G and B just below 0 and clipped.
        assert_eq!(ybr_to_rgb(76.0, 85.0, 255.0), [254.0, 0.0, 0.0]);
    }

    #[test]
    fn one_bit_frames_run_on_across_bytes() {
        let layout = Layout {
            rows: 1,
            columns: 3,
            samples: 1,
            bits: 1,
            stored: 1,
            signed: false,
            planar: false,
            big: false,
        };
        // Frames of 3 bits: 101, then 110, then 001 (least significant bit first).
        let b = [0b0011_0101, 0b0000_0001];
        assert_eq!(layout.bits(&b, 0), [1.0, 0.0, 1.0]);
        assert_eq!(layout.bits(&b, 1), [0.0, 1.0, 1.0]);
        assert_eq!(layout.bits(&b, 2), [0.0, 0.0, 1.0]);
    }

    #[test]
    fn the_codestream_says_which_components_are_signed() {
        let mut siz = vec![0xFF, 0x4F, 0xFF, 0x51];
        siz.extend([0u8; 36]);
        siz.extend([0, 2, 0x8F, 1, 1, 0x07, 1, 1]);
        assert_eq!(codestream_signs(&siz), [true, false]);
        assert!(codestream_signs(b"\0\0\0\x0cjP  ").is_empty());
        let mut jp2 = b"\0\0\0\x0cjP  \r\n\x87\n....jp2c".to_vec();
        jp2.extend(&siz);
        assert_eq!(codestream_signs(&jp2), [true, false], "inside a JP2 file");
    }
}
