//! The arithmetic of one element of an Adam base that learns only its learning rate: the step
//! on the direction state `(q, sqrt(v))`. The lane loop (`lanes.rs`) and the tests' scalar
//! reference are written in it.

use crate::optim::adam::AdamScalars;

/// One element's step with `now` on the direction state `(q, root = sqrt(v))` the step `last`
/// left: the new `(p, q, root)`. `eps` is not learned: `now`'s is the one `last` used.
#[inline(always)]
pub(crate) fn adam_direction_update(
    last: &AdamScalars,
    now: &AdamScalars,
    [p, g, q, root]: [f32; 4],
) -> [f32; 3] {
    let m = q * libm::fmaf(root, last.inv_sqrt_bc2, now.eps);
    let m = libm::fmaf(now.beta1, m, now.one_minus_beta1 * g);
    let v = libm::fmaf(now.beta2, root * root, now.one_minus_beta2 * (g * g));
    let root = libm::sqrtf(v);
    let q = m / libm::fmaf(root, now.inv_sqrt_bc2, now.eps);
    [p * now.decay - now.step * q, q, root]
}
