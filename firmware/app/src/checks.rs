//! The checks: inputs, the measured kernel call, and the checksum of what it wrote.

use crate::blob::{self, CONFIG};
use crate::buffers::*;
use crate::inputs::Stream;
use crate::{Hash, Platform};
use tessera_kernels::attention::{baseline_attention, flash_attention};
use tessera_kernels::nn::{greedy_decode, self_speculative_decode, ModelWeights};
use tessera_kernels::optim::{adam_step, Tower};
use tessera_kernels::{bf16, Error, Result};

/// One check: fill the inputs, run the kernel (measured), hash its output.
pub struct Check {
    pub name: &'static str,
    prepare: fn(&mut Buffers),
    kernel: fn(&mut Buffers) -> Result<()>,
    hash: fn(&Buffers) -> Hash,
}

/// What one check gave.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    pub name: &'static str,
    pub hash: Hash,
    pub stack: usize,
    pub instructions: u64,
    pub error: Option<Error>,
}

fn attention_inputs(b: &mut Buffers) {
    let mut s = Stream::new(0x5eed_0001);
    s.fill(&mut b.q);
    s.fill(&mut b.k);
    s.fill(&mut b.v);
    b.out.fill(f32::NAN);
    for (x, y) in b.q16.iter_mut().zip(&b.q) {
        *x = bf16::from_f32(*y);
    }
    for (x, y) in b.k16.iter_mut().zip(&b.k) {
        *x = bf16::from_f32(*y);
    }
    for (x, y) in b.v16.iter_mut().zip(&b.v) {
        *x = bf16::from_f32(*y);
    }
    b.out16.fill(bf16::NAN);
}

fn hash_f32(x: &[f32]) -> Hash {
    let mut h = Hash::new();
    x.iter().for_each(|v| h.add(v.to_bits()));
    h
}

fn hash_out(b: &Buffers) -> Hash {
    hash_f32(&b.out)
}

fn hash_decode_out(b: &Buffers) -> Hash {
    hash_f32(&b.out[..HEADS * D])
}

fn hash_out16(b: &Buffers) -> Hash {
    let mut h = Hash::new();
    b.out16.iter().for_each(|v| h.add(v.to_bits() as u32));
    h
}

fn optimizer_inputs(b: &mut Buffers) {
    let mut s = Stream::new(0x5eed_0002);
    s.fill(&mut b.params);
    s.fill(&mut b.grads);
    b.m.fill(0.0);
    b.v2.fill(0.0);
    b.tower.fill(0.0);
}

fn hash_optimizer(b: &Buffers) -> Hash {
    let mut h = hash_f32(&b.params);
    [&b.m[..], &b.v2[..], &b.tower[..]]
        .iter()
        .for_each(|x| x.iter().for_each(|v| h.add(v.to_bits())));
    h
}

fn decode_inputs(b: &mut Buffers) {
    b.kv.fill(0.0);
    b.decode.fill(0.0);
}

fn weights() -> Result<ModelWeights<'static, bf16>> {
    ModelWeights::new(
        CONFIG,
        blob::params().ok_or(Error::BadParameter("model blob"))?,
    )
}

fn prompt(buf: &mut [u32; blob::PROMPT_LEN]) -> &[u32] {
    for (slot, t) in buf.iter_mut().zip(blob::prompt()) {
        *slot = t;
    }
    buf
}

fn greedy(b: &mut Buffers) -> Result<()> {
    let mut p = [0u32; blob::PROMPT_LEN];
    let w = weights()?;
    greedy_decode(
        &w,
        prompt(&mut p),
        ATTENTION,
        &mut b.kv,
        &mut b.decode,
        &mut b.greedy,
    )?;
    Ok(())
}

fn speculative(b: &mut Buffers) -> Result<()> {
    let mut p = [0u32; blob::PROMPT_LEN];
    let w = weights()?;
    let (kv, scratch, out) = (&mut b.kv, &mut b.decode, &mut b.speculative);
    self_speculative_decode(
        &w,
        prompt(&mut p),
        EXIT_LAYER,
        DRAFT,
        ATTENTION,
        kv,
        scratch,
        out,
    )?;
    Ok(())
}

fn hash_tokens(x: &[u32]) -> Hash {
    let mut h = Hash::new();
    x.iter().for_each(|&t| h.add(t));
    h
}

/// `TESSERA_FW_ONLY` at build time keeps one check's kernel (the others become no-ops, so the
/// linker drops their code): `sizes.sh` measures each kernel's `.text` this way.
const ONLY: Option<&str> = option_env!("TESSERA_FW_ONLY");

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The check as given, or with a no-op kernel when `TESSERA_FW_ONLY` names another.
const fn keep(c: Check) -> Check {
    match ONLY {
        Some(only) if !same(only, c.name) => Check {
            kernel: |_| Ok(()),
            ..c
        },
        _ => c,
    }
}

/// Every check, in order.
pub const CHECKS: [Check; 9] = [
    keep(Check {
        name: "flash_f32",
        prepare: attention_inputs,
        kernel: |b| flash_attention(&PREFILL, TILES, &b.q, &b.k, &b.v, &mut b.out, &mut b.flash),
        hash: hash_out,
    }),
    keep(Check {
        name: "flash_bf16",
        prepare: attention_inputs,
        kernel: |b| {
            let (q, k, v) = (&b.q16, &b.k16, &b.v16);
            flash_attention(&PREFILL, TILES, q, k, v, &mut b.out16, &mut b.flash)
        },
        hash: hash_out16,
    }),
    keep(Check {
        name: "baseline_f32",
        prepare: attention_inputs,
        kernel: |b| baseline_attention(&PREFILL, &b.q, &b.k, &b.v, &mut b.out, &mut b.baseline),
        hash: hash_out,
    }),
    keep(Check {
        name: "decode_flash",
        prepare: attention_inputs,
        kernel: |b| {
            let out = &mut b.out[..HEADS * D];
            flash_attention(
                &DECODE,
                TILES,
                &b.q[..HEADS * D],
                &b.k,
                &b.v,
                out,
                &mut b.flash,
            )
        },
        hash: hash_decode_out,
    }),
    keep(Check {
        name: "decode_baseline",
        prepare: attention_inputs,
        kernel: |b| {
            let out = &mut b.out[..HEADS * D];
            baseline_attention(&DECODE, &b.q[..HEADS * D], &b.k, &b.v, out, &mut b.baseline)
        },
        hash: hash_decode_out,
    }),
    keep(Check {
        name: "adam_step",
        prepare: optimizer_inputs,
        kernel: |b| {
            adam_step(
                &ADAM_CONFIG,
                1,
                &mut b.params,
                &b.grads,
                &mut b.m,
                &mut b.v2,
            )
        },
        hash: hash_optimizer,
    }),
    keep(Check {
        name: "hyper_adam_tower",
        prepare: optimizer_inputs,
        kernel: |b| {
            // Adam whose lr, beta1, beta2 are learned by Adam: three steps on f(w) = |w|^2 / 2.
            let mut tower: Tower = Tower::new(ADAM)?.stacked(HYPER_ADAM)?;
            for _ in 0..3 {
                b.grads.copy_from_slice(&b.params);
                tower.step(&mut b.params, &b.grads, &mut b.tower)?;
            }
            Ok(())
        },
        hash: hash_optimizer,
    }),
    keep(Check {
        name: "greedy_decode",
        prepare: decode_inputs,
        kernel: greedy,
        hash: |b| hash_tokens(&b.greedy),
    }),
    keep(Check {
        name: "self_speculative",
        prepare: decode_inputs,
        kernel: speculative,
        hash: |b| hash_tokens(&b.speculative),
    }),
];

/// Runs every check, reports each through `each`, and prints a table and the generated text to
/// the platform's output.
pub fn run(p: &mut dyn Platform, b: &mut Buffers, each: &mut dyn FnMut(&Measured)) {
    for c in &CHECKS {
        (c.prepare)(b);
        p.paint_stack();
        let i0 = p.instructions();
        let result = (c.kernel)(b);
        let i1 = p.instructions();
        let stack = p.stack_used();
        let m = Measured {
            name: c.name,
            hash: (c.hash)(b),
            stack,
            instructions: i1.wrapping_sub(i0),
            error: result.err(),
        };
        each(&m);
    }
    let out = p.out();
    let _ = write!(out, "prompt + greedy continuation: \"");
    for t in blob::prompt().chain(b.greedy.iter().copied()) {
        let _ = match blob::character(t) {
            '\n' => out.write_str("\\n"),
            c => out.write_char(c),
        };
    }
    let _ = writeln!(out, "\"");
}
