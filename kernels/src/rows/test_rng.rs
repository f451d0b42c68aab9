//! Deterministic test data for the row kernels' tests, without a dependency: xorshift64*. Each
//! test module adds the generators it needs in an `impl Rng` of its own (method names distinct
//! across them).

/// xorshift64* (a 64-bit state, never zero).
pub(super) struct Rng(pub(super) u64);

impl Rng {
    /// The next 64 bits.
    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform below `n > 0` (modulo bias ignored: test data).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
