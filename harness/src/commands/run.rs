//! `tessera run`: one attention kernel on .npy tensors.
//!
//! ```text
//! tessera run --kernel flash --q Q.npy --k K.npy --v V.npy --out O.npy [--causal]
//!             [--dtype f32|bf16] [--block-q N --block-k N] [--backend NAME] [--scale X]
//!             [--threads N]
//! ```
//!
//! Q is `[batch, heads, q_len, head_dim]`, K and V `[batch, kv_heads, kv_len, head_dim]` with
//! `heads % kv_heads == 0` (GQA/MQA) and any `kv_len` (decode: with `--causal` the queries are the
//! last `q_len` positions). The output has Q's shape and is always float32. Every input is read and
//! checked and the whole output computed before anything is written, and the write is atomic, so a
//! failed run leaves no output file (and an existing one untouched).

use super::CliResult;
use crate::attention::{self, AttentionProblem, ElementKind, Kernel, KernelConfig};
use crate::npy::{self, NpyError, Tensor};
use anyhow::{bail, ensure, Context};
use std::path::{Path, PathBuf};
use tessera_kernels::attention::{AttentionShape, FlashTiles, MAX_TILE};
use tessera_kernels::simd::{available_backends, Backend};

/// Which computation `tessera run` does.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelChoice {
    /// Tiled online-softmax attention.
    Flash,
    /// Materialised-logits attention.
    Baseline,
    /// The exact oracle (tessera-reference), rounded to float32.
    Reference,
}

/// The element type the kernel runs on.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtypeChoice {
    /// float32 inputs and arithmetic.
    F32,
    /// Inputs rounded to bfloat16, bf16 kernels with an f32 accumulator.
    Bf16,
}

/// Arguments of `tessera run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The computation: `flash`, `baseline`, or the exact `reference`.
    #[arg(long, value_enum)]
    pub kernel: KernelChoice,
    /// Queries: float32 .npy `[batch, heads, q_len, head_dim]`.
    #[arg(long)]
    pub q: PathBuf,
    /// Keys: float32 .npy `[batch, kv_heads, kv_len, head_dim]`.
    #[arg(long)]
    pub k: PathBuf,
    /// Values: float32 .npy, the same shape as the keys.
    #[arg(long)]
    pub v: PathBuf,
    /// Output: float32 .npy with the shape of the queries (written atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Mask keys after each query's position (queries are the last q_len positions).
    #[arg(long)]
    pub causal: bool,
    /// Element type: `f32`, or `bf16` (inputs rounded to bf16; f32 accumulator).
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: DtypeChoice,
    /// Flash query tile (Br), 1..=4096 [default: from the head dimension and the caches,
    /// `FlashTiles::for_shape`].
    #[arg(long)]
    pub block_q: Option<usize>,
    /// Flash key tile (Bc), 1..=4096 [default: from the head dimension and the caches].
    #[arg(long)]
    pub block_k: Option<usize>,
    /// Threads for flash (split over heads and query tiles; the output does not depend on it)
    /// [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Backend: `auto`, `generic`, `avx2`, `avx512`, `avx512bf16`, `neon`, `portable`.
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// Logit scale, a finite positive float32 [default: 1/sqrt(head_dim) in float32].
    #[arg(long)]
    pub scale: Option<f32>,
}

/// Runs the subcommand.
pub fn main(args: Args) -> CliResult {
    let backend = parse_backend(&args.backend)?;
    let threads = args.threads.unwrap_or_else(crate::flash_threads::all_cores);
    ensure!(threads != 0, "--threads must be at least 1");
    if let Some(scale) = args.scale {
        ensure!(
            scale.is_finite() && scale > 0.0,
            "--scale must be finite and positive, got {scale}"
        );
    }
    let q = read(&args.q, "--q")?;
    let k = read(&args.k, "--k")?;
    let v = read(&args.v, "--v")?;
    let shape = problem_shape(&q.shape, &k.shape, &v.shape)?;
    let shape = AttentionShape {
        causal: args.causal,
        scale: args.scale.unwrap_or(shape.scale),
        ..shape
    };
    shape.validate().context("bad problem shape")?;
    let tiles = parse_tiles(&shape, args.block_q, args.block_k)?;
    let problem = AttentionProblem::new(shape, q.data, k.data, v.data)?;
    // The output's directory is checked before the kernel runs (the oracle takes minutes on
    // long sequences), not after.
    crate::fsutil::check_output_file(&args.out)?;
    let element = match args.dtype {
        DtypeChoice::F32 => ElementKind::F32,
        DtypeChoice::Bf16 => ElementKind::Bf16,
    };
    let kernel = match args.kernel {
        KernelChoice::Flash => Some(Kernel::Flash),
        KernelChoice::Baseline => Some(Kernel::Baseline),
        KernelChoice::Reference => None,
    };
    let out: Vec<f32> = match kernel {
        Some(kernel) => {
            let config = KernelConfig {
                kernel,
                element,
                backend,
                tiles,
                ..KernelConfig::baseline()
            };
            let p = &problem;
            match kernel {
                Kernel::Flash => {
                    crate::flash_threads::run_f32(&config, threads, &p.shape, &p.q, &p.k, &p.v)
                }
                Kernel::Baseline => attention::run_f32(&config, &p.shape, &p.q, &p.k, &p.v),
            }
            .with_context(|| format!("{} kernel failed", kernel.name()))?
        }
        // The oracle's output is correctly rounded to f64; rounding once more gives float32.
        None => problem
            .reference(element)
            .into_iter()
            .map(|x| x as f32)
            .collect(),
    };
    npy::write_f32(&args.out, &q.shape, &out).context("cannot write output")?;
    eprintln!(
        "wrote {} {:?} ({:?}, {}, {})",
        args.out.display(),
        q.shape,
        args.kernel,
        element.name(),
        backend.name()
    );
    Ok(())
}

fn parse_backend(name: &str) -> anyhow::Result<Backend> {
    let list =
        |it: &mut dyn Iterator<Item = Backend>| it.map(|b| b.name()).collect::<Vec<_>>().join(", ");
    let backend = Backend::from_name(name).with_context(|| {
        let known = list(&mut std::iter::once(Backend::Auto).chain(Backend::ALL));
        format!("unknown backend `{name}` (known: {known})")
    })?;
    if !backend.is_available() {
        let here = list(&mut std::iter::once(Backend::Auto).chain(available_backends()));
        bail!("backend `{name}` is not available on this CPU or build (available: {here})");
    }
    Ok(backend)
}

fn parse_tiles(
    shape: &AttentionShape,
    block_q: Option<usize>,
    block_k: Option<usize>,
) -> anyhow::Result<FlashTiles> {
    let default = FlashTiles::for_shape(shape);
    let tiles = FlashTiles::new(
        block_q.unwrap_or(default.block_q),
        block_k.unwrap_or(default.block_k),
    );
    for (value, flag) in [(tiles.block_q, "--block-q"), (tiles.block_k, "--block-k")] {
        ensure!(
            (1..=MAX_TILE).contains(&value),
            "{flag} must be in 1..={MAX_TILE}, got {value}"
        );
    }
    Ok(tiles)
}

/// Reads the tensor of `flag`; the error says which flag and, for a malformed file, which file
/// ([`NpyError::Io`] names it already).
fn read(path: &Path, flag: &str) -> anyhow::Result<Tensor<f32>> {
    npy::read_f32(path).map_err(|e| {
        let context = match e {
            NpyError::Io { .. } => format!("cannot read {flag}"),
            _ => format!("bad {flag} file {}", path.display()),
        };
        anyhow::Error::new(e).context(context)
    })
}

/// The attention shape the three tensor shapes describe, or what is wrong with them.
fn problem_shape(q: &[usize], k: &[usize], v: &[usize]) -> anyhow::Result<AttentionShape> {
    for (shape, flag) in [(q, "--q"), (k, "--k"), (v, "--v")] {
        ensure!(
            shape.len() == 4,
            "{flag} must have rank 4 [batch, heads, seq, head_dim], got shape {shape:?}"
        );
    }
    ensure!(
        k == v,
        "--k and --v must have the same shape, got {k:?} and {v:?}"
    );
    let (batch, heads, q_len, head_dim) = (q[0], q[1], q[2], q[3]);
    let (kv_heads, kv_len) = (k[1], k[2]);
    ensure!(
        k[0] == batch,
        "batch differs: --q has {batch}, --k/--v have {}",
        k[0]
    );
    ensure!(
        k[3] == head_dim,
        "head_dim differs: --q has {head_dim}, --k/--v have {}",
        k[3]
    );
    ensure!(
        kv_heads != 0 && heads % kv_heads == 0,
        "query heads ({heads}) must be a positive multiple of key/value heads ({kv_heads})"
    );
    Ok(AttentionShape::new(batch, heads, q_len, kv_len, head_dim).with_kv_heads(kv_heads))
}
