//! Baseline attention: materialise a row of logits, softmax it, then multiply by V.

use super::heads::{
    all_finite, check_values, clamp_to_values, fix_overflowed_scores, kv_head, nan_if_infinite,
};
use crate::attention::AttentionShape;
use crate::check::{add, split, try_const};
use crate::rows::{self, Job, RowOps};
use crate::simd::Backend;
use crate::{Accumulator, Element, Error, Result};

/// Attention by the textbook algorithm, on the best available backend.
///
/// For each query row: `s = q·Kᵀ·scale` over all visible keys (kept in scratch), `p = softmax(s)`
/// with the max subtracted and each `p_j` divided by the sum, then `out = p·V`. `scratch` holds at
/// least [`baseline_scratch_len`] accumulators. See [`AttentionShape`] for the layout.
///
/// ```
/// use tessera_kernels::attention::{baseline_attention, baseline_scratch_len, AttentionShape};
/// let shape = AttentionShape::new(1, 1, 2, 2, 4).with_causal(true);
/// let (q, k, v) = ([0.5f32; 8], [0.25f32; 8], [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
/// let mut out = [0.0f32; 8];
/// let mut scratch = vec![0.0f32; baseline_scratch_len(&shape)?];
/// baseline_attention(&shape, &q, &k, &v, &mut out, &mut scratch)?;
/// assert_eq!(&out[..4], &v[..4]); // the first row sees only the first key
/// # Ok::<(), tessera_kernels::Error>(())
/// ```
pub fn baseline_attention<E: Element, A: Accumulator>(
    shape: &AttentionShape,
    q: &[E],
    k: &[E],
    v: &[E],
    out: &mut [E],
    scratch: &mut [A],
) -> Result<()> {
    baseline_attention_with(Backend::Auto, shape, q, k, v, out, scratch)
}

/// [`baseline_attention`] on a chosen backend; `Err(BackendUnavailable)` if it cannot run here.
pub fn baseline_attention_with<E: Element, A: Accumulator>(
    backend: Backend,
    shape: &AttentionShape,
    q: &[E],
    k: &[E],
    v: &[E],
    out: &mut [E],
    scratch: &mut [A],
) -> Result<()> {
    shape.check_tensors(q, k, v, out)?;
    check_values::<E, A>(v)?;
    let needed = baseline_scratch_len(shape)?;
    if scratch.len() < needed {
        return Err(Error::ScratchTooSmall {
            needed,
            actual: scratch.len(),
        });
    }
    rows::run(
        backend,
        Baseline {
            shape,
            q,
            k,
            v,
            out,
            scratch,
        },
    )?
}

/// Accumulators [`baseline_attention`](baseline_attention) needs: one full row of scores
/// (`kv_len`) and one output row (`head_dim`).
/// A `const fn`, like every sizing function.
pub const fn baseline_scratch_len(shape: &AttentionShape) -> Result<usize> {
    try_const!(shape.validate());
    add(shape.kv_len, shape.head_dim)
}

struct Baseline<'a, E, A> {
    shape: &'a AttentionShape,
    q: &'a [E],
    k: &'a [E],
    v: &'a [E],
    out: &'a mut [E],
    scratch: &'a mut [A],
}

impl<E: Element, A: Accumulator> Job<E, A> for Baseline<'_, E, A> {
    type Output = Result<()>;

    #[inline(always)]
    fn run<O: RowOps<E, A>>(self, ops: O) -> Result<()> {
        let Baseline {
            shape,
            q,
            k,
            v,
            out,
            scratch,
        } = self;
        let d = shape.head_dim;
        if shape.q_len == 0 {
            return Ok(());
        }
        let scale = A::from_f32(shape.scale);
        let (scores, rest) = split(scratch, shape.kv_len)?;
        let (acc, _) = split(rest, d)?;
        for bh in 0..shape.batch * shape.heads {
            let (k_head, v_head) = kv_head(shape, bh, k, v)?;
            let (start, stride) = shape.q_rows(bh);
            for row in 0..shape.q_len {
                let at = start + row * stride..start + row * stride + d;
                let q_row = q.get(at.clone()).ok_or(Error::Overflow)?;
                let out_row = out.get_mut(at).ok_or(Error::Overflow)?;
                let visible = shape.visible_keys(row);
                if visible == 0 {
                    out_row.fill(E::from_f32(0.0));
                    continue;
                }
                let s = scores.get_mut(..visible).ok_or(Error::Overflow)?;
                let keys = k_head.get(..visible * d).ok_or(Error::Overflow)?;
                let values = v_head.get(..visible * d).ok_or(Error::Overflow)?;
                ops.scores(q_row, keys, scale, s);
                fix_overflowed_scores(q_row, keys, shape.scale, s);
                let m = ops.max(s);
                let l = ops.exp_sum(s, m);
                ops.normalize(s, l);
                acc.fill(A::ZERO);
                ops.accumulate(acc, s, values);
                ops.store(out_row, acc, A::ONE);
                if !all_finite(out_row) {
                    // Values at the format's limit summed past it by rounding (rare), or a
                    // non-finite input: clamp into the values' range, then NaN if still infinite.
                    clamp_to_values(acc, values);
                    ops.store(out_row, acc, A::ONE);
                    nan_if_infinite(out_row);
                }
            }
        }
        Ok(())
    }
}
