//! The peers of `benches/peers/benches/peers.rs`, each called on the inputs Tessera gets:
//!
//! - [`candle_attention`]: candle-nn's CPU flash attention (`candle_nn::attention::flash_attn`,
//!   the function the deprecated `candle_nn::cpu_flash_attention::run_flash_attn_cpu` forwards
//!   to), on tensors in candle's `(batch, seq, heads, head_dim)` layout;
//! - [`GemmAttention`]: `softmax(Q·Kᵀ·scale)·V` per head as two f32 GEMMs (ndarray's
//!   `general_mat_mul`, which runs matrixmultiply's packed micro-kernels, one thread) and a
//!   row softmax between them; bf16 inputs are widened to f32 and the output rounded back.
//!
//! plus the problem list ([`cases`]), the FLOP count the throughputs are computed from
//! ([`Case::flop`]) and the CPU description the bench prints ([`cpu_description`]).

use candle_core::{Device, Tensor};
use candle_nn::attention::{flash_attn, AttnMask};
use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2, ArrayViewMut2};
use tessera_kernels::{bf16, Element};

/// One problem: `heads` heads (batch 1) of `q_len` queries over `kv_len` keys of `head_dim`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    /// Query (and key/value) heads; batch is 1.
    pub heads: usize,
    /// Query rows per head.
    pub q_len: usize,
    /// Keys per head.
    pub kv_len: usize,
    /// Head dimension.
    pub head_dim: usize,
    /// Causal mask: query `i` sees keys `0 ..= i + kv_len - q_len` (Tessera's and candle's rule).
    pub causal: bool,
}

impl Case {
    /// Useful FLOP of the forward pass: `4·q_len·kv_len·d` per head (two matmuls of
    /// `2·q·kv·d`), half of that when causal with `q_len == kv_len` (the visible half of the
    /// scores); softmax's exp and sums are not counted. Decode (`q_len = 1`) is `4·kv_len·d`.
    pub const fn flop(&self) -> u64 {
        let full = 4 * self.heads * self.q_len * self.kv_len * self.head_dim;
        (if self.causal && self.q_len > 1 {
            full / 2
        } else {
            full
        }) as u64
    }

    /// The criterion group name: `{dtype}_1x{h}x{n}x{d}[_causal]`, or
    /// `{dtype}_decode_{h}x{kv}x{d}` for one query row.
    pub fn group(&self, dtype: &str) -> String {
        let (h, n, d) = (self.heads, self.kv_len, self.head_dim);
        if self.q_len == 1 {
            format!("{dtype}_decode_{h}x{n}x{d}")
        } else {
            let causal = if self.causal { "_causal" } else { "" };
            format!("{dtype}_1x{h}x{n}x{d}{causal}")
        }
    }

    /// Elements of the query tensor (and of the output).
    pub const fn q_elems(&self) -> usize {
        self.heads * self.q_len * self.head_dim
    }

    /// Elements of the key tensor (and of the value tensor).
    pub const fn kv_elems(&self) -> usize {
        self.heads * self.kv_len * self.head_dim
    }

    /// `1/sqrt(head_dim)`, Tessera's default scale, passed to every peer.
    pub fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }
}

/// Issue 18's shapes: prefill 1x8x{1024,4096}x64 and 1x8x4096x128, causal and not, and decode
/// (one query over 4096 keys, 8 heads, d 64 and 128).
pub fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for (n, d) in [(1024, 64), (4096, 64), (4096, 128)] {
        for causal in [false, true] {
            out.push(Case {
                heads: 8,
                q_len: n,
                kv_len: n,
                head_dim: d,
                causal,
            });
        }
    }
    for d in [64, 128] {
        out.push(Case {
            heads: 8,
            q_len: 1,
            kv_len: 4096,
            head_dim: d,
            causal: false,
        });
    }
    out
}

/// `model name` of /proc/cpuinfo and whether its flags list `avx512f` and `avx512_bf16`.
pub fn cpu_description() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        info.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split(':').nth(1))
            .map(|x| x.trim().to_string())
    };
    let name = field("model name").unwrap_or_else(|| "unknown CPU".into());
    let flags = field("flags").unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    format!(
        "{name} (avx512f: {}, avx512_bf16: {})",
        if has("avx512f") { "yes" } else { "no" },
        if has("avx512_bf16") { "yes" } else { "no" }
    )
}

/// Elements the peers can take: `f32` and `bf16` (the same `half::bf16` candle uses; candle's
/// name of the type is `WithDType::DTYPE`).
pub trait PeerElement: Element + candle_core::WithDType + num_traits::Float {}

impl PeerElement for f32 {}

impl PeerElement for bf16 {}

/// Tessera's head-major `(1, heads, seq, d)` data as a candle tensor in the `(1, seq, heads, d)`
/// layout `flash_attn` takes (a contiguous copy, made once outside the timed loop).
pub fn candle_tensor<E: PeerElement>(
    data: &[E],
    heads: usize,
    seq: usize,
    d: usize,
) -> candle_core::Result<Tensor> {
    Tensor::from_slice(data, (1, heads, seq, d), &Device::Cpu)?
        .transpose(1, 2)?
        .contiguous()
}

/// candle-nn's CPU flash attention on `(1, seq, heads, d)` tensors; returns `(1, heads, q, d)`.
pub fn candle_attention<E: PeerElement>(
    case: &Case,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
) -> candle_core::Result<Tensor> {
    let mask = if case.causal {
        AttnMask::causal()
    } else {
        AttnMask::None
    };
    flash_attn::<E>(q, k, v, case.scale(), mask, None, None)
}

/// The GEMM-based attention with its buffers: the `q_len x kv_len` scores of one head, and one
/// head's Q, K, V and output as `f32` (widened from bf16; for `f32` a copy, `O(N·d)` beside the
/// GEMMs' `O(N²·d)`, timed with them).
pub struct GemmAttention {
    case: Case,
    scores: Array2<f32>,
    wide: [Vec<f32>; 4],
}

impl GemmAttention {
    /// Buffers for `case`.
    pub fn new(case: Case) -> Self {
        let (nq, nk, d) = (case.q_len, case.kv_len, case.head_dim);
        Self {
            case,
            scores: Array2::zeros((nq, nk)),
            wide: [nq * d, nk * d, nk * d, nq * d].map(|n| vec![0.0; n]),
        }
    }

    /// `out = softmax(Q·Kᵀ·scale)·V` per head, head-major like Tessera's inputs. Both GEMMs
    /// run in full also when causal (the masked scores are computed, then set to zero weight):
    /// the plain eager formulation, whose FLOP rate is counted against the causal FLOP.
    pub fn run<E: Element>(&mut self, q: &[E], k: &[E], v: &[E], out: &mut [E]) {
        let c = self.case;
        let (nq, nk, d) = (c.q_len, c.kv_len, c.head_dim);
        for h in 0..c.heads {
            let (qs, ks) = (h * nq * d..(h + 1) * nq * d, h * nk * d..(h + 1) * nk * d);
            let [wq, wk, wv, wo] = &mut self.wide;
            for (wide, x) in [
                (&mut *wq, &q[qs.clone()]),
                (&mut *wk, &k[ks.clone()]),
                (&mut *wv, &v[ks]),
            ] {
                for (w, &x) in wide.iter_mut().zip(x) {
                    *w = x.to_f32();
                }
            }
            let qh = ArrayView2::from_shape((nq, d), wq).expect("q head");
            let kh = ArrayView2::from_shape((nk, d), wk).expect("k head");
            let vh = ArrayView2::from_shape((nk, d), wv).expect("v head");
            general_mat_mul(c.scale(), &qh, &kh.t(), 0.0, &mut self.scores);
            for (i, mut row) in self.scores.rows_mut().into_iter().enumerate() {
                let row = row.as_slice_mut().expect("contiguous scores row");
                let visible = if c.causal {
                    (i + 1 + nk - nq).min(nk)
                } else {
                    nk
                };
                let (seen, masked) = row.split_at_mut(visible);
                let max = seen.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
                let mut sum = 0.0;
                for s in seen.iter_mut() {
                    *s = (*s - max).exp();
                    sum += *s;
                }
                let inv = 1.0 / sum;
                seen.iter_mut().for_each(|s| *s *= inv);
                masked.fill(0.0);
            }
            let mut oh = ArrayViewMut2::from_shape((nq, d), wo.as_mut_slice()).expect("o head");
            general_mat_mul(1.0, &self.scores, &vh, 0.0, &mut oh);
            for (o, &w) in out[qs].iter_mut().zip(wo.iter()) {
                *o = E::from_f32(w);
            }
        }
    }
}

/// Largest `|a - b|` over two outputs read as `f32`.
pub fn max_abs_diff<E: Element>(a: &[E], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x.to_f32() - y).abs())
        .fold(0.0, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_harness::data::{tensor, InputDistribution};
    use tessera_kernels::attention::FlashTiles;
    use tessera_kernels::attention::{flash_attention, flash_scratch_len, AttentionShape};

    /// Every peer computes Tessera's problem (same layout, scale and mask) on small shapes.
    #[test]
    fn peers_agree_with_tessera() {
        for (q_len, kv_len, causal) in [(48, 48, false), (48, 48, true), (1, 80, false)] {
            let case = Case {
                heads: 3,
                q_len,
                kv_len,
                head_dim: 16,
                causal,
            };
            let q = tensor(InputDistribution::Normal, case.q_elems(), 1);
            let k = tensor(InputDistribution::Normal, case.kv_elems(), 2);
            let v = tensor(InputDistribution::Normal, case.kv_elems(), 3);
            let shape = AttentionShape::new(1, 3, q_len, kv_len, 16).with_causal(causal);
            let tiles = FlashTiles::new(16, 16);
            let mut scratch = vec![0.0f32; flash_scratch_len(&shape, tiles).unwrap()];
            let mut ours = vec![f32::NAN; case.q_elems()];
            flash_attention(&shape, tiles, &q, &k, &v, &mut ours, &mut scratch).unwrap();

            let mut gemm_out = vec![f32::NAN; case.q_elems()];
            GemmAttention::new(case).run(&q, &k, &v, &mut gemm_out);
            assert!(max_abs_diff(&gemm_out, &ours) < 1e-5, "gemm {case:?}");

            let [cq, ck, cv] = [(&q, q_len), (&k, kv_len), (&v, kv_len)]
                .map(|(x, n)| candle_tensor(x, 3, n, 16).unwrap());
            let candle_out: Vec<f32> = candle_attention::<f32>(&case, &cq, &ck, &cv)
                .and_then(|o| o.flatten_all()?.to_vec1())
                .unwrap();
            assert!(max_abs_diff(&candle_out, &ours) < 1e-5, "candle {case:?}");
        }
    }

    #[test]
    fn flop_counts() {
        let c = cases();
        assert_eq!(c.len(), 8);
        assert_eq!(c[0].flop(), 4 * 8 * 1024 * 1024 * 64);
        assert_eq!(c[1].flop(), 2 * 8 * 1024 * 1024 * 64);
        assert_eq!(c[6].flop(), 4 * 8 * 4096 * 64);
        assert_eq!(c[6].group("bf16"), "bf16_decode_8x4096x64");
        assert_eq!(c[5].group("f32"), "f32_1x8x4096x128_causal");
    }
}
