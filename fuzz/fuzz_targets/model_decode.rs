//! The early-exit model: `ModelConfig` validation and sizes on arbitrary (also absurd) configs,
//! `model_forward` and greedy vs self-speculative decoding on small random models with `f32` or
//! `bf16` weights, both attention kinds, any exit layer and draft length. Asserts:
//! - sizes of an absurd config are an `Err`, never a wrap or a panic;
//! - `Err` leaves the outputs (tokens, logits) untouched;
//! - self-speculative decoding emits exactly the greedy tokens; its statistics add up
//!   (`accepted + rounds == generated`, `accepted <= drafted`, all accepted at the last layer);
//! - the logits of tokens forwarded together equal, bit for bit, those of the same tokens
//!   forwarded one at a time through the KV cache (the batched/one-token identity the docs state);
//! - weights and inputs in `[-2, 2]` give finite logits.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tessera_fuzz::{bits, tokens, Values};
use tessera_kernels::attention::FlashTiles;
use tessera_kernels::nn::*;
use tessera_kernels::{bf16, Element};

#[derive(Arbitrary, Debug)]
struct Input {
    layers: u8,
    heads_log: u8,
    group_log: u8,
    half_dim: u8,
    vocab: u8,
    ffn: u8,
    max_seq: u8,
    /// Replaces one config field with a huge value (sizes must not wrap).
    absurd: Option<(u8, u64)>,
    bf16_weights: bool,
    weight_scale: u8,
    flash: Option<(u8, u8)>,
    exit_layer: u8,
    draft: u8,
    prompt_len: u8,
    generate: u8,
    values: Values,
    words: Vec<u32>,
}

fn config(inp: &Input) -> ModelConfig {
    let heads = 1usize << (inp.heads_log % 3);
    let kv_heads = (heads >> (inp.group_log % 2)).max(1);
    let hd = 2 * (1 + inp.half_dim as usize % 4);
    let mut c = ModelConfig {
        vocab: 1 + inp.vocab as usize % 24,
        dim: heads * hd,
        layers: 1 + inp.layers as usize % 4,
        heads,
        kv_heads,
        ffn_hidden: 1 + inp.ffn as usize % 24,
        max_seq: 1 + inp.max_seq as usize % 40,
        rope_theta: 10000.0,
        norm_eps: 1e-5,
    };
    if let Some((field, value)) = inp.absurd {
        let v = value as usize;
        match field % 9 {
            0 => c.vocab = v,
            1 => c.dim = v,
            2 => c.layers = v,
            3 => c.heads = v,
            4 => c.kv_heads = v,
            5 => c.ffn_hidden = v,
            6 => c.max_seq = v,
            7 => c.rope_theta = f32::from_bits(value as u32),
            _ => c.norm_eps = f32::from_bits(value as u32),
        }
    }
    c
}

fn run<W: Element>(inp: &Input, c: ModelConfig) {
    // Sizes of any config: a value or an Err, no panic, no wrap (overflow checks are on).
    let valid = c.validate().is_ok();
    let params_n = c.param_count();
    let _ = (kv_cache_len(&c), c.layer_len(), c.tensor_count());
    let attention = match inp.flash {
        Some((bq, bk)) => AttentionKind::Flash(FlashTiles::new(bq as usize % 6, bk as usize % 10)),
        None => AttentionKind::Baseline,
    };
    let draft = inp.draft as usize % 8;
    let _ = speculative_scratch_len(&c, draft, attention);
    let _ = model_scratch_len(&c, 1 + inp.prompt_len as usize, attention);
    let Ok(n_params) = params_n else { return };
    if !valid || n_params > 200_000 {
        return;
    }
    let scale = 0.1 + (inp.weight_scale % 16) as f32 / 10.0;
    let params: Vec<W> = inp
        .values
        .f32s(&inp.words, n_params)
        .into_iter()
        .map(|x| W::from_f32(x * scale))
        .collect();
    let w = ModelWeights::new(c, &params).expect("params of param_count() length");
    let prompt = tokens(&inp.words, 1 + inp.prompt_len as usize % 12, c.vocab);
    let n = inp.generate as usize % 24;
    let e = 1 + inp.exit_layer as usize % c.layers;

    // Greedy vs self-speculative on the same (dirty) buffers.
    let Ok(kv_len) = kv_cache_len(&c) else { return };
    let Ok(scratch_len) = speculative_scratch_len(&c, draft, attention) else {
        return;
    };
    // A valid config with a huge max_seq asks the caller for a huge cache: not this target's
    // subject (the sizes themselves were checked above).
    if kv_len > 1 << 22 || scratch_len > 1 << 22 {
        return;
    }
    let mut kv = vec![f32::NAN; kv_len];
    let mut scratch = vec![f32::NAN; scratch_len];
    let mut full = vec![u32::MAX; n];
    match greedy_decode(&w, &prompt, attention, &mut kv, &mut scratch, &mut full) {
        Ok(stats) => {
            assert_eq!(stats.generated, n);
            assert!(
                full.iter().all(|&t| (t as usize) < c.vocab),
                "token out of range: {full:?}"
            );
        }
        Err(err) => {
            assert!(
                full.iter().all(|&t| t == u32::MAX),
                "greedy wrote tokens, then {err:?}"
            );
            let mut spec = vec![u32::MAX; n];
            let r = self_speculative_decode(
                &w,
                &prompt,
                e,
                draft,
                attention,
                &mut kv,
                &mut scratch,
                &mut spec,
            );
            if let Err(e2) = r {
                assert!(
                    spec.iter().all(|&t| t == u32::MAX),
                    "speculative wrote tokens, then {e2:?}"
                );
            } else {
                // Only the draft length or the exit layer may make speculation fail alone.
                panic!("greedy failed with {err:?}, speculative accepted the same request");
            }
            return;
        }
    }
    let mut spec = vec![u32::MAX; n];
    match self_speculative_decode(
        &w,
        &prompt,
        e,
        draft,
        attention,
        &mut kv,
        &mut scratch,
        &mut spec,
    ) {
        Ok(stats) => {
            assert_eq!(
                spec, full,
                "speculative (E={e}, d={draft}, {attention:?}) != greedy"
            );
            assert_eq!(stats.generated, n);
            assert!(stats.accepted <= stats.drafted);
            assert_eq!(stats.accepted + stats.rounds, n, "{stats:?}");
            if e == c.layers {
                assert_eq!(
                    stats.accepted, stats.drafted,
                    "the full model disagrees with itself"
                );
            }
        }
        Err(err) => {
            assert!(
                spec.iter().all(|&t| t == u32::MAX),
                "speculative wrote tokens, then {err:?}"
            );
            assert!(
                draft == 0,
                "speculative refused (d={draft}, E={e}) what greedy ran: {err:?}"
            );
        }
    }

    // Forwarded together vs one at a time: the same logits, bit for bit.
    let t = prompt.len().min(c.max_seq);
    let toks = &prompt[..t];
    let Ok(scratch_len) = model_scratch_len(&c, t, attention) else {
        return;
    };
    let mut scratch = vec![f32::NAN; scratch_len];
    let mut kv = vec![f32::NAN; kv_len];
    let mut together = vec![f32::NAN; t * c.vocab];
    model_forward(
        &w,
        toks,
        0,
        e,
        attention,
        &mut kv,
        &mut together,
        &mut scratch,
    )
    .expect("a prompt within max_seq");
    let mut kv = vec![f32::NAN; kv_len];
    for (pos, tok) in toks.iter().enumerate() {
        let mut one = vec![f32::NAN; c.vocab];
        model_forward(
            &w,
            &[*tok],
            pos,
            e,
            attention,
            &mut kv,
            &mut one,
            &mut scratch,
        )
        .unwrap();
        // Bit for bit; NaN logits (from NaN weights) may differ in sign and payload.
        tessera_fuzz::assert_same_up_to_nan(
            &format!("token {pos} alone"),
            &one,
            &together[pos * c.vocab..][..c.vocab],
        );
    }
    // With norm_eps = 0 an all-zero hidden row normalises to 0 · (1/0) = NaN, as in exact
    // arithmetic (ModelConfig allows eps = 0); with eps > 0 bounded weights give finite logits.
    if inp.values == Values::Unit && c.norm_eps > 0.0 {
        assert!(
            together.iter().all(|x| x.is_finite()),
            "weights in [-2, 2]·{scale}: {together:?} config {c:?}"
        );
    }
    // A position past max_seq, or a token past vocab: Err, logits untouched.
    let mut logits = vec![f32::NAN; c.vocab];
    let before = bits(&logits);
    for (toks, pos) in [(&[0u32][..], c.max_seq), (&[c.vocab as u32][..], 0)] {
        let r = model_forward(
            &w,
            toks,
            pos,
            e,
            attention,
            &mut kv,
            &mut logits,
            &mut scratch,
        );
        let e = r.expect_err("out-of-range position or token accepted");
        tessera_fuzz::assert_untouched("logits", &before, &logits, &e);
    }
}

fuzz_target!(|inp: Input| {
    let c = config(&inp);
    if inp.bf16_weights {
        run::<bf16>(&inp, c)
    } else {
        run::<f32>(&inp, c)
    }
});
