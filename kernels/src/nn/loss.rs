//! Softmax cross-entropy over a vocabulary, and greedy token choice.

use crate::check::{length, mul};
use crate::{Error, Result};

/// Softmax cross-entropy of `rows` logit rows against `targets`: returns the *sum* over
/// rows of `logsumexp(z) − z[target]`, and writes `d_logits = scale·(softmax(z) − onehot(target))`
/// (overwritten) when `d_logits` is given. Sums run in `f64` so the loss of a long batch is exact
/// to `f32` precision. A target `>= vocab` is `Err(TokenOutOfRange)`.
pub fn softmax_cross_entropy(
    vocab: usize,
    logits: &[f32],
    targets: &[u32],
    scale: f32,
    mut d_logits: Option<&mut [f32]>,
) -> Result<f64> {
    if vocab == 0 {
        return Err(Error::ZeroDimension("vocab"));
    }
    length("logits", logits.len(), mul(targets.len(), vocab)?)?;
    if let Some(d) = d_logits.as_deref() {
        length("d_logits", d.len(), logits.len())?;
    }
    // Every target before any row is written: an `Err` leaves `d_logits` untouched.
    if let Some(&t) = targets.iter().find(|&&t| t as usize >= vocab) {
        return Err(Error::TokenOutOfRange {
            token: t as usize,
            vocab,
        });
    }
    let mut total = 0.0f64;
    for (r, (z, &t)) in logits.chunks_exact(vocab).zip(targets).enumerate() {
        let t = t as usize;
        let target = *z.get(t).ok_or(Error::TokenOutOfRange { token: t, vocab })?;
        let m = z.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let sum: f64 = z.iter().map(|&x| libm::exp((x - m) as f64)).sum();
        let lse = m as f64 + libm::log(sum);
        total += lse - target as f64;
        if let Some(d) = d_logits.as_deref_mut() {
            let start = r * vocab;
            if let Some(dr) = d.get_mut(start..start + vocab) {
                for (j, (dj, &x)) in dr.iter_mut().zip(z).enumerate() {
                    let p = (libm::exp(x as f64 - lse)) as f32;
                    *dj = scale * (p - if j == t { 1.0 } else { 0.0 });
                }
            }
        }
    }
    Ok(total)
}

/// Index of the largest logit (the first one on ties; NaN never wins). `Err` on an empty slice.
pub fn argmax(logits: &[f32]) -> Result<u32> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &x) in logits.iter().enumerate() {
        match best {
            Some((_, b)) if x <= b || x.is_nan() => {}
            _ if x.is_nan() => {}
            _ => best = Some((i, x)),
        }
    }
    match best {
        Some((i, _)) => Ok(i as u32),
        None if logits.is_empty() => Err(Error::ZeroDimension("vocab")),
        None => Ok(0),
    }
}
