//! The `nn` blocks: linear (matvec, matmul on every backend, both backward passes), RMSNorm
//! forward/backward on every backend, RoPE, SwiGLU (and the SwiGLU MLP), cross-entropy with its
//! gradient, argmax, embedding forward/backward; `f32` and `bf16` weights. Asserts:
//! - `Err` leaves every output untouched (outputs pre-filled with a sentinel, compared bitwise);
//! - for finite inputs of moderate range, results within a first-order rounding bound of an `f64`
//!   loop written here (`n·u·Σ|terms|` for sums of `n` terms, `u = 2^-24`, with the factor the
//!   function's own formula adds; each bound is next to its check);
//! - one row alone equals that row in the batch bit for bit (linear matvec vs matmul, RMSNorm);
//! - gradient functions that *add* (weight, gain and table gradients) add onto what is there.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tessera_fuzz::{
    assert_untouched, backend, bits, ref_linear, ref_linear_abs, sentinel, wide, Values,
};
use tessera_kernels::nn::*;
use tessera_kernels::simd::Backend;
use tessera_kernels::{bf16, Element};

const U: f64 = 1.0 / 16_777_216.0;
/// Values below this are subnormal-range noise: every absolute bound gets it as a floor.
const TINY: f64 = 1e-30;
/// The smallest positive subnormal f32: the absolute error of a result that underflows.
const ETA: f64 = 1.401_298_464_324_817e-45;

#[derive(Arbitrary, Debug)]
enum Op {
    Linear {
        rows: u8,
        n_in: u8,
        n_out: u8,
    },
    Norm {
        rows: u8,
        dim: u8,
        eps: u8,
    },
    Rope {
        tokens: u8,
        heads: u8,
        half: u8,
        pos: u16,
        theta: u8,
    },
    Swiglu {
        n: u8,
    },
    Mlp {
        rows: u8,
        d: u8,
        f: u8,
    },
    Loss {
        rows: u8,
        vocab: u8,
        scale: u8,
    },
    Embedding {
        vocab: u8,
        dim: u8,
        n: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    op: Op,
    bf16_weights: bool,
    backend: u8,
    /// One slice (by index) one element short: the call must fail and write nothing.
    short: Option<u8>,
    values: Values,
    words: Vec<u32>,
}

struct Draw<'a> {
    values: Values,
    words: &'a [u32],
    salt: u32,
}

impl Draw<'_> {
    fn f32s(&mut self, n: usize) -> Vec<f32> {
        self.salt += 7;
        let w: Vec<u32> = self
            .words
            .iter()
            .map(|x| x.rotate_left(self.salt))
            .collect();
        self.values.f32s(&w, n)
    }
}

/// Whether the bounds below apply: finite inputs whose products and sums stay far from overflow.
fn checked(v: Values) -> bool {
    matches!(v, Values::Unit | Values::Wide)
}

/// `x` with its last element removed when `short == Some(me)`.
fn cut<T>(x: &mut Vec<T>, short: Option<u8>, me: u8) {
    if short.map(|s| s % 8) == Some(me) {
        x.pop();
    }
}

fn weights<W: Element>(w: &[f32]) -> Vec<W> {
    w.iter().map(|&x| W::from_f32(x)).collect()
}

/// Runs `f` on outputs pre-filled with the sentinel; on `Err` asserts nothing was written.
fn guarded<const N: usize>(
    what: &str,
    outs: [&mut Vec<f32>; N],
    f: impl FnOnce([&mut [f32]; N]) -> tessera_kernels::Result<()>,
) -> bool {
    let before: Vec<Vec<u64>> = outs.iter().map(|o| bits(o)).collect();
    let mut outs = outs;
    let slices: [&mut [f32]; N] = outs.each_mut().map(|v| &mut v[..]);
    match f(slices) {
        Ok(()) => true,
        Err(e) => {
            for (b, o) in before.iter().zip(outs.iter_mut()) {
                assert_untouched(what, b, o, &e);
            }
            false
        }
    }
}

fn linear<W: Element>(inp: &Input, (rows, n_in, n_out): (usize, usize, usize), d: &mut Draw) {
    let shape = LinearShape::new(rows, n_in, n_out);
    let (mut x, mut w, mut dy) = (
        d.f32s(rows * n_in),
        d.f32s(n_out * n_in),
        d.f32s(rows * n_out),
    );
    cut(&mut x, inp.short, 0);
    cut(&mut w, inp.short, 1);
    let dy_was_empty = dy.is_empty();
    cut(&mut dy, inp.short, 2);
    let w: Vec<W> = weights(&w);
    let wd: Vec<f64> = w.iter().map(|v| v.to_f64()).collect();
    let xd = wide(&x);
    let mut y = vec![sentinel(); rows * n_out];
    cut(&mut y, inp.short, 3);
    let be = backend(inp.backend);
    if !guarded("y", [&mut y], |[y]| {
        linear_matmul_with(be, shape, &x, &w, y)
    }) {
        return;
    }
    if checked(inp.values) {
        // A dot product of n terms: |error| <= n·u·Σ|x_i w_i| (Higham §3.1, FMA or not).
        let (want, mag) = (
            ref_linear(&xd, &wd, rows, n_in, n_out),
            ref_linear_abs(&xd, &wd, rows, n_in, n_out),
        );
        for (i, ((&g, &e), &m)) in y.iter().zip(&want).zip(&mag).enumerate() {
            let tol = (n_in + 2) as f64 * U * m + TINY;
            assert!(
                (g as f64 - e).abs() <= tol,
                "linear y[{i}] {g:e} vs {e:e} (tol {tol:e}) on {be:?}"
            );
        }
    }
    // Every row of the product is the matrix-vector product of that row, bit for bit.
    let mut auto = vec![sentinel(); y.len()];
    linear_matmul_with(Backend::Auto, shape, &x, &w, &mut auto)
        .expect("Auto accepts what any backend accepts");
    for r in 0..rows {
        let mut yr = vec![sentinel(); n_out];
        linear_matvec(
            LinearShape::new(1, n_in, n_out),
            &x[r * n_in..][..n_in],
            &w,
            &mut yr,
        )
        .unwrap();
        // Bit for bit; a NaN (from NaN inputs) may differ in payload between the two.
        tessera_fuzz::assert_same_up_to_nan(
            &format!("row {r} alone, shape {shape:?}, W {}", W::NAME),
            &yr,
            &auto[r * n_out..][..n_out],
        );
    }
    let mut dx = vec![sentinel(); x.len()];
    let ok = guarded("dx", [&mut dx], |[dx]| {
        linear_backward_input(shape, &dy, &w, dx)
    });
    let start = d.f32s(w.len());
    let mut dw = start.clone();
    let ok_w = guarded("dw", [&mut dw], |[dw]| {
        linear_backward_weight(shape, &x, &dy, dw)
    });
    if !checked(inp.values) {
        return;
    }
    // Only a short dy (which the forward does not read) may make the backward refuse.
    let dy_short = inp.short.map(|s| s % 8) == Some(2) && !dy_was_empty;
    assert_eq!(
        ok && ok_w,
        !dy_short,
        "backward vs the lengths the forward accepted"
    );
    if !(ok && ok_w) {
        // Refused (a short dy): `guarded` checked that nothing was written.
        return;
    }
    let dyd = wide(&dy);
    for r in 0..rows {
        for i in 0..n_in {
            let terms = (0..n_out).map(|o| dyd[r * n_out + o] * wd[o * n_in + i]);
            let (e, m) = terms.fold((0.0, 0.0), |(s, a), t| (s + t, a + t.abs()));
            let g = dx[r * n_in + i] as f64;
            let tol = (n_out + 2) as f64 * U * m + TINY;
            assert!(
                (g - e).abs() <= tol,
                "dx[{r},{i}] {g:e} vs {e:e} shape {shape:?} ok {ok}"
            );
        }
    }
    for o in 0..n_out {
        for i in 0..n_in {
            let terms = (0..rows).map(|r| dyd[r * n_out + o] * xd[r * n_in + i]);
            let s0 = start[o * n_in + i] as f64;
            let (e, m) = terms.fold((s0, s0.abs()), |(s, a), t| (s + t, a + t.abs()));
            let g = dw[o * n_in + i] as f64;
            let tol = (rows + 3) as f64 * U * m + TINY;
            assert!(
                (g - e).abs() <= tol,
                "dw[{o},{i}] {g:e} vs {e:e} (adds onto {s0:e})"
            );
        }
    }
}

fn norm<W: Element>(inp: &Input, (rows, dim, eps): (usize, usize, f32), d: &mut Draw) {
    let (mut x, g, mut dy) = (d.f32s(rows * dim), d.f32s(dim), d.f32s(rows * dim));
    cut(&mut x, inp.short, 0);
    cut(&mut dy, inp.short, 2);
    let g: Vec<W> = weights(&g);
    let be = backend(inp.backend);
    let mut y = vec![sentinel(); rows * dim];
    cut(&mut y, inp.short, 3);
    if !guarded("rms y", [&mut y], |[y]| {
        rms_norm_forward_with(be, dim, eps, &x, &g, y)
    }) {
        return;
    }
    let start = d.f32s(dim);
    let (mut dx, mut dg) = (vec![sentinel(); x.len()], start.clone());
    let ok = guarded("rms dx, dg", [&mut dx, &mut dg], |[dx, dg]| {
        rms_norm_backward_with(be, dim, eps, &x, &g, &dy, dx, dg)
    });
    // Row r alone gives the bits it has in the batch.
    for r in 0..rows {
        let mut yr = vec![sentinel(); dim];
        rms_norm_forward_with(be, dim, eps, &x[r * dim..][..dim], &g, &mut yr).unwrap();
        assert_eq!(
            bits(&yr),
            bits(&y[r * dim..][..dim]),
            "RMSNorm row {r} alone differs"
        );
    }
    if !checked(inp.values) || !ok {
        return;
    }
    let (gd, dyd) = (g.iter().map(|v| v.to_f64()).collect::<Vec<_>>(), wide(&dy));
    // One row: r = 1/sqrt(Σx²/dim + eps) has relative error about (dim/2 + 4)·u; each output
    // x·r·g adds two roundings. The bound takes 4·(dim + 8)·u relative to the terms' sizes.
    let tol_rel = 4.0 * (dim + 8) as f64 * U;
    let mut dg_want: Vec<f64> = wide(&start);
    let mut dg_mag: Vec<f64> = dg_want.iter().map(|v| v.abs()).collect();
    for r in 0..rows {
        let xr = wide(&x[r * dim..][..dim]);
        let ms = xr.iter().map(|v| v * v).sum::<f64>() / dim as f64;
        let rr = 1.0 / (ms + eps as f64).sqrt();
        let gdx: f64 = (0..dim).map(|i| gd[i] * dyd[r * dim + i] * xr[i]).sum();
        let gdx_abs: f64 = (0..dim)
            .map(|i| (gd[i] * dyd[r * dim + i] * xr[i]).abs())
            .sum();
        for i in 0..dim {
            let want = xr[i] * rr * gd[i];
            let got = y[r * dim + i] as f64;
            // eps = 0 and an all-zero row: 0 · (1/0), NaN in the kernel as in f64.
            assert!(
                (got.is_nan() && want.is_nan())
                    || (got - want).abs() <= tol_rel * want.abs() + TINY,
                "rms y[{r},{i}] {got:e} vs {want:e}"
            );
            let dyi = dyd[r * dim + i];
            let want = rr * (gd[i] * dyi - xr[i] * rr * rr * gdx / dim as f64);
            let mag = rr * ((gd[i] * dyi).abs() + (xr[i] * rr * rr * gdx_abs / dim as f64).abs());
            let got = dx[r * dim + i] as f64;
            assert!(
                (got.is_nan() && want.is_nan()) || (got - want).abs() <= tol_rel * mag + TINY,
                "rms dx[{r},{i}] {got:e} vs {want:e}"
            );
            dg_want[i] += dyi * xr[i] * rr;
            dg_mag[i] += (dyi * xr[i] * rr).abs();
        }
    }
    for i in 0..dim {
        let got = dg[i] as f64;
        let tol = (tol_rel + (rows + 2) as f64 * U) * dg_mag[i] + TINY;
        assert!(
            (got.is_nan() && dg_want[i].is_nan()) || (got - dg_want[i]).abs() <= tol,
            "rms dg[{i}] {got:e} vs {:e}",
            dg_want[i]
        );
    }
}

fn rope(
    inp: &Input,
    (tokens, heads, hd, pos, theta): (usize, usize, usize, usize, f32),
    d: &mut Draw,
) {
    let mut x = d.f32s(tokens * heads * hd);
    cut(&mut x, inp.short, 0);
    let x0 = x.clone();
    let before = bits(&x);
    if let Err(e) = rope_forward(heads, hd, pos, theta, &mut x) {
        assert_untouched("rope x", &before, &x, &e);
        return;
    }
    let mut back = x.clone();
    rope_backward(heads, hd, pos, theta, &mut back).expect("backward accepts what forward did");
    if !checked(inp.values) || !(1.0..=1e6).contains(&theta) {
        return;
    }
    // Rotations by angles (pos + t)·theta^(-2i/hd) computed in f32: the angle's relative error
    // (a few u) times its size (below ~1e3 here) dominates; 1e-4 of the pair's norm covers it.
    let half = hd / 2;
    for (t, (tok, tok0)) in x.chunks(heads * hd).zip(x0.chunks(heads * hd)).enumerate() {
        for (head, head0) in tok.chunks(hd).zip(tok0.chunks(hd)) {
            for i in 0..half {
                let angle = (pos + t) as f64 * (theta as f64).powf(-2.0 * i as f64 / hd as f64);
                let (a, b) = (head0[i] as f64, head0[i + half] as f64);
                let want = [
                    a * angle.cos() - b * angle.sin(),
                    a * angle.sin() + b * angle.cos(),
                ];
                let norm = a.abs() + b.abs();
                for (got, want) in [head[i] as f64, head[i + half] as f64]
                    .into_iter()
                    .zip(want)
                {
                    let tol = 1e-4 * norm * (1.0 + angle.abs() / 1e3) + TINY;
                    assert!(
                        (got - want).abs() <= tol,
                        "rope t{t} i{i}: {got:e} vs {want:e}"
                    );
                }
            }
        }
    }
    // The backward pass is the inverse rotation: it undoes the forward to rounding (two
    // rotations of the same accuracy as above).
    let scale = x0.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
    for (i, (&b, &o)) in back.iter().zip(&x0).enumerate() {
        let tol = 4e-4 * scale + TINY;
        assert!(
            (b as f64 - o as f64).abs() <= tol,
            "rope backward of forward [{i}]: {b:e} vs {o:e}"
        );
    }
}

fn swiglu(inp: &Input, n: usize, d: &mut Draw) {
    let (mut gate, mut up, mut dh) = (d.f32s(n), d.f32s(n), d.f32s(n));
    cut(&mut gate, inp.short, 0);
    cut(&mut up, inp.short, 1);
    cut(&mut dh, inp.short, 2);
    let mut h = vec![sentinel(); n];
    let ok = guarded("swiglu h", [&mut h], |[h]| swiglu_forward(&gate, &up, h));
    let (mut dg, mut du) = (vec![sentinel(); n], vec![sentinel(); n]);
    let ok_b = guarded("swiglu grads", [&mut dg, &mut du], |[dg, du]| {
        swiglu_backward(&gate, &up, &dh, dg, du)
    });
    if !checked(inp.values) || !ok || !ok_b {
        return;
    }
    // silu(g)·u = g·u/(1 + e^-g): exp within a few ulps, three roundings: 32·u relative to
    // |g·u|·σ(g) (and to |dh·u|·(1 + |g|) for the derivative, whose terms partly cancel).
    for i in 0..n {
        let (g, u, e) = (gate[i] as f64, up[i] as f64, dh[i] as f64);
        let s = 1.0 / (1.0 + (-g).exp());
        let want = g * s * u;
        assert!(
            (h[i] as f64 - want).abs() <= 32.0 * U * want.abs() + (g * u).abs() * ETA + TINY,
            "swiglu h[{i}] {} vs {want:e}",
            h[i]
        );
        let want_g = e * u * s * (1.0 + g * (1.0 - s));
        let mag = (e * u).abs() * s * (1.0 + g.abs());
        // σ(g) below f32's subnormal range (g < -103) is 0 in f32: an absolute error of at most
        // the smallest subnormal η in σ, times the other factors.
        let underflow = (e * u).abs() * (1.0 + g.abs()) * ETA;
        assert!(
            (dg[i] as f64 - want_g).abs() <= 64.0 * U * mag + underflow + TINY,
            "swiglu d_gate[{i}] {} vs {want_g:e}",
            dg[i]
        );
        let want_u = e * g * s;
        assert!(
            (du[i] as f64 - want_u).abs() <= 32.0 * U * want_u.abs() + (e * g).abs() * ETA + TINY,
            "swiglu d_up[{i}] {} vs {want_u:e}",
            du[i]
        );
    }
}

fn mlp<W: Element>(inp: &Input, (rows, dm, f): (usize, usize, usize), d: &mut Draw) {
    let shape = MlpShape::new(rows, dm, f);
    let (mut x, wg, wu, wdn) = (
        d.f32s(rows * dm),
        d.f32s(f * dm),
        d.f32s(f * dm),
        d.f32s(dm * f),
    );
    cut(&mut x, inp.short, 0);
    let (wg, wu, wdn): (Vec<W>, Vec<W>, Vec<W>) = (weights(&wg), weights(&wu), weights(&wdn));
    let w = MlpWeights {
        gate: &wg[..],
        up: &wu[..],
        down: &wdn[..],
    };
    let mut y = vec![sentinel(); rows * dm];
    let mut scratch = vec![0.0; swiglu_mlp_scratch_len(shape).unwrap_or(0)];
    if !guarded("mlp y", [&mut y], |[y]| {
        swiglu_mlp_forward(shape, &w, &x, y, &mut scratch)
    }) {
        return;
    }
    if inp.values == Values::Unit {
        assert!(
            y.iter().all(|v| v.is_finite()),
            "MLP of values in [-2, 2] is not finite: {y:?}"
        );
    }
}

fn loss(inp: &Input, (rows, vocab, scale): (usize, usize, f32), d: &mut Draw) {
    let mut z = d.f32s(rows * vocab);
    cut(&mut z, inp.short, 0);
    let mut targets = tessera_fuzz::tokens(d.words, rows, vocab);
    if let Some(s) = inp.short.filter(|s| s % 8 == 1 && !targets.is_empty()) {
        let at = s as usize / 8 % targets.len();
        targets[at] = vocab as u32; // out of range, in any row
    }
    let mut dz = vec![sentinel(); z.len()];
    let before = bits(&dz);
    let l = match softmax_cross_entropy(vocab, &z, &targets, scale, Some(&mut dz)) {
        Ok(l) => l,
        Err(e) => return assert_untouched("d_logits", &before, &dz, &e),
    };
    if let Ok(i) = argmax(&z) {
        let m = z
            .iter()
            .copied()
            .filter(|v| !v.is_nan())
            .fold(f32::NEG_INFINITY, f32::max);
        let first = z.iter().position(|&v| v == m);
        assert!(
            first.is_none() || first == Some(i as usize),
            "argmax {i} of {z:?}"
        );
    }
    // A NaN or infinite scale is accepted and scales the gradient (garbage in, garbage out).
    if !checked(inp.values) || !scale.is_finite() {
        return;
    }
    let zd = wide(&z);
    let mut want = 0.0;
    let mut tol = 0.0;
    for (r, row) in zd.chunks(vocab).enumerate() {
        let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|v| (v - m).exp()).sum();
        let t = targets[r] as usize;
        want += m + sum.ln() - row[t];
        // f32 logsumexp of logits up to |m|: n terms, a log, and the differences z - m.
        let range = row.iter().map(|v| (v - m).abs()).fold(0.0, f64::max);
        tol += (vocab + 8) as f64 * U * (1.0 + m.abs() + range + row[t].abs());
        for (j, &v) in row.iter().enumerate() {
            let p = (v - m).exp() / sum;
            let g = scale as f64 * (p - if j == t { 1.0 } else { 0.0 });
            let got = dz[r * vocab + j] as f64;
            let tol = (scale as f64).abs() * (vocab + 8) as f64 * U * (1.0 + range) + TINY;
            assert!((got - g).abs() <= tol, "d_logits[{r},{j}] {got:e} vs {g:e}");
        }
    }
    assert!(
        (l - want).abs() <= tol + TINY,
        "loss {l:e} vs {want:e} (tol {tol:e})"
    );
}

fn embedding<W: Element>(inp: &Input, (vocab, dim, n): (usize, usize, usize), d: &mut Draw) {
    let mut table = d.f32s(vocab * dim);
    cut(&mut table, inp.short, 0);
    let table: Vec<W> = weights(&table);
    let mut toks = tessera_fuzz::tokens(d.words, n, vocab);
    if let Some(s) = inp.short.filter(|s| s % 8 == 1 && !toks.is_empty()) {
        let at = s as usize / 8 % toks.len();
        toks[at] = vocab as u32; // out of range, at any position
    }
    let mut h = vec![sentinel(); n * dim];
    let ok = guarded("hidden", [&mut h], |[h]| {
        embedding_forward(vocab, dim, &table, &toks, h)
    });
    let dh = d.f32s(n * dim);
    let start = d.f32s(vocab * dim);
    let mut dt = start.clone();
    let ok_b = guarded("d_table", [&mut dt], |[dt]| {
        embedding_backward(vocab, dim, &toks, &dh, dt)
    });
    if !ok || !ok_b {
        return;
    }
    let mut want = wide(&start);
    let mut mag: Vec<f64> = want.iter().map(|v| v.abs()).collect();
    for (i, &t) in toks.iter().enumerate() {
        let row = t as usize * dim;
        assert_eq!(
            bits(&h[i * dim..][..dim]),
            bits(&table[row..][..dim]),
            "embedding row {i}"
        );
        for j in 0..dim {
            want[row + j] += dh[i * dim + j] as f64;
            mag[row + j] += (dh[i * dim + j] as f64).abs();
        }
    }
    if checked(inp.values) {
        for (i, ((&g, &w), &m)) in dt.iter().zip(&want).zip(&mag).enumerate() {
            let tol = (n + 1) as f64 * U * m + TINY;
            assert!((g as f64 - w).abs() <= tol, "d_table[{i}] {g:e} vs {w:e}");
        }
    }
}

fn run<W: Element>(inp: &Input) {
    let d = &mut Draw {
        values: inp.values,
        words: &inp.words,
        salt: 0,
    };
    match inp.op {
        Op::Linear { rows, n_in, n_out } => linear::<W>(
            inp,
            (rows as usize % 5, n_in as usize % 70, n_out as usize % 20),
            d,
        ),
        Op::Norm { rows, dim, eps } => {
            let eps = [1e-5, 1e-6, 0.0, -1.0, f32::NAN, 1.0][eps as usize % 6];
            norm::<W>(inp, (rows as usize % 5, dim as usize % 70, eps), d)
        }
        Op::Rope {
            tokens,
            heads,
            half,
            pos,
            theta,
        } => {
            let theta = [10000.0, 500000.0, 2.0, 1.0, 0.0, f32::INFINITY][theta as usize % 6];
            let hd = 2 * (half as usize % 20) + (half == 255) as usize;
            rope(
                inp,
                (
                    tokens as usize % 5,
                    heads as usize % 4,
                    hd,
                    pos as usize % 2048,
                    theta,
                ),
                d,
            )
        }
        Op::Swiglu { n } => swiglu(inp, n as usize % 70, d),
        Op::Mlp { rows, d: dm, f } => mlp::<W>(
            inp,
            (rows as usize % 4, dm as usize % 17, f as usize % 20),
            d,
        ),
        Op::Loss { rows, vocab, scale } => {
            let scale = [1.0, 0.5, 1.0 / 3.0, 0.0, -1.0, f32::NAN][scale as usize % 6];
            loss(inp, (rows as usize % 4, vocab as usize % 40, scale), d)
        }
        Op::Embedding { vocab, dim, n } => embedding::<W>(
            inp,
            (vocab as usize % 12, dim as usize % 20, n as usize % 10),
            d,
        ),
    }
}

fuzz_target!(|input: Input| {
    if input.bf16_weights {
        run::<bf16>(&input)
    } else {
        run::<f32>(&input)
    }
});
