//! Argument checks shared by every optimizer step: slice lengths, finiteness, hyperparameter ranges.

use crate::simd::{run_lanes, Backend, LaneJob, Lanes, LANES};
use crate::{Error, Result};

/// `Err(NonFinite(what))` when any value is NaN or infinite (on `backend`'s lanes).
#[inline]
pub(crate) fn all_finite(backend: Backend, what: &'static str, values: &[f32]) -> Result<()> {
    if all_finite_lanes(backend, values)? {
        Ok(())
    } else {
        Err(Error::NonFinite(what))
    }
}

/// Whether every value of `x` is finite, on `backend`'s lanes.
/// `v − v` is 0 for every finite `v` and NaN for an infinity or a NaN; four running sums of it
/// are NaN exactly when some value is not finite. The four sums read the four quarters of `x` in
/// step: four streams keep more loads in flight than one, which nearly doubles the pass's speed
/// once `x` is beyond the caches.
pub(crate) fn all_finite_lanes(backend: Backend, x: &[f32]) -> Result<bool> {
    struct Job<'a>(&'a [f32]);
    impl LaneJob for Job<'_> {
        type Output = bool;
        #[inline(always)]
        fn run<L: Lanes>(self, l: L) -> bool {
            let (chunks, rest) = self.0.as_chunks::<LANES>();
            let mut bad = [l.splat(0.0); 4];
            let nan = |acc: &mut L::F, c: &[f32; LANES]| {
                let v = l.load(c);
                *acc = l.add(*acc, l.sub(v, v));
            };
            // Four quarters of `q` chunks each (the splits cannot fail: 4 q <= chunks), then
            // fewer than four chunks left over.
            let q = chunks.len() / 4;
            let (a, r) = chunks.split_at_checked(q).unwrap_or((&[], chunks));
            let (b, r) = r.split_at_checked(q).unwrap_or((&[], r));
            let (c, r) = r.split_at_checked(q).unwrap_or((&[], r));
            let (d, last) = r.split_at_checked(q).unwrap_or((&[], r));
            let [s0, s1, s2, s3] = &mut bad;
            for ((x0, x1), (x2, x3)) in a.iter().zip(b).zip(c.iter().zip(d)) {
                nan(s0, x0);
                nan(s1, x1);
                nan(s2, x2);
                nan(s3, x3);
            }
            for x in last {
                nan(s0, x);
            }
            let [a, b, c, d] = bad;
            let mut flags = [0.0f32; LANES];
            l.store(l.add(l.add(a, b), l.add(c, d)), &mut flags);
            flags.iter().all(|f| !f.is_nan()) && rest.iter().all(|v| v.is_finite())
        }
    }
    run_lanes(backend, Job(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every position (each quarter of the lane pass, the chunks left over, the rest) and every
    /// kind of non-finite value is found on every backend this CPU has (the scalar lanes
    /// included); the extremes of the finite range are not mistaken for one.
    #[test]
    fn all_finite_finds_every_non_finite_value() {
        let mut x = [0.0f32; 200];
        for (i, v) in x.iter_mut().enumerate() {
            *v = match i % 4 {
                0 => f32::MAX,
                1 => -f32::MAX,
                2 => f32::MIN_POSITIVE / 8.0,
                _ => i as f32 * -0.5,
            };
        }
        for (b, n) in crate::simd::available_backends().flat_map(|b| {
            [0, 1, 15, 16, 17, 48, 63, 64, 65, 80, 112, 127, 128, 200].map(|n| (b, n))
        }) {
            // Under Miri (interpreted, ~1000x slower) the lengths around one chunk boundary.
            if cfg!(miri) && ![0, 17, 65].contains(&n) {
                continue;
            }
            assert_eq!(all_finite(b, "x", &x[..n]), Ok(()), "{b:?} n {n}");
            for pos in 0..n {
                for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                    let mut y = x;
                    y[pos] = bad;
                    assert_eq!(
                        all_finite(b, "y", &y[..n]),
                        Err(Error::NonFinite("y")),
                        "{b:?} n {n} at {pos}"
                    );
                }
            }
        }
    }
}
