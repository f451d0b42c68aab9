//! The kernels' decoder layer for training: its forward gives the inference forward's bits, its
//! backward matches central finite differences of the forward, and bad lengths are errors.
//!
//! Tolerance (one place): `FD_TOL`. The loss `L = sum(probe · layer(x))` is an `f32` sum of a few
//! hundred O(1) products, so its rounding noise is ~1e-4 absolute; a central difference with
//! step `FD_STEP = 1e-2` along a unit direction turns that into ~5e-3 absolute on directional
//! derivatives of 20 to 200 (the gradient norms per tensor here), under 3e-4 relative. The
//! O(h²) truncation error dominates: up to ~1e-3 relative through the softmax (the `wq`, `wk`
//! directions). We allow 1% relative.

use tessera_kernels::attention::FlashTiles;
use tessera_kernels::nn::{
    decoder_layer_activations_len, decoder_layer_backward, decoder_layer_backward_scratch_len,
    decoder_layer_forward, decoder_layer_train_forward, decoder_layer_train_scratch_len,
    layer_scratch_len, ActivationRounding, AttentionKind, LayerGradients, ModelConfig,
    ModelWeights, TensorId, TensorKind,
};
use tessera_kernels::{bf16, Element, Error};

const FD_TOL: f64 = 1e-2;

/// The loss with one tensor (or the input) moved by `h` along the direction `u`.
type Shifted<'a> = Box<dyn Fn(f64, &[f32]) -> f64 + 'a>;
const FD_STEP: f64 = 1e-2;

fn config() -> ModelConfig {
    ModelConfig {
        vocab: 11,
        dim: 16,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        ffn_hidden: 24,
        max_seq: 9,
        rope_theta: 10000.0,
        norm_eps: 1e-5,
    }
}

fn values(n: usize, seed: u32, amplitude: f32) -> Vec<f32> {
    (0..n)
        .map(|i| amplitude * ((i as f32 * 0.7311 + seed as f32 * 1.37).sin()))
        .collect()
}

/// Weights with norm gains near 1 and matrices of amplitude `0.4`.
fn params(c: &ModelConfig, seed: u32) -> Vec<f32> {
    let mut p = values(c.param_count().unwrap(), seed, 0.4);
    for layer in 0..c.layers {
        for kind in [TensorKind::AttnNorm, TensorKind::MlpNorm] {
            let r = c.tensor_range(TensorId { kind, layer }).unwrap();
            p[r].iter_mut().for_each(|g| *g += 1.0);
        }
    }
    p
}

const ATTENTIONS: [AttentionKind; 2] = [
    AttentionKind::Baseline,
    AttentionKind::Flash(FlashTiles {
        block_q: 2,
        block_k: 3,
    }),
];

fn train_forward<W: Element>(
    c: &ModelConfig,
    p: &[W],
    attention: AttentionKind,
    rounding: ActivationRounding,
    x: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let n = x.len() / c.dim;
    let w = ModelWeights::new(*c, p).unwrap();
    let mut out = x.to_vec();
    let mut acts = vec![f32::NAN; decoder_layer_activations_len(c, n).unwrap()];
    let mut scratch = vec![f32::NAN; decoder_layer_train_scratch_len(c, n, attention).unwrap()];
    decoder_layer_train_forward(
        c,
        &w.layer(1).unwrap(),
        attention,
        rounding,
        &mut out,
        &mut acts,
        &mut scratch,
    )
    .unwrap();
    (out, acts)
}

fn same_bits_as_inference<W: Element>(p: &[W]) {
    let c = config();
    let n = 7;
    let x = values(n * c.dim, 3, 1.5);
    for attention in ATTENTIONS {
        let (train, acts) = train_forward(&c, p, attention, ActivationRounding::F32, &x);
        assert!(acts.iter().all(|a| !a.is_nan()), "every activation saved");
        let w = ModelWeights::new(c, p).unwrap();
        let mut infer = x.clone();
        let cache = c.kv_heads * c.max_seq * c.head_dim();
        let (mut kc, mut vc) = (vec![0.0; cache], vec![0.0; cache]);
        let mut scratch = vec![f32::NAN; layer_scratch_len(&c, n, attention).unwrap()];
        decoder_layer_forward(
            &c,
            &w.layer(1).unwrap(),
            attention,
            0,
            &mut infer,
            &mut kc,
            &mut vc,
            &mut scratch,
        )
        .unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_ne!(
            bits(&train),
            bits(&x),
            "{attention:?}: the layer did something"
        );
        assert_eq!(bits(&train), bits(&infer), "{attention:?} {}", W::NAME);

        let (rounded, _) = train_forward(&c, p, attention, ActivationRounding::Bf16, &x);
        assert_ne!(bits(&rounded), bits(&train), "{attention:?}: bf16 rounds");
        assert!(
            rounded.iter().all(|&v| bf16::from_f32(v).to_f32() == v),
            "{attention:?}: bf16 outputs"
        );
    }
}

#[test]
fn training_forward_gives_the_inference_forwards_bits() {
    let p = params(&config(), 1);
    same_bits_as_inference(&p);
    let p16: Vec<bf16> = p.iter().map(|&v| bf16::from_f32(v)).collect();
    same_bits_as_inference(&p16);
}

/// `L = sum(probe · layer(x))` for the layer-1 weights in `p`.
fn loss(c: &ModelConfig, p: &[f32], attention: AttentionKind, x: &[f32], probe: &[f32]) -> f64 {
    let (y, _) = train_forward(c, p, attention, ActivationRounding::F32, x);
    y.iter()
        .zip(probe)
        .map(|(&a, &b)| a as f64 * b as f64)
        .sum()
}

#[test]
fn layer_backward_matches_finite_differences() {
    let c = config();
    let n = 6;
    let p = params(&c, 2);
    let x = values(n * c.dim, 5, 1.5);
    let probe = values(n * c.dim, 8, 1.0);
    let layer1 = |kind| c.tensor_range(TensorId { kind, layer: 1 }).unwrap();
    let kinds: Vec<TensorKind> = (0..c.tensor_count())
        .filter_map(|i| c.tensor_at(i))
        .filter(|id| id.kind.per_layer() && id.layer == 1)
        .map(|id| id.kind)
        .collect();
    assert_eq!(kinds.len(), 9);
    for attention in ATTENTIONS {
        let (_, acts) = train_forward(&c, &p, attention, ActivationRounding::F32, &x);
        let w = ModelWeights::new(c, &p).unwrap();
        // Weight gradients are added: start from 0.25 everywhere and subtract it afterwards.
        let mut grads = vec![0.25f32; p.len()];
        let mut dx = probe.clone();
        let mut scratch = vec![f32::NAN; decoder_layer_backward_scratch_len(&c, n).unwrap()];
        decoder_layer_backward(
            &c,
            &w.layer(1).unwrap(),
            &acts,
            &mut dx,
            &mut LayerGradients::new(&c, &mut grads, 1).unwrap(),
            &mut scratch,
        )
        .unwrap();
        let layer0 = c.tensor_range(TensorId {
            kind: TensorKind::AttnNorm,
            layer: 0,
        });
        assert!(
            grads[layer0.unwrap().start..layer1(TensorKind::AttnNorm).start]
                .iter()
                .all(|&g| g == 0.25),
            "only layer 1's gradients change"
        );
        grads.iter_mut().for_each(|g| *g -= 0.25);

        // Each tensor's gradient (and the input's) along its own direction.
        let mut groups: Vec<(String, Vec<f32>, Shifted)> = vec![(
            "x".into(),
            dx.clone(),
            Box::new(|h, u: &[f32]| {
                let xs: Vec<f32> = x
                    .iter()
                    .zip(u)
                    .map(|(&a, &d)| (a as f64 + h * d as f64) as f32)
                    .collect();
                loss(&c, &p, attention, &xs, &probe)
            }),
        )];
        for &kind in &kinds {
            let r = layer1(kind);
            let (p, x, probe, r2) = (&p, &x, &probe, r.clone());
            groups.push((
                kind.name().into(),
                grads[r].to_vec(),
                Box::new(move |h, u: &[f32]| {
                    let mut ps = p.clone();
                    for (a, &d) in ps[r2.clone()].iter_mut().zip(u) {
                        *a = (*a as f64 + h * d as f64) as f32;
                    }
                    loss(&c, &ps, attention, x, probe)
                }),
            ));
        }
        for (name, g, shifted) in &groups {
            let norm = g.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
            assert!(norm > 0.05, "{name}: gradient norm {norm}");
            let u: Vec<f32> = g.iter().map(|&v| (v as f64 / norm) as f32).collect();
            let numeric = (shifted(FD_STEP, &u) - shifted(-FD_STEP, &u)) / (2.0 * FD_STEP);
            let rel = (numeric - norm).abs() / norm;
            assert!(
                rel < FD_TOL,
                "{attention:?} {name}: numeric {numeric} vs analytic {norm}"
            );
        }
    }
}

#[test]
fn bad_lengths_are_errors() {
    let c = config();
    let n = 4;
    let p = params(&c, 3);
    let w = ModelWeights::new(c, &p).unwrap();
    let lw = w.layer(0).unwrap();
    let attention = AttentionKind::Baseline;
    let acts_len = decoder_layer_activations_len(&c, n).unwrap();
    let fwd = decoder_layer_train_scratch_len(&c, n, attention).unwrap();
    let bwd = decoder_layer_backward_scratch_len(&c, n).unwrap();
    let mut x = values(n * c.dim, 1, 1.0);
    let mut acts = vec![0.0; acts_len];
    let f32s = ActivationRounding::F32;
    let run = |x: &mut [f32], acts: &mut [f32], scratch: usize| {
        decoder_layer_train_forward(&c, &lw, attention, f32s, x, acts, &mut vec![0.0; scratch])
    };
    assert!(matches!(
        run(&mut x[1..], &mut acts, fwd),
        Err(Error::LengthMismatch { .. })
    ));
    assert!(matches!(
        run(&mut x, &mut vec![0.0; acts_len - 1], fwd),
        Err(Error::LengthMismatch { .. })
    ));
    assert!(matches!(
        run(&mut x, &mut acts, fwd - 1),
        Err(Error::ScratchTooSmall { .. })
    ));
    let long = c.max_seq + 1;
    assert!(matches!(
        run(
            &mut vec![0.0; long * c.dim],
            &mut vec![0.0; decoder_layer_activations_len(&c, long).unwrap()],
            decoder_layer_train_scratch_len(&c, long, attention).unwrap()
        ),
        Err(Error::BadParameter(_))
    ));
    run(&mut x, &mut acts, fwd).unwrap();

    let mut grads = vec![0.0; p.len()];
    assert!(LayerGradients::new(&c, &mut grads[1..], 0).is_err());
    assert!(LayerGradients::new(&c, &mut grads, c.layers).is_err());
    let mut g = LayerGradients::new(&c, &mut grads, 0).unwrap();
    let mut back = |dx: &mut [f32], acts: &[f32], scratch: usize| {
        decoder_layer_backward(&c, &lw, acts, dx, &mut g, &mut vec![0.0; scratch])
    };
    let mut dx = values(n * c.dim, 2, 1.0);
    assert!(back(&mut dx[..c.dim * 3], &acts, bwd).is_err());
    assert!(back(&mut dx[1..], &acts, bwd).is_err());
    assert!(back(&mut dx, &acts[1..], bwd).is_err());
    assert!(matches!(
        back(&mut dx, &acts, bwd - 1),
        Err(Error::ScratchTooSmall { .. })
    ));
    back(&mut dx, &acts, bwd).unwrap();
    assert!(dx.iter().all(|v| v.is_finite()));
}
