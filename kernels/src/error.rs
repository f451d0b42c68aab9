//! The one error type every public kernel returns.

use crate::limits::MAX_TILE;
use core::fmt;

/// Why a kernel refused its input. Kernels never panic: every problem with a shape, a slice length
/// or a parameter comes back as one of these.
///
/// The enum is `#[non_exhaustive]`: a new kernel may add a reason without breaking callers, so a
/// `match` on it needs a `_` arm. It implements [`core::error::Error`], so `?` carries it into
/// `std` error types (`Box<dyn Error>`, `anyhow::Error`) with its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A dimension that must be positive is zero (the name says which).
    ZeroDimension(&'static str),
    /// `heads` is not a multiple of `kv_heads` (grouped-query attention needs whole groups).
    HeadsNotDivisible {
        /// Query heads.
        heads: usize,
        /// Key/value heads.
        kv_heads: usize,
    },
    /// A slice has the wrong length for the shape.
    LengthMismatch {
        /// Which argument.
        what: &'static str,
        /// The length the shape asks for.
        expected: usize,
        /// The length given.
        actual: usize,
    },
    /// A caller scratch slice is too short.
    ScratchTooSmall {
        /// The length needed.
        needed: usize,
        /// The length given.
        actual: usize,
    },
    /// The softmax scale is not a finite positive number.
    BadScale,
    /// A tile size is zero or too large.
    BadTile(&'static str),
    /// The sizes multiply past `usize::MAX`.
    Overflow,
    /// The requested SIMD backend is not available on this CPU or build.
    BackendUnavailable(crate::simd::Backend),
    /// A token id is not below the vocabulary size.
    TokenOutOfRange {
        /// The token.
        token: usize,
        /// The vocabulary size.
        vocab: usize,
    },
    /// A model or layer parameter is out of its range (the message says which and why).
    BadParameter(&'static str),
    /// An input holds NaN or infinity where only finite values are allowed (the name says which:
    /// optimizer steps refuse non-finite gradients and modify nothing).
    NonFinite(&'static str),
    /// An input holds a finite value beyond the accumulator's range (e.g. an `f64` element above
    /// `f32::MAX` through an `f32` accumulator), which the kernel cannot represent; the name says
    /// which input.
    OutOfRange(&'static str),
    /// An optimizer hyperparameter (or the step number) is outside its documented range; the
    /// name says which.
    BadHyperparameter(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ZeroDimension(name) => write!(f, "dimension `{name}` must be positive"),
            Error::HeadsNotDivisible { heads, kv_heads } => {
                write!(
                    f,
                    "heads ({heads}) must be a multiple of kv_heads ({kv_heads})"
                )
            }
            Error::LengthMismatch {
                what,
                expected,
                actual,
            } => {
                write!(
                    f,
                    "`{what}` has length {actual}, the shape needs {expected}"
                )
            }
            Error::ScratchTooSmall { needed, actual } => {
                write!(f, "scratch has length {actual}, the kernel needs {needed}")
            }
            Error::BadScale => write!(f, "scale must be finite and positive"),
            Error::BadTile(name) => write!(f, "tile size `{name}` must be in 1..={MAX_TILE}"),
            Error::Overflow => write!(f, "shape sizes overflow usize"),
            Error::BackendUnavailable(b) => {
                write!(f, "backend `{}` is not available here", b.name())
            }
            Error::NonFinite(name) => write!(f, "`{name}` holds NaN or infinity"),
            Error::OutOfRange(name) => {
                write!(f, "`{name}` holds a value beyond the accumulator's range")
            }
            Error::BadHyperparameter(name) => {
                write!(f, "optimizer setting `{name}` is out of range")
            }
            Error::TokenOutOfRange { token, vocab } => {
                write!(f, "token {token} is outside the vocabulary of {vocab}")
            }
            Error::BadParameter(why) => write!(f, "bad parameter: {why}"),
        }
    }
}

impl core::error::Error for Error {}

/// Shorthand for kernel results.
pub type Result<T> = core::result::Result<T, Error>;
