//! What the study sweeps: formats, algorithms and the grids of the quick and full runs.

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

/// The number format of every intermediate, with its accumulator model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum NumberFormat {
    /// BF16 intermediates, reductions in f32 inside each primitive (`Bf16Mma`, the paper's setting).
    Bf16,
    /// FP16 intermediates, reductions in f32 inside each primitive (`F16Mma`).
    Fp16,
    /// The production f32 kernels (SIMD backend chosen at run time).
    F32,
    /// f64 everywhere (`f64` elements and accumulator).
    F64,
    /// BF16 with every operation rounded, reductions included (`Bf16Acc`): an ablation.
    Bf16EveryOp,
    /// FP16 with every operation rounded (`F16Acc`): an ablation.
    Fp16EveryOp,
}

impl NumberFormat {
    /// The four formats of the paper, most precise last.
    pub const PAPER: [NumberFormat; 4] = [
        NumberFormat::Bf16,
        NumberFormat::Fp16,
        NumberFormat::F32,
        NumberFormat::F64,
    ];
    /// The two every-operation-rounded ablations.
    pub const EVERY_OP: [NumberFormat; 2] = [NumberFormat::Bf16EveryOp, NumberFormat::Fp16EveryOp];

    /// Name used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            NumberFormat::Bf16 => "bf16",
            NumberFormat::Fp16 => "fp16",
            NumberFormat::F32 => "f32",
            NumberFormat::F64 => "f64",
            NumberFormat::Bf16EveryOp => "bf16-every-op",
            NumberFormat::Fp16EveryOp => "fp16-every-op",
        }
    }

    /// Unit roundoff of the format's stored intermediates (`2^-p`).
    pub fn unit_roundoff(self) -> f64 {
        use crate::tolerance::{U_BF16, U_F16, U_F32, U_F64};
        match self {
            NumberFormat::Bf16 | NumberFormat::Bf16EveryOp => U_BF16,
            NumberFormat::Fp16 | NumberFormat::Fp16EveryOp => U_F16,
            NumberFormat::F32 => U_F32,
            NumberFormat::F64 => U_F64,
        }
    }

    /// The format ULPs are counted in.
    pub fn ulp_format(self) -> crate::metrics::Format {
        use crate::metrics::Format;
        match self {
            NumberFormat::Bf16 | NumberFormat::Bf16EveryOp => Format::Bf16,
            NumberFormat::Fp16 | NumberFormat::Fp16EveryOp => Format::F16,
            NumberFormat::F32 => Format::F32,
            NumberFormat::F64 => Format::F64,
        }
    }
}

/// One run of one kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Number format.
    pub format: NumberFormat,
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
}

/// The tile shape of the sequence-length sweep.
pub const DEFAULT_TILE: (usize, usize) = (64, 64);

impl Plan {
    /// The quick sweep (well under two minutes on 2 cores, release build): the paper's four
    /// formats, d = 64, normal inputs, N from 256 to 16384, and Bc from 16 to 256 at N = 4096.
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
        let mut formats = NumberFormat::PAPER.to_vec();
        if ablations {
            formats.extend(NumberFormat::EVERY_OP);
        }
        let mut configs = Vec::new();
        for &distribution in distributions {
            for &head_dim in head_dims {
                for &format in &formats {
                    let base = Config {
                        algorithm: Algorithm::Baseline,
                        format,
                        seq_len: 0,
                        head_dim,
                        block_q: None,
                        block_k: None,
                        distribution,
                    };
                    let flash = |seq_len, br, bc| Config {
                        algorithm: Algorithm::Flash,
                        seq_len,
                        block_q: Some(br),
                        block_k: Some(bc),
                        ..base
                    };
                    // Deviation vs sequence length at the default tile.
                    for &seq_len in seq_lens {
                        configs.push(Config { seq_len, ..base });
                        configs.push(flash(seq_len, DEFAULT_TILE.0, DEFAULT_TILE.1));
                    }
                    // Deviation vs key tile size, query tile fixed.
                    for &bc in block_ks {
                        configs.push(flash(tile_sweep_len, DEFAULT_TILE.0, bc));
                    }
                    // Swapped and square tile pairs: (Br, Bc) and (Bc, Br).
                    for (a, b) in [(32, 128), (64, 256), (128, 128)] {
                        configs.push(flash(tile_sweep_len, a, b));
                        configs.push(flash(tile_sweep_len, b, a));
                    }
                }
            }
        }
        if !seq_lens.contains(&tile_sweep_len) {
            // The tile sweep needs its baseline too.
            let extra: Vec<Config> = configs
                .iter()
                .filter(|c| c.algorithm == Algorithm::Baseline && c.seq_len == seq_lens[0])
                .map(|c| Config {
                    seq_len: tile_sweep_len,
                    ..*c
                })
                .collect();
            configs.extend(extra);
        }
        configs.sort_by_key(|c| {
            (
                c.distribution.name(),
                c.head_dim,
                c.seq_len,
                c.format.name(),
                c.algorithm.name(),
                c.block_q,
                c.block_k,
            )
        });
        configs.dedup();
        Plan {
            configs,
            rows,
            seed,
        }
    }
}
