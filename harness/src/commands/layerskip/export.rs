//! `tessera layerskip export`: a checkpoint as the flat blob a firmware links with
//! `include_bytes!` (see `firmware/app/src/blob.rs`, which reads it).
//!
//! Layout, little-endian: the magic `TSRBLOB1`; `u32` vocab, dim, layers, heads, kv_heads,
//! ffn_hidden, max_seq; `f32` rope_theta, norm_eps; `u32` element format (0 = f32, 1 = bf16),
//! parameter count, prompt length; zero padding to byte 64; the parameters in the kernel layout;
//! the prompt's tokens (`u32`); the vocabulary's characters as UTF-8 (token `i` is the `i`-th).

use super::CliResult;
use crate::fsutil::{check_outputs, write_atomic};
use crate::train::checkpoint;
use anyhow::{ensure, Context};
use clap::Parser;
use std::path::PathBuf;
use tessera_kernels::bf16;

/// Bytes before the parameters.
pub const HEADER_BYTES: usize = 64;

#[derive(Parser, Debug)]
pub(super) struct ExportArgs {
    /// The model (safetensors, from `tessera layerskip train`).
    #[arg(long)]
    model: PathBuf,
    /// Where to write the blob.
    #[arg(long)]
    out: PathBuf,
    /// Element format of the stored weights: f32 or bf16 (rounded to nearest even).
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// The prompt the firmware continues (encoded with the model's vocabulary).
    #[arg(long, default_value = "ROMEO:\n")]
    prompt: String,
}

/// Runs `tessera layerskip export`.
pub(super) fn run(a: ExportArgs) -> CliResult {
    check_outputs([a.out.as_path()], None)?;
    let ck = checkpoint::load(&a.model)?;
    let prompt = ck
        .vocab
        .encode(&a.prompt)
        .context("--prompt uses a character the model's vocabulary lacks")?;
    ensure!(!prompt.is_empty(), "--prompt is empty");
    let bytes = encode(&ck, &prompt, &a.dtype)?;
    write_atomic(&a.out, &bytes)?;
    println!(
        "wrote {} ({} bytes: {} {} parameters, prompt of {} tokens)",
        a.out.display(),
        bytes.len(),
        ck.params.len(),
        a.dtype,
        prompt.len()
    );
    Ok(())
}

fn encode(ck: &checkpoint::Checkpoint, prompt: &[u32], dtype: &str) -> anyhow::Result<Vec<u8>> {
    let c = &ck.config;
    let code: u32 = match dtype {
        "f32" => 0,
        "bf16" => 1,
        other => anyhow::bail!("--dtype must be f32 or bf16, not `{other}`"),
    };
    let u = |x: usize| u32::try_from(x).context("a model size does not fit the blob's u32 fields");
    let mut out = b"TSRBLOB1".to_vec();
    for x in [
        c.vocab,
        c.dim,
        c.layers,
        c.heads,
        c.kv_heads,
        c.ffn_hidden,
        c.max_seq,
    ] {
        out.extend(u(x)?.to_le_bytes());
    }
    out.extend(c.rope_theta.to_le_bytes());
    out.extend(c.norm_eps.to_le_bytes());
    for x in [code, u(ck.params.len())?, u(prompt.len())?] {
        out.extend(x.to_le_bytes());
    }
    out.resize(HEADER_BYTES, 0);
    for &p in &ck.params {
        match code {
            0 => out.extend(p.to_le_bytes()),
            _ => out.extend(bf16::from_f32(p).to_bits().to_le_bytes()),
        }
    }
    for &t in prompt {
        out.extend(t.to_le_bytes());
    }
    out.extend(ck.vocab.to_string_lossless().as_bytes());
    Ok(out)
}
