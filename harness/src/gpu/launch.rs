//! The launcher: the PTX of `kernels/ptx` loaded through `cudarc` (the driver API, opened at run
//! time), and one method per entry point with the grid that entry point documents.
//!
//! The harness's only `unsafe`: a kernel launch cannot be checked by the compiler (its parameter
//! list is the PTX's). Each launch says in its `// SAFETY:` why the arguments match the entry
//! point's and the buffers have the lengths it reads (docs/gpu.md).

use anyhow::{anyhow, bail, Context as _, Result};
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg,
    ValidAsZeroBits,
};
use cudarc::nvrtc::Ptx;
use std::path::Path;
use std::sync::Arc;
use tessera_kernels::attention::{flash_row_scratch_len, AttentionShape, FlashTiles, Layout};
use tessera_kernels::optim::AdamConfig;

pub use super::cases::AttentionFormat;

/// A driver call's error, with what was being done.
fn cu<T>(r: Result<T, cudarc::driver::DriverError>, what: &str) -> Result<T> {
    r.map_err(|e| anyhow!("CUDA driver: {what}: {e:?}"))
}

/// Threads per block of the optimizer kernels (a power of two, as the hyper pass's tree needs).
pub const OPTIM_BLOCK: u32 = 256;
/// Blocks of the hyper pass's first kernel (each a strided share of the parameters).
pub const HYPER_BLOCKS: u32 = 264;

/// A GPU with the tessera module loaded.
pub struct Gpu {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    module: Arc<cudarc::driver::CudaModule>,
    /// `"NVIDIA H100 80GB HBM3"` and the like.
    pub name: String,
}

/// The result of a launch: what the kernels wrote, and the median time of the timed launches.
pub struct Timed<T> {
    /// Output copied back.
    pub out: T,
    /// Median milliseconds per launch (CUDA events around each launch).
    pub median_ms: f64,
}

impl Gpu {
    /// Opens the driver, device `ordinal` and the PTX at `ptx`. An error (not a panic) when
    /// `libcuda` is missing, there is no such device, or the driver refuses the PTX.
    pub fn open(ordinal: usize, ptx: &Path) -> Result<Gpu> {
        // SAFETY: `is_culib_present` only tries to open the shared library (no CUDA call); it
        // is what keeps the dynamically loaded driver from panicking when it is absent.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            bail!("no CUDA driver: libcuda could not be loaded (is an NVIDIA GPU and its driver installed?)");
        }
        let src = std::fs::read_to_string(ptx).with_context(|| {
            format!(
                "cannot read the PTX {} (build it: bash scripts/build-ptx.sh)",
                ptx.display()
            )
        })?;
        let ctx = cu(CudaContext::new(ordinal), "opening device")
            .with_context(|| format!("no usable GPU {ordinal}"))?;
        let name = cu(ctx.name(), "device name")?;
        // SAFETY: every buffer and launch of this launcher is on the one default stream, in
        // order, so no slice is used by another stream; the per-use events this turns off
        // would otherwise sit inside the timed region of microsecond kernels (decode).
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let module = cu(ctx.load_module(Ptx::from_src(src)), "loading the PTX")
            .with_context(|| format!("the driver refused {}", ptx.display()))?;
        Ok(Gpu {
            ctx,
            stream,
            module,
            name,
        })
    }

    fn function(&self, name: &str) -> Result<CudaFunction> {
        cu(self.module.load_function(name), name)
    }

    /// Copies `data` to the device.
    pub fn upload<T: DeviceRepr>(&self, data: &[T]) -> Result<CudaSlice<T>> {
        cu(self.stream.clone_htod(data), "copy to device")
    }

    /// A zeroed device buffer of `n` values.
    pub fn zeros<T: DeviceRepr + ValidAsZeroBits>(&self, n: usize) -> Result<CudaSlice<T>> {
        cu(self.stream.alloc_zeros(n.max(1)), "device allocation")
    }

    /// Copies a device buffer back.
    pub fn download<T: DeviceRepr + Default + Clone>(&self, x: &CudaSlice<T>) -> Result<Vec<T>> {
        cu(self.stream.clone_dtoh(x), "copy from device")
    }

    /// Runs `launch` once (warm-up, and the result kept) and `reps` more times between events;
    /// the median of the timed launches. `Err` when a kernel refused its arguments (`status`).
    fn timed(
        &self,
        reps: usize,
        mut launch: impl FnMut(&CudaSlice<u32>) -> Result<()>,
    ) -> Result<f64> {
        let status = self.zeros::<u32>(1)?;
        launch(&status)?;
        cu(self.stream.synchronize(), "kernel")?;
        if self.download(&status)?.first().copied().unwrap_or(1) != 0 {
            bail!("a kernel refused its arguments (status flag set)");
        }
        let mut times = Vec::with_capacity(reps);
        for _ in 0..reps {
            let start = cu(
                self.ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)),
                "event",
            )?;
            let end = cu(
                self.ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)),
                "event",
            )?;
            cu(start.record(&self.stream), "event")?;
            launch(&status)?;
            cu(end.record(&self.stream), "event")?;
            cu(end.synchronize(), "kernel")?;
            times.push(cu(start.elapsed_ms(&end), "event time")? as f64);
        }
        times.sort_by(f64::total_cmp);
        Ok(times.get(times.len() / 2).copied().unwrap_or(f64::NAN))
    }

    /// Flash attention (or, with `decode`, the decode entry point: `q_len == 1`, one block per
    /// sequence, one thread per head) of `shape` on raw element bits (`f32` as `f32`, `bf16` as
    /// its `u16` bits), `reps` timed launches after one kept.
    #[allow(clippy::too_many_arguments)]
    pub fn attention<T: DeviceRepr + Default + Clone + ValidAsZeroBits>(
        &self,
        format: AttentionFormat,
        decode: bool,
        shape: &AttentionShape,
        tiles: FlashTiles,
        (q, k, v): (&[T], &[T], &[T]),
        reps: usize,
    ) -> Result<Timed<Vec<T>>> {
        let (q_total, kv_total) = shape.validate().map_err(|e| anyhow!("{e}"))?;
        if q.len() != q_total || k.len() != kv_total || v.len() != kv_total {
            bail!("attention inputs do not match the shape");
        }
        if shape.layout != Layout::HeadMajor && decode {
            bail!("the decode launch takes head-major queries");
        }
        let u = |x: usize| {
            u32::try_from(x).map_err(|_| anyhow!("{x} does not fit a u32 kernel argument"))
        };
        let per_row = flash_row_scratch_len(shape, tiles).map_err(|e| anyhow!("{e}"))?;
        let rows = shape.batch * shape.heads * shape.q_len;
        let kind = if decode { "decode" } else { "flash" };
        let f = self.function(&format!("{kind}_{}", format.suffix()))?;
        let (dq, dk, dv) = (self.upload(q)?, self.upload(k)?, self.upload(v)?);
        let mut out = self.zeros::<T>(q_total)?;
        // Every accumulator the entry points use is 4 bytes (`f32`, `Bf16Mma(f32)`).
        let mut scratch = self.zeros::<f32>(rows * per_row)?;
        let dims = [
            u(shape.batch)?,
            u(shape.heads)?,
            u(shape.kv_heads)?,
            u(shape.q_len)?,
            u(shape.kv_len)?,
            u(shape.kv_capacity)?,
            u(shape.head_dim)?,
            u32::from(shape.causal) | (u32::from(shape.layout == Layout::TokenMajor) << 1),
        ];
        let block_k = u(tiles.block_k)?;
        let block_q = u(tiles.block_q.min(1024))?;
        let cfg = if decode {
            if shape.q_len != 1 || shape.heads > 1024 {
                bail!("decode: q_len must be 1 and heads at most 1024");
            }
            LaunchConfig {
                grid_dim: (u(shape.batch)?, 1, 1),
                block_dim: (u(shape.heads)?, 1, 1),
                shared_mem_bytes: 0,
            }
        } else {
            LaunchConfig {
                grid_dim: (
                    u(shape.q_len.div_ceil(block_q as usize))?,
                    u(shape.batch * shape.heads)?,
                    1,
                ),
                block_dim: (block_q, 1, 1),
                shared_mem_bytes: 0,
            }
        };
        let median_ms = self.timed(reps, |status| {
            let mut b = self.stream.launch_builder(&f);
            for d in &dims {
                b.arg(d);
            }
            b.arg(&shape.scale).arg(&block_k);
            b.arg(&dq)
                .arg(&dk)
                .arg(&dv)
                .arg(&mut out)
                .arg(&mut scratch)
                .arg(status);
            // SAFETY: the entry point `{kind}_{format}` takes the eight `u32` dims, `scale: f32`,
            // `block_k: u32` and six pointers in this order (kernels/ptx/src/attention.rs);
            // `q`, `out` hold `q_total` and `k`, `v` `kv_total` elements of the format's size,
            // `scratch` `rows · flash_row_scratch_len` 4-byte accumulators, `status` one `u32`;
            // the grid gives each (head, row) one thread, as the entry point requires.
            cu(unsafe { b.launch(cfg) }.map(|_| ()), "launch")
        })?;
        Ok(Timed {
            out: self.download(&out)?,
            median_ms,
        })
    }

    /// One Adam step (`t`) of `cfg` on the device: the new `(params, m, v)`.
    #[allow(clippy::too_many_arguments)]
    pub fn adam_step(
        &self,
        cfg: &AdamConfig,
        t: u32,
        params: &[f32],
        grads: &[f32],
        m: &[f32],
        v: &[f32],
        reps: usize,
    ) -> Result<Timed<[Vec<f32>; 3]>> {
        let n = params.len();
        let f = self.function("adam_step")?;
        let (mut dp, dg, mut dm, mut dv) = (
            self.upload(params)?,
            self.upload(grads)?,
            self.upload(m)?,
            self.upload(v)?,
        );
        let threads = n.div_ceil(16);
        let cfg_launch = LaunchConfig {
            grid_dim: (u32::try_from(threads.div_ceil(OPTIM_BLOCK as usize))?, 1, 1),
            block_dim: (OPTIM_BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let n64 = n as u64;
        // The kept launch is the first: the timed ones step the state further, so the result
        // is copied after it alone.
        let mut kept = None;
        let median_ms = self.timed(reps, |status| {
            let mut b = self.stream.launch_builder(&f);
            b.arg(&n64)
                .arg(&cfg.lr)
                .arg(&cfg.beta1)
                .arg(&cfg.beta2)
                .arg(&cfg.eps);
            b.arg(&cfg.weight_decay).arg(&t);
            b.arg(&mut dp)
                .arg(&dg)
                .arg(&mut dm)
                .arg(&mut dv)
                .arg(status);
            // SAFETY: `adam_step` takes `n: u64`, five `f32`, `t: u32` and five pointers in
            // this order (kernels/ptx/src/optim.rs); the four buffers hold `n` `f32`s and the
            // grid has one thread per 16 parameters.
            cu(unsafe { b.launch(cfg_launch) }.map(|_| ()), "launch")?;
            if kept.is_none() {
                kept = Some([
                    self.download(&dp)?,
                    self.download(&dm)?,
                    self.download(&dv)?,
                ]);
            }
            Ok(())
        })?;
        let out = kept.ok_or_else(|| anyhow!("adam_step did not run"))?;
        Ok(Timed { out, median_ms })
    }

    /// Hyper-Adam's read-only pass of the step `(cfg, k)` on the device: the five sums of the
    /// per-parameter terms (block trees, then the second kernel over the blocks).
    #[allow(clippy::too_many_arguments)]
    pub fn hyper_adam_sums(
        &self,
        cfg: &AdamConfig,
        k: u32,
        [grads, m, v, prev, params]: [&[f32]; 5],
        reps: usize,
    ) -> Result<Timed<[f64; 5]>> {
        let n = grads.len() as u64;
        let (f1, f2) = (
            self.function("hyper_adam_partials")?,
            self.function("hyper_adam_reduce")?,
        );
        let bufs = [grads, m, v, prev, params].map(|x| self.upload(x));
        let [g, dm, dv, dprev, dp] = bufs;
        let (g, dm, dv, dprev, dp) = (g?, dm?, dv?, dprev?, dp?);
        let mut partials = self.zeros::<f64>(5 * HYPER_BLOCKS as usize)?;
        let mut sums = self.zeros::<f64>(5)?;
        let shared = 5 * 8 * OPTIM_BLOCK;
        let first = LaunchConfig {
            grid_dim: (HYPER_BLOCKS, 1, 1),
            block_dim: (OPTIM_BLOCK, 1, 1),
            shared_mem_bytes: shared,
        };
        let second = LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (OPTIM_BLOCK, 1, 1),
            shared_mem_bytes: shared,
        };
        let median_ms = self.timed(reps, |status| {
            let mut b = self.stream.launch_builder(&f1);
            b.arg(&n)
                .arg(&cfg.lr)
                .arg(&cfg.beta1)
                .arg(&cfg.beta2)
                .arg(&cfg.eps);
            b.arg(&cfg.weight_decay).arg(&k);
            b.arg(&g)
                .arg(&dm)
                .arg(&dv)
                .arg(&dprev)
                .arg(&dp)
                .arg(&mut partials)
                .arg(status);
            // SAFETY: `hyper_adam_partials` takes `n: u64`, five `f32`, `k: u32` and seven
            // pointers in this order; the five inputs hold `n` `f32`s, `partials` 5 `f64`s per
            // block, the block is a power of two with `5 · blockDim` shared `f64`s.
            cu(unsafe { b.launch(first) }.map(|_| ()), "launch")?;
            let mut b = self.stream.launch_builder(&f2);
            b.arg(&HYPER_BLOCKS)
                .arg(&partials)
                .arg(&mut sums)
                .arg(status);
            // SAFETY: `hyper_adam_reduce` takes `blocks: u32` and three pointers; `partials`
            // holds `5 · HYPER_BLOCKS` `f64`s, `sums` 5; one block, shared memory as above.
            cu(unsafe { b.launch(second) }.map(|_| ()), "launch")
        })?;
        let out = self.download(&sums)?;
        let mut s = [0.0; 5];
        s.copy_from_slice(out.get(..5).ok_or_else(|| anyhow!("short sums"))?);
        Ok(Timed { out: s, median_ms })
    }
}
