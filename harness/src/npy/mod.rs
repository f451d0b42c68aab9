//! NumPy `.npy` files: little-endian float tensors in C order.
//!
//! Reads format versions 1.0, 2.0 and 3.0 with `descr` `'<f2'`, `'<f4'` or `'<f8'`; writes
//! version 1.0 (2.0 when the header needs it) `'<f4'` and `'<f8'`. Anything else is refused with
//! an [`NpyError`] that says what was wrong: a bad magic string, an unsupported version, a
//! malformed header, Fortran order, another dtype, or data shorter or longer than the shape says.
//!
//! Writes are atomic ([`crate::fsutil::write_atomic`]): a failed write never leaves a partial
//! file, and an existing file is either untouched or wholly replaced.
//!
//! The code is in three files: `header.rs` (the magic string, version and header dictionary,
//! written and parsed), `read.rs` (files as `f32` or `f64` tensors) and `write.rs` (tensors as
//! `'<f4'` or `'<f8'` files).
//!
//! ```
//! use tessera_harness::npy::{decode_f32, encode_f32};
//! let bytes = encode_f32(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])?;
//! let t = decode_f32(&bytes)?;
//! assert_eq!((t.shape.as_slice(), t.data[5]), (&[2usize, 3][..], 6.0));
//! # Ok::<(), tessera_harness::npy::NpyError>(())
//! ```

mod header;
mod read;
mod write;

pub use read::{decode_f32, decode_f64, read_f32, read_f64};
pub use write::{encode_f32, encode_f64, write_f32, write_f64};

use std::fmt;
use std::path::PathBuf;

/// An element type a `.npy` file can hold here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// `'<f2'`: IEEE binary16.
    F16,
    /// `'<f4'`: IEEE binary32.
    F32,
    /// `'<f8'`: IEEE binary64.
    F64,
}

impl Dtype {
    /// The `descr` string numpy writes for it.
    pub fn descr(self) -> &'static str {
        match self {
            Dtype::F16 => "<f2",
            Dtype::F32 => "<f4",
            Dtype::F64 => "<f8",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F16 => 2,
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }

    fn from_descr(descr: &str) -> Option<Dtype> {
        [Dtype::F16, Dtype::F32, Dtype::F64]
            .into_iter()
            .find(|d| d.descr() == descr)
    }
}

/// A dense C-order tensor: `data.len()` is the product of `shape`.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor<T> {
    /// Extent of each axis, outermost first (empty for a scalar).
    pub shape: Vec<usize>,
    /// Elements in C (row-major) order.
    pub data: Vec<T>,
}

/// Why a `.npy` file could not be read or written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NpyError {
    /// The file could not be opened, read, written or renamed.
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's message.
        message: String,
    },
    /// The file does not start with `\x93NUMPY`.
    BadMagic,
    /// A format version other than 1.0, 2.0 or 3.0.
    UnsupportedVersion(u8, u8),
    /// The header dictionary is malformed (the message says how).
    BadHeader(String),
    /// The array is stored in Fortran (column-major) order.
    FortranOrder,
    /// The element type is not one this reader takes (the `descr` given, and what was expected).
    UnsupportedDtype {
        /// The file's `descr`.
        found: String,
        /// What the caller accepts.
        expected: &'static str,
    },
    /// The data is shorter than the shape needs.
    Truncated {
        /// Bytes the shape needs.
        expected: usize,
        /// Bytes present.
        actual: usize,
    },
    /// Bytes follow the data.
    TrailingBytes(usize),
    /// A tensor to write has a data length that does not match its shape.
    ShapeMismatch {
        /// The product of the shape.
        expected: usize,
        /// The data length.
        actual: usize,
    },
}

impl fmt::Display for NpyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NpyError::Io { path, message } => write!(f, "{}: {message}", path.display()),
            NpyError::BadMagic => write!(f, "not a .npy file (no \\x93NUMPY magic)"),
            NpyError::UnsupportedVersion(major, minor) => {
                write!(
                    f,
                    "unsupported .npy version {major}.{minor} (1.0, 2.0, 3.0 are)"
                )
            }
            NpyError::BadHeader(why) => write!(f, "malformed .npy header: {why}"),
            NpyError::FortranOrder => {
                write!(f, "array is in Fortran order; only C order is supported")
            }
            NpyError::UnsupportedDtype { found, expected } => {
                write!(f, "dtype '{found}' is not supported (expected {expected})")
            }
            NpyError::Truncated { expected, actual } => write!(
                f,
                "truncated data: the shape needs {expected} bytes, the file has {actual}"
            ),
            NpyError::TrailingBytes(n) => write!(f, "{n} unexpected bytes after the data"),
            NpyError::ShapeMismatch { expected, actual } => {
                write!(f, "data has {actual} elements but the shape has {expected}")
            }
        }
    }
}

impl std::error::Error for NpyError {}

impl From<crate::fsutil::WriteError> for NpyError {
    fn from(e: crate::fsutil::WriteError) -> NpyError {
        NpyError::Io {
            path: e.path,
            message: e.reason.to_string(),
        }
    }
}
