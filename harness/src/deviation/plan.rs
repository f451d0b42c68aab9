//! What the study sweeps: precision models, algorithms and the grids of the quick and full runs.

use crate::data::InputDistribution;
use serde::Serialize;

/// Attention algorithm under study.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// Materialised logits, softmax, P·V.
    Baseline,
    /// Tiled online softmax.
    Flash,
}

impl Algorithm {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Baseline => "baseline",
            Algorithm::Flash => "flash",
        }
    }
}

/// A precision model: a storage format and where a kernel rounds to it. Each runs the shipped
/// generic kernel code with an element and accumulator type (docs/numerics.md, "Precision models").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Model {
    /// FlashAttention-2/3's forward as shipped (`flash_fwd_kernel.h`): bf16 tensors, `S`, `m`,
    /// `l`, `O` in f32, `P` rounded to bf16 per tile before `P·V`, the output rounded once. The
    /// production kernel (`bf16` elements, `f32` accumulator). Flash only.
    Fa2,
    /// A fused attention kernel with f32 state on bf16 tensors (the production baseline kernel:
    /// `bf16` elements, `f32` accumulator, `P` kept in f32). Baseline only.
    Fused,
    /// `softmax(q @ k.T * scale) @ v` op by op on bf16 tensors (`Bf16Ops`): the logits, the
    /// probabilities and the output stored in bf16, f32 inside each op. Baseline only.
    Bf16Ops,
    /// As [`Model::Bf16Ops`] on fp16 tensors (`F16Ops`). Baseline only.
    Fp16Ops,
    /// "Is Flash Attention Stable?"'s re-implementation at bf16 (`Bf16Mma`): every stored
    /// intermediate (logits, probabilities, running max, sum and output) in bf16, f32 inside each
    /// matmul and row sum.
    PaperBf16,
    /// The paper's model at fp16 (`F16Mma`).
    PaperFp16,
    /// Every operation rounded to bf16, reductions included (`Bf16Acc`): an ablation.
    EveryOpBf16,
    /// Every operation rounded to fp16 (`F16Acc`): an ablation.
    EveryOpFp16,
    /// The production f32 kernels (SIMD backend chosen at run time).
    F32,
    /// f64 everywhere (`f64` elements and accumulator).
    F64,
}

impl Model {
    /// The models of the quick sweep, grouped by format, the real kernels' first.
    pub const MAIN: [Model; 8] = [
        Model::Fa2,
        Model::Fused,
        Model::Bf16Ops,
        Model::PaperBf16,
        Model::Fp16Ops,
        Model::PaperFp16,
        Model::F32,
        Model::F64,
    ];
    /// The every-operation-rounded ablations (full sweep).
    pub const EVERY_OP: [Model; 2] = [Model::EveryOpBf16, Model::EveryOpFp16];
    /// The pairs (flash model, baseline model) the headline table shows, in order: FA2 against a
    /// framework's eager bf16 attention, then the paper's model against itself per format.
    pub const HEADLINE: [(Model, Model); 5] = [
        (Model::Fa2, Model::Bf16Ops),
        (Model::PaperBf16, Model::PaperBf16),
        (Model::PaperFp16, Model::PaperFp16),
        (Model::F32, Model::F32),
        (Model::F64, Model::F64),
    ];

    /// The model's name in tables and JSON (`"fa2"`, `"bf16-ops"`, `"paper"`, ...; with the
    /// format it names the model uniquely).
    pub fn name(self) -> &'static str {
        match self {
            Model::Fa2 => "fa2",
            Model::Fused => "fused",
            Model::Bf16Ops => "bf16-ops",
            Model::Fp16Ops => "fp16-ops",
            Model::PaperBf16 | Model::PaperFp16 => "paper",
            Model::EveryOpBf16 | Model::EveryOpFp16 => "every-op",
            Model::F32 => "f32",
            Model::F64 => "f64",
        }
    }

    /// The storage format: `"bf16"`, `"fp16"`, `"f32"` or `"f64"`.
    pub fn format(self) -> &'static str {
        match self {
            Model::Fa2 | Model::Fused | Model::Bf16Ops | Model::PaperBf16 | Model::EveryOpBf16 => {
                "bf16"
            }
            Model::Fp16Ops | Model::PaperFp16 | Model::EveryOpFp16 => "fp16",
            Model::F32 => "f32",
            Model::F64 => "f64",
        }
    }

    /// Whether the model describes a kernel of this algorithm (`fa2` is a flash kernel's
    /// precision, `fused` and the eager `*-ops` models are baselines; the rest describe both).
    pub fn runs(self, algorithm: Algorithm) -> bool {
        match self {
            Model::Fa2 => algorithm == Algorithm::Flash,
            Model::Fused | Model::Bf16Ops | Model::Fp16Ops => algorithm == Algorithm::Baseline,
            _ => true,
        }
    }

    /// The kernel it imitates, for reports.
    pub fn imitates(self) -> &'static str {
        match self {
            Model::Fa2 => "FlashAttention-2/3 forward as shipped (fp32 S, m, l, O; P and O rounded to bf16)",
            Model::Fused => "a fused kernel with fp32 state (Tessera's production baseline on bf16)",
            Model::Bf16Ops | Model::Fp16Ops => {
                "eager softmax(q @ k.T * scale) @ v on half-precision tensors (each op's output stored)"
            }
            Model::PaperBf16 | Model::PaperFp16 => {
                "the paper's re-implementation (every stored intermediate rounded, fp32 inside each matmul)"
            }
            Model::EveryOpBf16 | Model::EveryOpFp16 => "every operation rounded (an ablation)",
            Model::F32 => "the production f32 kernels",
            Model::F64 => "f64 everywhere",
        }
    }

    /// `(u, u_out)` for the bound of docs/numerics.md: the unit roundoff of the arithmetic and of
    /// the output element.
    pub fn unit_roundoffs(self) -> (f64, f64) {
        use crate::tolerance::{U_BF16, U_F16, U_F32, U_F64};
        match self {
            Model::Fa2 | Model::Fused => (U_F32, U_BF16),
            Model::Bf16Ops | Model::PaperBf16 | Model::EveryOpBf16 => (U_BF16, U_BF16),
            Model::Fp16Ops | Model::PaperFp16 | Model::EveryOpFp16 => (U_F16, U_F16),
            Model::F32 => (U_F32, U_F32),
            Model::F64 => (U_F64, U_F64),
        }
    }

    /// The format ULPs are counted in.
    pub fn ulp_format(self) -> crate::metrics::Format {
        use crate::metrics::Format;
        match self.format() {
            "bf16" => Format::Bf16,
            "fp16" => Format::F16,
            "f32" => Format::F32,
            _ => Format::F64,
        }
    }
}

/// One run of one kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Precision model.
    pub model: Model,
    /// Keys per row (N).
    pub seq_len: usize,
    /// Features per head (d).
    pub head_dim: usize,
    /// Query tile (Br); `None` for baseline.
    pub block_q: Option<usize>,
    /// Key tile (Bc); `None` for baseline.
    pub block_k: Option<usize>,
    /// Input distribution.
    pub distribution: InputDistribution,
    /// For the paper's default tiling: the SRAM size `M` in bytes the tiles were derived from.
    pub sram_bytes: Option<usize>,
}

/// The whole sweep.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Configurations to run.
    pub configs: Vec<Config>,
    /// Sampled query rows per configuration.
    pub rows: usize,
    /// Base seed of the inputs.
    pub seed: u64,
    /// Input seeds: `seed`, `seed + 1`, ..., `seed + seeds − 1`, each a fresh draw of every
    /// input group.
    pub seeds: u64,
}

/// Input seeds per run unless `--seeds` says otherwise.
pub const DEFAULT_SEEDS: u64 = 3;

/// The tile shape of the sequence-length sweep.
pub const DEFAULT_TILE: (usize, usize) = (64, 64);

/// The block-area experiment: three areas (1024, 4096, 16384 scores), each as a square tile and
/// as two tiles with Br and Bc swapped.
pub const TILE_AREAS: [(usize, usize); 9] = [
    (16, 64),
    (32, 32),
    (64, 16),
    (32, 128),
    (64, 64),
    (128, 32),
    (64, 256),
    (128, 128),
    (256, 64),
];

/// SRAM sizes (bytes) for the paper's default tiling: 16 KiB, 48 KiB (a V100/T4 SM's shared
/// memory default), 96 KiB and 192 KiB (an A100 SM's L1/shared memory).
pub const SRAM_BYTES: [usize; 4] = [16 << 10, 48 << 10, 96 << 10, 192 << 10];

/// FlashAttention's default tiling (Dao et al. 2022, Algorithm 1, which "Is Flash Attention
/// Stable?" uses): `Bc = ceil(M / 4d)`, `Br = min(ceil(M / 4d), d)` for an SRAM of `M`
/// elements; `M` is counted in bf16 elements (2 bytes) for every model, so each model sees the
/// same tiles.
pub fn paper_tiles(sram_bytes: usize, head_dim: usize) -> (usize, usize) {
    let m = sram_bytes / 2;
    let bc = m.div_ceil(4 * head_dim.max(1)).max(1);
    (bc.min(head_dim.max(1)), bc)
}

impl Plan {
    /// The quick sweep (a few minutes on 2 cores, release build): the main models, d = 64, normal
    /// inputs, N from 256 to 16384; at N = 4096 the tile experiments (Bc from 16 to 256, block
    /// areas with swapped and square tiles, the paper's default tiling).
    pub fn quick(seed: u64) -> Plan {
        Plan::build(
            &[256, 1024, 4096, 16384],
            &[64],
            &[InputDistribution::Normal],
            4096,
            &[16, 64, 256],
            16,
            seed,
            false,
        )
    }

    /// The full sweep.
    pub fn full(seed: u64) -> Plan {
        Plan::build(
            &[128, 256, 512, 1024, 2048, 4096, 8192, 16384],
            &[64, 128],
            &[InputDistribution::Normal, InputDistribution::Outliers],
            4096,
            &[16, 32, 64, 128, 256],
            16,
            seed,
            true,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        seq_lens: &[usize],
        head_dims: &[usize],
        distributions: &[InputDistribution],
        tile_sweep_len: usize,
        block_ks: &[usize],
        rows: usize,
        seed: u64,
        ablations: bool,
    ) -> Plan {
        let mut models = Model::MAIN.to_vec();
        if ablations {
            models.extend(Model::EVERY_OP);
        }
        let mut configs = Vec::new();
        for &distribution in distributions {
            for &head_dim in head_dims {
                for &model in &models {
                    let base = Config {
                        algorithm: Algorithm::Baseline,
                        model,
                        seq_len: 0,
                        head_dim,
                        block_q: None,
                        block_k: None,
                        distribution,
                        sram_bytes: None,
                    };
                    if model.runs(Algorithm::Baseline) {
                        for &seq_len in seq_lens.iter().chain([&tile_sweep_len]) {
                            configs.push(Config { seq_len, ..base });
                        }
                    }
                    if !model.runs(Algorithm::Flash) {
                        continue;
                    }
                    let flash = |seq_len, (br, bc): (usize, usize)| Config {
                        algorithm: Algorithm::Flash,
                        seq_len,
                        block_q: Some(br),
                        block_k: Some(bc),
                        ..base
                    };
                    // Deviation vs sequence length at the default tile.
                    for &seq_len in seq_lens {
                        configs.push(flash(seq_len, DEFAULT_TILE));
                    }
                    // The tile experiments on normal inputs only (the paper's tile sweeps use
                    // one input distribution).
                    if distribution != InputDistribution::Normal {
                        continue;
                    }
                    // Deviation vs key tile size, query tile fixed.
                    for &bc in block_ks {
                        configs.push(flash(tile_sweep_len, (DEFAULT_TILE.0, bc)));
                    }
                    // Block areas, square and swapped tiles.
                    for tile in TILE_AREAS {
                        configs.push(flash(tile_sweep_len, tile));
                    }
                    // The paper's default tiling for several SRAM sizes.
                    for sram in SRAM_BYTES {
                        configs.push(Config {
                            sram_bytes: Some(sram),
                            ..flash(tile_sweep_len, paper_tiles(sram, head_dim))
                        });
                    }
                }
            }
        }
        configs.sort_by_key(|c| {
            (
                c.distribution.name(),
                c.head_dim,
                c.seq_len,
                c.model.format(),
                c.model.name(),
                c.algorithm.name(),
                c.block_q,
                c.block_k,
                c.sram_bytes,
            )
        });
        configs.dedup();
        Plan {
            configs,
            rows,
            seed,
            seeds: DEFAULT_SEEDS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_tiles_follow_the_formula() {
        // M = 48 KiB = 24576 bf16 elements, d = 64: Bc = ceil(24576 / 256) = 96, Br = min(96, 64).
        assert_eq!(paper_tiles(48 << 10, 64), (64, 96));
        // d = 128: Bc = 48, Br = 48.
        assert_eq!(paper_tiles(48 << 10, 128), (48, 48));
        assert_eq!(paper_tiles(16 << 10, 64), (32, 32));
    }

    #[test]
    fn every_model_runs_some_algorithm_and_the_headline_pairs_are_planned() {
        let plan = Plan::quick(1);
        for (flash, base) in Model::HEADLINE {
            assert!(flash.runs(Algorithm::Flash) && base.runs(Algorithm::Baseline));
            assert_eq!(flash.format(), base.format());
            for (model, algorithm) in [(flash, Algorithm::Flash), (base, Algorithm::Baseline)] {
                assert!(plan
                    .configs
                    .iter()
                    .any(|c| c.model == model && c.algorithm == algorithm));
            }
        }
        // Tile areas: every area has its square and both orientations.
        for (br, bc) in TILE_AREAS {
            assert!(TILE_AREAS.contains(&(bc, br)));
        }
    }
}
