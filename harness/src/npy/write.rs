//! Writing `.npy` files: version 1.0 (2.0 when the header needs it), `'<f4'` or `'<f8'`, C order,
//! written atomically.

use super::header::encode_header;
use super::{Dtype, NpyError};
use crate::fsutil::write_atomic;
use std::path::Path;

/// Encodes an `f32` tensor as a `'<f4'` `.npy` file.
pub fn encode_f32(shape: &[usize], data: &[f32]) -> Result<Vec<u8>, NpyError> {
    encode(shape, data, Dtype::F32, f32::to_le_bytes)
}

/// Encodes an `f64` tensor as a `'<f8'` `.npy` file.
pub fn encode_f64(shape: &[usize], data: &[f64]) -> Result<Vec<u8>, NpyError> {
    encode(shape, data, Dtype::F64, f64::to_le_bytes)
}

/// The header for `dtype`, then every element's little-endian bytes.
fn encode<T: Copy, const N: usize>(
    shape: &[usize],
    data: &[T],
    dtype: Dtype,
    le_bytes: fn(T) -> [u8; N],
) -> Result<Vec<u8>, NpyError> {
    let mut bytes = encode_header(shape, data.len(), dtype)?;
    bytes.reserve(data.len() * N);
    for &x in data {
        bytes.extend_from_slice(&le_bytes(x));
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

#[cfg(test)]
mod tests {
    use super::super::header::ALIGN;
    use super::super::{decode_f32, decode_f64};
    use super::*;

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
    fn large_headers_use_version_2() {
        let shape = vec![1usize; 30_000]; // "1, " per axis: a 90 kB header
        let bytes = encode_f32(&shape, &[7.0]).unwrap();
        assert_eq!(bytes[6], 2);
        let t = decode_f32(&bytes).unwrap();
        assert_eq!((t.shape.len(), t.data[0]), (30_000, 7.0));
    }
}
