//! The harness's `.npy` reader on arbitrary bytes, and encode/decode on arbitrary tensors.
//! Asserts: no panic and no allocation beyond what the bytes justify (libFuzzer's
//! `-malloc_limit_mb` turns one into a crash); an accepted file has as many elements as its shape
//! says, and re-encoding it decodes to the same shape and bits; any encoded tensor decodes back
//! to itself (f32 and f64), and a shape that does not match its data is refused by the encoder.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tessera_harness::npy::{decode_f32, decode_f64, encode_f32, encode_f64};

#[derive(Arbitrary, Debug)]
enum Input<'a> {
    Bytes(&'a [u8]),
    Tensor {
        shape: Vec<u8>,
        data: Vec<u64>,
        wide: bool,
    },
}

fn elements(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b))
}

fuzz_target!(|input: Input| match input {
    Input::Bytes(bytes) => {
        if let Ok(t) = decode_f32(bytes) {
            assert_eq!(
                elements(&t.shape),
                Some(t.data.len()),
                "shape {:?}",
                t.shape
            );
            let again = decode_f32(&encode_f32(&t.shape, &t.data).expect("re-encode")).unwrap();
            assert_eq!(again.shape, t.shape);
            let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&again.data), bits(&t.data));
        }
        if let Ok(t) = decode_f64(bytes) {
            assert_eq!(
                elements(&t.shape),
                Some(t.data.len()),
                "shape {:?}",
                t.shape
            );
            let again = decode_f64(&encode_f64(&t.shape, &t.data).expect("re-encode")).unwrap();
            assert_eq!(again.shape, t.shape);
            let bits = |x: &[f64]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&again.data), bits(&t.data));
        }
    }
    Input::Tensor { shape, data, wide } => {
        let shape: Vec<usize> = shape.iter().take(6).map(|&d| d as usize % 7).collect();
        let matches = elements(&shape) == Some(data.len());
        if wide {
            let data: Vec<f64> = data.iter().map(|&b| f64::from_bits(b)).collect();
            match encode_f64(&shape, &data) {
                Ok(bytes) => {
                    assert!(
                        matches,
                        "encoded shape {shape:?} with {} elements",
                        data.len()
                    );
                    let t = decode_f64(&bytes).expect("decode what was encoded");
                    assert_eq!(t.shape, shape);
                    let bits = |x: &[f64]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&t.data), bits(&data));
                }
                Err(_) => assert!(!matches, "refused a consistent tensor {shape:?}"),
            }
        } else {
            let data: Vec<f32> = data.iter().map(|&b| f32::from_bits(b as u32)).collect();
            match encode_f32(&shape, &data) {
                Ok(bytes) => {
                    assert!(
                        matches,
                        "encoded shape {shape:?} with {} elements",
                        data.len()
                    );
                    let t = decode_f32(&bytes).expect("decode what was encoded");
                    assert_eq!(t.shape, shape);
                    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&t.data), bits(&data));
                    // f32 data read as f64 widens exactly (NaN payloads aside).
                    let w = decode_f64(&bytes).expect("an f32 file read as f64");
                    for (a, b) in w.data.iter().zip(&data) {
                        assert!(*a == *b as f64 || (a.is_nan() && b.is_nan()));
                    }
                }
                Err(_) => assert!(!matches, "refused a consistent tensor {shape:?}"),
            }
        }
    }
});
