//! Deterministic inputs: the same bits on every target (integer arithmetic, exact conversions).

/// A xorshift32 stream of values in `[-1, 1)` with 24 significant bits.
pub struct Stream(u32);

impl Stream {
    pub fn new(seed: u32) -> Self {
        Stream(seed | 1)
    }

    pub fn next_f32(&mut self) -> f32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        (x >> 8) as f32 / (1u32 << 23) as f32 - 1.0
    }

    pub fn fill(&mut self, out: &mut [f32]) {
        for x in out {
            *x = self.next_f32();
        }
    }
}
