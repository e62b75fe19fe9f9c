//! NIfTI-1 and NIfTI-2 (`.nii`, `.nii.gz`): read any data type the format allows into a
//! [`Volume`], write an anomaly map back with the input's affine.
//!
//! Written from the format's definition (nifti1.h, nifti2.h) rather than through a crate so that
//! the voxels stream from the (decompressed) file straight into the one f32 volume — a
//! 240×240×155 BraTS volume is never held twice in wasm memory — and every refusal names the
//! field that caused it.

use crate::limits::MAX_INFLATED_BYTES;
use std::io::{Read, Write};

use super::{MAX_VOXELS, Volume, VolumeError};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Does `bytes` start like a NIfTI file (plain or gzip)? Gzip is assumed to be one.
pub fn looks_like(bytes: &[u8], name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".nii") || lower.ends_with(".nii.gz") {
        return true;
    }
    if bytes.len() >= 4 {
        let size = [
            i32::from_le_bytes(bytes[..4].try_into().unwrap()),
            i32::from_be_bytes(bytes[..4].try_into().unwrap()),
        ];
        if size.contains(&348) || size.contains(&540) {
            return true;
        }
    }
    bytes.starts_with(&GZIP_MAGIC)
}

/// A NIfTI file from its bytes (gzip-compressed or not).
pub fn read(bytes: &[u8]) -> Result<Volume, VolumeError> {
    if bytes.starts_with(&GZIP_MAGIC) {
        read_stream(
            flate2::read::MultiGzDecoder::new(bytes),
            "decompressed file",
        )
    } else {
        read_stream(bytes, "file")
    }
}

/// Fill `buf` or say how far the file got.
fn fill(
    r: &mut impl Read,
    buf: &mut [u8],
    at: u64,
    what: &str,
    file: &str,
) -> Result<(), VolumeError> {
    let (mut got, need) = (0, buf.len());
    while got < need {
        let truncated = |got: usize| {
            truncated!(
                "truncated: the {file} ends after {} bytes, in the {what} (which needs {} bytes \
                 from byte {at})",
                at + got as u64,
                need
            )
        };
        match r.read(&mut buf[got..]) {
            Ok(0) => return Err(truncated(got)),
            // A gzip stream cut short ends this way.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(truncated(got)),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(corrupt!("cannot read the {what}: {e}")),
        }
    }
    Ok(())
}

/// The header fields a reader needs, from either version.
#[derive(Debug)]
struct Header {
    header_len: u64,
    dim: [i64; 8],
    datatype: i16,
    pixdim: [f64; 8],
    vox_offset: f64,
    scl_slope: f64,
    scl_inter: f64,
    qform_code: i16,
    sform_code: i16,
    quatern: [f64; 3],
    qoffset: [f64; 3],
    srow: [[f64; 4]; 3],
}

struct Fields<'a> {
    bytes: &'a [u8],
    big: bool,
}

impl Fields<'_> {
    fn take<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut b: [u8; N] = self.bytes[at..at + N].try_into().unwrap();
        if self.big {
            b.reverse();
        }
        b
    }
    fn i16(&self, at: usize) -> i16 {
        i16::from_le_bytes(self.take(at))
    }
    fn i32(&self, at: usize) -> i32 {
        i32::from_le_bytes(self.take(at))
    }
    fn i64(&self, at: usize) -> i64 {
        i64::from_le_bytes(self.take(at))
    }
    fn f32(&self, at: usize) -> f64 {
        f32::from_le_bytes(self.take(at)) as f64
    }
    fn f64(&self, at: usize) -> f64 {
        f64::from_le_bytes(self.take(at))
    }
}

fn parse_header(r: &mut impl Read, file: &str) -> Result<(Header, bool), VolumeError> {
    let mut head = [0u8; 540];
    fill(r, &mut head[..4], 0, "header", file)?;
    let le = i32::from_le_bytes(head[..4].try_into().unwrap());
    let be = i32::from_be_bytes(head[..4].try_into().unwrap());
    let (version, big) = match (le, be) {
        (348, _) => (1, false),
        (_, 348) => (1, true),
        (540, _) => (2, false),
        (_, 540) => (2, true),
        _ => {
            return Err(corrupt!(
                "not a NIfTI file: its first field (the header size) reads {le}, not 348 \
                 (NIfTI-1) or 540 (NIfTI-2)"
            ));
        }
    };
    let len = if version == 1 { 348 } else { 540 };
    fill(r, &mut head[4..len], 4, "header", file)?;
    let f = Fields { bytes: &head, big };
    let header = if version == 1 {
        let magic = &head[344..348];
        check_magic(magic, b"n+1\0", b"ni1\0", "NIfTI-1")?;
        Header {
            header_len: 348,
            dim: std::array::from_fn(|i| f.i16(40 + 2 * i) as i64),
            datatype: f.i16(70),
            pixdim: std::array::from_fn(|i| f.f32(76 + 4 * i)),
            vox_offset: f.f32(108),
            scl_slope: f.f32(112),
            scl_inter: f.f32(116),
            qform_code: f.i16(252),
            sform_code: f.i16(254),
            quatern: std::array::from_fn(|i| f.f32(256 + 4 * i)),
            qoffset: std::array::from_fn(|i| f.f32(268 + 4 * i)),
            srow: std::array::from_fn(|r| std::array::from_fn(|c| f.f32(280 + 16 * r + 4 * c))),
        }
    } else {
        let magic = &head[4..12];
        check_magic(magic, b"n+2\0\r\n\x1a\n", b"ni2\0\r\n\x1a\n", "NIfTI-2")?;
        Header {
            header_len: 540,
            dim: std::array::from_fn(|i| f.i64(16 + 8 * i)),
            datatype: f.i16(12),
            pixdim: std::array::from_fn(|i| f.f64(104 + 8 * i)),
            vox_offset: f.i64(168) as f64,
            scl_slope: f.f64(176),
            scl_inter: f.f64(184),
            qform_code: f.i32(344) as i16,
            sform_code: f.i32(348) as i16,
            quatern: std::array::from_fn(|i| f.f64(352 + 8 * i)),
            qoffset: std::array::from_fn(|i| f.f64(376 + 8 * i)),
            srow: std::array::from_fn(|r| std::array::from_fn(|c| f.f64(400 + 32 * r + 8 * c))),
        }
    };
    Ok((header, big))
}

fn check_magic(magic: &[u8], single: &[u8], pair: &[u8], version: &str) -> Result<(), VolumeError> {
    if magic == single {
        Ok(())
    } else if magic == pair {
        Err(unsupported!(
            "a {version} header-only file (.hdr): its voxels are in the .img file beside it; \
             save the pair as one .nii (e.g. nibabel: nib.save(nib.load(path), 'out.nii.gz'))"
        ))
    } else {
        Err(corrupt!(
            "not a {version} file: the magic string reads {:?}, expected {:?}",
            String::from_utf8_lossy(magic),
            String::from_utf8_lossy(single)
        ))
    }
}

/// How one voxel is stored: bytes, and how to turn them into an intensity.
#[derive(Debug, Clone, Copy)]
enum Stored {
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
    Rgb24,
    Rgba32,
}

impl Stored {
    fn of(datatype: i16) -> Result<(Stored, &'static str), VolumeError> {
        Ok(match datatype {
            2 => (Stored::U8, "uint8"),
            4 => (Stored::I16, "int16"),
            8 => (Stored::I32, "int32"),
            16 => (Stored::F32, "float32"),
            64 => (Stored::F64, "float64"),
            128 => (Stored::Rgb24, "RGB24"),
            256 => (Stored::I8, "int8"),
            512 => (Stored::U16, "uint16"),
            768 => (Stored::U32, "uint32"),
            1024 => (Stored::I64, "int64"),
            1280 => (Stored::U64, "uint64"),
            2304 => (Stored::Rgba32, "RGBA32"),
            1 => {
                return Err(unsupported!(
                    "data type 1 (binary, one bit per voxel) is not read"
                ));
            }
            32 | 1792 | 2048 => {
                return Err(unsupported!(
                    "data type {datatype} (complex) is not read: complex voxels have no single \
                     intensity; save the magnitude instead"
                ));
            }
            1536 => return Err(unsupported!("data type 1536 (128-bit float) is not read")),
            other => return Err(corrupt!("unknown NIfTI data type {other}")),
        })
    }

    fn size(self) -> usize {
        match self {
            Stored::U8 | Stored::I8 => 1,
            Stored::I16 | Stored::U16 => 2,
            Stored::Rgb24 => 3,
            Stored::I32 | Stored::U32 | Stored::F32 | Stored::Rgba32 => 4,
            Stored::I64 | Stored::U64 | Stored::F64 => 8,
        }
    }

    fn value(self, b: &[u8], big: bool) -> f32 {
        macro_rules! num {
            ($t:ty) => {{
                let a = b.try_into().unwrap();
                (if big {
                    <$t>::from_be_bytes(a)
                } else {
                    <$t>::from_le_bytes(a)
                }) as f32
            }};
        }
        match self {
            Stored::U8 => b[0] as f32,
            Stored::I8 => b[0] as i8 as f32,
            Stored::I16 => num!(i16),
            Stored::U16 => num!(u16),
            Stored::I32 => num!(i32),
            Stored::U32 => num!(u32),
            Stored::I64 => num!(i64),
            Stored::U64 => num!(u64),
            Stored::F32 => num!(f32),
            Stored::F64 => num!(f64),
            // Colour voxels become grey: the mean of R, G and B.
            Stored::Rgb24 | Stored::Rgba32 => (b[0] as f32 + b[1] as f32 + b[2] as f32) / 3.0,
        }
    }
}

fn read_stream(mut r: impl Read, file: &str) -> Result<Volume, VolumeError> {
    let (h, big) = parse_header(&mut r, file)?;
    let (stored, type_name) = Stored::of(h.datatype)?;
    let ndim = h.dim[0];
    if !(1..=7).contains(&ndim) {
        return Err(corrupt!(
            "dim[0] (the number of dimensions) is {ndim}; NIfTI allows 1 to 7"
        ));
    }
    let ndim = ndim as usize;
    for k in 1..=ndim {
        if h.dim[k] < 1 {
            return Err(corrupt!(
                "dim[{k}] is {}: every dimension needs at least one voxel",
                h.dim[k]
            ));
        }
    }
    let len = |k: usize| if k <= ndim { h.dim[k] as u128 } else { 1 };
    let dims128 = [len(1), len(2), len(3)];
    // Saturating: NIfTI-2 dims are 64-bit, and three of them overflow even 128 bits (fuzzing
    // found it); a saturated count is past the limit like any other.
    let voxels = dims128.iter().fold(1u128, |n, &d| n.saturating_mul(d));
    let shape = (1..=ndim)
        .map(|k| h.dim[k].to_string())
        .collect::<Vec<_>>()
        .join("×");
    if voxels > MAX_VOXELS as u128 {
        return Err(too_large!(
            "the header claims {shape} = {voxels} voxels per volume; at most {MAX_VOXELS} are read"
        ));
    }
    let dims = dims128.map(|d| d as usize);
    let voxels = voxels as usize;
    let mut notes = Vec::new();
    let later: u128 = (4..=ndim).fold(1u128, |n, k| n.saturating_mul(h.dim[k] as u128));
    if later > 1 {
        notes.push(format!(
            "a {ndim}-D file ({shape}): the first of its {later} volumes is read"
        ));
    }
    // Skip the extensions between the header and the voxels.
    let offset = h.vox_offset;
    if !(offset.is_finite() && offset >= 0.0 && offset < (1u64 << 40) as f64) {
        return Err(corrupt!("vox_offset {offset} is not a byte offset"));
    }
    let offset = (offset as u64).max(h.header_len);
    // The voxels must start within what is read: a `.nii.gz` does not inflate a terabyte of
    // "extensions" on its header's word.
    if offset > MAX_INFLATED_BYTES {
        return Err(too_large!(
            "vox_offset {offset}: the voxels would start past the {MAX_INFLATED_BYTES} bytes read"
        ));
    }
    let skip = offset - h.header_len;
    let skipped = std::io::copy(&mut (&mut r).take(skip), &mut std::io::sink())
        .map_err(|e| format!("cannot read the header extensions: {e}"))?;
    if skipped < skip {
        return Err(truncated!(
            "truncated: the {file} ends after {} bytes, before its voxels (vox_offset {offset})",
            h.header_len + skipped
        ));
    }
    // Voxels, a chunk at a time, straight into the volume.
    let size = stored.size();
    let mut data = Vec::with_capacity(voxels);
    let mut chunk = vec![0u8; size * 65_536];
    while data.len() < voxels {
        let n = (voxels - data.len()).min(65_536);
        let at = offset + (data.len() * size) as u64;
        fill(&mut r, &mut chunk[..n * size], at, "voxels", file).map_err(|e| VolumeError {
            message: format!(
                "{}; the header says {shape} voxels of {type_name} ({} bytes)",
                e.message,
                voxels * size
            ),
            ..e
        })?;
        data.extend(
            chunk[..n * size]
                .chunks_exact(size)
                .map(|b| stored.value(b, big)),
        );
    }
    let scaled = h.scl_slope.is_finite()
        && h.scl_slope != 0.0
        && !matches!(stored, Stored::Rgb24 | Stored::Rgba32);
    let (slope, inter) = (
        h.scl_slope,
        if h.scl_inter.is_finite() {
            h.scl_inter
        } else {
            0.0
        },
    );
    let scaled = scaled && (slope != 1.0 || inter != 0.0);
    if scaled {
        data.iter_mut()
            .for_each(|v| *v = (*v as f64 * slope + inter) as f32);
    }
    let (affine, space_code) = affine(&h);
    if space_code == 0 {
        notes.push(
            "the header gives no orientation (qform and sform codes are 0): the voxel axes are \
             taken as x, y, z"
                .into(),
        );
    }
    Ok(Volume {
        dims,
        data,
        affine,
        space_code,
        modality: None,
        eight_bit: matches!(stored, Stored::U8 | Stored::Rgb24 | Stored::Rgba32) && !scaled,
        notes,
    })
}

/// The voxel → world matrix: the sform when it is set, else the qform (quaternion), else the
/// voxel sizes alone (NIfTI's "method 1").
fn affine(h: &Header) -> ([[f64; 4]; 3], i16) {
    let spacing = |k: usize| {
        let p = h.pixdim[k].abs();
        if p.is_finite() && p > 0.0 { p } else { 1.0 }
    };
    if h.sform_code > 0 {
        return (h.srow, h.sform_code);
    }
    if h.qform_code > 0 {
        // As nifti_quatern_to_mat44: a rotation by ~180° (a ≈ 0) is renormalised, since f32
        // rounding of b, c, d would otherwise leave a spurious a of ~1e-4.
        let [mut b, mut c, mut d] = h.quatern;
        let rest = 1.0 - (b * b + c * c + d * d);
        let a = if rest < 1e-7 {
            let norm = (b * b + c * c + d * d).sqrt();
            (b, c, d) = (b / norm, c / norm, d / norm);
            0.0
        } else {
            rest.sqrt()
        };
        let r = [
            [
                a * a + b * b - c * c - d * d,
                2.0 * (b * c - a * d),
                2.0 * (b * d + a * c),
            ],
            [
                2.0 * (b * c + a * d),
                a * a + c * c - b * b - d * d,
                2.0 * (c * d - a * b),
            ],
            [
                2.0 * (b * d - a * c),
                2.0 * (c * d + a * b),
                a * a + d * d - c * c - b * b,
            ],
        ];
        let qfac = if h.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
        let scale = [spacing(1), spacing(2), spacing(3) * qfac];
        let m = std::array::from_fn(|row| {
            [
                r[row][0] * scale[0],
                r[row][1] * scale[1],
                r[row][2] * scale[2],
                h.qoffset[row],
            ]
        });
        return (m, h.qform_code);
    }
    let m = std::array::from_fn(|row| {
        let mut line = [0.0; 4];
        line[row] = spacing(row + 1);
        line
    });
    (m, 0)
}

/// The rotation part of `affine` as NIfTI's quaternion (b, c, d), the voxel sizes and qfac —
/// or `None` when the matrix is not a rotation times voxel sizes (shear): only the sform then.
fn quaternion(affine: &[[f64; 4]; 3]) -> Option<([f64; 3], [f64; 3], f64)> {
    let col = |c: usize| [affine[0][c], affine[1][c], affine[2][c]];
    let norm = |v: [f64; 3]| (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    let sizes = [norm(col(0)), norm(col(1)), norm(col(2))];
    if sizes.iter().any(|&s| !(s > 0.0 && s.is_finite())) {
        return None;
    }
    let mut r = [[0.0; 3]; 3];
    for (c, s) in sizes.iter().enumerate() {
        for (row, line) in r.iter_mut().enumerate() {
            line[c] = affine[row][c] / s;
        }
    }
    // Orthonormal columns, or no quaternion.
    for i in 0..3 {
        for j in i + 1..3 {
            let dot: f64 = (0..3).map(|k| r[k][i] * r[k][j]).sum();
            if dot.abs() > 1e-4 {
                return None;
            }
        }
    }
    let det = r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1])
        - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
        + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
    let qfac = if det < 0.0 {
        for line in &mut r {
            line[2] = -line[2];
        }
        -1.0
    } else {
        1.0
    };
    // nifti_mat44_to_quatern
    let trace = r[0][0] + r[1][1] + r[2][2] + 1.0;
    let (a, b, c, d) = if trace > 0.5 {
        let a = 0.5 * trace.sqrt();
        let b = 0.25 * (r[2][1] - r[1][2]) / a;
        let c = 0.25 * (r[0][2] - r[2][0]) / a;
        let d = 0.25 * (r[1][0] - r[0][1]) / a;
        (a, b, c, d)
    } else {
        let xd = 1.0 + r[0][0] - (r[1][1] + r[2][2]);
        let yd = 1.0 + r[1][1] - (r[0][0] + r[2][2]);
        let zd = 1.0 + r[2][2] - (r[0][0] + r[1][1]);
        if xd > 1.0 {
            let b = 0.5 * xd.sqrt();
            let c = 0.25 * (r[0][1] + r[1][0]) / b;
            let d = 0.25 * (r[0][2] + r[2][0]) / b;
            (0.25 * (r[2][1] - r[1][2]) / b, b, c, d)
        } else if yd > 1.0 {
            let c = 0.5 * yd.sqrt();
            let b = 0.25 * (r[0][1] + r[1][0]) / c;
            let d = 0.25 * (r[1][2] + r[2][1]) / c;
            (0.25 * (r[0][2] - r[2][0]) / c, b, c, d)
        } else {
            let d = 0.5 * zd.sqrt();
            let b = 0.25 * (r[0][2] + r[2][0]) / d;
            let c = 0.25 * (r[1][2] + r[2][1]) / d;
            (0.25 * (r[1][0] - r[0][1]) / d, b, c, d)
        }
    };
    // The same rotation with a ≥ 0, as NIfTI stores it (a is implied).
    let sign = if a < 0.0 { -1.0 } else { 1.0 };
    let (b, c, d) = (b * sign, c * sign, d * sign);
    Some(([b, c, d], sizes, qfac))
}

/// A float32 NIfTI-1 file, gzip-compressed (`.nii.gz`), holding `volume` with its affine (as
/// the sform, and as the qform too when the affine has no shear).
pub fn write_gz(volume: &Volume, description: &str) -> Vec<u8> {
    let mut h = vec![0u8; 352];
    let put =
        |h: &mut Vec<u8>, at: usize, bytes: &[u8]| h[at..at + bytes.len()].copy_from_slice(bytes);
    put(&mut h, 0, &348i32.to_le_bytes());
    let dim: [i16; 8] = [
        3,
        volume.dims[0] as i16,
        volume.dims[1] as i16,
        volume.dims[2] as i16,
        1,
        1,
        1,
        1,
    ];
    for (i, d) in dim.iter().enumerate() {
        put(&mut h, 40 + 2 * i, &d.to_le_bytes());
    }
    put(&mut h, 70, &16i16.to_le_bytes()); // float32
    put(&mut h, 72, &32i16.to_le_bytes());
    let q = quaternion(&volume.affine);
    let sizes = q.map(|q| q.1).unwrap_or_else(|| {
        std::array::from_fn(|c| {
            (0..3)
                .map(|r| volume.affine[r][c].powi(2))
                .sum::<f64>()
                .sqrt()
        })
    });
    let qfac = q.map_or(1.0, |q| q.2);
    let pixdim = [qfac, sizes[0], sizes[1], sizes[2], 1.0, 1.0, 1.0, 1.0];
    for (i, p) in pixdim.iter().enumerate() {
        put(&mut h, 76 + 4 * i, &(*p as f32).to_le_bytes());
    }
    put(&mut h, 108, &352f32.to_le_bytes()); // vox_offset
    put(&mut h, 112, &1f32.to_le_bytes()); // scl_slope
    h[123] = 2; // xyzt_units: millimetres
    let text = description.as_bytes();
    put(&mut h, 148, &text[..text.len().min(79)]);
    let code = volume.space_code;
    if let Some(([b, c, d], _, _)) = q {
        put(&mut h, 252, &code.to_le_bytes());
        for (i, v) in [b, c, d].iter().enumerate() {
            put(&mut h, 256 + 4 * i, &(*v as f32).to_le_bytes());
        }
        for row in 0..3 {
            put(
                &mut h,
                268 + 4 * row,
                &(volume.affine[row][3] as f32).to_le_bytes(),
            );
        }
    }
    put(&mut h, 254, &code.to_le_bytes());
    for row in 0..3 {
        for c in 0..4 {
            put(
                &mut h,
                280 + 16 * row + 4 * c,
                &(volume.affine[row][c] as f32).to_le_bytes(),
            );
        }
    }
    put(&mut h, 344, b"n+1\0");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    gz.write_all(&h).expect("write to memory");
    for chunk in volume.data.chunks(65_536) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
        gz.write_all(&bytes).expect("write to memory");
    }
    gz.finish().expect("write to memory")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::VolumeErrorKind;

    fn sample(affine: [[f64; 4]; 3]) -> Volume {
        Volume {
            dims: [3, 4, 2],
            data: (0..24).map(|v| v as f32 * 0.5 - 3.0).collect(),
            affine,
            space_code: 1,
            modality: None,
            eight_bit: false,
            notes: vec![],
        }
    }

    #[test]
    fn a_gzip_whose_voxels_start_past_the_limit_is_refused_without_inflating() {
        use std::io::{Read, Write};
        let gz = write_gz(
            &sample([[1., 0., 0., 0.], [0., 1., 0., 0.], [0., 0., 1., 0.]]),
            "t",
        );
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut plain)
            .unwrap();
        // vox_offset (a float at byte 108): a terabyte of "extensions" before the voxels.
        plain[108..112].copy_from_slice(&1e12f32.to_le_bytes());
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&plain).unwrap();
        let started = std::time::Instant::now();
        let e = read(&enc.finish().unwrap()).unwrap_err();
        assert_eq!(e.kind, VolumeErrorKind::TooLarge, "{e}");
        assert!(
            e.message.contains("vox_offset") && e.message.contains("2147483648"),
            "{e}"
        );
        assert!(started.elapsed().as_secs() < 5, "it stopped at once");
    }

    #[test]
    fn inputs_fuzzing_found_are_named_errors() {
        // NIfTI-2 dims whose product overflowed 128 bits (a panic, a wrapped count in release).
        let e = read(include_bytes!(
            "../../tests/fixtures/fuzz/nifti_dims_overflow.bin"
        ))
        .unwrap_err();
        assert_eq!(e.kind, VolumeErrorKind::TooLarge, "{e}");
    }

    #[test]
    fn a_written_map_reads_back_with_its_affine() {
        let (s, c) = (30f64.to_radians().sin(), 30f64.to_radians().cos());
        for affine in [
            [[-0.9, 0., 0., 10.], [0., -0.9, 0., 20.], [0., 0., 2.5, -5.]],
            [[c, -s, 0., 1.], [s, c, 0., 2.], [0., 0., -3., 3.]],
            // Sheared: sform only.
            [[1., 0.4, 0., 0.], [0., 1., 0., 0.], [0., 0., 1., 0.]],
        ] {
            let v = sample(affine);
            let bytes = write_gz(&v, "test");
            let back = read(&bytes).unwrap();
            assert_eq!(back.dims, v.dims);
            assert_eq!(back.data, v.data);
            for r in 0..3 {
                for k in 0..4 {
                    assert!(
                        (back.affine[r][k] - affine[r][k]).abs() < 1e-5,
                        "{affine:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_quaternion_gives_back_the_affine() {
        let (s, c) = (50f64.to_radians().sin(), 50f64.to_radians().cos());
        // A flipped axis (qfac −1) and a rotation about y.
        let affine = [
            [c * 2.0, 0., s * 3.0, 4.],
            [0., 1.5, 0., 5.],
            [-s * 2.0, 0., c * 3.0, 6.],
        ];
        let flipped = affine.map(|row| [row[0], row[1], -row[2], row[3]]);
        for m in [affine, flipped] {
            let (bcd, sizes, qfac) = quaternion(&m).unwrap();
            let h = Header {
                header_len: 348,
                dim: [3, 1, 1, 1, 1, 1, 1, 1],
                datatype: 16,
                pixdim: [qfac, sizes[0], sizes[1], sizes[2], 1., 1., 1., 1.],
                vox_offset: 352.0,
                scl_slope: 1.0,
                scl_inter: 0.0,
                qform_code: 1,
                sform_code: 0,
                quatern: bcd,
                qoffset: [4., 5., 6.],
                srow: [[0.0; 4]; 3],
            };
            let (back, code) = super::affine(&h);
            assert_eq!(code, 1);
            for r in 0..3 {
                for k in 0..4 {
                    assert!((back[r][k] - m[r][k]).abs() < 1e-9, "{m:?} vs {back:?}");
                }
            }
        }
    }

    #[test]
    fn broken_files_say_what_is_wrong() {
        let good = {
            let mut v = sample([[1., 0., 0., 0.], [0., 1., 0., 0.], [0., 0., 1., 0.]]);
            v.space_code = 1;
            let gz = write_gz(&v, "");
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut plain)
                .unwrap();
            plain
        };
        let err = |bytes: &[u8]| read(bytes).unwrap_err().to_string();
        // The kind a program acts on, beside the message a person reads.
        let kind = |bytes: &[u8]| read(bytes).unwrap_err().kind;
        assert!(
            err(&good[..200]).contains("truncated"),
            "{}",
            err(&good[..200])
        );
        assert_eq!(kind(&good[..200]), VolumeErrorKind::Truncated);
        let e = err(&good[..good.len() - 10]);
        assert!(e.contains("truncated") && e.contains("3×4×2"), "{e}");
        assert_eq!(kind(&good[..good.len() - 10]), VolumeErrorKind::Truncated);
        assert!(err(b"GIF89a not a volume at all").contains("not a NIfTI file"));
        let mut bad_magic = good.clone();
        bad_magic[344..348].copy_from_slice(b"abcd");
        assert!(err(&bad_magic).contains("magic"));
        let mut huge = good.clone();
        for (i, d) in [3i16, 1000, 1000, 1000].iter().enumerate() {
            huge[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_le_bytes());
        }
        let e = err(&huge);
        assert!(e.contains("1000000000 voxels"), "{e}");
        assert_eq!(kind(&huge), VolumeErrorKind::TooLarge);
        let mut complex = good.clone();
        complex[70..72].copy_from_slice(&32i16.to_le_bytes());
        assert!(err(&complex).contains("complex"));
        assert_eq!(kind(&complex), VolumeErrorKind::Unsupported);
        assert_eq!(kind(&bad_magic), VolumeErrorKind::Corrupt);
        let mut zero = good.clone();
        zero[42..44].copy_from_slice(&0i16.to_le_bytes());
        assert!(err(&zero).contains("dim[1] is 0"));
        assert!(
            err(&[0x1f, 0x8b, 8, 0]).contains("truncated")
                || err(&[0x1f, 0x8b, 8, 0]).contains("cannot read")
        );
    }
}
