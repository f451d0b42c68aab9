//! Flash's online-softmax step over the rows of a tile, written once over the two row steps it
//! needs ([`SoftmaxSteps`]): the generic backend runs it on its [`RowOps`] primitives
//! ([`RowSteps`]); the lane backends run it inside one entry into their target features for the
//! whole tile (`rows::lanes`), not one entry per row and primitive.

use super::ops::{RowOps, SoftmaxStop, SoftmaxTile};
use crate::Accumulator;
use core::marker::PhantomData;

/// The row steps of the online softmax.
pub(crate) trait SoftmaxSteps<A>: Copy {
    /// As [`RowOps::finite_max_exp_sum`] on the row's first `count` scores (`count <=
    /// row.len()`; `row` is the row's whole `ld` slots, which the lane backends' bf16 pair
    /// packing writes: see [`RowOps::finish_probabilities`]).
    fn finite_max_exp_sum(self, row: &mut [A], count: usize, m: A) -> Option<(A, A)>;
    /// As [`RowOps::scale`].
    fn scale(self, acc: &mut [A], alpha: A);
}

/// A [`RowOps`]'s own primitives as the softmax steps.
pub(crate) struct RowSteps<O, E>(O, PhantomData<fn(E)>);

impl<O: Copy, E> Clone for RowSteps<O, E> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<O: Copy, E> Copy for RowSteps<O, E> {}

impl<O, E> RowSteps<O, E> {
    /// `ops`'s primitives.
    #[inline(always)]
    pub(crate) fn new(ops: O) -> Self {
        RowSteps(ops, PhantomData)
    }
}

impl<E, A, O: RowOps<E, A>> SoftmaxSteps<A> for RowSteps<O, E> {
    #[inline(always)]
    fn finite_max_exp_sum(self, row: &mut [A], count: usize, m: A) -> Option<(A, A)> {
        self.0.finite_max_exp_sum(row.get_mut(..count)?, m)
    }
    #[inline(always)]
    fn scale(self, acc: &mut [A], alpha: A) {
        self.0.scale(acc, alpha)
    }
}

/// Rows `from ..` of the tile, each with visible keys: its running max and the exponentials of
/// its scores against it ([`SoftmaxSteps::finite_max_exp_sum`]), then its state
/// ([`update_state`]). Stops at the first row whose scores are not all finite (that row and the
/// ones after it untouched), for the caller to recompute its scores and go on after it.
#[inline(always)]
pub(crate) fn softmax_rows<A: Accumulator, S: SoftmaxSteps<A>>(
    steps: S,
    tile: SoftmaxTile<'_, A>,
    from: usize,
) -> Result<(), SoftmaxStop> {
    let SoftmaxTile {
        scores,
        ld,
        counts,
        acc,
        d,
        max,
        sum,
    } = tile;
    let states = acc.chunks_exact_mut(d.max(1)).zip(max.iter_mut().zip(sum));
    for (r, (acc, (m, l))) in states.enumerate().skip(from) {
        let count = counts.of(r);
        if count == 0 {
            continue;
        }
        let row = row_slots(scores, r, ld, count).ok_or(SoftmaxStop::Bounds)?;
        let (m_new, p_sum) = steps
            .finite_max_exp_sum(row, count, *m)
            .ok_or(SoftmaxStop::NonFinite(r))?;
        update_state(steps, acc, m, l, m_new, p_sum);
    }
    Ok(())
}

/// Row `r`'s slots of a score tile (`ld` apart; the last row's may end with the buffer), `None`
/// unless they hold its `count` scores: what the softmax step reads and, on the bf16 pair
/// token, writes its packed probabilities over.
#[inline(always)]
pub(crate) fn row_slots<A>(
    scores: &mut [A],
    r: usize,
    ld: usize,
    count: usize,
) -> Option<&mut [A]> {
    let end = (r * ld + ld.max(count)).min(scores.len());
    scores.get_mut(r * ld..end).filter(|row| row.len() >= count)
}

/// One row's online-softmax state after a tile: the accumulator rescaled by
/// `alpha = exp(m − m')` (not on the row's first tile, nor when `alpha = 1`), the running sum
/// `l' = l·alpha + p_sum`, the max `m'`.
#[inline(always)]
pub(crate) fn update_state<A: Accumulator, S: SoftmaxSteps<A>>(
    steps: S,
    acc: &mut [A],
    m: &mut A,
    l: &mut A,
    m_new: A,
    p_sum: A,
) {
    if *m == A::NEG_INFINITY {
        // First tile: the state is still zero, nothing to rescale.
        *l = p_sum;
    } else {
        let alpha = m.sub(m_new).exp();
        if alpha != A::ONE {
            steps.scale(acc, alpha);
        }
        *l = l.mul(alpha).add(p_sum);
    }
    *m = m_new;
}
