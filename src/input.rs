//! The one input path: what a file holds, known by its content first and its name second, and
//! how it is read — for the CLI (files from disk), the JS API and the page (bytes from a picker)
//! alike. Pictures are decoded here, in the wasm too, so the page and the CLI see the same pixels:
//! 16-bit samples kept, a JPEG's (or WebP's, TIFF's) EXIF orientation applied, alpha dropped.
//!
//! Adding a format is one line in [`PICTURE_FORMATS`] (and the `image` crate's feature) or a
//! reader beside `volume/nifti.rs` with a case in [`Kind`].

use crate::limits::{MAX_FILE_BYTES, MAX_IMAGE_BYTES};
use crate::preprocess::{RgbImage, check_dims};
use crate::volume::{Volume, VolumeError, dicom, nifti};

/// The pictures read: name for people, the decoder's format, the file extensions.
pub const PICTURE_FORMATS: [(&str, image::ImageFormat, &[&str]); 5] = [
    ("PNG", image::ImageFormat::Png, &["png"]),
    ("JPEG", image::ImageFormat::Jpeg, &["jpg", "jpeg"]),
    ("WebP", image::ImageFormat::WebP, &["webp"]),
    ("BMP", image::ImageFormat::Bmp, &["bmp"]),
    ("TIFF", image::ImageFormat::Tiff, &["tif", "tiff"]),
];

/// The volumes read: name for people, the file extensions.
pub const VOLUME_FORMATS: [(&str, &[&str]); 2] =
    [("NIfTI", &["nii", "nii.gz"]), ("DICOM", &["dcm"])];

/// Every format read, as a person reads it: `PNG, JPEG, … pictures; NIfTI and DICOM volumes`.
pub fn supported() -> String {
    let pictures: Vec<&str> = PICTURE_FORMATS.iter().map(|f| f.0).collect();
    format!(
        "{} pictures (8 or 16 bit); NIfTI (.nii, .nii.gz) and DICOM volumes",
        pictures.join(", ")
    )
}

/// Every extension read, with its dot (`.png`, `.nii.gz`, …): what a file picker offers.
pub fn extensions() -> Vec<String> {
    PICTURE_FORMATS
        .iter()
        .flat_map(|f| f.2.iter())
        .chain(VOLUME_FORMATS.iter().flat_map(|f| f.1.iter()))
        .map(|e| format!(".{e}"))
        .collect()
}

/// Why a file could not be read. [`DecodeError::kind`] is the machine-readable part (the JS
/// API's `err.kind`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a supported file ({found}); dino-ar reads {}", supported())]
    Unsupported { found: String },
    #[error("not a readable {format} image: {message}")]
    Corrupt {
        format: &'static str,
        message: String,
    },
    #[error("{0}")]
    Size(String),
    /// A NIfTI or DICOM reader's refusal (it names the field or tag; its kind says what failed).
    #[error(transparent)]
    Volume(#[from] VolumeError),
}

/// Refuse an input file larger than [`MAX_FILE_BYTES`] before reading it: its size is known
/// from the file system (or the browser's `File`) without reading a byte.
pub fn check_file_size(name: &str, bytes: u64) -> Result<(), DecodeError> {
    if bytes <= MAX_FILE_BYTES {
        return Ok(());
    }
    Err(DecodeError::Size(format!(
        "{name} is {:.2} GB, more than the {:.2} GB an input file may have (limits::MAX_FILE_BYTES): \
         crop or split it, or convert a volume to a smaller data type",
        bytes as f64 / 1e9,
        MAX_FILE_BYTES as f64 / 1e9
    )))
}

impl DecodeError {
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Unsupported { .. } => "unsupported",
            DecodeError::Corrupt { .. } => "corrupt",
            DecodeError::Size(_) => "size",
            DecodeError::Volume(e) => e.kind.name(),
        }
    }
}

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A picture; its format's name ("PNG", …).
    Picture(&'static str),
    Nifti,
    /// A DICOM file: one slice of a series, or a volume of its own (multi-frame).
    Dicom,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Picture(_) => "picture",
            Kind::Nifti => "nifti",
            Kind::Dicom => "dicom",
        }
    }
}

/// The lower-case extension of `name` (`nii.gz` counts as one), if any.
fn extension(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".nii.gz") {
        return Some("nii.gz".into());
    }
    let base = lower.rsplit(['/', '\\']).next().unwrap_or(&lower);
    base.rsplit_once('.').map(|(_, e)| e.to_string())
}

/// What `bytes` (the whole file, or at least its first 348 bytes) hold: by content — the DICOM
/// marker, a NIfTI header or gzip, a picture's signature — and, where the content says nothing,
/// by the extension of `name` (a DICOM file without its preamble). Anything else is refused,
/// naming what it seems to be.
pub fn sniff(name: &str, bytes: &[u8]) -> Result<Kind, DecodeError> {
    if dicom::looks_like(bytes) {
        return Ok(Kind::Dicom);
    }
    let guessed = image::guess_format(bytes).ok();
    if let Some(format) = guessed
        && let Some(f) = PICTURE_FORMATS.iter().find(|f| f.1 == format)
    {
        return Ok(Kind::Picture(f.0));
    }
    if guessed.is_none() && nifti::looks_like(bytes, "") {
        return Ok(Kind::Nifti);
    }
    let ext = extension(name);
    match ext.as_deref() {
        Some("dcm") => return Ok(Kind::Dicom),
        Some("nii" | "nii.gz") if guessed.is_none() => return Ok(Kind::Nifti),
        _ => {}
    }
    let bigtiff = bytes.starts_with(b"II\x2b\x00") || bytes.starts_with(b"MM\x00\x2b");
    let found = match (guessed, ext) {
        _ if bigtiff => "a BigTIFF (64-bit offsets), which is not decoded here: save it as a \
                         classic TIFF"
            .into(),
        (Some(format), _) => format!(
            "a {} image",
            format
                .extensions_str()
                .first()
                .unwrap_or(&"?")
                .to_uppercase()
        ),
        (None, Some(ext)) => match PICTURE_FORMATS.iter().find(|f| f.2.contains(&ext.as_str())) {
            Some(f) => format!("named .{ext}, but its bytes are not a {} image", f.0),
            None => format!("a .{ext} file"),
        },
        (None, None) => "unknown content".into(),
    };
    Err(DecodeError::Unsupported { found })
}

/// A picture's pixels as the model sees them, whichever front end reads it: 8 or 16 bit kept at
/// full precision, grey replicated to RGB, alpha dropped (as `PIL.Image.convert("RGB")` does),
/// and the orientation its EXIF tag gives applied (a phone photo stored on its side is upright,
/// as a browser shows it).
pub fn decode_picture(bytes: &[u8]) -> Result<RgbImage, DecodeError> {
    use image::ImageDecoder;
    let format = image::guess_format(bytes)
        .ok()
        .and_then(|g| PICTURE_FORMATS.iter().find(|f| f.1 == g));
    let Some(&(name, format, _)) = format else {
        return Err(sniff("", bytes)
            .err()
            .unwrap_or_else(|| DecodeError::Unsupported {
                found: "not a picture".into(),
            }));
    };
    // Past a decoder's allocation limit is a size, not corruption: say which limit.
    let corrupt = |e: image::ImageError| match e {
        image::ImageError::Limits(_) => DecodeError::Size(format!(
            "a {name} image that needs more than the {} MB a picture may take to decode",
            MAX_IMAGE_BYTES >> 20
        )),
        e => DecodeError::Corrupt {
            format: name,
            message: e.to_string(),
        },
    };
    let premultiplied = match format {
        image::ImageFormat::Tiff => tiff_layout(bytes)?,
        _ => false,
    };
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_IMAGE_BYTES);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    let (width, height) = decoder.dimensions();
    check_dims(width as usize, height as usize).map_err(DecodeError::Size)?;
    let orientation = orientation(&mut decoder);
    let mut img = match format {
        image::ImageFormat::Jpeg => strict_jpeg(bytes, name)?,
        _ => image::DynamicImage::from_decoder(decoder).map_err(corrupt)?,
    };
    img.apply_orientation(orientation);
    let (width, height) = (img.width() as usize, img.height() as usize);
    let data = if premultiplied && img.color().has_alpha() {
        // Associated alpha: the colour was multiplied by it; divide it out before alpha goes
        // (as Pillow reads `RGBa`), so a half-transparent red is red, not dark red.
        img.to_rgba32f()
            .pixels()
            .flat_map(|p| {
                let [r, g, b, a] = p.0;
                let un = |c: f32| if a > 0.0 { (c / a).min(1.0) } else { c };
                [un(r), un(g), un(b)]
            })
            .collect()
    } else {
        img.to_rgb32f().into_raw()
    };
    Ok(RgbImage {
        width,
        height,
        data,
    })
}

/// A JPEG's pixels from zune-jpeg (the decoder `image` uses) in strict mode: damaged entropy-coded
/// data (restart markers out of place, a truncated scan) is an error naming the fault, where the
/// lenient mode `image` asks for fills the blocks after it with whatever decodes — a picture that
/// looks read and is not (found by the corpus: Pillow's `hopper_bad_exif.jpg`). 8-bit grey or RGB.
fn strict_jpeg(bytes: &[u8], name: &'static str) -> Result<image::DynamicImage, DecodeError> {
    match guarded_zune_decode(bytes, name, true) {
        // Stray bytes between marker segments (a writer's slip that Pillow and browsers step
        // over) touch no pixel data: decoded leniently, they give the picture every reader shows.
        Err(DecodeError::Corrupt { message, .. }) if message.contains("between headers") => {
            guarded_zune_decode(bytes, name, false)
        }
        decoded => decoded,
    }
}

/// zune-jpeg 0.5.15's AVX2 IDCT panics (an `unwrap` on an out-of-range store) on a crafted 1 kB
/// JPEG (`tests/fixtures/fuzz/picture_zune_avx2_idct.jpg`, found by tests/fuzz_replay.rs), and its
/// options cannot turn AVX2 off (zune-core ORs the flag with `use_unsafe`). Natively the panic is
/// caught and named; in the browser's wasm that path does not exist (no AVX2 there).
fn guarded_zune_decode(
    bytes: &[u8],
    name: &'static str,
    strict: bool,
) -> Result<image::DynamicImage, DecodeError> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::panic::catch_unwind(|| zune_decode(bytes, name, strict)).unwrap_or_else(|_| {
            Err(DecodeError::Corrupt {
                format: name,
                message: "the JPEG decoder (zune-jpeg) failed on this file's coefficients".into(),
            })
        })
    }
    #[cfg(target_arch = "wasm32")]
    zune_decode(bytes, name, strict)
}

fn zune_decode(
    bytes: &[u8],
    name: &'static str,
    strict: bool,
) -> Result<image::DynamicImage, DecodeError> {
    use zune_core::colorspace::ColorSpace;
    let corrupt = |e: zune_jpeg::errors::DecodeErrors| DecodeError::Corrupt {
        format: name,
        message: e.to_string(),
    };
    let options = zune_core::options::DecoderOptions::default()
        .set_strict_mode(strict)
        .set_max_width(crate::limits::MAX_IMAGE_SIDE)
        .set_max_height(crate::limits::MAX_IMAGE_SIDE);
    let mut d = zune_jpeg::JpegDecoder::new_with_options(
        zune_core::bytestream::ZCursor::new(bytes),
        options,
    );
    d.decode_headers().map_err(corrupt)?;
    // The decoder's buffer, sized by the header: bounded as `image` bounds the other formats.
    if let Some((w, h)) = d.dimensions() {
        let bytes = (w as u64) * (h as u64) * 3;
        if bytes > MAX_IMAGE_BYTES {
            return Err(DecodeError::Size(format!(
                "a {name} image of {w}×{h} that needs more than the {} MB a picture may take to \
                 decode",
                MAX_IMAGE_BYTES >> 20
            )));
        }
    }
    let grey = matches!(
        d.input_colorspace(),
        Some(ColorSpace::Luma | ColorSpace::LumaA)
    );
    let out = if grey {
        ColorSpace::Luma
    } else {
        ColorSpace::RGB
    };
    d.set_options(options.jpeg_set_out_colorspace(out));
    let pixels = d.decode().map_err(corrupt)?;
    let (w, h) = d.dimensions().ok_or_else(|| corrupt("no frame".into()))?;
    let (w, h) = (w as u32, h as u32);
    let short = || DecodeError::Corrupt {
        format: name,
        message: "the decoder gave fewer pixels than the frame holds".into(),
    };
    Ok(if grey {
        image::DynamicImage::ImageLuma8(image::GrayImage::from_raw(w, h, pixels).ok_or_else(short)?)
    } else {
        image::DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, pixels).ok_or_else(short)?)
    })
}

/// Which way up a picture is: its EXIF Orientation (also where a WebP's EXIF chunk starts with
/// JPEG's `Exif\0\0` header, as Pillow and ImageMagick write it), else the XMP packet's
/// `tiff:Orientation` (as Pillow reads it), else upright — a missing or unreadable tag means the
/// file is upright.
fn orientation(decoder: &mut impl image::ImageDecoder) -> image::metadata::Orientation {
    use image::metadata::Orientation;
    let from_exif = |exif: &[u8]| {
        let exif = exif.strip_prefix(b"Exif\0\0").unwrap_or(exif);
        Orientation::from_exif_chunk(exif)
    };
    let exif = decoder.exif_metadata().ok().flatten();
    if let Some(o) = exif.as_deref().and_then(from_exif) {
        return o;
    }
    if let Ok(o) = decoder.orientation()
        && o != Orientation::NoTransforms
    {
        return o;
    }
    let xmp = decoder.xmp_metadata().ok().flatten().unwrap_or_default();
    xmp_orientation(&String::from_utf8_lossy(&xmp))
        .and_then(Orientation::from_exif)
        .unwrap_or(Orientation::NoTransforms)
}

/// `tiff:Orientation` in an XMP packet, as an attribute (`tiff:Orientation="6"`) or an element
/// (`<tiff:Orientation>6</tiff:Orientation>`).
fn xmp_orientation(xmp: &str) -> Option<u8> {
    let at = xmp.find("tiff:Orientation")? + "tiff:Orientation".len();
    let rest = xmp[at..].trim_start_matches(['=', '"', '\'', '>', ' ']);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|o| (1..=8).contains(o))
}

/// What a TIFF's first directory says that the decoder would get wrong, asked before decoding
/// (found by the third-party corpus, Pillow's test images): samples stored in planes *and* tiles
/// (the `tiff` decoder, 0.11, fails an assertion on them) and bits stored least significant first
/// (FillOrder 2, which it ignores: the values come out wrong) are refused by name. Returns
/// whether the alpha is associated (premultiplied, ExtraSamples 1). A directory that cannot be
/// read is left to the decoder, which names the fault.
fn tiff_layout(bytes: &[u8]) -> Result<bool, DecodeError> {
    use tiff::tags::Tag;
    let Ok(mut d) = tiff::decoder::Decoder::new(std::io::Cursor::new(bytes)) else {
        return Ok(false);
    };
    let refuse = |what: &str| {
        Err(DecodeError::Unsupported {
            found: format!("a TIFF {what}, which is not decoded here"),
        })
    };
    let planar = d
        .find_tag_unsigned::<u16>(Tag::PlanarConfiguration)
        .ok()
        .flatten();
    if planar == Some(2) && d.find_tag(Tag::TileWidth).ok().flatten().is_some() {
        return refuse(
            "whose samples are stored in separate planes of tiles (save it with interleaved samples, or in strips)",
        );
    }
    if d.find_tag_unsigned::<u16>(Tag::FillOrder).ok().flatten() == Some(2) {
        return refuse("whose bits are stored least significant first (FillOrder 2)");
    }
    let extra = d.find_tag(Tag::ExtraSamples).ok().flatten();
    let associated = extra
        .and_then(|v| v.into_u16_vec().ok())
        .is_some_and(|v| v.first() == Some(&1));
    Ok(associated)
}

/// What a file holds, read.
pub enum Input {
    Picture(RgbImage),
    Volume(Volume),
}

/// Read one file — a picture, a NIfTI volume or a DICOM file (one slice, or multi-frame) — known
/// by [`sniff`]. The caller names the file in the error.
pub fn read(name: &str, bytes: &[u8]) -> Result<Input, DecodeError> {
    match sniff(name, bytes)? {
        Kind::Picture(_) => decode_picture(bytes).map(Input::Picture),
        Kind::Nifti => nifti::read(bytes)
            .map(Input::Volume)
            .map_err(DecodeError::Volume),
        Kind::Dicom => read_series(vec![(name.to_string(), bytes.to_vec())]).map(Input::Volume),
    }
}

/// The DICOM files of one series (any order: sorted by position), or one multi-frame file, as a
/// volume. A file that cannot be read refuses the series, naming it: a missing slice would
/// misplace the others.
pub fn read_series(files: Vec<(String, Vec<u8>)>) -> Result<Volume, DecodeError> {
    let mut images = Vec::with_capacity(files.len());
    let several = files.len() > 1;
    for (name, bytes) in files {
        let img = dicom::read(&bytes).map_err(|e| match several {
            true => VolumeError {
                message: format!("{name}: {} (so its series is not read)", e.message),
                ..e
            },
            false => e,
        })?;
        images.push((name, img));
    }
    dicom::volume(images).map_err(DecodeError::Volume)
}

/// One item of a run: a file, or the DICOM files of one series (one volume).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Group {
    /// The file at this index.
    File(usize),
    Series {
        /// `<folder>/series <UID>`: how rows and messages name it.
        name: String,
        /// Its output names' stem: the folder's name.
        stem: String,
        files: Vec<usize>,
    },
}

/// Files → the items of a run. `files[k]` is file k's folder (`""` for none) and, for a DICOM
/// file, its SeriesInstanceUID. The DICOM files of one series in one folder become one
/// [`Group::Series`] in the place of its first file; every other file stays itself, and so does
/// a series of one file.
pub fn group_series(files: &[(String, Option<String>)]) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    let mut seen: std::collections::HashMap<(&str, &str), usize> = Default::default();
    for (k, (folder, uid)) in files.iter().enumerate() {
        let Some(uid) = uid.as_deref().filter(|u| !u.is_empty()) else {
            out.push(Group::File(k));
            continue;
        };
        match seen.get(&(folder.as_str(), uid)) {
            Some(&at) => {
                if let Group::Series { files, .. } = &mut out[at] {
                    files.push(k);
                }
            }
            None => {
                seen.insert((folder.as_str(), uid), out.len());
                let name = if folder.is_empty() {
                    format!("series {uid}")
                } else {
                    format!("{}/series {uid}", folder.trim_end_matches(['/', '\\']))
                };
                let stem = folder
                    .trim_end_matches(['/', '\\'])
                    .rsplit(['/', '\\'])
                    .next()
                    .filter(|s| !s.is_empty())
                    .unwrap_or("series")
                    .to_string();
                out.push(Group::Series {
                    name,
                    stem,
                    files: vec![k],
                });
            }
        }
    }
    out.into_iter()
        .map(|g| match g {
            Group::Series { files, .. } if files.len() == 1 => Group::File(files[0]),
            other => other,
        })
        .collect()
}

/// The SeriesInstanceUID of a DICOM file (`None` for any other file, or one without a UID).
pub fn series_uid(name: &str, bytes: &[u8]) -> Option<String> {
    (sniff(name, bytes).ok() == Some(Kind::Dicom))
        .then(|| dicom::series_uid(bytes).ok().flatten())
        .flatten()
}

/// A file's name without its folder and extension (`.nii.gz` counts as one): the stem of its
/// output files.
pub fn stem(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let lower = base.to_ascii_lowercase();
    for ext in [".nii.gz", ".nii"] {
        if lower.ends_with(ext) {
            return base[..base.len() - ext.len()].to_string();
        }
    }
    match base.rsplit_once('.') {
        Some((s, _)) if !s.is_empty() => s.to_string(),
        _ => base.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32, pixels: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        image::RgbImage::from_raw(width, height, pixels.to_vec())
            .unwrap()
            .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn xmp_says_which_way_up_as_attribute_or_element() {
        assert_eq!(
            xmp_orientation(r#"<rdf:Description tiff:Orientation="6"/>"#),
            Some(6)
        );
        assert_eq!(
            xmp_orientation("<tiff:Orientation>3</tiff:Orientation>"),
            Some(3)
        );
        assert_eq!(xmp_orientation(r#"tiff:Orientation="9""#), None);
        assert_eq!(xmp_orientation("no orientation"), None);
    }

    #[test]
    fn a_file_past_the_limit_is_refused_by_its_size() {
        assert!(check_file_size("a.nii", MAX_FILE_BYTES).is_ok());
        let e = check_file_size("a.nii", 2_000_000_000).unwrap_err();
        assert_eq!(e.kind(), "size");
        let e = e.to_string();
        assert!(
            e.contains("a.nii is 2.00 GB") && e.contains("1.61 GB"),
            "{e}"
        );
    }

    #[test]
    fn sniff_reads_content_before_names() {
        let p = png(1, 1, &[1, 2, 3]);
        assert_eq!(sniff("scan.dcm.png", &p), Ok(Kind::Picture("PNG")));
        // A PNG named .jpg is still a PNG.
        assert_eq!(sniff("photo.jpg", &p), Ok(Kind::Picture("PNG")));
        let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;";
        let e = sniff("anim.gif", gif).unwrap_err();
        assert_eq!(e.kind(), "unsupported");
        assert!(e.to_string().contains("GIF"), "{e}");
        let e = sniff("notes.txt", b"hello").unwrap_err();
        assert!(e.to_string().contains(".txt"), "{e}");
        let e = sniff("broken.png", b"hello").unwrap_err();
        assert!(e.to_string().contains("not a PNG"), "{e}");
        let mut dcm = vec![0u8; 132];
        dcm[128..].copy_from_slice(b"DICM");
        assert_eq!(sniff("x", &dcm), Ok(Kind::Dicom));
        assert_eq!(sniff("slice.dcm", b"no preamble"), Ok(Kind::Dicom));
        assert_eq!(sniff("t1.nii.gz", &[0x1f, 0x8b, 8, 0]), Ok(Kind::Nifti));
        assert_eq!(sniff("noname", &348i32.to_le_bytes()), Ok(Kind::Nifti));
    }

    #[test]
    fn every_listed_format_has_a_name_and_extensions() {
        let ext = extensions();
        for e in [".png", ".jpg", ".webp", ".tif", ".nii.gz", ".dcm"] {
            assert!(ext.contains(&e.to_string()), "{e} in {ext:?}");
        }
        assert!(supported().starts_with("PNG, JPEG, WebP, BMP, TIFF pictures"));
    }

    #[test]
    fn series_are_grouped_per_folder_and_uid() {
        let f = |folder: &str, uid: Option<&str>| (folder.to_string(), uid.map(String::from));
        let groups = group_series(&[
            f("a", Some("1.2")),
            f("a", None),
            f("a", Some("1.2")),
            f("b", Some("1.2")),
            f("b/c", Some("9")),
            f("b/c", Some("9")),
        ]);
        assert_eq!(
            groups,
            vec![
                Group::Series {
                    name: "a/series 1.2".into(),
                    stem: "a".into(),
                    files: vec![0, 2]
                },
                Group::File(1),
                Group::File(3),
                Group::Series {
                    name: "b/c/series 9".into(),
                    stem: "c".into(),
                    files: vec![4, 5]
                },
            ]
        );
    }

    #[test]
    fn stems() {
        assert_eq!(stem("dir/case_01.nii.gz"), "case_01");
        assert_eq!(stem("A.NII"), "A");
        assert_eq!(stem("photo.v2.jpg"), "photo.v2");
        assert_eq!(stem(".hidden"), ".hidden");
        assert_eq!(stem("noext"), "noext");
    }
}
