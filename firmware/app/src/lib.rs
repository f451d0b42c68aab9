//! The application both firmware programs run (and the host runs to compute what they must
//! print): Tessera's kernels on static buffers sized by the kernel crate's `const fn`s, each
//! output hashed, the stack each call used and the instructions it took measured by the
//! platform.
//!
//! Checks: flash attention (f32 and bf16, N = 64, d = 32, causal, 4 query heads on 2 KV heads),
//! baseline attention, decode attention against a KV cache (flash and baseline), one Adam step,
//! a hyper-Adam tower (Adam/Adam), and greedy vs self-speculative decoding of a tiny model.

#![no_std]

pub mod blob;
mod buffers;
mod checks;
mod inputs;
#[cfg(feature = "panic-proof")]
mod panic_proof;
pub mod stack;

pub use buffers::Buffers;
pub use checks::{run, Measured, CHECKS};

/// What a program provides: output, stack painting and an instruction counter.
pub trait Platform {
    /// Where lines of text go.
    fn out(&mut self) -> &mut dyn core::fmt::Write;
    /// Fills the unused stack below the caller with a pattern.
    fn paint_stack(&mut self);
    /// Bytes of the painted stack that were written since [`Platform::paint_stack`].
    fn stack_used(&mut self) -> usize;
    /// A free-running count of retired instructions (0 where there is none).
    fn instructions(&mut self) -> u64;
}

/// FNV-1a over 64 bits: the checksum of an output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hash(pub u64);

impl Hash {
    /// The empty hash.
    pub const fn new() -> Self {
        Hash(0xcbf2_9ce4_8422_2325)
    }

    /// Adds the bytes of `word`, little-endian.
    pub fn add(&mut self, word: u32) {
        for b in word.to_le_bytes() {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl Default for Hash {
    fn default() -> Self {
        Hash::new()
    }
}

#[cfg(feature = "expected")]
mod expected {
    include!(concat!(env!("TESSERA_FW_GEN"), "/expected.rs"));
}

/// The checksum the host's generic backend computed for check `name`.
#[cfg(feature = "expected")]
pub fn expected(name: &str) -> Option<u64> {
    expected::EXPECTED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, h)| h)
}

/// Runs every check, prints a table (`target` and the `cost` column's label and unit in the
/// header) and returns whether every checksum equals the host's and self-speculative decoding
/// gave greedy decoding's tokens.
#[cfg(feature = "expected")]
pub fn run_and_compare(p: &mut dyn Platform, b: &mut Buffers, target: &str, cost: &str) -> bool {
    let mut lines = [None; CHECKS.len()];
    let mut i = 0;
    run(p, b, &mut |m| {
        if let Some(slot) = lines.get_mut(i) {
            *slot = Some(*m);
        }
        i += 1;
    });
    let mut ok = i == lines.len() && b.greedy == b.speculative;
    let (label, unit) = cost.split_once(' ').unwrap_or((cost, ""));
    let _ = writeln!(p.out(), "target {target}  (stack in bytes, {label} {unit})");
    for m in lines.iter().flatten() {
        let pass = m.error.is_none() && expected(m.name) == Some(m.hash.0);
        ok &= pass;
        let _ = writeln!(
            p.out(),
            "{:<18} {:016x} {:<8} stack {:>5}  {label} {:>9}",
            m.name,
            m.hash.0,
            if pass { "ok" } else { "MISMATCH" },
            m.stack,
            m.instructions
        );
    }
    ok
}
