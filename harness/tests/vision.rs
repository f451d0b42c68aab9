//! The vision kernels against the exact oracle (`tessera_reference::vision`) within their
//! documented bounds (`tessera_harness::tolerance::{conv2d_bound, group_norm_bound}`,
//! docs/numerics.md), on every backend the machine has, with `f32` and `bf16` weights;
//! [`every_backend_runs_the_vision_kernels`] fails if a backend this CPU supports (by an
//! independent probe) or one named in `TESSERA_REQUIRE_BACKENDS` did not run them.

mod backend_probe;

use backend_probe::{probed_backends, required_backends};
use proptest::prelude::*;
use tessera_harness::tolerance::{conv2d_bound, group_norm_bound, F32_UNIT_ROUNDOFF};
use tessera_kernels::simd::{available_backends, Backend};
use tessera_kernels::vision::{conv2d_scratch_len, conv2d_with, group_norm_with};
use tessera_kernels::vision::{Conv2dShape, GroupNormShape};
use tessera_kernels::{bf16, Element};
use tessera_reference::vision::{conv2d as ref_conv2d, group_norm as ref_group_norm, ConvShape};

/// A conv shape: kernel 1 or 3, stride 1 or 2, padding 0 or 1 (the filter fits the padded input).
fn conv_shapes() -> impl Strategy<Value = Conv2dShape> {
    (
        1usize..3,
        1usize..9,
        1usize..9,
        1usize..21,
        1usize..19,
        prop::bool::ANY,
        1usize..3,
        0usize..2,
    )
        .prop_map(|(batch, h, w, cin, cout, three, stride, pad)| {
            let k = if three { 3 } else { 1 };
            Conv2dShape::new(batch, h.max(k), w.max(k), cin, cout, k)
                .with_stride(stride)
                .with_padding(pad)
        })
}

fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn wide<E: Element>(x: &[E]) -> Vec<f64> {
    x.iter().map(|v| v.to_f64()).collect()
}

/// Conv2d of `shape` on `backend` with weights in `W`, checked against the oracle.
fn check_conv<W: Element>(
    shape: &Conv2dShape,
    backend: Backend,
    seed: u64,
) -> Result<(), TestCaseError> {
    let (nx, nw, ny) = shape.lens().unwrap();
    let x = values(nx, seed, 2.0);
    let w: Vec<W> = values(nw, seed + 1, 0.5)
        .into_iter()
        .map(W::from_f32)
        .collect();
    let bias = if seed.is_multiple_of(2) {
        values(shape.out_channels, seed + 2, 1.0)
    } else {
        Vec::new()
    };
    let mut y = vec![f32::NAN; ny];
    let mut scratch = vec![f32::NAN; conv2d_scratch_len(shape).unwrap()];
    conv2d_with(backend, shape, &x, &w, &bias, &mut y, &mut scratch).unwrap();
    let r = ConvShape {
        batch: shape.batch,
        height: shape.height,
        width: shape.width,
        in_channels: shape.in_channels,
        out_channels: shape.out_channels,
        kernel: shape.kernel,
        stride: shape.stride,
        padding: shape.padding,
    };
    let (xw, ww, bw) = (wide(&x), wide(&w), wide(&bias));
    let want = ref_conv2d(&r, &xw, &ww, &bw);
    let abs = |v: &[f64]| v.iter().map(|a| a.abs()).collect::<Vec<_>>();
    let magnitude = ref_conv2d(&r, &abs(&xw), &abs(&ww), &abs(&bw));
    let patch = shape.patch_len().unwrap();
    for (i, ((&g, &t), &m)) in y.iter().zip(&want).zip(&magnitude).enumerate() {
        let bound = conv2d_bound(patch, m);
        prop_assert!(
            (g as f64 - t).abs() <= bound,
            "{shape:?} {} on {}: y[{i}] = {g}, exact {t}, bound {bound:e}",
            W::NAME,
            backend.name()
        );
    }
    Ok(())
}

/// Group norm on `backend`, statistics in `f32`, gains in `W`, checked against the oracle.
fn check_group_norm<W: Element>(
    shape: &GroupNormShape,
    backend: Backend,
    seed: u64,
    offset: f32,
) -> Result<(), TestCaseError> {
    let n = shape.validate().unwrap();
    let x: Vec<f32> = values(n, seed, 3.0).iter().map(|v| v + offset).collect();
    let gamma: Vec<W> = values(shape.channels, seed + 1, 2.0)
        .into_iter()
        .map(W::from_f32)
        .collect();
    let beta: Vec<W> = values(shape.channels, seed + 2, 1.0)
        .into_iter()
        .map(W::from_f32)
        .collect();
    let mut y = vec![f32::NAN; n];
    group_norm_with::<W, f32>(backend, shape, &x, &gamma, &beta, &mut y).unwrap();
    let (c, g, p) = (shape.channels, shape.groups, shape.pixels);
    let eps = shape.eps as f64;
    let xw = wide(&x);
    let want = ref_group_norm(shape.batch, p, c, g, eps, &xw, &wide(&gamma), &wide(&beta));
    let x_hat = ref_group_norm(shape.batch, p, c, g, eps, &xw, &vec![1.0; c], &vec![0.0; c]);
    let cpg = c / g;
    let m = cpg + p;
    for (i, (&got, &t)) in y.iter().zip(&want).enumerate() {
        let (b, ch) = (i / (p * c), i % c);
        let grp = ch / cpg;
        // The group's largest |x| over its exact sigma, from the normalised values:
        // |x| <= |mu| + sigma·|x̂|, and sigma = |x − mu| / |x̂| for any member with x̂ != 0.
        let members = (0..p).flat_map(|q| (0..cpg).map(move |j| (b * p + q) * c + grp * cpg + j));
        let (mut max_abs, mut sigma) = (0.0f64, None);
        let mut mean = 0.0;
        for k in members.clone() {
            mean += xw[k];
        }
        mean /= (p * cpg) as f64;
        for k in members {
            max_abs = max_abs.max(xw[k].abs());
            if x_hat[k].abs() > 0.5 {
                sigma = Some(((xw[k] - mean) / x_hat[k]).abs());
            }
        }
        let max_over_sigma = sigma.map_or(f64::INFINITY, |s| max_abs / s);
        let bound = group_norm_bound(
            m,
            F32_UNIT_ROUNDOFF,
            max_over_sigma,
            x_hat[i],
            gamma[ch].to_f64(),
            beta[ch].to_f64(),
        );
        prop_assert!(
            (got as f64 - t).abs() <= bound,
            "{shape:?} {} on {}: y[{i}] = {got}, exact {t}, bound {bound:e}",
            W::NAME,
            backend.name()
        );
    }
    Ok(())
}

fn norm_shapes() -> impl Strategy<Value = GroupNormShape> {
    (1usize..3, 1usize..40, 1usize..9, 1usize..5).prop_map(|(batch, pixels, cpg, groups)| {
        GroupNormShape::new(batch, pixels, cpg * groups, groups)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn conv2d_is_within_its_bound_on_every_backend(shape in conv_shapes(), seed in 0u64..1000) {
        for backend in available_backends() {
            check_conv::<f32>(&shape, backend, seed)?;
            check_conv::<bf16>(&shape, backend, seed)?;
        }
    }

    #[test]
    fn group_norm_is_within_its_bound_on_every_backend(
        shape in norm_shapes(),
        seed in 0u64..1000,
        offset in prop::sample::select(vec![0.0f32, 10.0, -300.0]),
    ) {
        for backend in available_backends() {
            check_group_norm::<f32>(&shape, backend, seed, offset)?;
            check_group_norm::<bf16>(&shape, backend, seed, offset)?;
        }
    }
}

/// Every backend gives the same group norm bits (plain loops), and the SIMD backends the same
/// convolution bits (one fused chain per output in the canonical order).
fn check_all() -> Vec<Backend> {
    let conv = Conv2dShape::new(2, 7, 5, 19, 11, 3).with_stride(2);
    let norm = GroupNormShape::new(2, 13, 12, 4);
    let (nx, nw, ny) = conv.lens().unwrap();
    let (x, w) = (values(nx, 7, 1.0), values(nw, 8, 1.0));
    let nn = norm.validate().unwrap();
    let xn = values(nn, 9, 2.0);
    let (g, b) = (values(12, 10, 1.0), values(12, 11, 1.0));
    let mut ran = Vec::new();
    let mut first_simd: Option<Vec<u32>> = None;
    let mut generic_norm: Option<Vec<u32>> = None;
    for backend in available_backends() {
        let mut y = vec![f32::NAN; ny];
        let mut s = vec![0.0; conv2d_scratch_len(&conv).unwrap()];
        conv2d_with(backend, &conv, &x, &w, &[], &mut y, &mut s).unwrap();
        let bits: Vec<u32> = y.iter().map(|v| v.to_bits()).collect();
        if backend != Backend::Generic {
            match &first_simd {
                None => first_simd = Some(bits),
                Some(want) => assert_eq!(&bits, want, "conv2d on {}", backend.name()),
            }
        }
        let mut yn = vec![f32::NAN; nn];
        group_norm_with::<f32, f32>(backend, &norm, &xn, &g, &b, &mut yn).unwrap();
        let bits: Vec<u32> = yn.iter().map(|v| v.to_bits()).collect();
        match &generic_norm {
            None => generic_norm = Some(bits),
            Some(want) => assert_eq!(&bits, want, "group norm on {}", backend.name()),
        }
        ran.push(backend);
    }
    ran
}

#[test]
fn every_backend_runs_the_vision_kernels() {
    let ran = check_all();
    for b in probed_backends() {
        assert!(
            ran.contains(&b),
            "`{}` is supported but was not run",
            b.name()
        );
    }
    for b in required_backends() {
        assert!(
            ran.contains(&b),
            "TESSERA_REQUIRE_BACKENDS requires `{}`, which did not run",
            b.name()
        );
    }
}

#[test]
fn unavailable_backends_are_refused() {
    let conv = Conv2dShape::new(1, 3, 3, 2, 2, 3);
    for backend in Backend::ALL.into_iter().filter(|b| !b.is_available()) {
        let mut y = vec![0.0f32; 18];
        let mut s = vec![0.0; conv2d_scratch_len(&conv).unwrap()];
        let r = conv2d_with(
            backend,
            &conv,
            &[0.0; 18],
            &[0.0f32; 36],
            &[],
            &mut y,
            &mut s,
        );
        assert!(r.is_err(), "{}", backend.name());
    }
}

#[test]
fn f64_statistics_beat_f32_on_offset_groups() {
    // The same algorithm with f64 statistics: the accumulator term of the bound shrinks to
    // f64's, leaving the f32 arithmetic of the output.
    let shape = GroupNormShape::new(1, 64, 8, 2);
    let x: Vec<f32> = values(512, 3, 1.0).iter().map(|v| v + 1000.0).collect();
    let (g, b) = (vec![1.0f32; 8], vec![0.0f32; 8]);
    let mut y32 = vec![0.0; 512];
    let mut y64 = vec![0.0; 512];
    group_norm_with::<f32, f32>(Backend::Generic, &shape, &x, &g, &b, &mut y32).unwrap();
    group_norm_with::<f32, f64>(Backend::Generic, &shape, &x, &g, &b, &mut y64).unwrap();
    let want = ref_group_norm(1, 64, 8, 2, 1e-5, &wide(&x), &[1.0; 8], &[0.0; 8]);
    let err = |y: &[f32]| {
        y.iter()
            .zip(&want)
            .map(|(&a, &b)| (a as f64 - b).abs())
            .fold(0.0, f64::max)
    };
    // An offset of 1000 over values of spread 1: the f32 mean loses ~1000·u·m relative to sigma,
    // f64 statistics do not, so f64 must be far closer.
    assert!(
        err(&y64) * 10.0 < err(&y32),
        "{} vs {}",
        err(&y64),
        err(&y32)
    );
}
