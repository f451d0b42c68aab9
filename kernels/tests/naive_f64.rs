//! The kernels against a naive f64 attention written here, independent of the kernel code: a quick
//! check that lives with the kernel crate (the full property suites are in harness/tests).

use tessera_kernels::attention::{
    baseline_attention, baseline_scratch_len, flash_attention, flash_scratch_len, AttentionShape,
    FlashTiles,
};

fn naive(shape: &AttentionShape, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f64> {
    let d = shape.head_dim;
    let group = shape.heads / shape.kv_heads;
    let mut out = vec![0.0; q.len()];
    for b in 0..shape.batch {
        for h in 0..shape.heads {
            let kvh = h / group;
            for i in 0..shape.q_len {
                let qo = ((b * shape.heads + h) * shape.q_len + i) * d;
                let last = if shape.causal {
                    (i + shape.kv_len) as isize - shape.q_len as isize
                } else {
                    shape.kv_len as isize - 1
                };
                let visible = (last + 1).clamp(0, shape.kv_len as isize) as usize;
                if visible == 0 {
                    continue;
                }
                let kbase = (b * shape.kv_heads + kvh) * shape.kv_capacity * d;
                let logits: Vec<f64> = (0..visible)
                    .map(|j| {
                        (0..d)
                            .map(|t| q[qo + t] as f64 * k[kbase + j * d + t] as f64)
                            .sum::<f64>()
                            * shape.scale as f64
                    })
                    .collect();
                let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let w: Vec<f64> = logits.iter().map(|s| (s - m).exp()).collect();
                let l: f64 = w.iter().sum();
                for t in 0..d {
                    out[qo + t] = (0..visible)
                        .map(|j| w[j] * v[kbase + j * d + t] as f64)
                        .sum::<f64>()
                        / l;
                }
            }
        }
    }
    out
}

/// Deterministic values spread over (-1, 1): logits stay O(1), the regime of the 2e-6 check.
fn values(n: usize, salt: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as f32 * 0.7548 + salt).sin() * 1.7).fract())
        .collect()
}

#[test]
fn flash_and_baseline_match_naive_f64() {
    // Under Miri (interpreted, ~10^5 slower) the same cases, shrunk: GQA + causal, decode with
    // spare capacity, causal rows that see no key, a tile edge.
    #[cfg(miri)]
    let shapes = [
        AttentionShape::new(1, 1, 1, 1, 1),
        AttentionShape::new(2, 2, 3, 3, 4)
            .with_kv_heads(1)
            .with_causal(true),
        AttentionShape::new(1, 2, 2, 5, 3)
            .with_causal(true)
            .with_kv_capacity(6),
        AttentionShape::new(1, 1, 4, 2, 2).with_causal(true),
    ];
    #[cfg(not(miri))]
    let shapes = [
        AttentionShape::new(1, 1, 1, 1, 1),
        AttentionShape::new(2, 4, 33, 33, 16)
            .with_kv_heads(2)
            .with_causal(true),
        AttentionShape::new(1, 8, 1, 70, 64)
            .with_kv_heads(1)
            .with_causal(true),
        AttentionShape::new(1, 2, 5, 37, 7)
            .with_causal(true)
            .with_kv_capacity(40),
        AttentionShape::new(1, 2, 9, 4, 8).with_causal(true),
        AttentionShape::new(1, 3, 20, 50, 80),
    ];
    for shape in shapes {
        let (qn, kvn) = shape.validate().expect("valid shape");
        let (q, k, v) = (values(qn, 0.1), values(kvn, 0.2), values(kvn, 0.3));
        let want = naive(&shape, &q, &k, &v);
        for tiles in [
            FlashTiles::new(1, 1),
            FlashTiles::new(4, 16),
            FlashTiles::default(),
        ] {
            let mut out = vec![f32::NAN; qn];
            let mut scratch = vec![0.0f32; flash_scratch_len(&shape, tiles).expect("len")];
            flash_attention(&shape, tiles, &q, &k, &v, &mut out, &mut scratch).expect("flash");
            let err = out
                .iter()
                .zip(&want)
                .map(|(&a, &b)| (a as f64 - b).abs())
                .fold(0.0, f64::max);
            assert!(err < 2e-6, "flash {shape:?} {tiles:?}: max error {err}");
        }
        let mut out = vec![f32::NAN; qn];
        let mut scratch = vec![0.0f32; baseline_scratch_len(&shape).expect("len")];
        baseline_attention(&shape, &q, &k, &v, &mut out, &mut scratch).expect("baseline");
        let err = out
            .iter()
            .zip(&want)
            .map(|(&a, &b)| (a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 2e-6, "baseline {shape:?}: max error {err}");
    }
}

#[test]
fn bad_inputs_are_errors() {
    let shape = AttentionShape::new(1, 2, 4, 4, 8);
    let (q, kv) = (vec![0.0f32; 64], vec![0.0f32; 64]);
    let mut out = vec![0.0f32; 64];
    let mut scratch = vec![0.0f32; 4];
    assert!(baseline_attention(&shape, &q, &kv, &kv, &mut out, &mut scratch).is_err());
    let mut scratch = vec![0.0f32; 1000];
    assert!(baseline_attention(&shape, &q[..63], &kv, &kv, &mut out, &mut scratch).is_err());
    assert!(baseline_attention(
        &shape.with_kv_heads(3),
        &q,
        &kv,
        &kv,
        &mut out,
        &mut scratch
    )
    .is_err());
    assert!(baseline_attention(
        &shape.with_scale(f32::NAN),
        &q,
        &kv,
        &kv,
        &mut out,
        &mut scratch
    )
    .is_err());
    let t = FlashTiles::new(0, 4);
    assert!(flash_attention(&shape, t, &q, &kv, &kv, &mut out, &mut scratch).is_err());
    let huge = AttentionShape::new(usize::MAX, 2, 4, 4, 8);
    assert!(flash_scratch_len(&huge, FlashTiles::default()).is_err());
}
