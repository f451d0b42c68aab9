//! Seeded inputs shared by the integration tests.
#![allow(dead_code)]

/// A small deterministic generator (xorshift64*), so the tests need no dependency.
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * 2f64.powi(-53)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// An `f32` value in [-amplitude, amplitude], as `f64`.
    pub fn f32_value(&mut self, amplitude: f64) -> f64 {
        (((2.0 * self.uniform() - 1.0) * amplitude) as f32) as f64
    }

    /// A `bf16` value (an `f32` with its low 16 bits cleared) in [-amplitude, amplitude].
    pub fn bf16_value(&mut self, amplitude: f64) -> f64 {
        let x = self.f32_value(amplitude) as f32;
        f32::from_bits(x.to_bits() & 0xffff_0000) as f64
    }

    /// `len` `f32` values in [-amplitude, amplitude].
    pub fn f32_vec(&mut self, len: usize, amplitude: f64) -> Vec<f64> {
        (0..len).map(|_| self.f32_value(amplitude)).collect()
    }
}
