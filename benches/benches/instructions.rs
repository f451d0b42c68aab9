//! Instruction counts of every kernel family under iai-callgrind (valgrind's callgrind):
//! attention (flash and baseline prefill, flash decode with a KV cache), dense (`linear_matmul`),
//! RMSNorm, the plain optimizer steps, hyperoptimizer towers (exact and lagged schedules, and
//! `Adam^α/Adam`), one decoder layer's forward, and a whole training step of the hyperoptimizer
//! study's MLP. Counts are deterministic, unlike time; valgrind hides AVX-512 from the program,
//! so each kernel is counted on the `generic` and `avx2` backends, chosen explicitly through the
//! `*_with(backend, ..)` APIs (the layer and the training step run `Backend::Auto`, which resolves
//! to AVX2 under valgrind on any x86-64 CPU with AVX2). Inputs come from `tessera_harness::data`;
//! set-up is outside the counted function.
//!
//! `cargo bench -p tessera-benches --bench instructions` needs valgrind and the runner at the
//! library's exact version: `cargo install iai-callgrind-runner --version 0.16.1 --locked`.
//! CI compares the counts with `benches/instructions.baseline` (`benches/iai_gate.sh`).

use iai_callgrind::{library_benchmark, library_benchmark_group, main};
use std::hint::black_box;
use tessera_harness::data::{tensor, InputDistribution};
use tessera_harness::hyperopt::{Family, Hyper, Plan, StudyTower, Task};
use tessera_kernels::attention::{
    baseline_attention_with, baseline_scratch_len, flash_attention_with, flash_scratch_len,
    AttentionShape, FlashTiles,
};
use tessera_kernels::nn::{
    forward_layers, kv_cache_len, layer_scratch_len, linear_matmul_with, rms_norm_forward_with,
    AttentionKind, LinearShape, ModelConfig, ModelWeights,
};
use tessera_kernels::optim::{
    adam_step_with, momentum_step_with, sgd_step_with, AdamConfig, Learn, MomentumConfig,
    Optimizer, Schedule, SgdConfig, Tower,
};
use tessera_kernels::simd::Backend;

fn normal(len: usize, seed: u64) -> Vec<f32> {
    tensor(InputDistribution::Normal, len, seed)
}

fn ready(backend: Backend) -> Backend {
    assert!(
        backend.is_available(),
        "{} is not available here",
        backend.name()
    );
    backend
}

// ---- attention ------------------------------------------------------------------------------

struct Attention {
    backend: Backend,
    shape: AttentionShape,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    out: Vec<f32>,
    scratch: Vec<f32>,
}

/// Prefill: 4 heads sharing 2 KV heads, 128 positions, `head_dim` 64, causal. Decode: one query
/// per head against a cache of 512 of 1024 positions.
fn attention(backend: Backend, decode: bool, flash: bool) -> Attention {
    let shape = if decode {
        AttentionShape::new(1, 4, 1, 512, 64).with_kv_capacity(1024)
    } else {
        AttentionShape::new(1, 4, 128, 128, 64)
    };
    let shape = shape.with_kv_heads(2).with_causal(true);
    let (q_n, kv_n) = shape.validate().expect("valid shape");
    let scratch = if flash {
        flash_scratch_len(&shape, FlashTiles::default())
    } else {
        baseline_scratch_len(&shape)
    };
    Attention {
        backend: ready(backend),
        shape,
        q: normal(q_n, 1),
        k: normal(kv_n, 2),
        v: normal(kv_n, 3),
        out: vec![0.0; q_n],
        scratch: vec![0.0; scratch.expect("valid shape")],
    }
}

fn flash_prefill(b: Backend) -> Attention {
    attention(b, false, true)
}
fn flash_decode(b: Backend) -> Attention {
    attention(b, true, true)
}
fn baseline_prefill(b: Backend) -> Attention {
    attention(b, false, false)
}

#[library_benchmark]
#[benches::prefill(args = [Backend::Generic, Backend::Avx2], setup = flash_prefill)]
#[benches::decode(args = [Backend::Generic, Backend::Avx2], setup = flash_decode)]
fn flash(mut a: Attention) -> Vec<f32> {
    let tiles = FlashTiles::default();
    let (q, k, v) = (&a.q, &a.k, &a.v);
    flash_attention_with(
        a.backend,
        &a.shape,
        tiles,
        q,
        k,
        v,
        &mut a.out,
        &mut a.scratch,
    )
    .expect("flash");
    black_box(a.out)
}

#[library_benchmark]
#[benches::prefill(args = [Backend::Generic, Backend::Avx2], setup = baseline_prefill)]
fn baseline(mut a: Attention) -> Vec<f32> {
    let (q, k, v) = (&a.q, &a.k, &a.v);
    baseline_attention_with(a.backend, &a.shape, q, k, v, &mut a.out, &mut a.scratch)
        .expect("baseline");
    black_box(a.out)
}

library_benchmark_group!(name = attention_group; benchmarks = flash, baseline);

// ---- dense and norm -------------------------------------------------------------------------

/// 16 rows of 256 inputs through a 256 x 256 weight (and the RMSNorm of those rows).
const ROWS: usize = 16;
const WIDTH: usize = 256;

struct Dense {
    backend: Backend,
    x: Vec<f32>,
    w: Vec<f32>,
    y: Vec<f32>,
}

fn dense_setup(backend: Backend) -> Dense {
    Dense {
        backend: ready(backend),
        x: normal(ROWS * WIDTH, 4),
        w: normal(WIDTH * WIDTH, 5),
        y: vec![0.0; ROWS * WIDTH],
    }
}

#[library_benchmark]
#[benches::rows16_256x256(args = [Backend::Generic, Backend::Avx2], setup = dense_setup)]
fn linear(mut d: Dense) -> Vec<f32> {
    let shape = LinearShape::new(ROWS, WIDTH, WIDTH);
    linear_matmul_with(d.backend, shape, &d.x, &d.w, &mut d.y).expect("linear");
    black_box(d.y)
}

#[library_benchmark]
#[benches::rows16_256(args = [Backend::Generic, Backend::Avx2], setup = dense_setup)]
fn rms_norm(mut d: Dense) -> Vec<f32> {
    let gain = &d.w[..WIDTH];
    rms_norm_forward_with(d.backend, WIDTH, 1e-5, &d.x, gain, &mut d.y).expect("rms norm");
    black_box(d.y)
}

library_benchmark_group!(name = dense_group; benchmarks = linear, rms_norm);

// ---- optimizers and towers ------------------------------------------------------------------

/// Parameters per step.
const N: usize = 1 << 14;

struct Step {
    backend: Backend,
    p: Vec<f32>,
    g: Vec<f32>,
    state: Vec<f32>,
    tower: Tower,
}

/// A tower over `N` parameters, stepped twice (a height-1 tower computes its hypergradient from
/// its second step on), so the counted step does all its work.
fn tower_setup(backend: Backend, height: usize, schedule: Schedule, learn: Learn) -> Step {
    let base = Optimizer::Adam(AdamConfig {
        lr: 1e-3,
        ..AdamConfig::default()
    });
    let mut tower: Tower = Tower::new(base).expect("tower");
    tower = tower.with_schedule(schedule).expect("schedule");
    tower = tower.with_learned(learn).expect("learned set");
    for _ in 0..height {
        let hyper = Optimizer::Adam(AdamConfig {
            lr: 1e-2,
            ..AdamConfig::default()
        });
        tower = tower.stacked(hyper).expect("level");
    }
    let g: Vec<f32> = normal(N, 6).iter().map(|x| x * 1e-2).collect();
    let mut s = Step {
        backend: ready(backend),
        p: normal(N, 7),
        state: vec![0.0; tower.state_len(N).expect("state length")],
        g,
        tower,
    };
    for _ in 0..2 {
        s.tower
            .step_with(s.backend, &mut s.p, &s.g, &mut s.state)
            .expect("warm step");
    }
    s
}

fn plain(b: Backend) -> Step {
    tower_setup(b, 0, Schedule::Exact, Learn::All)
}
fn adam_adam_exact(b: Backend) -> Step {
    tower_setup(b, 1, Schedule::Exact, Learn::All)
}
fn adam_adam_lagged(b: Backend) -> Step {
    tower_setup(b, 1, Schedule::Lagged, Learn::All)
}
fn adam_lr_exact(b: Backend) -> Step {
    tower_setup(b, 1, Schedule::Exact, Learn::LearningRate)
}

#[library_benchmark]
#[benches::n16k(args = [Backend::Generic, Backend::Avx2], setup = plain)]
fn sgd(mut s: Step) -> Vec<f32> {
    sgd_step_with(s.backend, &SgdConfig { lr: 1e-2 }, &mut s.p, &s.g).expect("sgd");
    black_box(s.p)
}

#[library_benchmark]
#[benches::n16k(args = [Backend::Generic, Backend::Avx2], setup = plain)]
fn momentum(mut s: Step) -> Vec<f32> {
    let cfg = MomentumConfig::default();
    let velocity = &mut s.state[..N];
    momentum_step_with(s.backend, &cfg, &mut s.p, &s.g, velocity).expect("momentum");
    black_box(s.p)
}

#[library_benchmark]
#[benches::n16k(args = [Backend::Generic, Backend::Avx2], setup = plain)]
fn adam(mut s: Step) -> Vec<f32> {
    let cfg = AdamConfig::default();
    let (m, v) = s.state.split_at_mut(N);
    adam_step_with(s.backend, &cfg, 3, &mut s.p, &s.g, m, v).expect("adam");
    black_box(s.p)
}

#[library_benchmark]
#[benches::adam_adam_exact(args = [Backend::Generic, Backend::Avx2], setup = adam_adam_exact)]
#[benches::adam_adam_lagged(args = [Backend::Generic, Backend::Avx2], setup = adam_adam_lagged)]
#[benches::adam_lr_exact(args = [Backend::Generic, Backend::Avx2], setup = adam_lr_exact)]
fn tower(mut s: Step) -> Vec<f32> {
    s.tower
        .step_with(s.backend, &mut s.p, &s.g, &mut s.state)
        .expect("tower step");
    black_box(s.p)
}

library_benchmark_group!(name = optim_group; benchmarks = sgd, momentum, adam, tower);

// ---- a decoder layer and a training step ------------------------------------------------------

struct Layer {
    config: ModelConfig,
    params: Vec<f32>,
    hidden: Vec<f32>,
    kv: Vec<f32>,
    scratch: Vec<f32>,
    pos: usize,
}

/// One layer of a 256-wide model (8 heads sharing 4 KV heads, SwiGLU 704): `tokens` tokens at
/// position `pos`, the cache filled before it.
fn layer_setup(tokens: usize, pos: usize) -> Layer {
    let config = ModelConfig {
        vocab: 65,
        dim: 256,
        layers: 1,
        heads: 8,
        kv_heads: 4,
        ffn_hidden: 704,
        max_seq: 512,
        rope_theta: 10_000.0,
        norm_eps: 1e-5,
    };
    let n = config.param_count().expect("valid config");
    let params: Vec<f32> = normal(n, 8).iter().map(|w| w * 0.05).collect();
    let kv = normal(kv_cache_len(&config).expect("cache"), 9);
    let scratch = layer_scratch_len(&config, tokens, AttentionKind::Baseline).expect("scratch");
    Layer {
        config,
        params,
        hidden: normal(tokens * config.dim, 10),
        kv,
        scratch: vec![0.0; scratch],
        pos,
    }
}

#[library_benchmark]
#[bench::decode_1_at_128(setup = layer_setup, args = (1, 128))]
#[bench::prefill_32(setup = layer_setup, args = (32, 0))]
fn layer_forward(mut l: Layer) -> Vec<f32> {
    let w = ModelWeights::new(l.config, &l.params).expect("weights");
    let attention = AttentionKind::Baseline;
    forward_layers(
        &w,
        0..1,
        attention,
        l.pos,
        &mut l.hidden,
        &mut l.kv,
        &mut l.scratch,
    )
    .expect("layer");
    black_box(l.hidden)
}

struct Train {
    objective: Box<dyn tessera_harness::hyperopt::Objective>,
    start: Vec<f32>,
    p: Vec<f32>,
    g: Vec<f32>,
    state: Vec<f32>,
    tower: StudyTower,
}

/// The hyperoptimizer study's MLP task (as `train_step`): one minibatch forward and backward at
/// the initial weights, then one step of a tower of `height` over Adam learning `learn`.
fn train_setup(height: usize, learn: Learn) -> Train {
    let plan = Plan {
        learn,
        hyper: Hyper::both(Plan::adam_hyper()),
        ..Plan::full(0)
    };
    let mut objective = plan.objective(Task::Mlp).expect("objective");
    let start = plan.init(objective.as_ref()).expect("init");
    let mut tower = plan.tower(Family::Adam, height, 1e-3).expect("tower");
    let mut g = vec![0.0; start.len()];
    let mut p = start.clone();
    let mut state = vec![0.0; tower.state_len(p.len()).expect("state")];
    for _ in 0..2 {
        objective.minibatch(&start, &mut g).expect("minibatch");
        tower.step(&mut p, &g, &mut state).expect("warm step");
    }
    Train {
        objective,
        start,
        p,
        g,
        state,
        tower,
    }
}

#[library_benchmark]
#[bench::mlp_adam(setup = train_setup, args = (0, Learn::All))]
#[bench::mlp_adam_lr_adam(setup = train_setup, args = (1, Learn::LearningRate))]
fn train_step(mut t: Train) -> Vec<f32> {
    t.objective
        .minibatch(&t.start, &mut t.g)
        .expect("minibatch");
    t.tower.step(&mut t.p, &t.g, &mut t.state).expect("step");
    black_box(t.p)
}

library_benchmark_group!(name = model_group; benchmarks = layer_forward, train_step);

main!(
    library_benchmark_groups = attention_group,
    dense_group,
    optim_group,
    model_group
);
