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
//! ```
//! use tessera_harness::npy::{decode_f32, encode_f32};
//! let bytes = encode_f32(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])?;
//! let t = decode_f32(&bytes)?;
//! assert_eq!((t.shape.as_slice(), t.data[5]), (&[2usize, 3][..], 6.0));
//! # Ok::<(), tessera_harness::npy::NpyError>(())
//! ```

use crate::fsutil::write_atomic;
use std::fmt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// numpy pads the header so the data starts at a multiple of this.
const ALIGN: usize = 64;

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

/// What [`decode`] found: the shape, the stored dtype and the raw little-endian data bytes.
struct Raw<'a> {
    shape: Vec<usize>,
    dtype: Dtype,
    data: &'a [u8],
}

/// Reads a `'<f2'` or `'<f4'` file as `f32` (both widen exactly); `'<f8'` is refused because it
/// would have to be rounded. Only [`NpyError::Io`] names the file; callers add the path to the
/// others.
pub fn read_f32(path: &Path) -> Result<Tensor<f32>, NpyError> {
    decode_f32(&read_bytes(path)?)
}

/// Reads a `'<f2'`, `'<f4'` or `'<f8'` file as `f64` (all widen exactly).
pub fn read_f64(path: &Path) -> Result<Tensor<f64>, NpyError> {
    decode_f64(&read_bytes(path)?)
}

/// Parses the bytes of a `'<f2'` or `'<f4'` file as `f32`.
pub fn decode_f32(bytes: &[u8]) -> Result<Tensor<f32>, NpyError> {
    let raw = decode(bytes)?;
    let data = match raw.dtype {
        Dtype::F32 => raw
            .data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => f16_values(raw.data).map(half::f16::to_f32).collect(),
        Dtype::F64 => {
            return Err(NpyError::UnsupportedDtype {
                found: Dtype::F64.descr().into(),
                expected: "float32 '<f4' (or float16 '<f2')",
            })
        }
    };
    Ok(Tensor {
        shape: raw.shape,
        data,
    })
}

/// Parses the bytes of a `'<f2'`, `'<f4'` or `'<f8'` file as `f64`.
pub fn decode_f64(bytes: &[u8]) -> Result<Tensor<f64>, NpyError> {
    let raw = decode(bytes)?;
    let data = match raw.dtype {
        Dtype::F64 => raw
            .data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect(),
        Dtype::F32 => raw
            .data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect(),
        Dtype::F16 => f16_values(raw.data).map(half::f16::to_f64).collect(),
    };
    Ok(Tensor {
        shape: raw.shape,
        data,
    })
}

fn f16_values(data: &[u8]) -> impl Iterator<Item = half::f16> + '_ {
    data.chunks_exact(2)
        .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])))
}

/// Encodes an `f32` tensor as a `'<f4'` `.npy` file.
pub fn encode_f32(shape: &[usize], data: &[f32]) -> Result<Vec<u8>, NpyError> {
    let mut bytes = header(shape, data.len(), Dtype::F32)?;
    bytes.reserve(data.len() * 4);
    for x in data {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    Ok(bytes)
}

/// Encodes an `f64` tensor as a `'<f8'` `.npy` file.
pub fn encode_f64(shape: &[usize], data: &[f64]) -> Result<Vec<u8>, NpyError> {
    let mut bytes = header(shape, data.len(), Dtype::F64)?;
    bytes.reserve(data.len() * 8);
    for x in data {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    Ok(bytes)
}

/// Writes an `f32` tensor to `path` atomically ([`write_atomic`]).
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), NpyError> {
    Ok(write_atomic(path, &encode_f32(shape, data)?)?)
}

/// Writes an `f64` tensor to `path` atomically ([`write_atomic`]).
pub fn write_f64(path: &Path, shape: &[usize], data: &[f64]) -> Result<(), NpyError> {
    Ok(write_atomic(path, &encode_f64(shape, data)?)?)
}

impl From<crate::fsutil::WriteError> for NpyError {
    fn from(e: crate::fsutil::WriteError) -> NpyError {
        NpyError::Io {
            path: e.path,
            message: e.reason.to_string(),
        }
    }
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, NpyError> {
    std::fs::read(path).map_err(|e| NpyError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The header of a C-order little-endian file: magic, version, length, dictionary, padding.
fn header(shape: &[usize], len: usize, dtype: Dtype) -> Result<Vec<u8>, NpyError> {
    let expected = element_count(shape)?;
    if expected != len {
        return Err(NpyError::ShapeMismatch {
            expected,
            actual: len,
        });
    }
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape_text}, }}",
        dtype.descr()
    );
    // Version 1.0 stores the header length in 2 bytes, 2.0 in 4.
    let v1_total = MAGIC.len() + 2 + 2 + dict.len() + 1;
    let (major, prefix) = if v1_total.next_multiple_of(ALIGN) - MAGIC.len() - 4 <= u16::MAX as usize
    {
        (1u8, MAGIC.len() + 4)
    } else {
        (2u8, MAGIC.len() + 6)
    };
    let total = (prefix + dict.len() + 1).next_multiple_of(ALIGN);
    dict.extend(std::iter::repeat_n(' ', total - prefix - dict.len() - 1));
    dict.push('\n');
    let mut bytes = Vec::with_capacity(total);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[major, 0]);
    if major == 1 {
        bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    } else {
        bytes.extend_from_slice(&(dict.len() as u32).to_le_bytes());
    }
    bytes.extend_from_slice(dict.as_bytes());
    Ok(bytes)
}

fn element_count(shape: &[usize]) -> Result<usize, NpyError> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| NpyError::BadHeader("the shape's size overflows".into()))
}

/// Splits a file into its header fields and data bytes, checking everything but the values.
fn decode(bytes: &[u8]) -> Result<Raw<'_>, NpyError> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(NpyError::BadMagic);
    }
    let rest = &bytes[MAGIC.len()..];
    let (major, minor) = match rest {
        [major, minor, ..] => (*major, *minor),
        _ => return Err(NpyError::BadHeader("file ends inside the version".into())),
    };
    let len_bytes = match (major, minor) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        _ => return Err(NpyError::UnsupportedVersion(major, minor)),
    };
    let rest = &rest[2..];
    if rest.len() < len_bytes {
        return Err(NpyError::BadHeader(
            "file ends inside the header length".into(),
        ));
    }
    let header_len = if len_bytes == 2 {
        u16::from_le_bytes([rest[0], rest[1]]) as usize
    } else {
        u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize
    };
    let rest = &rest[len_bytes..];
    let header = rest
        .get(..header_len)
        .ok_or_else(|| NpyError::BadHeader("file ends inside the header".into()))?;
    let data = &rest[header_len..];
    // Versions 1 and 2 are latin-1; 3 is UTF-8. The fields we read are ASCII either way.
    let text: String = if major == 3 {
        std::str::from_utf8(header)
            .map_err(|_| NpyError::BadHeader("header is not UTF-8".into()))?
            .to_owned()
    } else {
        header.iter().map(|&b| b as char).collect()
    };
    let fields = parse_header(&text)?;
    if fields.fortran_order {
        return Err(NpyError::FortranOrder);
    }
    let dtype = Dtype::from_descr(&fields.descr).ok_or_else(|| NpyError::UnsupportedDtype {
        found: fields.descr.clone(),
        expected: "little-endian float '<f2', '<f4' or '<f8'",
    })?;
    let expected = element_count(&fields.shape)?
        .checked_mul(dtype.size())
        .ok_or_else(|| NpyError::BadHeader("the shape's size overflows".into()))?;
    if data.len() < expected {
        return Err(NpyError::Truncated {
            expected,
            actual: data.len(),
        });
    }
    if data.len() > expected {
        return Err(NpyError::TrailingBytes(data.len() - expected));
    }
    Ok(Raw {
        shape: fields.shape,
        dtype,
        data,
    })
}

struct HeaderFields {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// Parses the Python dict literal of the header: `{'descr': '<f4', 'fortran_order': False,
/// 'shape': (2, 3), }`, keys in any order, either quote style.
fn parse_header(text: &str) -> Result<HeaderFields, NpyError> {
    let bad = |why: &str| NpyError::BadHeader(why.to_string());
    let mut p = Parser {
        s: text.trim_end_matches(['\n', ' ', '\x00']).as_bytes(),
        i: 0,
    };
    p.expect(b'{')
        .ok_or_else(|| bad("does not start with '{'"))?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        p.skip_ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string().ok_or_else(|| bad("expected a quoted key"))?;
        p.expect(b':')
            .ok_or_else(|| bad("expected ':' after a key"))?;
        match key.as_str() {
            "descr" => descr = Some(p.string().ok_or_else(|| bad("'descr' is not a string"))?),
            "fortran_order" => {
                fortran = Some(
                    p.boolean()
                        .ok_or_else(|| bad("'fortran_order' is not True or False"))?,
                )
            }
            "shape" => {
                shape = Some(
                    p.tuple()
                        .ok_or_else(|| bad("'shape' is not a tuple of integers"))?,
                )
            }
            other => return Err(bad(&format!("unexpected key '{other}'"))),
        }
        p.skip_ws();
        if !p.eat(b',') {
            p.expect(b'}')
                .ok_or_else(|| bad("expected ',' or '}' after a value"))?;
            break;
        }
    }
    p.skip_ws();
    if p.i != p.s.len() {
        return Err(bad("text after the closing '}'"));
    }
    Ok(HeaderFields {
        descr: descr.ok_or_else(|| bad("no 'descr'"))?,
        fortran_order: fortran.ok_or_else(|| bad("no 'fortran_order'"))?,
        shape: shape.ok_or_else(|| bad("no 'shape'"))?,
    })
}

/// A cursor over the header text.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        self.skip_ws();
        self.eat(c).then_some(())
    }

    fn string(&mut self) -> Option<String> {
        self.skip_ws();
        let quote = *self.s.get(self.i).filter(|&&q| q == b'\'' || q == b'"')?;
        let start = self.i + 1;
        let len = self.s.get(start..)?.iter().position(|&c| c == quote)?;
        self.i = start + len + 1;
        Some(String::from_utf8_lossy(&self.s[start..start + len]).into_owned())
    }

    fn boolean(&mut self) -> Option<bool> {
        self.skip_ws();
        for (word, value) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self.s.get(self.i..)?.starts_with(word) {
                self.i += word.len();
                return Some(value);
            }
        }
        None
    }

    fn tuple(&mut self) -> Option<Vec<usize>> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            self.skip_ws();
            if self.eat(b')') {
                return Some(dims);
            }
            let start = self.i;
            while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
                self.i += 1;
            }
            // numpy may write Python 2 longs as `3L`.
            let digits = std::str::from_utf8(&self.s[start..self.i]).ok()?;
            dims.push(digits.parse().ok()?);
            self.eat(b'L');
            self.skip_ws();
            if !self.eat(b',') {
                self.expect(b')')?;
                return Some(dims);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header as numpy writes it, with any dictionary text.
    fn file(dict: &str, data: &[u8]) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[1, 0]);
        let text = format!("{dict}\n");
        b.extend_from_slice(&(text.len() as u16).to_le_bytes());
        b.extend_from_slice(text.as_bytes());
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn round_trips_and_aligns() {
        for shape in [vec![], vec![0], vec![3], vec![2, 3], vec![1, 2, 3, 4]] {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|i| i as f32 * -0.25 + 1e-40).collect();
            let bytes = encode_f32(&shape, &data).unwrap();
            assert_eq!((bytes.len() - 4 * n) % ALIGN, 0, "data starts 64-aligned");
            let t = decode_f32(&bytes).unwrap();
            assert_eq!(t.shape, shape);
            assert_eq!(
                t.data.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                data.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            );
            let wide: Vec<f64> = data.iter().map(|&x| x as f64 / 3.0).collect();
            let t = decode_f64(&encode_f64(&shape, &wide).unwrap()).unwrap();
            assert_eq!((t.shape, t.data), (shape.clone(), wide));
        }
        let d = [0.1f64, -3.0, f64::MIN_POSITIVE];
        let t = decode_f64(&encode_f64(&[3], &d).unwrap()).unwrap();
        assert_eq!(t.data, d);
    }

    #[test]
    fn reads_what_numpy_writes() {
        // Double quotes, other key order, no trailing comma, version 2 and 3, f2 and f8.
        let half_one = half::f16::from_f32(1.5).to_bits().to_le_bytes();
        let b = file(
            "{\"shape\": (1,), \"fortran_order\": False, \"descr\": \"<f2\"}",
            &half_one,
        );
        assert_eq!(decode_f32(&b).unwrap().data, vec![1.5]);
        assert_eq!(decode_f64(&b).unwrap().data, vec![1.5]);
        for major in [2u8, 3] {
            let text = "{'descr': '<f8', 'fortran_order': False, 'shape': (2L,), }\n";
            let mut b = MAGIC.to_vec();
            b.extend_from_slice(&[major, 0]);
            b.extend_from_slice(&(text.len() as u32).to_le_bytes());
            b.extend_from_slice(text.as_bytes());
            b.extend_from_slice(&2.5f64.to_le_bytes());
            b.extend_from_slice(&(-1.0f64).to_le_bytes());
            assert_eq!(decode_f64(&b).unwrap().data, vec![2.5, -1.0]);
            assert!(matches!(
                decode_f32(&b),
                Err(NpyError::UnsupportedDtype { .. })
            ));
        }
    }

    #[test]
    fn refuses_bad_files_clearly() {
        let one = 1.0f32.to_le_bytes();
        let ok = "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }";
        assert!(decode_f32(&file(ok, &one)).is_ok());
        assert_eq!(decode_f32(b"PK\x03\x04"), Err(NpyError::BadMagic));
        assert_eq!(decode_f32(b""), Err(NpyError::BadMagic));
        let mut v4 = file(ok, &one);
        v4[6] = 4;
        assert_eq!(decode_f32(&v4), Err(NpyError::UnsupportedVersion(4, 0)));
        let fortran = "{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }";
        assert_eq!(
            decode_f32(&file(fortran, &one)),
            Err(NpyError::FortranOrder)
        );
        for descr in [">f4", "<i4", "|u1", "<c8"] {
            let d = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (1,), }}");
            assert!(matches!(
                decode_f32(&file(&d, &one)),
                Err(NpyError::UnsupportedDtype { found, .. }) if found == descr
            ));
        }
        assert_eq!(
            decode_f32(&file(ok, &one[..3])),
            Err(NpyError::Truncated {
                expected: 4,
                actual: 3
            })
        );
        assert_eq!(
            decode_f32(&file(ok, &[0; 5])),
            Err(NpyError::TrailingBytes(1))
        );
        for broken in [
            "{'descr': '<f4', 'shape': (1,), }",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,x), }",
            "{'descr': '<f4', 'fortran_order': False, 'shape': [1], }",
            "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,), }",
            "'descr': '<f4'",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
        ] {
            assert!(
                matches!(decode_f32(&file(broken, &one)), Err(NpyError::BadHeader(_))),
                "{broken}"
            );
        }
        let cut = &file(ok, &one)[..20];
        assert!(matches!(decode_f32(cut), Err(NpyError::BadHeader(_))));
        assert_eq!(
            encode_f32(&[2, 2], &[0.0; 3]),
            Err(NpyError::ShapeMismatch {
                expected: 4,
                actual: 3
            })
        );
    }

    #[test]
    fn large_headers_use_version_2() {
        let shape = vec![1usize; 30_000]; // "1, " per axis: a 90 kB header
        let bytes = encode_f32(&shape, &[7.0]).unwrap();
        assert_eq!(bytes[6], 2);
        let t = decode_f32(&bytes).unwrap();
        assert_eq!((t.shape.len(), t.data[0]), (30_000, 7.0));
    }
}
