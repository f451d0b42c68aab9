//! Self-speculative greedy decoding must reproduce full-model greedy decoding token for token,
//! for random models (f32 and bf16 weights), prompts, exit layers E, draft lengths d and both
//! attention algorithms; its bookkeeping must be consistent; and decoding must run on buffers
//! allocated once up front.

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tessera_kernels::attention::FlashTiles;
use tessera_kernels::bf16;
use tessera_kernels::nn::*;

fn random_model(c: &ModelConfig, seed: u64, std: f32) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..c.param_count().unwrap())
        .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * std)
        .collect()
}

fn config(layers: usize, heads: usize, kv_heads: usize, hd: usize, vocab: usize) -> ModelConfig {
    ModelConfig {
        vocab,
        dim: heads * hd,
        layers,
        heads,
        kv_heads,
        ffn_hidden: 3 * heads * hd,
        max_seq: 64,
        rope_theta: 10000.0,
        norm_eps: 1e-5,
    }
}

/// Decodes with both methods and returns (full, speculative, stats).
fn both<W: tessera_kernels::Element>(
    w: &ModelWeights<'_, W>,
    prompt: &[u32],
    e: usize,
    d: usize,
    n: usize,
    attention: AttentionKind,
) -> (Vec<u32>, Vec<u32>, DecodeStats) {
    let c = *w.config();
    let mut kv = vec![f32::NAN; kv_cache_len(&c).unwrap()];
    let mut scratch = vec![f32::NAN; speculative_scratch_len(&c, d, attention).unwrap()];
    let mut full = vec![u32::MAX; n];
    greedy_decode(w, prompt, attention, &mut kv, &mut scratch, &mut full).unwrap();
    // The same buffers, dirty from the first run: nothing may depend on their old contents.
    let mut spec = vec![u32::MAX; n];
    let stats =
        self_speculative_decode(w, prompt, e, d, attention, &mut kv, &mut scratch, &mut spec)
            .unwrap();
    (full, spec, stats)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn self_speculative_output_equals_full_greedy_output(
        layers in 1usize..6, heads_log in 0u32..3, group_log in 0u32..2, hd_half in 1usize..5,
        vocab in 2usize..24, seed in any::<u64>(), std in 0.2f32..1.5,
        prompt in prop::collection::vec(0u32..1000, 1..12), e_pick in 0usize..100, d in 1usize..7,
        n in 1usize..30, flash in any::<bool>(), bq in 1usize..5, bk in 1usize..9,
    ) {
        let heads = 1 << heads_log;
        let kv_heads = (heads >> group_log).max(1);
        let c = config(layers, heads, kv_heads, 2 * hd_half, vocab);
        let params = random_model(&c, seed, std);
        let w = ModelWeights::new(c, &params).unwrap();
        let prompt: Vec<u32> = prompt.iter().map(|t| t % vocab as u32).collect();
        let e = 1 + e_pick % layers;
        let attention = if flash { AttentionKind::Flash(FlashTiles::new(bq, bk)) } else { AttentionKind::Baseline };
        let (full, spec, stats) = both(&w, &prompt, e, d, n, attention);
        prop_assert_eq!(&spec, &full, "E={} d={} {:?}", e, d, attention);
        prop_assert_eq!(stats.generated, n);
        prop_assert!(stats.accepted <= stats.drafted);
        // Every round emits its accepted drafts plus the verifier's token.
        prop_assert_eq!(stats.accepted + stats.rounds, n);
        if e == layers {
            prop_assert_eq!(stats.accepted, stats.drafted, "the full model agrees with itself");
        }
    }

    #[test]
    fn bf16_weights_speculate_identically(seed in any::<u64>(), e in 1usize..4, d in 1usize..5) {
        let c = config(3, 2, 1, 8, 11);
        let params: Vec<bf16> = random_model(&c, seed, 1.0).iter().map(|&x| bf16::from_f32(x)).collect();
        let w = ModelWeights::new(c, &params).unwrap();
        let (full, spec, _) = both(&w, &[1, 2, 3], e, d, 24, AttentionKind::Baseline);
        prop_assert_eq!(spec, full);
    }
}

#[test]
fn cache_rollback_after_rejected_drafts_reproduces_full_decoding() {
    // A model whose early exit disagrees often (large random weights), so drafts are rejected
    // and stale cache entries past the accepted point must be overwritten before being read.
    let c = config(4, 2, 2, 4, 7);
    for seed in 0..20 {
        let params = random_model(&c, seed, 1.2);
        let w = ModelWeights::new(c, &params).unwrap();
        let (full, spec, stats) = both(&w, &[0, 3, 5], 1, 4, 40, AttentionKind::Baseline);
        assert_eq!(spec, full, "seed {seed}");
        assert!(stats.drafted > 0);
    }
}

#[test]
fn early_exit_logits_equal_the_first_layers_of_the_full_forward() {
    let c = config(3, 2, 1, 4, 9);
    let params = random_model(&c, 5, 0.8);
    let w = ModelWeights::new(c, &params).unwrap();
    let toks = [1u32, 4, 2, 8, 0];
    let a = AttentionKind::Baseline;
    let mut kv = vec![0.0; kv_cache_len(&c).unwrap()];
    let mut scratch = vec![0.0; model_scratch_len(&c, toks.len(), a).unwrap()];
    let mut exit2 = vec![f32::NAN; toks.len() * c.vocab];
    model_forward(&w, &toks, 0, 2, a, &mut kv, &mut exit2, &mut scratch).unwrap();
    // Layer by layer with the exit after two layers.
    let mut h = vec![0.0; toks.len() * c.dim];
    embed_tokens(&w, &toks, &mut h).unwrap();
    forward_layers(&w, 0..1, a, 0, &mut h, &mut kv, &mut scratch).unwrap();
    forward_layers(&w, 1..2, a, 0, &mut h, &mut kv, &mut scratch).unwrap();
    let mut logits = vec![f32::NAN; exit2.len()];
    exit_logits(&w, &h, &mut logits, &mut scratch).unwrap();
    assert_eq!(logits, exit2);
    // Prefill in two chunks gives the same last-position logits as one chunk.
    let mut kv2 = vec![0.0; kv.len()];
    let mut part = vec![0.0; 2 * c.vocab];
    model_forward(
        &w,
        &toks[..3],
        0,
        3,
        a,
        &mut kv2,
        &mut vec![0.0; 3 * c.vocab],
        &mut scratch,
    )
    .unwrap();
    model_forward(&w, &toks[3..], 3, 3, a, &mut kv2, &mut part, &mut scratch).unwrap();
    let mut whole = vec![0.0; toks.len() * c.vocab];
    model_forward(&w, &toks, 0, 3, a, &mut kv, &mut whole, &mut scratch).unwrap();
    assert_eq!(&part[..], &whole[3 * c.vocab..]);
}

#[test]
fn decoding_errors_are_reported_not_panics() {
    let c = config(2, 2, 1, 4, 5);
    let params = random_model(&c, 1, 1.0);
    let w = ModelWeights::new(c, &params).unwrap();
    let a = AttentionKind::Baseline;
    let mut kv = vec![0.0; kv_cache_len(&c).unwrap()];
    let mut scratch = vec![0.0; speculative_scratch_len(&c, 2, a).unwrap()];
    let mut out = vec![0u32; 4];
    assert!(self_speculative_decode(&w, &[1], 0, 2, a, &mut kv, &mut scratch, &mut out).is_err());
    assert!(self_speculative_decode(&w, &[1], 3, 2, a, &mut kv, &mut scratch, &mut out).is_err());
    assert!(self_speculative_decode(&w, &[], 1, 2, a, &mut kv, &mut scratch, &mut out).is_err());
    assert!(self_speculative_decode(&w, &[9], 1, 2, a, &mut kv, &mut scratch, &mut out).is_err());
    assert!(
        self_speculative_decode(&w, &[1], 1, 2, a, &mut kv, &mut scratch[..10], &mut out).is_err()
    );
    let mut long = vec![0u32; 64];
    assert!(greedy_decode(&w, &[1], a, &mut kv, &mut scratch, &mut long).is_err());
    assert!(greedy_decode(&w, &[1], a, &mut kv[1..], &mut scratch, &mut out).is_err());
    assert!(ModelWeights::new(c, &params[1..]).is_err());
}
