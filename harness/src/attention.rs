//! Running the attention kernels from `f32` data: the convenience layer the CLI, the tests and the
//! studies share.
//!
//! The kernels are generic over a storage [`Element`] and an [`Accumulator`] and take
//! caller-owned scratch. Here a [`KernelConfig`] names the algorithm, the element and accumulator
//! types, the backend and the tiles at run time; [`run`] converts `f32` inputs into the element
//! type (rounding to bf16 where asked), allocates the scratch with the `*_scratch_len` functions,
//! runs the kernel, and returns the output widened to `f64` (exact for every element type).
//! [`AttentionProblem`] bundles a shape with its tensors, builds seeded ones from [`crate::data`],
//! and gives the exact oracle's answer and the a-priori error bound of each row.
//!
//! ```
//! use tessera_harness::attention::{AttentionProblem, ElementKind, KernelConfig};
//! use tessera_harness::data::InputDistribution;
//! use tessera_kernels::attention::{AttentionShape, FlashTiles};
//! let shape = AttentionShape::new(1, 2, 8, 8, 4).with_causal(true);
//! let p = AttentionProblem::seeded(shape, InputDistribution::Normal, 7)?;
//! let flash = p.run(&KernelConfig::flash(FlashTiles::new(4, 2)).with_element(ElementKind::Bf16))?;
//! let baseline = p.run(&KernelConfig::baseline())?;
//! assert_eq!(flash.len(), baseline.len());
//! # Ok::<(), tessera_kernels::Error>(())
//! ```

use crate::data::{self, InputDistribution};
use crate::tolerance;
use tessera_kernels::attention::{
    baseline_attention_with, baseline_scratch_len, flash_attention_with, flash_scratch_len,
    AttentionShape, FlashTiles,
};
use tessera_kernels::simd::Backend;
use tessera_kernels::{bf16, Accumulator, Bf16Acc, Bf16Mma, Element, Error, F16Acc, F16Mma};

/// Which attention algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Tiled online softmax ([`tessera_kernels::attention::flash_attention`]).
    Flash,
    /// Materialised logits, then softmax, then `p·V` ([`tessera_kernels::attention::baseline_attention`]).
    Baseline,
}

impl Kernel {
    /// `"flash"` or `"baseline"`.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Flash => "flash",
            Kernel::Baseline => "baseline",
        }
    }

    /// Parses a name given by [`Kernel::name`].
    pub fn from_name(name: &str) -> Option<Kernel> {
        [Kernel::Flash, Kernel::Baseline]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

/// The storage element type the kernel runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ElementKind {
    /// IEEE binary32.
    F32,
    /// bfloat16: `f32` inputs are rounded to nearest, ties to even.
    Bf16,
    /// IEEE binary64 (research runs whose output must not be rounded).
    F64,
}

impl ElementKind {
    /// Every element kind.
    pub const ALL: [ElementKind; 3] = [ElementKind::F32, ElementKind::Bf16, ElementKind::F64];

    /// The element's name ([`Element::NAME`]).
    pub fn name(self) -> &'static str {
        match self {
            ElementKind::F32 => <f32 as Element>::NAME,
            ElementKind::Bf16 => <bf16 as Element>::NAME,
            ElementKind::F64 => <f64 as Element>::NAME,
        }
    }

    /// Parses a name given by [`ElementKind::name`].
    pub fn from_name(name: &str) -> Option<ElementKind> {
        ElementKind::ALL.into_iter().find(|e| e.name() == name)
    }

    /// Unit roundoff `2^-p` of the element (the output rounding of a kernel).
    pub fn unit_roundoff(self) -> f64 {
        let precision = match self {
            ElementKind::F32 => <f32 as Element>::PRECISION,
            ElementKind::Bf16 => <bf16 as Element>::PRECISION,
            ElementKind::F64 => <f64 as Element>::PRECISION,
        };
        2f64.powi(-(precision as i32))
    }

    /// `x` rounded into the element and widened back to `f64`: the value a kernel sees.
    pub fn round(self, x: f32) -> f64 {
        match self {
            ElementKind::F32 | ElementKind::F64 => x as f64,
            ElementKind::Bf16 => bf16::from_f32(x).to_f64(),
        }
    }
}

/// The format intermediate results are computed in (see [`tessera_kernels::Accumulator`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccumulatorKind {
    /// `f32`: the production accumulator, the only one the SIMD backends serve.
    F32,
    /// `f64`.
    F64,
    /// BF16 with every operation rounded ([`Bf16Acc`]).
    Bf16Acc,
    /// FP16 with every operation rounded ([`F16Acc`]).
    F16Acc,
    /// BF16 matrix-unit model ([`Bf16Mma`]).
    Bf16Mma,
    /// FP16 matrix-unit model ([`F16Mma`]).
    F16Mma,
}

impl AccumulatorKind {
    /// Every accumulator kind.
    pub const ALL: [AccumulatorKind; 6] = [
        AccumulatorKind::F32,
        AccumulatorKind::F64,
        AccumulatorKind::Bf16Acc,
        AccumulatorKind::F16Acc,
        AccumulatorKind::Bf16Mma,
        AccumulatorKind::F16Mma,
    ];

    /// The accumulator's report name ([`Accumulator::NAME`]).
    pub fn name(self) -> &'static str {
        match self {
            AccumulatorKind::F32 => <f32 as Accumulator>::NAME,
            AccumulatorKind::F64 => <f64 as Accumulator>::NAME,
            AccumulatorKind::Bf16Acc => Bf16Acc::NAME,
            AccumulatorKind::F16Acc => F16Acc::NAME,
            AccumulatorKind::Bf16Mma => Bf16Mma::NAME,
            AccumulatorKind::F16Mma => F16Mma::NAME,
        }
    }

    /// Parses a name given by [`AccumulatorKind::name`].
    pub fn from_name(name: &str) -> Option<AccumulatorKind> {
        AccumulatorKind::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The accumulator's unit roundoff ([`Accumulator::UNIT_ROUNDOFF`]).
    pub fn unit_roundoff(self) -> f64 {
        match self {
            AccumulatorKind::F32 => <f32 as Accumulator>::UNIT_ROUNDOFF,
            AccumulatorKind::F64 => <f64 as Accumulator>::UNIT_ROUNDOFF,
            AccumulatorKind::Bf16Acc => Bf16Acc::UNIT_ROUNDOFF,
            AccumulatorKind::F16Acc => F16Acc::UNIT_ROUNDOFF,
            AccumulatorKind::Bf16Mma => Bf16Mma::UNIT_ROUNDOFF,
            AccumulatorKind::F16Mma => F16Mma::UNIT_ROUNDOFF,
        }
    }
}

/// One kernel configuration: algorithm, element, accumulator, backend and (for flash) tiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelConfig {
    /// The algorithm.
    pub kernel: Kernel,
    /// The storage element of inputs and output.
    pub element: ElementKind,
    /// The accumulator.
    pub accumulator: AccumulatorKind,
    /// The backend; emulated and `f64` accumulators run only on `Generic` (or `Auto`).
    pub backend: Backend,
    /// Flash tiles (ignored by baseline).
    pub tiles: FlashTiles,
}

impl KernelConfig {
    /// Flash with these tiles, `f32` elements and accumulator, the best backend.
    pub fn flash(tiles: FlashTiles) -> Self {
        KernelConfig {
            kernel: Kernel::Flash,
            element: ElementKind::F32,
            accumulator: AccumulatorKind::F32,
            backend: Backend::Auto,
            tiles,
        }
    }

    /// Baseline with `f32` elements and accumulator, the best backend.
    pub fn baseline() -> Self {
        KernelConfig {
            kernel: Kernel::Baseline,
            ..KernelConfig::flash(FlashTiles::default())
        }
    }

    /// Sets the element type.
    pub fn with_element(mut self, element: ElementKind) -> Self {
        self.element = element;
        self
    }

    /// Sets the accumulator.
    pub fn with_accumulator(mut self, accumulator: AccumulatorKind) -> Self {
        self.accumulator = accumulator;
        self
    }

    /// Sets the backend.
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// The flash key tile, `None` for baseline (the `block_k` of [`tolerance::row_bound`]).
    pub fn block_k(&self) -> Option<usize> {
        match self.kernel {
            Kernel::Flash => Some(self.tiles.block_k),
            Kernel::Baseline => None,
        }
    }
}

/// Runs `kernel` on element slices, with a scratch of accumulators `A` sized by the kernel's
/// `*_scratch_len` function; `out` is written in full or the error returned.
#[allow(clippy::too_many_arguments)]
pub fn run_into<E: Element, A: Accumulator>(
    kernel: Kernel,
    backend: Backend,
    tiles: FlashTiles,
    shape: &AttentionShape,
    q: &[E],
    k: &[E],
    v: &[E],
    out: &mut [E],
) -> Result<(), Error> {
    check_lengths(shape, q.len(), k.len(), v.len())?;
    match kernel {
        Kernel::Flash => {
            let mut scratch = vec![A::ZERO; flash_scratch_len(shape, tiles)?];
            flash_attention_with(backend, shape, tiles, q, k, v, out, &mut scratch)
        }
        Kernel::Baseline => {
            let mut scratch = vec![A::ZERO; baseline_scratch_len(shape)?];
            baseline_attention_with(backend, shape, q, k, v, out, &mut scratch)
        }
    }
}

/// [`run_into`] with a fresh output, pre-filled with NaN so an element the kernel failed to write
/// shows up.
pub fn run_typed<E: Element, A: Accumulator>(
    kernel: Kernel,
    backend: Backend,
    tiles: FlashTiles,
    shape: &AttentionShape,
    q: &[E],
    k: &[E],
    v: &[E],
) -> Result<Vec<E>, Error> {
    let mut out = vec![E::from_f32(f32::NAN); q.len()];
    run_into::<E, A>(kernel, backend, tiles, shape, q, k, v, &mut out)?;
    Ok(out)
}

/// Runs `config` on `f32` inputs (rounded into the element type) and returns the output widened
/// to `f64`, which is exact for every element type.
pub fn run(
    config: &KernelConfig,
    shape: &AttentionShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
) -> Result<Vec<f64>, Error> {
    check_lengths(shape, q.len(), k.len(), v.len())?;
    Ok(match config.element {
        ElementKind::F32 => widen(run_as::<f32>(config, shape, q, k, v)?),
        ElementKind::Bf16 => widen(run_as::<bf16>(config, shape, q, k, v)?),
        ElementKind::F64 => run_as::<f64>(config, shape, q, k, v)?,
    })
}

/// [`run`] with the output as `f32`: exact for `f32` and `bf16` elements, rounded to nearest for
/// `f64` elements.
pub fn run_f32(
    config: &KernelConfig,
    shape: &AttentionShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
) -> Result<Vec<f32>, Error> {
    check_lengths(shape, q.len(), k.len(), v.len())?;
    Ok(match config.element {
        ElementKind::F32 => run_as::<f32>(config, shape, q, k, v)?,
        ElementKind::Bf16 => narrow(run_as::<bf16>(config, shape, q, k, v)?),
        ElementKind::F64 => narrow(run_as::<f64>(config, shape, q, k, v)?),
    })
}

fn narrow<E: Element>(out: Vec<E>) -> Vec<f32> {
    out.into_iter().map(Element::to_f32).collect()
}

fn widen<E: Element>(out: Vec<E>) -> Vec<f64> {
    out.into_iter().map(Element::to_f64).collect()
}

/// Checks the slice lengths against the shape before anything is converted or allocated.
fn check_lengths(shape: &AttentionShape, q: usize, k: usize, v: usize) -> Result<(), Error> {
    let (q_len, kv_len) = shape.validate()?;
    for (actual, expected, what) in [(q, q_len, "q"), (k, kv_len, "k"), (v, kv_len, "v")] {
        if actual != expected {
            return Err(Error::LengthMismatch {
                what,
                expected,
                actual,
            });
        }
    }
    Ok(())
}

fn run_as<E: Element>(
    config: &KernelConfig,
    shape: &AttentionShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
) -> Result<Vec<E>, Error> {
    let convert = |x: &[f32]| x.iter().map(|&x| E::from_f32(x)).collect::<Vec<E>>();
    let (q, k, v) = (convert(q), convert(k), convert(v));
    let KernelConfig {
        kernel,
        backend,
        tiles,
        ..
    } = *config;
    let args = (kernel, backend, tiles, shape, &q[..], &k[..], &v[..]);
    macro_rules! with {
        ($acc:ty) => {{
            let (kernel, backend, tiles, shape, q, k, v) = args;
            run_typed::<E, $acc>(kernel, backend, tiles, shape, q, k, v)
        }};
    }
    match config.accumulator {
        AccumulatorKind::F32 => with!(f32),
        AccumulatorKind::F64 => with!(f64),
        AccumulatorKind::Bf16Acc => with!(Bf16Acc),
        AccumulatorKind::F16Acc => with!(F16Acc),
        AccumulatorKind::Bf16Mma => with!(Bf16Mma),
        AccumulatorKind::F16Mma => with!(F16Mma),
    }
}

/// One attention problem: a shape and its `f32` tensors, laid out as [`AttentionShape`] says.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionProblem {
    /// The shape (K/V rows are `kv_capacity` apart; the first `kv_len` of each head are used).
    pub shape: AttentionShape,
    /// Queries `[batch, heads, q_len, head_dim]`.
    pub q: Vec<f32>,
    /// Keys `[batch, kv_heads, kv_capacity, head_dim]`.
    pub k: Vec<f32>,
    /// Values, shaped as the keys.
    pub v: Vec<f32>,
}

/// The inputs of one query row as a kernel of some element type sees them, widened to `f64`.
#[derive(Clone, Debug, PartialEq)]
pub struct RowInputs {
    /// The query, `head_dim` entries.
    pub q: Vec<f64>,
    /// The visible keys, row-major.
    pub keys: Vec<f64>,
    /// The visible values, row-major.
    pub values: Vec<f64>,
}

impl AttentionProblem {
    /// A problem from given tensors; `Err` if the shape is invalid or a length is wrong.
    pub fn new(
        shape: AttentionShape,
        q: Vec<f32>,
        k: Vec<f32>,
        v: Vec<f32>,
    ) -> Result<Self, Error> {
        check_lengths(&shape, q.len(), k.len(), v.len())?;
        Ok(AttentionProblem { shape, q, k, v })
    }

    /// Seeded tensors from [`data::tensor`]: `q` with `seed`, `k` with `seed + 1`, `v` with
    /// `seed + 2`.
    pub fn seeded(
        shape: AttentionShape,
        distribution: InputDistribution,
        seed: u64,
    ) -> Result<Self, Error> {
        let (q_len, kv_len) = shape.validate()?;
        Ok(AttentionProblem {
            shape,
            q: data::tensor(distribution, q_len, seed),
            k: data::tensor(distribution, kv_len, seed.wrapping_add(1)),
            v: data::tensor(distribution, kv_len, seed.wrapping_add(2)),
        })
    }

    /// Rounds every input to bf16 (see [`crate::precision::round_bf16`]).
    pub fn round_to_bf16(&mut self) {
        for t in [&mut self.q, &mut self.k, &mut self.v] {
            crate::precision::round_bf16(t);
        }
    }

    /// Runs a kernel on the problem (see [`run`]).
    pub fn run(&self, config: &KernelConfig) -> Result<Vec<f64>, Error> {
        run(config, &self.shape, &self.q, &self.k, &self.v)
    }

    /// Query rows in all: `batch · heads · q_len`. Row `r` is query `r % q_len` of flat head
    /// `r / q_len`, and owns output elements `r·head_dim ..`.
    pub fn rows(&self) -> usize {
        self.shape.batch * self.shape.heads * self.shape.q_len
    }

    /// The inputs row `row` reads (see [`AttentionProblem::rows`]), rounded into `element`.
    pub fn row_inputs(&self, row: usize, element: ElementKind) -> RowInputs {
        let s = &self.shape;
        let d = s.head_dim;
        let (bh, i) = (row / s.q_len, row % s.q_len);
        let (b, h) = (bh / s.heads, bh % s.heads);
        let kv_head = b * s.kv_heads + h / (s.heads / s.kv_heads);
        let start = kv_head * s.kv_capacity * d;
        let visible = s.visible_keys(i);
        let take = |x: &[f32]| x.iter().map(|&x| element.round(x)).collect::<Vec<f64>>();
        RowInputs {
            q: take(&self.q[row * d..(row + 1) * d]),
            keys: take(&self.k[start..start + visible * d]),
            values: take(&self.v[start..start + visible * d]),
        }
    }

    /// The a-priori bound ([`tolerance::row_bound`]) of every row under `config`, from the inputs
    /// as the configured element sees them; plus [`tolerance::pair_flush_bound`] for flash on
    /// bf16 elements on the `avx512bf16` backend (its `P·V` by `vdpbf16ps`).
    pub fn row_bounds(&self, config: &KernelConfig) -> Vec<f64> {
        let u = config.accumulator.unit_roundoff();
        let u_out = config.element.unit_roundoff();
        let scale = self.shape.scale as f64;
        let pairs = config.kernel == Kernel::Flash
            && config.element == ElementKind::Bf16
            && config.accumulator == AccumulatorKind::F32
            && config.backend.resolve() == Backend::Avx512Bf16;
        (0..self.rows())
            .map(|r| {
                let row = self.row_inputs(r, config.element);
                let bound = tolerance::row_bound(
                    &row.q,
                    &row.keys,
                    &row.values,
                    scale,
                    config.block_k(),
                    u,
                    u_out,
                );
                if !pairs {
                    return bound;
                }
                let n = row.keys.len().checked_div(row.q.len()).unwrap_or(0);
                let v_max = row.values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                let tiles = tolerance::key_tiles(n, config.block_k());
                bound + tolerance::pair_flush_bound(n, tiles, v_max)
            })
            .collect()
    }

    /// The exact oracle's output ([`tessera_reference::attention`], each element correctly
    /// rounded to `f64`) on the inputs as `element` sees them, with the kernels' scale (the `f32`
    /// `shape.scale`, widened exactly).
    pub fn reference(&self, element: ElementKind) -> Vec<f64> {
        let s = &self.shape;
        let d = s.head_dim;
        // The oracle takes K/V with exactly `kv_len` rows per head: drop the unused capacity.
        let compact = |x: &[f32]| -> Vec<f64> {
            x.chunks_exact(s.kv_capacity * d)
                .flat_map(|head| &head[..s.kv_len * d])
                .map(|&x| element.round(x))
                .collect()
        };
        let q: Vec<f64> = self.q.iter().map(|&x| element.round(x)).collect();
        let shape = tessera_reference::ReferenceShape {
            batch: s.batch,
            heads: s.heads,
            kv_heads: s.kv_heads,
            q_len: s.q_len,
            kv_len: s.kv_len,
            head_dim: d,
            causal: s.causal,
            scale: s.scale as f64,
        };
        let (k, v) = if d == 0 || s.kv_capacity == 0 {
            (Vec::new(), Vec::new())
        } else {
            (compact(&self.k), compact(&self.v))
        };
        tessera_reference::attention(&shape, &q, &k, &v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for e in ElementKind::ALL {
            assert_eq!(ElementKind::from_name(e.name()), Some(e));
        }
        for a in AccumulatorKind::ALL {
            assert_eq!(AccumulatorKind::from_name(a.name()), Some(a));
        }
        assert_eq!(Kernel::from_name("flash"), Some(Kernel::Flash));
        assert_eq!(Kernel::from_name("reference"), None);
        assert_eq!(ElementKind::Bf16.unit_roundoff(), tolerance::U_BF16);
        assert_eq!(AccumulatorKind::F16Mma.unit_roundoff(), tolerance::U_F16);
    }

    #[test]
    fn every_configuration_runs_and_writes_every_element() {
        let shape = AttentionShape::new(2, 2, 5, 7, 3)
            .with_kv_heads(1)
            .with_causal(true)
            .with_kv_capacity(9);
        let p = AttentionProblem::seeded(shape, InputDistribution::Normal, 3).unwrap();
        for kernel in [Kernel::Flash, Kernel::Baseline] {
            for element in ElementKind::ALL {
                for accumulator in AccumulatorKind::ALL {
                    let config = KernelConfig {
                        kernel,
                        element,
                        accumulator,
                        backend: Backend::Generic,
                        tiles: FlashTiles::new(2, 3),
                    };
                    let out = p.run(&config).unwrap();
                    assert_eq!(out.len(), p.q.len());
                    assert!(out.iter().all(|x| x.is_finite()), "{config:?}");
                }
            }
        }
    }

    #[test]
    fn bad_lengths_are_errors_before_any_allocation() {
        let shape = AttentionShape::new(1, 1, 2, 2, 2);
        let config = KernelConfig::baseline();
        let err = run(&config, &shape, &[0.0; 3], &[0.0; 4], &[0.0; 4]).unwrap_err();
        assert!(matches!(err, Error::LengthMismatch { what: "q", .. }));
        let huge = AttentionShape::new(1, 1, 1, usize::MAX / 2 + 1, 2);
        assert_eq!(
            run(&config, &huge, &[0.0; 2], &[], &[]).unwrap_err(),
            Error::Overflow
        );
        let emulated = config.with_accumulator(AccumulatorKind::Bf16Mma);
        let avx = emulated.with_backend(Backend::Avx2);
        assert_eq!(
            run(&avx, &shape, &[0.0; 4], &[0.0; 4], &[0.0; 4]).unwrap_err(),
            Error::BackendUnavailable(Backend::Avx2)
        );
    }
}
