//! Layerskip checkpoints (safetensors) through `checkpoint::load`, on arbitrary file bytes and on
//! files saved from small arbitrary models. Asserts: no panic, and no allocation beyond what the
//! file justifies (`-malloc_limit_mb` makes one a crash: a config that claims billions of
//! parameters must be refused before they are allocated); an accepted checkpoint is consistent
//! (valid config, `param_count` parameters, vocabulary of `vocab` characters) and saving it again
//! loads back the same bits; a saved model loads back exactly.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use tessera_harness::train::checkpoint::{load, save, Checkpoint};
use tessera_harness::train::Vocab;
use tessera_kernels::nn::ModelConfig;

#[derive(Arbitrary, Debug)]
enum Input<'a> {
    File(&'a [u8]),
    Model {
        layers: u8,
        heads: u8,
        half_dim: u8,
        ffn: u8,
        max_seq: u8,
        vocab: Vec<char>,
        words: Vec<u32>,
        description: String,
    },
}

fn scratch_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tessera-fuzz-checkpoint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

fn assert_consistent(c: &Checkpoint) {
    c.config.validate().expect("accepted an invalid config");
    assert_eq!(Some(c.params.len()), c.config.param_count().ok());
    assert_eq!(c.vocab.chars.len(), c.config.vocab);
}

fn round_trip(c: &Checkpoint) {
    let path = scratch_file("again.safetensors");
    let saved = save(&path, &c.config, &c.vocab, &c.params, &c.description);
    if c.params.iter().any(|p| !p.is_finite()) {
        // Neither side accepts non-finite weights.
        assert!(saved.is_err(), "saved non-finite weights");
        return;
    }
    saved.expect("save what was loaded");
    let again = load(&path).expect("load what was saved");
    assert_eq!(again.config, c.config);
    assert_eq!(again.vocab.chars, c.vocab.chars);
    assert_eq!(again.description, c.description);
    assert_eq!(bits(&again.params), bits(&c.params));
}

fuzz_target!(|input: Input| match input {
    Input::File(bytes) => {
        let path = scratch_file("input.safetensors");
        std::fs::write(&path, bytes).expect("write the input");
        if let Ok(c) = load(&path) {
            assert_consistent(&c);
            round_trip(&c);
        }
    }
    Input::Model {
        layers,
        heads,
        half_dim,
        ffn,
        max_seq,
        vocab,
        words,
        description,
    } => {
        let heads = 1 + heads as usize % 2;
        let mut chars = vocab;
        chars.sort_unstable();
        chars.dedup();
        chars.truncate(12);
        if chars.is_empty() {
            return;
        }
        let config = ModelConfig {
            vocab: chars.len(),
            dim: heads * 2 * (1 + half_dim as usize % 3),
            layers: 1 + layers as usize % 2,
            heads,
            kv_heads: heads,
            ffn_hidden: 1 + ffn as usize % 8,
            max_seq: 1 + max_seq as usize % 32,
            rope_theta: 10000.0,
            norm_eps: 1e-5,
        };
        let n = config.param_count().expect("small config");
        let params: Vec<f32> = (0..n)
            .map(|i| {
                f32::from_bits(words.get(i % words.len().max(1)).copied().unwrap_or(0) ^ i as u32)
            })
            .collect();
        let c = Checkpoint {
            config,
            vocab: Vocab { chars },
            params,
            description,
        };
        round_trip(&c);
    }
});
