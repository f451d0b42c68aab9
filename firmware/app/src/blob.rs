//! The tiny model, linked into the program: the blob `tessera layerskip export` writes
//! (`harness/src/commands/layerskip/export.rs` documents the layout), read at compile time, so
//! its configuration sizes the static buffers.

use tessera_kernels::bf16;
use tessera_kernels::nn::ModelConfig;

/// Bytes before the parameters.
const HEADER: usize = 64;

/// The blob's bytes, 16-byte aligned so the parameters can be viewed in place.
#[repr(C, align(16))]
struct Aligned<B: ?Sized>(B);

static BLOB: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
    env!("TESSERA_FW_GEN"),
    "/model.bin"
)));

const fn word(i: usize) -> u32 {
    let b = &BLOB.0;
    let at = 8 + 4 * i;
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

const fn size(i: usize) -> usize {
    word(i) as usize
}

const _: () = {
    let magic = *b"TSRBLOB1";
    let mut i = 0;
    while i < magic.len() {
        assert!(BLOB.0[i] == magic[i], "model.bin is not a Tessera blob");
        i += 1;
    }
    assert!(
        word(9) == 1,
        "the firmware links bf16 weights: export with --dtype bf16"
    );
};

/// The longest sequence the firmware decodes: the weights do not depend on `max_seq`, so the KV
/// cache is sized for this, not for the trained model's context.
pub const MAX_SEQ: usize = 48;

/// The model's sizes, with `max_seq` = [`MAX_SEQ`].
pub const CONFIG: ModelConfig = ModelConfig {
    vocab: size(0),
    dim: size(1),
    layers: size(2),
    heads: size(3),
    kv_heads: size(4),
    ffn_hidden: size(5),
    max_seq: MAX_SEQ,
    rope_theta: f32::from_bits(word(7)),
    norm_eps: f32::from_bits(word(8)),
};

/// Parameters in the blob.
pub const PARAMS: usize = size(10);
/// Tokens in the prompt.
pub const PROMPT_LEN: usize = size(11);
const PROMPT_AT: usize = HEADER + 2 * PARAMS;
const VOCAB_AT: usize = PROMPT_AT + 4 * PROMPT_LEN;

const _: () = assert!(
    BLOB.0.len() >= VOCAB_AT,
    "model.bin is shorter than its header says"
);

/// The weights, in the kernel layout, read in place from flash (`None` on a big-endian target,
/// or if the blob were misaligned).
pub fn params() -> Option<&'static [bf16]> {
    if cfg!(target_endian = "big") {
        return None;
    }
    bytemuck::try_cast_slice(BLOB.0.get(HEADER..PROMPT_AT)?).ok()
}

/// The prompt's tokens.
pub fn prompt() -> impl Iterator<Item = u32> {
    BLOB.0
        .get(PROMPT_AT..VOCAB_AT)
        .unwrap_or(&[])
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Token `t`'s character (`?` if the vocabulary has none).
pub fn character(t: u32) -> char {
    let text = BLOB.0.get(VOCAB_AT..).unwrap_or(&[]);
    match core::str::from_utf8(text) {
        Ok(s) => s.chars().nth(t as usize).unwrap_or('?'),
        Err(_) => '?',
    }
}
