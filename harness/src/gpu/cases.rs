//! What `tessera gpu-check` runs: the attention shapes of the deviation study and of the decode
//! bench, the optimizer sizes of the optim bench, the rows it samples, and the parallel map its
//! oracle rows are computed with.

use tessera_kernels::attention::{AttentionShape, FlashTiles};

/// The attention entry points, by storage format and accumulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionFormat {
    /// `f32` elements, `f32` accumulator.
    F32,
    /// `bf16` elements, `f32` accumulator (FlashAttention-2's arithmetic).
    Bf16,
    /// `bf16` elements, the matrix-unit model `Bf16Mma` (the paper's bf16 state).
    Bf16Mma,
}

impl AttentionFormat {
    /// Every format, in report order.
    pub const ALL: [AttentionFormat; 3] = [Self::F32, Self::Bf16, Self::Bf16Mma];

    /// Report name.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::Bf16Mma => "bf16-mma",
        }
    }

    /// The entry points' suffix (`flash_<suffix>`, `decode_<suffix>`).
    pub fn suffix(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::Bf16Mma => "bf16_mma",
        }
    }
}

/// One attention problem of the check.
#[derive(Clone, Debug)]
pub struct AttentionCase {
    /// Report name (`prefill-1024`, `decode-128`).
    pub name: String,
    /// `prefill` (the flash entry points) or `decode` (the decode entry points, `q_len = 1`).
    pub kind: &'static str,
    /// The problem.
    pub shape: AttentionShape,
    /// Flash tiles (`block_q` threads per block; `block_k` sets the numerics).
    pub tiles: FlashTiles,
    /// Seed of the inputs (`q` seed, `k` seed + 1, `v` seed + 2; standard normal).
    pub seed: u64,
}

/// The deviation study's quick sweep (head_dim 64, tiles 64×64, normal inputs) as whole
/// prefill problems (one sequence, one head, every query row), and the decode bench's attention
/// (8 query heads over 4 KV heads, head_dim 32, a 512-row cache filled to 128, and one nearly full).
pub fn attention_cases(quick: bool, seed: u64) -> Vec<AttentionCase> {
    let lens: &[usize] = if quick {
        &[256, 1024]
    } else {
        &[256, 1024, 4096, 16384]
    };
    let mut cases: Vec<AttentionCase> = lens
        .iter()
        .map(|&n| AttentionCase {
            name: format!("prefill-{n}"),
            kind: "prefill",
            shape: AttentionShape::new(1, 1, n, n, 64),
            tiles: FlashTiles::new(64, 64),
            seed,
        })
        .collect();
    for kv_len in [128, 511] {
        cases.push(AttentionCase {
            name: format!("decode-{kv_len}"),
            kind: "decode",
            shape: AttentionShape::new(1, 8, 1, kv_len, 32)
                .with_kv_heads(4)
                .with_kv_capacity(512)
                .with_causal(true),
            tiles: FlashTiles::new(1, 64),
            seed,
        });
    }
    cases
}

/// Parameter counts of the optimizer checks: the optim bench's (in L2, L3, memory on a CPU).
pub fn optimizer_sizes(quick: bool) -> &'static [usize] {
    if quick {
        &[16 << 10, 1 << 20]
    } else {
        &[16 << 10, 1 << 20, 8 << 20]
    }
}

/// `count` row indices spread evenly over `0..total`, the first and last included (all of them
/// when `count >= total`).
pub fn spread_rows(total: usize, count: usize) -> Vec<usize> {
    if count >= total {
        return (0..total).collect();
    }
    if count <= 1 {
        return vec![0; count.min(total)];
    }
    let mut rows: Vec<usize> = (0..count).map(|i| i * (total - 1) / (count - 1)).collect();
    rows.dedup();
    rows
}

/// `f` over `items` on every core, in order.
pub fn parallel_map<I: Sync, O: Send>(items: &[I], f: impl Fn(&I) -> O + Sync) -> Vec<O> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = items.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().map(&f).collect::<Vec<O>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_rows_cover_both_ends_without_repeats() {
        assert_eq!(spread_rows(10, 20), (0..10).collect::<Vec<_>>());
        let r = spread_rows(16384, 16);
        assert_eq!((r[0], r[15], r.len()), (0, 16383, 16));
        assert!(r.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(spread_rows(5, 1), vec![0]);
    }

    #[test]
    fn every_case_is_a_valid_shape() {
        for case in attention_cases(false, 0) {
            case.shape.validate().unwrap();
            case.tiles.validate().unwrap();
            assert!(case.kind != "decode" || case.shape.q_len == 1);
        }
    }
}
