//! Checking one attention row's inputs: dimensions, emptiness, non-finite values.

/// What [`check_row`] found.
pub(crate) enum RowCheck {
    /// No keys: the row is `d` zeros.
    Empty(usize),
    /// A NaN or infinity was read (or the scale is not finite): the row is `d` NaNs.
    NotFinite(usize),
    /// `n >= 1` keys of dimension `d`, all finite.
    Rows { n: usize, d: usize },
}

/// Checks the lengths (panicking on a mismatch, which is a caller bug) and the values.
pub(crate) fn check_row(q: &[f64], keys: &[f64], values: &[f64], scale: f64) -> RowCheck {
    let d = q.len();
    assert_eq!(
        keys.len(),
        values.len(),
        "keys and values must have the same length"
    );
    if d == 0 {
        assert!(keys.is_empty(), "keys given for a zero-dimensional query");
        return RowCheck::Empty(0);
    }
    assert_eq!(
        keys.len() % d,
        0,
        "keys.len() must be a multiple of q.len()"
    );
    let n = keys.len() / d;
    if n == 0 {
        return RowCheck::Empty(d);
    }
    let finite = scale.is_finite() && q.iter().chain(keys).chain(values).all(|x| x.is_finite());
    if finite {
        RowCheck::Rows { n, d }
    } else {
        RowCheck::NotFinite(d)
    }
}
