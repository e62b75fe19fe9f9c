//! Why a volume file could not be read: the reader's message, naming the field or tag, and a kind
//! a program can act on (the JS API's `err.kind`): the file is cut short, asks for more than is
//! read, uses what is not supported, is malformed, or does not make one series.

/// What went wrong, for a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeErrorKind {
    /// The file ends before what its header announces.
    Truncated,
    /// It asks for more voxels, frames or bytes than are read ([`super::MAX_VOXELS`]).
    TooLarge,
    /// A valid file in a form not read (a data type, a transfer syntax: JPEG-LS, JPEG 2000, …).
    Unsupported,
    /// Fields that contradict the format or each other.
    Corrupt,
    /// DICOM files that do not make one volume (several series, other sizes, no positions).
    Series,
}

impl VolumeErrorKind {
    pub fn name(self) -> &'static str {
        match self {
            VolumeErrorKind::Truncated => "truncated",
            VolumeErrorKind::TooLarge => "too-large",
            VolumeErrorKind::Unsupported => "unsupported",
            VolumeErrorKind::Corrupt => "corrupt",
            VolumeErrorKind::Series => "series",
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct VolumeError {
    pub kind: VolumeErrorKind,
    pub message: String,
}

impl VolumeError {
    pub fn new(kind: VolumeErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// A malformed file, by default: what a reader's plain message is.
impl From<String> for VolumeError {
    fn from(message: String) -> Self {
        Self::new(VolumeErrorKind::Corrupt, message)
    }
}

impl From<&str> for VolumeError {
    fn from(message: &str) -> Self {
        Self::new(VolumeErrorKind::Corrupt, message)
    }
}

/// `truncated!("…", args)`, `too_large!`, `unsupported!`, `series!`: an error of that kind with a
/// formatted message.
macro_rules! truncated {
    ($($t:tt)*) => { $crate::volume::VolumeError::new($crate::volume::VolumeErrorKind::Truncated, format!($($t)*)) };
}
macro_rules! too_large {
    ($($t:tt)*) => { $crate::volume::VolumeError::new($crate::volume::VolumeErrorKind::TooLarge, format!($($t)*)) };
}
macro_rules! unsupported {
    ($($t:tt)*) => { $crate::volume::VolumeError::new($crate::volume::VolumeErrorKind::Unsupported, format!($($t)*)) };
}
macro_rules! series {
    ($($t:tt)*) => { $crate::volume::VolumeError::new($crate::volume::VolumeErrorKind::Series, format!($($t)*)) };
}
macro_rules! corrupt {
    ($($t:tt)*) => { $crate::volume::VolumeError::new($crate::volume::VolumeErrorKind::Corrupt, format!($($t)*)) };
}
