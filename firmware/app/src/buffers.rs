//! Every buffer the application uses, in one `static`, each sized by a `const fn` of the kernel
//! crate: nothing is allocated, nothing sized by hand.

use crate::blob::CONFIG;
use core::sync::atomic::{AtomicBool, Ordering};
use tessera_kernels::attention::{
    baseline_scratch_len, flash_scratch_len, AttentionShape, FlashTiles,
};
use tessera_kernels::bf16;
use tessera_kernels::nn::{kv_cache_len, speculative_scratch_len, AttentionKind};
use tessera_kernels::optim::{AdamConfig, Learn, Optimizer, Tower};
use tessera_kernels::Result;

/// Query heads, key/value heads, sequence length and head dimension of the attention checks.
pub const HEADS: usize = 4;
pub const KV_HEADS: usize = 2;
pub const N: usize = 64;
pub const D: usize = 32;

/// Prefill: 64 causal queries over 64 keys, 4 query heads on 2 KV heads (GQA).
pub const PREFILL: AttentionShape = AttentionShape::new(1, HEADS, N, N, D)
    .with_kv_heads(KV_HEADS)
    .with_causal(true);
/// Decode: one query against the first 40 rows of a 64-row KV cache.
pub const DECODE: AttentionShape = AttentionShape::new(1, HEADS, 1, 40, D)
    .with_kv_heads(KV_HEADS)
    .with_kv_capacity(N)
    .with_causal(true);
pub const TILES: FlashTiles = FlashTiles::new(16, 16);

/// Parameters of the optimizer checks.
pub const OPT_N: usize = 1024;
pub const ADAM_CONFIG: AdamConfig = AdamConfig {
    lr: 1e-2,
    ..AdamConfig::DEFAULT
};
pub const ADAM: Optimizer = Optimizer::Adam(ADAM_CONFIG);
pub const HYPER_ADAM: Optimizer = Optimizer::Adam(AdamConfig {
    lr: 1e-4,
    ..AdamConfig::DEFAULT
});

/// The model's attention, the self-speculative exit layer and draft length, and how many tokens
/// are generated.
pub const ATTENTION: AttentionKind = AttentionKind::Flash(FlashTiles::new(8, 16));
pub const EXIT_LAYER: usize = 2;
pub const DRAFT: usize = 3;
pub const GENERATE: usize = 32;

/// The length, or a compile-time error naming the size that failed.
const fn len(r: Result<usize>, what: &str) -> usize {
    match r {
        Ok(n) => n,
        Err(_) => panic!("{}", what),
    }
}

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

pub const Q: usize = HEADS * N * D;
pub const KV: usize = KV_HEADS * N * D;
pub const FLASH_SCRATCH: usize = max(
    len(flash_scratch_len(&PREFILL, TILES), "flash scratch"),
    len(flash_scratch_len(&DECODE, TILES), "decode scratch"),
);
pub const BASELINE_SCRATCH: usize = len(baseline_scratch_len(&PREFILL), "baseline scratch");
pub const TOWER_STATE: usize = len(
    Tower::<4>::state_len_for(&ADAM, 1, Learn::All, OPT_N),
    "tower state",
);
pub const KV_CACHE: usize = len(kv_cache_len(&CONFIG), "kv cache");
pub const DECODE_SCRATCH: usize = len(
    speculative_scratch_len(&CONFIG, DRAFT, ATTENTION),
    "decode scratch",
);

/// The application's memory.
pub struct Buffers {
    pub q: [f32; Q],
    pub k: [f32; KV],
    pub v: [f32; KV],
    pub out: [f32; Q],
    pub q16: [bf16; Q],
    pub k16: [bf16; KV],
    pub v16: [bf16; KV],
    pub out16: [bf16; Q],
    pub flash: [f32; FLASH_SCRATCH],
    pub baseline: [f32; BASELINE_SCRATCH],
    pub params: [f32; OPT_N],
    pub grads: [f32; OPT_N],
    pub m: [f32; OPT_N],
    pub v2: [f32; OPT_N],
    pub tower: [f32; TOWER_STATE],
    pub kv: [f32; KV_CACHE],
    pub decode: [f32; DECODE_SCRATCH],
    pub greedy: [u32; GENERATE],
    pub speculative: [u32; GENERATE],
}

static mut BUFFERS: Buffers = Buffers {
    q: [0.0; Q],
    k: [0.0; KV],
    v: [0.0; KV],
    out: [0.0; Q],
    q16: [bf16::ZERO; Q],
    k16: [bf16::ZERO; KV],
    v16: [bf16::ZERO; KV],
    out16: [bf16::ZERO; Q],
    flash: [0.0; FLASH_SCRATCH],
    baseline: [0.0; BASELINE_SCRATCH],
    params: [0.0; OPT_N],
    grads: [0.0; OPT_N],
    m: [0.0; OPT_N],
    v2: [0.0; OPT_N],
    tower: [0.0; TOWER_STATE],
    kv: [0.0; KV_CACHE],
    decode: [0.0; DECODE_SCRATCH],
    greedy: [0; GENERATE],
    speculative: [0; GENERATE],
};

impl Buffers {
    /// The buffers, the first time only.
    pub fn take() -> Option<&'static mut Buffers> {
        static TAKEN: AtomicBool = AtomicBool::new(false);
        if TAKEN.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: `TAKEN` lets this line run once, so this is the only reference to `BUFFERS`.
        Some(unsafe { &mut *core::ptr::addr_of_mut!(BUFFERS) })
    }
}
