//! Volumes — 3-D scans as clinicians hold them (NIfTI files; DICOM series to come) — seen by the
//! rest of the crate as a stack of 2-D slices in one consistent orientation. Each slice becomes an
//! image through the model's intensity [`window`], and the anomaly maps of the slices go back into
//! a volume on the input's voxel grid (written by [`nifti::write_gz`] with the input's affine, so
//! it opens aligned in 3D Slicer or ITK-SNAP).
//!
//! Orientation: a volume may store its voxels in any order (RAS, LPS, oblique, flipped); the
//! affine says where each voxel is in the patient (NIfTI's RAS+ world: +x right, +y anterior,
//! +z superior). Slices are always shown the radiological way, whatever the storage order:
//!
//! | plane    | slices run          | image top  | image left      |
//! |----------|---------------------|------------|-----------------|
//! | axial    | inferior → superior | anterior   | patient's right |
//! | coronal  | posterior → anterior| superior   | patient's right |
//! | sagittal | right → left        | superior   | anterior        |
//!
//! so two files of the same anatomy stored in different orders give the same images.

#[macro_use]
mod error;
pub mod dicom;
pub mod nifti;
pub mod window;

pub use error::{VolumeError, VolumeErrorKind};

use crate::preprocess::RgbImage;
use window::{Levels, Window};

pub use crate::limits::MAX_VOXELS;

named_choice! {
    /// Which slices a volume is cut into.
    pub enum Plane ("slice plane") {
        /// Perpendicular to the head–foot axis (BraTS, LiTS and BTCV slices).
        Axial = "axial", "axial (top to bottom of the body)";
        /// Perpendicular to the front–back axis.
        Coronal = "coronal", "coronal (front to back)";
        /// Perpendicular to the left–right axis.
        Sagittal = "sagittal", "sagittal (left to right)";
    }
}

/// One world axis with a direction: which of x (0), y (1), z (2), and whether the index runs
/// along (+1) or against (−1) it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Along(usize, i8);

impl Plane {
    /// (slices, rows, columns) as in the module's table.
    fn axes(self) -> [Along; 3] {
        match self {
            Plane::Axial => [Along(2, 1), Along(1, -1), Along(0, -1)],
            Plane::Coronal => [Along(1, 1), Along(2, -1), Along(0, -1)],
            Plane::Sagittal => [Along(0, -1), Along(2, -1), Along(1, -1)],
        }
    }
}

/// A 3-D scan: intensities on a voxel grid and where that grid lies in the patient.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// Voxels along the stored axes i, j, k.
    pub dims: [usize; 3],
    /// Intensities after the file's scaling (Hounsfield units for CT), i fastest, then j, then k.
    pub data: Vec<f32>,
    /// Voxel (i, j, k) → world millimetres (RAS+), rows x, y, z of a 3×4 matrix.
    pub affine: [[f64; 4]; 3],
    /// The NIfTI code of the space the affine maps to (0: the file gave no orientation).
    pub space_code: i16,
    /// `CT`, `MR`, … when the file says (DICOM does; NIfTI does not).
    pub modality: Option<String>,
    /// Stored as 8-bit values (0–255) without scaling: "as is" windowing applies.
    pub eight_bit: bool,
    /// What a user should know about how the file was read (a 4-D file's first volume, …).
    pub notes: Vec<String>,
}

/// Where a slice's pixels are in the volume: `index(n, row, col)` is a voxel of `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceGeometry {
    pub plane: Plane,
    pub count: usize,
    pub height: usize,
    pub width: usize,
    /// Per (slice, row, column): the voxel axis, its length, and whether it runs backwards.
    axes: [(usize, usize, bool); 3],
    strides: [usize; 3],
}

impl SliceGeometry {
    /// The voxel behind pixel (`row`, `col`) of slice `n`.
    pub fn index(&self, n: usize, row: usize, col: usize) -> usize {
        [n, row, col]
            .iter()
            .zip(self.axes)
            .map(|(&t, (axis, len, back))| self.strides[axis] * if back { len - 1 - t } else { t })
            .sum()
    }
}

impl Volume {
    /// For each world axis x, y, z: the voxel axis most aligned with it and whether the voxel
    /// index increases along it. Oblique grids take the nearest axis (as nibabel's
    /// `io_orientation` does), greedily from the strongest alignment.
    fn world_axes(&self) -> [(usize, bool); 3] {
        let a = &self.affine;
        let mut out = [(usize::MAX, true); 3];
        let mut used = [false; 3];
        for _ in 0..3 {
            let mut best = (0.0, 0, 0);
            for (w, slot) in out.iter().enumerate() {
                if slot.0 != usize::MAX {
                    continue;
                }
                for (v, &taken) in used.iter().enumerate() {
                    let m = a[w][v].abs();
                    if !taken && (m > best.0 || best.0 == 0.0) {
                        best = (m, w, v);
                    }
                }
            }
            let (_, w, v) = best;
            out[w] = (v, a[w][v] >= 0.0);
            used[v] = true;
        }
        out
    }

    pub fn geometry(&self, plane: Plane) -> SliceGeometry {
        let world = self.world_axes();
        let axes = plane.axes().map(|Along(w, sign)| {
            let (v, increasing) = world[w];
            (v, self.dims[v], increasing != (sign > 0))
        });
        SliceGeometry {
            plane,
            count: axes[0].1,
            height: axes[1].1,
            width: axes[2].1,
            axes,
            strides: [1, self.dims[0], self.dims[0] * self.dims[1]],
        }
    }

    /// Slice `n` of `plane`, row-major, `height × width` values.
    pub fn slice(&self, geometry: &SliceGeometry, n: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(geometry.height * geometry.width);
        for row in 0..geometry.height {
            for col in 0..geometry.width {
                out.push(self.data[geometry.index(n, row, col)]);
            }
        }
        out
    }

    /// The smallest and largest finite intensity (`None` when there is none).
    pub fn range(&self) -> Option<(f32, f32)> {
        finite_range(&self.data)
    }

    /// A volume of the same grid and affine holding `data` (e.g. an anomaly map).
    pub fn with_data(&self, data: Vec<f32>) -> Volume {
        Volume {
            dims: self.dims,
            data,
            affine: self.affine,
            space_code: self.space_code,
            modality: None,
            eight_bit: false,
            notes: Vec::new(),
        }
    }
}

/// A volume cut into the images a model sees: one plane's slices through one window.
pub struct Slices<'a> {
    volume: &'a Volume,
    pub geometry: SliceGeometry,
    pub levels: Levels,
    /// Set when the window reads this volume against its kind (a CT window on MR).
    pub warning: Option<String>,
}

impl Slices<'_> {
    pub fn count(&self) -> usize {
        self.geometry.count
    }

    /// Slice `n` as a grey picture, windowed.
    pub fn image(&self, n: usize) -> RgbImage {
        let g = &self.geometry;
        self.levels
            .image(&self.volume.slice(g, n), g.width, g.height)
    }
}

impl Volume {
    /// The slices of `plane` through `window`, or why the window cannot read this volume.
    pub fn slices(&self, window: &Window, plane: Plane) -> Result<Slices<'_>, String> {
        let (levels, warning) = window.levels(self)?;
        Ok(Slices {
            volume: self,
            geometry: self.geometry(plane),
            levels,
            warning,
        })
    }
}

/// A slice that is background only: fewer than 1 % of its pixels brighter than `level` (grey,
/// 0–1). Training can skip these (the air around a head, the table under a body).
pub fn is_background(image: &RgbImage, level: f32) -> bool {
    let bright = image.data.chunks_exact(3).filter(|p| p[0] > level).count();
    (bright as f64) < 0.01 * (image.width * image.height) as f64
}

pub(crate) fn finite_range(values: &[f32]) -> Option<(f32, f32)> {
    values
        .iter()
        .filter(|v| v.is_finite())
        .fold(None, |acc, &v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// A volume assembled slice by slice, in a plane's orientation, onto another volume's grid.
pub struct SliceWriter {
    geometry: SliceGeometry,
    data: Vec<f32>,
}

impl SliceWriter {
    pub fn new(geometry: SliceGeometry) -> Self {
        let n = geometry.count * geometry.height * geometry.width;
        Self {
            geometry,
            data: vec![0.0; n],
        }
    }

    /// Put slice `n` (`height × width`, row-major) in place.
    pub fn put(&mut self, n: usize, values: &[f32]) {
        let g = self.geometry;
        debug_assert_eq!(values.len(), g.height * g.width);
        for row in 0..g.height {
            for col in 0..g.width {
                self.data[g.index(n, row, col)] = values[row * g.width + col];
            }
        }
    }

    pub fn into_data(self) -> Vec<f32> {
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(dims: [usize; 3], affine: [[f64; 4]; 3]) -> Volume {
        let n = dims.iter().product();
        Volume {
            dims,
            data: (0..n).map(|v| v as f32).collect(),
            affine,
            space_code: 1,
            modality: None,
            eight_bit: false,
            notes: vec![],
        }
    }

    const RAS: [[f64; 4]; 3] = [[1., 0., 0., 0.], [0., 1., 0., 0.], [0., 0., 1., 0.]];

    #[test]
    fn an_ras_volume_is_shown_radiologically() {
        let v = volume([4, 3, 2], RAS);
        let g = v.geometry(Plane::Axial);
        assert_eq!((g.count, g.height, g.width), (2, 3, 4));
        // Top left of the first axial slice: most anterior (j = 2), patient's right (i = 3).
        assert_eq!(g.index(0, 0, 0), 3 + 2 * 4);
        assert_eq!(g.index(1, 2, 3), 4 * 3);
    }

    #[test]
    fn a_flipped_and_permuted_volume_gives_the_same_slices() {
        // The same anatomy stored LPS with the axes in (k, j, i) order.
        let ras = volume([4, 3, 2], RAS);
        let dims = [2, 3, 4];
        // voxel (a, b, c) of the second = voxel (i=3-c, j=2-b, k=a) of the first.
        let mut data = vec![0.0; 24];
        for a in 0..2 {
            for b in 0..3 {
                for c in 0..4 {
                    data[a + 2 * b + 6 * c] = ras.data[(3 - c) + 4 * (2 - b) + 12 * a];
                }
            }
        }
        let lps = Volume {
            data,
            dims,
            affine: [[0., 0., -1., 3.], [0., -1., 0., 2.], [1., 0., 0., 0.]],
            ..ras.clone()
        };
        for plane in Plane::ALL {
            let (g1, g2) = (ras.geometry(*plane), lps.geometry(*plane));
            assert_eq!(
                (g1.count, g1.height, g1.width),
                (g2.count, g2.height, g2.width)
            );
            for n in 0..g1.count {
                assert_eq!(ras.slice(&g1, n), lps.slice(&g2, n), "{plane} slice {n}");
            }
        }
    }

    #[test]
    fn slices_written_back_rebuild_the_volume() {
        let affine = [[0.9, 0.3, 0., 0.], [-0.3, 0.9, 0., 0.], [0., 0., -2., 0.]];
        let v = volume([5, 4, 3], affine);
        for plane in Plane::ALL {
            let g = v.geometry(*plane);
            let mut w = SliceWriter::new(g);
            for n in 0..g.count {
                w.put(n, &v.slice(&g, n));
            }
            assert_eq!(w.into_data(), v.data, "{plane}");
        }
    }
}
