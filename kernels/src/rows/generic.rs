//! The generic backend: plain scalar loops over the accumulator's own arithmetic. Always present,
//! and the only backend for the emulated accumulators of the deviation study.

use super::RowOps;
use crate::{Accumulator, Element};

/// Scalar implementation of [`RowOps`] for every element and accumulator type.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Generic;

impl<E: Element, A: Accumulator> RowOps<E, A> for Generic {
    #[inline]
    fn scores(self, q: &[E], keys: &[E], scale: A, out: &mut [A]) {
        let d = q.len();
        if d == 0 {
            out.fill(A::ZERO);
            return;
        }
        for (key, s) in keys.chunks_exact(d).zip(out.iter_mut()) {
            let mut dot = A::Wide::ZERO;
            for (&a, &b) in q.iter().zip(key) {
                dot = dot.add(A::Wide::from_element(a).mul(A::Wide::from_element(b)));
            }
            *s = A::narrow(dot).mul(scale);
        }
    }

    #[inline]
    fn max(self, s: &[A]) -> A {
        s.iter().fold(A::NEG_INFINITY, |m, &x| m.max(x))
    }

    #[inline]
    fn max_exp_sum(self, s: &mut [A], m: A) -> (A, A) {
        let m = m.max(RowOps::<E, A>::max(self, s));
        (m, RowOps::<E, A>::exp_sum(self, s, m))
    }

    #[inline]
    fn finite_max_exp_sum(self, s: &mut [A], m: A) -> Option<(A, A)> {
        let finite = s.iter().fold(true, |ok, x| ok & x.is_finite());
        finite.then(|| RowOps::<E, A>::max_exp_sum(self, s, m))
    }

    #[inline]
    fn exp_sum(self, s: &mut [A], m: A) -> A {
        let mut sum = A::Wide::ZERO;
        for x in s.iter_mut() {
            *x = x.sub(m).exp();
            sum = sum.add(x.widen());
        }
        A::narrow(sum)
    }

    #[inline]
    fn normalize(self, s: &mut [A], l: A) {
        for x in s.iter_mut() {
            *x = x.div(l);
        }
    }

    #[inline]
    fn scale(self, acc: &mut [A], alpha: A) {
        for x in acc.iter_mut() {
            *x = x.mul(alpha);
        }
    }

    #[inline]
    fn accumulate(self, acc: &mut [A], p: &[A], values: &[E]) {
        let d = acc.len();
        if d == 0 {
            return;
        }
        if A::NARROWS {
            // One wide sum per output feature, rounded once: column order over the value rows.
            for (i, a) in acc.iter_mut().enumerate() {
                let mut sum = a.widen();
                for (&pj, row) in p.iter().zip(values.chunks_exact(d)) {
                    if let Some(&v) = row.get(i) {
                        sum = sum.add(pj.widen().mul(A::Wide::from_element(v)));
                    }
                }
                *a = A::narrow(sum);
            }
            return;
        }
        for (&pj, row) in p.iter().zip(values.chunks_exact(d)) {
            for (a, &v) in acc.iter_mut().zip(row) {
                *a = a.add(pj.mul(A::from_element(v)));
            }
        }
    }

    #[inline]
    fn round_probabilities(self, p: &mut [A]) {
        for x in p.iter_mut() {
            *x = x.round_to::<E>();
        }
    }

    #[inline]
    fn store(self, out: &mut [E], acc: &[A], denom: A) {
        for (o, &a) in out.iter_mut().zip(acc) {
            *o = a.div(denom).to_element();
        }
    }

    #[inline]
    fn linear(self, in_dim: usize, x: &[f32], w: &[E], y: &mut [f32]) {
        super::dense::linear(in_dim, x, w, y)
    }
}
