//! The `kernels::nn` blocks against plain `f64` implementations written independently here, and
//! their gradients against central finite differences of those `f64` implementations.
//!
//! Tolerances (one place, each explained):
//! - `VALUE_TOL`: forward values are `f32` sums of at most ~200 products of O(1) numbers; the
//!   worst-case error is about `n·u·sum|terms|` with `u = 2^-24`, i.e. below `2e-5` of the
//!   magnitude of the terms. We allow `1e-4·(1 + |ref|)`.
//! - `GRAD_TOL`: analytic `f32` gradients against `f64` central differences with step `1e-5`,
//!   whose truncation error is ~`1e-10` and rounding error ~`1e-11`; the `f32` gradient itself
//!   carries the same `f32` sum error as a value, so `2e-4·(1 + |ref|)`.

use proptest::prelude::*;
use tessera_kernels::nn::*;

const VALUE_TOL: f64 = 1e-4;
const GRAD_TOL: f64 = 2e-4;
const FD_STEP: f64 = 1e-5;

fn close(what: &str, got: &[f32], want: &[f64], tol: f64) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len(), "{} length", what);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        prop_assert!(
            err <= tol * (1.0 + w.abs()),
            "{what}[{i}]: got {g}, want {w} (err {err:e})"
        );
    }
    Ok(())
}

/// `d f / d x_i` by central differences, for every `i`.
fn fd_grad(f: &dyn Fn(&[f64]) -> f64, x: &[f64]) -> Vec<f64> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let x0 = x[i];
            x[i] = x0 + FD_STEP;
            let up = f(&x);
            x[i] = x0 - FD_STEP;
            let down = f(&x);
            x[i] = x0;
            (up - down) / (2.0 * FD_STEP)
        })
        .collect()
}

fn wide(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

fn vec_f32(len: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-2.0f32..2.0, len)
}

// ---- f64 references -------------------------------------------------------------------------

fn ref_linear(x: &[f64], w: &[f64], rows: usize, n_in: usize, n_out: usize) -> Vec<f64> {
    let mut y = vec![0.0; rows * n_out];
    for r in 0..rows {
        for o in 0..n_out {
            y[r * n_out + o] = (0..n_in).map(|i| x[r * n_in + i] * w[o * n_in + i]).sum();
        }
    }
    y
}

fn ref_rms_norm(x: &[f64], g: &[f64], dim: usize, eps: f64) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    for (xr, yr) in x.chunks(dim).zip(y.chunks_mut(dim)) {
        let ms = xr.iter().map(|v| v * v).sum::<f64>() / dim as f64;
        let r = 1.0 / (ms + eps).sqrt();
        for i in 0..dim {
            yr[i] = xr[i] * r * g[i];
        }
    }
    y
}

fn ref_rope(x: &[f64], heads: usize, hd: usize, pos0: usize, theta: f64) -> Vec<f64> {
    let mut y = x.to_vec();
    let half = hd / 2;
    for (t, tok) in y.chunks_mut(heads * hd).enumerate() {
        for head in tok.chunks_mut(hd) {
            for i in 0..half {
                let angle = (pos0 + t) as f64 * theta.powf(-2.0 * i as f64 / hd as f64);
                let (a, b) = (head[i], head[i + half]);
                head[i] = a * angle.cos() - b * angle.sin();
                head[i + half] = a * angle.sin() + b * angle.cos();
            }
        }
    }
    y
}

fn silu(g: f64) -> f64 {
    g / (1.0 + (-g).exp())
}

fn ref_mlp(
    x: &[f64],
    wg: &[f64],
    wu: &[f64],
    wd: &[f64],
    rows: usize,
    d: usize,
    f: usize,
) -> Vec<f64> {
    let g = ref_linear(x, wg, rows, d, f);
    let u = ref_linear(x, wu, rows, d, f);
    let h: Vec<f64> = g.iter().zip(&u).map(|(&a, &b)| silu(a) * b).collect();
    ref_linear(&h, wd, rows, f, d)
}

fn ref_cross_entropy(z: &[f64], targets: &[u32], vocab: usize) -> f64 {
    z.chunks(vocab)
        .zip(targets)
        .map(|(row, &t)| {
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            lse - row[t as usize]
        })
        .sum()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

// ---- tests ----------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn linear_values_and_gradients_match_f64(
        rows in 1usize..5, n_in in 1usize..40, n_out in 1usize..12, seed in any::<u64>(),
    ) {
        let mut rng = seed;
        let mut next = || { rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); ((rng >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0 };
        let x: Vec<f32> = (0..rows * n_in).map(|_| next()).collect();
        let w: Vec<f32> = (0..n_out * n_in).map(|_| next()).collect();
        let dy: Vec<f32> = (0..rows * n_out).map(|_| next()).collect();
        let shape = LinearShape::new(rows, n_in, n_out);
        let mut y = vec![f32::NAN; rows * n_out];
        linear_matmul(shape, &x, &w, &mut y).unwrap();
        close("y", &y, &ref_linear(&wide(&x), &wide(&w), rows, n_in, n_out), VALUE_TOL)?;
        // Each row of the matrix-matrix product equals the matrix-vector product, bit for bit.
        for r in 0..rows {
            let mut yr = vec![f32::NAN; n_out];
            linear_matvec(LinearShape::new(1, n_in, n_out), &x[r * n_in..(r + 1) * n_in], &w, &mut yr).unwrap();
            prop_assert_eq!(&yr[..], &y[r * n_out..(r + 1) * n_out]);
        }
        // Gradients of L = sum(dy · y) by finite differences of the f64 reference.
        let (xd, wd, dyd) = (wide(&x), wide(&w), wide(&dy));
        let gx = fd_grad(&|xv| dot(&dyd, &ref_linear(xv, &wd, rows, n_in, n_out)), &xd);
        let gw = fd_grad(&|wv| dot(&dyd, &ref_linear(&xd, wv, rows, n_in, n_out)), &wd);
        let mut dx = vec![f32::NAN; x.len()];
        linear_backward_input(shape, &dy, &w, &mut dx).unwrap();
        close("dx", &dx, &gx, GRAD_TOL)?;
        let mut dw = vec![0.5f32; w.len()]; // accumulates onto what is there
        linear_backward_weight(shape, &x, &dy, &mut dw).unwrap();
        let want: Vec<f64> = gw.iter().map(|g| g + 0.5).collect();
        close("dw", &dw, &want, GRAD_TOL)?;
    }

    #[test]
    fn bf16_weights_read_as_their_f32_values(x in vec_f32(24), w in vec_f32(72)) {
        let wb: Vec<tessera_kernels::bf16> = w.iter().map(|&v| tessera_kernels::bf16::from_f32(v)).collect();
        let wr: Vec<f32> = wb.iter().map(|v| v.to_f32()).collect();
        let (mut a, mut b) = (vec![0.0; 3], vec![0.0; 3]);
        linear_matvec(LinearShape::new(1, 24, 3), &x, &wb, &mut a).unwrap();
        linear_matvec(LinearShape::new(1, 24, 3), &x, &wr, &mut b).unwrap();
        prop_assert_eq!(a, b);
    }

    #[test]
    fn rms_norm_values_and_gradients_match_f64(
        rows in 1usize..4, dim in 1usize..33, seed in 0u64..1000,
    ) {
        let x: Vec<f32> = (0..rows * dim).map(|i| ((i as u64 * 7919 + seed * 104729) % 1000) as f32 / 250.0 - 2.0).collect();
        let g: Vec<f32> = (0..dim).map(|i| 0.5 + ((i as u64 * 31 + seed) % 17) as f32 / 10.0).collect();
        let dy: Vec<f32> = (0..rows * dim).map(|i| ((i as u64 * 131 + seed * 7) % 100) as f32 / 50.0 - 1.0).collect();
        let eps = 1e-5;
        let mut y = vec![f32::NAN; x.len()];
        rms_norm_forward(dim, eps, &x, &g, &mut y).unwrap();
        let (xd, gd, dyd) = (wide(&x), wide(&g), wide(&dy));
        close("y", &y, &ref_rms_norm(&xd, &gd, dim, eps as f64), VALUE_TOL)?;
        let gx = fd_grad(&|xv| dot(&dyd, &ref_rms_norm(xv, &gd, dim, eps as f64)), &xd);
        let gg = fd_grad(&|gv| dot(&dyd, &ref_rms_norm(&xd, gv, dim, eps as f64)), &gd);
        let mut dx = vec![f32::NAN; x.len()];
        let mut dg = vec![0.0f32; dim];
        rms_norm_backward(dim, eps, &x, &g, &dy, &mut dx, &mut dg).unwrap();
        close("dx", &dx, &gx, GRAD_TOL)?;
        close("dg", &dg, &gg, GRAD_TOL)?;
    }

    #[test]
    fn rope_values_and_gradients_match_f64(
        tokens in 1usize..5, heads in 1usize..3, half in 1usize..9, pos0 in 0usize..300,
        x in vec_f32(4 * 2 * 16), dy in vec_f32(4 * 2 * 16),
    ) {
        let hd = 2 * half;
        let n = tokens * heads * hd;
        let (x, dy) = (&x[..n], &dy[..n]);
        let mut y = x.to_vec();
        rope_forward(heads, hd, pos0, 10000.0, &mut y).unwrap();
        // The angle grows with the position: allow for the f32 rounding of cos/sin.
        close("y", &y, &ref_rope(&wide(x), heads, hd, pos0, 10000.0), VALUE_TOL)?;
        let dyd = wide(dy);
        let gx = fd_grad(&|xv| dot(&dyd, &ref_rope(xv, heads, hd, pos0, 10000.0)), &wide(x));
        let mut dx = dy.to_vec();
        rope_backward(heads, hd, pos0, 10000.0, &mut dx).unwrap();
        close("dx", &dx, &gx, GRAD_TOL)?;
    }

    #[test]
    fn swiglu_mlp_values_and_gradients_match_f64(
        rows in 1usize..3, d in 1usize..9, f in 1usize..11,
        pool in vec_f32(3 * 8 * 10 + 2 * 8 + 2 * 8),
    ) {
        let mut it = pool.iter().map(|v| v * 0.7);
        let mut take = |n: usize| -> Vec<f32> { (0..n).map(|_| it.next().unwrap()).collect() };
        let (x, wg, wu, wd, dy) = (take(rows * d), take(f * d), take(f * d), take(d * f), take(rows * d));
        let shape = MlpShape::new(rows, d, f);
        let weights = MlpWeights { gate: &wg[..], up: &wu[..], down: &wd[..] };
        let mut y = vec![f32::NAN; rows * d];
        let mut fwd = vec![f32::NAN; swiglu_mlp_scratch_len(shape).unwrap()];
        swiglu_mlp_forward(shape, &weights, &x, &mut y, &mut fwd).unwrap();
        let (gate, up) = fwd[..2 * rows * f].split_at(rows * f);
        let (xd, wgd, wud, wdd, dyd) = (wide(&x), wide(&wg), wide(&wu), wide(&wd), wide(&dy));
        close("y", &y, &ref_mlp(&xd, &wgd, &wud, &wdd, rows, d, f), VALUE_TOL)?;
        let mut dx = vec![f32::NAN; x.len()];
        let (mut dwg, mut dwu, mut dwd) = (vec![0.0; wg.len()], vec![0.0; wu.len()], vec![0.0; wd.len()]);
        let mut scratch = vec![0.0; swiglu_mlp_backward_scratch_len(shape).unwrap()];
        let mut grads = MlpGradients { gate: &mut dwg, up: &mut dwu, down: &mut dwd };
        swiglu_mlp_backward(shape, &weights, &x, (gate, up), &dy, &mut dx, &mut grads, &mut scratch).unwrap();
        close("dx", &dx, &fd_grad(&|v| dot(&dyd, &ref_mlp(v, &wgd, &wud, &wdd, rows, d, f)), &xd), GRAD_TOL)?;
        close("dw_gate", &dwg, &fd_grad(&|v| dot(&dyd, &ref_mlp(&xd, v, &wud, &wdd, rows, d, f)), &wgd), GRAD_TOL)?;
        close("dw_up", &dwu, &fd_grad(&|v| dot(&dyd, &ref_mlp(&xd, &wgd, v, &wdd, rows, d, f)), &wud), GRAD_TOL)?;
        close("dw_down", &dwd, &fd_grad(&|v| dot(&dyd, &ref_mlp(&xd, &wgd, &wud, v, rows, d, f)), &wdd), GRAD_TOL)?;
    }

    #[test]
    fn cross_entropy_value_and_gradient_match_f64(
        rows in 1usize..4, vocab in 1usize..20, z in vec_f32(3 * 19), t in prop::collection::vec(0u32..1000, 3),
        scale in 0.1f32..2.0,
    ) {
        let z: Vec<f32> = z[..rows * vocab].iter().map(|v| v * 3.0).collect();
        let targets: Vec<u32> = t[..rows].iter().map(|&x| x % vocab as u32).collect();
        let mut dz = vec![f32::NAN; z.len()];
        let loss = softmax_cross_entropy(vocab, &z, &targets, scale, Some(&mut dz)).unwrap();
        let zd = wide(&z);
        let want = ref_cross_entropy(&zd, &targets, vocab);
        prop_assert!((loss - want).abs() <= VALUE_TOL * (1.0 + want.abs()), "loss {loss} vs {want}");
        let g: Vec<f64> = fd_grad(&|v| ref_cross_entropy(v, &targets, vocab), &zd).iter().map(|g| g * scale as f64).collect();
        close("d_logits", &dz, &g, GRAD_TOL)?;
    }

    #[test]
    fn embedding_gathers_and_scatters(vocab in 1usize..10, dim in 1usize..6, toks in prop::collection::vec(0u32..100, 1..8)) {
        let toks: Vec<u32> = toks.iter().map(|t| t % vocab as u32).collect();
        let table: Vec<f32> = (0..vocab * dim).map(|i| i as f32 * 0.5 - 3.0).collect();
        let mut h = vec![f32::NAN; toks.len() * dim];
        embedding_forward(vocab, dim, &table, &toks, &mut h).unwrap();
        let dh: Vec<f32> = (0..h.len()).map(|i| (i % 7) as f32 - 3.0).collect();
        let mut dt = vec![0.0f32; table.len()];
        embedding_backward(vocab, dim, &toks, &dh, &mut dt).unwrap();
        let mut want = vec![0.0f32; table.len()];
        for (i, &t) in toks.iter().enumerate() {
            prop_assert_eq!(&h[i * dim..(i + 1) * dim], &table[t as usize * dim..(t as usize + 1) * dim]);
            for j in 0..dim { want[t as usize * dim + j] += dh[i * dim + j]; }
        }
        prop_assert_eq!(dt, want);
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let mut y = [0.0f32; 2];
    assert!(linear_matvec(LinearShape::new(1, 3, 2), &[1.0; 2], &[0.0f32; 6], &mut y).is_err());
    assert!(linear_matvec(
        LinearShape::new(2, 3, 2),
        &[1.0; 6],
        &[0.0f32; 6],
        &mut [0.0; 4]
    )
    .is_err());
    assert!(embedding_forward(2, 1, &[0.0f32; 2], &[5], &mut [0.0]).is_err());
    assert!(rope_forward(1, 3, 0, 10000.0, &mut [0.0; 3]).is_err());
    assert!(rms_norm_forward(0, 1e-5, &[], &[0.0f32; 0], &mut []).is_err());
    assert!(softmax_cross_entropy(3, &[0.0; 3], &[3], 1.0, None).is_err());
    assert!(argmax(&[]).is_err());
    assert_eq!(argmax(&[1.0, f32::NAN, 3.0, 3.0]).unwrap(), 2);
}
