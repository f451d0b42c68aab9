//! `attention` and `attention_rows` index batches, GQA heads and the causal mask like the kernels.

mod common;

use tessera_reference::{attention, attention_row, attention_rows, ReferenceShape};

/// The output row `(b, h, i)` computed from first principles: slice the key/value head by hand.
fn expected_row(
    s: &ReferenceShape,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    b: usize,
    h: usize,
    i: usize,
) -> Vec<f64> {
    let d = s.head_dim;
    let group = s.heads / s.kv_heads;
    let kv = h / group;
    let visible = if s.causal {
        // Row i is position kv_len - q_len + i; it sees keys 0..=that position.
        let position = s.kv_len as isize - s.q_len as isize + i as isize;
        (position + 1).clamp(0, s.kv_len as isize) as usize
    } else {
        s.kv_len
    };
    let q_start = ((b * s.heads + h) * s.q_len + i) * d;
    let kv_start = (b * s.kv_heads + kv) * s.kv_len * d;
    attention_row(
        &q[q_start..q_start + d],
        &k[kv_start..kv_start + visible * d],
        &v[kv_start..kv_start + visible * d],
        s.scale,
    )
}

fn random_problem(s: &ReferenceShape, seed: u64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut rng = common::Rng::new(seed);
    let q = rng.f32_vec(s.batch * s.heads * s.q_len * s.head_dim, 2.0);
    let k = rng.f32_vec(s.batch * s.kv_heads * s.kv_len * s.head_dim, 2.0);
    let v = rng.f32_vec(s.batch * s.kv_heads * s.kv_len * s.head_dim, 1.0);
    (q, k, v)
}

#[test]
fn whole_problem_matches_hand_indexed_rows() {
    for (kv_heads, causal, q_len, kv_len) in [
        (4, false, 3, 5),
        (2, true, 3, 5),
        (1, true, 4, 4),
        (2, true, 6, 3),
    ] {
        let shape = ReferenceShape {
            batch: 2,
            heads: 4,
            kv_heads,
            q_len,
            kv_len,
            head_dim: 3,
            causal,
            scale: 0.7,
        };
        let (q, k, v) = random_problem(&shape, kv_len as u64);
        let out = attention(&shape, &q, &k, &v);
        assert_eq!(out.len(), q.len());
        let mut expected = Vec::new();
        for b in 0..2 {
            for h in 0..4 {
                for i in 0..q_len {
                    expected.extend(expected_row(&shape, &q, &k, &v, b, h, i));
                }
            }
        }
        assert_eq!(out, expected, "kv_heads={kv_heads} causal={causal}");
        // Rows that see no key (q_len > kv_len, causal) are zeros.
        if causal && q_len > kv_len {
            assert!(out[..shape.head_dim].iter().all(|&x| x == 0.0));
        }
        // Causal rows differ from unmasked ones somewhere, or the mask did nothing.
        if causal {
            let open = attention(
                &ReferenceShape {
                    causal: false,
                    ..shape
                },
                &q,
                &k,
                &v,
            );
            assert_ne!(open, out);
        }
    }
}

#[test]
fn chosen_rows_are_the_same_rows_of_the_whole() {
    let shape = ReferenceShape {
        kv_heads: 1,
        causal: true,
        ..ReferenceShape::new(3, 2, 5, 7, 4)
    };
    let (q, k, v) = random_problem(&shape, 9);
    let whole = attention(&shape, &q, &k, &v);
    let rows = [29, 0, 17, 17, 5];
    let picked = attention_rows(&shape, &q, &k, &v, &rows);
    for (row, values) in rows.iter().zip(&picked) {
        assert_eq!(values[..], whole[row * 4..(row + 1) * 4]);
    }
}

#[test]
fn visible_keys_follow_the_kernel_rule() {
    let shape = ReferenceShape {
        causal: true,
        ..ReferenceShape::new(1, 1, 3, 5, 2)
    };
    assert_eq!(
        (0..3).map(|i| shape.visible_keys(i)).collect::<Vec<_>>(),
        [3, 4, 5]
    );
    let prefill = ReferenceShape { q_len: 7, ..shape };
    assert_eq!(
        (0..7).map(|i| prefill.visible_keys(i)).collect::<Vec<_>>(),
        [0, 0, 1, 2, 3, 4, 5]
    );
    assert_eq!(ReferenceShape::new(1, 1, 3, 5, 2).visible_keys(0), 5);
}

#[test]
#[should_panic(expected = "kv_heads")]
fn kv_heads_must_divide_heads() {
    let shape = ReferenceShape {
        kv_heads: 3,
        ..ReferenceShape::new(1, 4, 1, 1, 1)
    };
    attention(&shape, &[0.0; 4], &[0.0; 3], &[0.0; 3]);
}
