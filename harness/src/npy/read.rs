//! Reading `.npy` files: the header checked against the data, the values widened to `f32` or
//! `f64` (exactly: `'<f8'` is refused as `f32` because it would have to be rounded).

use super::header::{element_count, split_header};
use super::{Dtype, NpyError, Tensor};
use std::path::Path;

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
        Dtype::F32 => values(raw.data, f32::from_le_bytes).collect(),
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
        Dtype::F64 => values(raw.data, f64::from_le_bytes).collect(),
        Dtype::F32 => values(raw.data, f32::from_le_bytes)
            .map(f64::from)
            .collect(),
        Dtype::F16 => f16_values(raw.data).map(half::f16::to_f64).collect(),
    };
    Ok(Tensor {
        shape: raw.shape,
        data,
    })
}

/// The little-endian values of `N` bytes each in `data` (whose length [`decode`] checked).
fn values<'a, T: 'a, const N: usize>(
    data: &'a [u8],
    from_le_bytes: fn([u8; N]) -> T,
) -> impl Iterator<Item = T> + 'a {
    data.chunks_exact(N)
        .filter_map(move |c| c.try_into().ok().map(from_le_bytes))
}

fn f16_values(data: &[u8]) -> impl Iterator<Item = half::f16> + '_ {
    values(data, u16::from_le_bytes).map(half::f16::from_bits)
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, NpyError> {
    std::fs::read(path).map_err(|e| NpyError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Splits a file into its header fields and data bytes, checking everything but the values.
fn decode(bytes: &[u8]) -> Result<Raw<'_>, NpyError> {
    let (fields, data) = split_header(bytes)?;
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

#[cfg(test)]
mod tests {
    use super::super::header::MAGIC;
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
            super::super::encode_f32(&[2, 2], &[0.0; 3]),
            Err(NpyError::ShapeMismatch {
                expected: 4,
                actual: 3
            })
        );
    }
}
