//! Wasserstein-1 distance between the value distributions of two weight tensors.
//!
//! For empirical distributions `A` and `B`, `W1 = ∫ |F_A(x) − F_B(x)| dx`. With equally many
//! samples this is the mean absolute difference of the sorted samples; unequal sizes are handled
//! by integrating the difference of the two step CDFs.

/// Wasserstein-1 distance between the empirical distributions of `a` and `b` (NaN values are an
/// error: they have no place in a distribution).
pub fn wasserstein1(a: &[f32], b: &[f32]) -> anyhow::Result<f64> {
    anyhow::ensure!(
        !a.is_empty() && !b.is_empty(),
        "Wasserstein distance of an empty tensor"
    );
    anyhow::ensure!(
        !a.iter().chain(b).any(|x| x.is_nan()),
        "Wasserstein distance of a tensor with NaN"
    );
    let sorted = |x: &[f32]| {
        let mut v: Vec<f64> = x.iter().map(|&t| t as f64).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let (a, b) = (sorted(a), sorted(b));
    if a.len() == b.len() {
        let sum: f64 = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum();
        return Ok(sum / a.len() as f64);
    }
    // Merge the breakpoints of both CDFs and integrate |F_A − F_B| between them.
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut total) = (0usize, 0usize, 0.0);
    let mut x = a[0].min(b[0]);
    while i < a.len() || j < b.len() {
        let next = match (a.get(i), b.get(j)) {
            (Some(&p), Some(&q)) => p.min(q),
            (Some(&p), None) => p,
            (None, Some(&q)) => q,
            (None, None) => break,
        };
        total += (i as f64 / na - j as f64 / nb).abs() * (next - x);
        x = next;
        while a.get(i) == Some(&next) {
            i += 1;
        }
        while b.get(j) == Some(&next) {
            j += 1;
        }
    }
    Ok(total)
}

/// The largest absolute element-wise difference of two tensors of one shape (position by
/// position, unlike the Wasserstein distance; NaN is an error).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> anyhow::Result<f64> {
    anyhow::ensure!(
        a.len() == b.len(),
        "max difference of tensors of {} and {} values",
        a.len(),
        b.len()
    );
    let mut max = 0.0f64;
    for (&x, &y) in a.iter().zip(b) {
        let d = (x as f64 - y as f64).abs();
        anyhow::ensure!(!d.is_nan(), "max difference of a tensor with NaN");
        max = max.max(d);
    }
    Ok(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_difference_is_position_by_position() {
        let a = [1.0f32, 2.0, 3.0];
        assert_eq!(max_abs_diff(&a, &[3.0, 2.0, 1.0]).unwrap(), 2.0);
        assert_eq!(max_abs_diff(&a, &[1.0, 2.5, 3.0]).unwrap(), 0.5);
        assert!(max_abs_diff(&a, &[1.0]).is_err());
        assert!(max_abs_diff(&[f32::NAN], &[0.0]).is_err());
    }

    #[test]
    fn shift_moves_by_the_shift() {
        let a: Vec<f32> = (0..100).map(|i| i as f32 * 0.01).collect();
        let b: Vec<f32> = a.iter().map(|x| x + 0.5).collect();
        assert!((wasserstein1(&a, &b).unwrap() - 0.5).abs() < 1e-6);
        assert_eq!(wasserstein1(&a, &a).unwrap(), 0.0);
    }

    #[test]
    fn permutation_does_not_matter_and_sizes_may_differ() {
        let a = [3.0f32, 1.0, 2.0];
        let b = [1.0f32, 2.0, 3.0];
        assert_eq!(wasserstein1(&a, &b).unwrap(), 0.0);
        // {0, 1} vs {0, 0, 1, 1}: the same distribution.
        assert!(
            wasserstein1(&[0.0, 1.0], &[0.0, 0.0, 1.0, 1.0])
                .unwrap()
                .abs()
                < 1e-12
        );
        // {0} vs {0, 1}: half the mass moves by 1.
        assert!((wasserstein1(&[0.0], &[0.0, 1.0]).unwrap() - 0.5).abs() < 1e-12);
        assert!(wasserstein1(&[f32::NAN], &[0.0]).is_err());
    }
}
