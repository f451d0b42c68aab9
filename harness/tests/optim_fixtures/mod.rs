//! Fixtures shared by the optimizer tests that need no reference (`optim_tower.rs`,
//! `optim_lr_only.rs`): a small parameter vector, its gradients, the optimizers they run, and
//! the plain steps a tower is compared with.

use half::bf16;
use tessera_kernels::optim::{
    adam_step, momentum_step, sgd_step, AdamConfig, MomentumConfig, Optimizer, SgdConfig, Tower,
};

/// Parameters: two SIMD chunks and a tail.
pub const N: usize = 37;

/// The gradient given at step `step`.
pub fn grads(step: u32) -> Vec<f32> {
    (0..N)
        .map(|i| ((i as f32 + 1.3) * (step as f32 + 0.7) * 0.61).sin() * 0.9)
        .collect()
}

/// The starting weights.
pub fn start() -> Vec<f32> {
    (0..N).map(|i| (i as f32 * 0.37).cos()).collect()
}

/// SGD, momentum, Adam and AdamW.
pub fn optimizers() -> [Optimizer; 4] {
    [
        Optimizer::Sgd(SgdConfig { lr: 0.05 }),
        Optimizer::Momentum(MomentumConfig {
            lr: 0.02,
            momentum: 0.8,
        }),
        Optimizer::Adam(AdamConfig {
            lr: 3e-3,
            ..AdamConfig::default()
        }),
        Optimizer::Adam(AdamConfig {
            lr: 3e-3,
            weight_decay: 0.1,
            ..AdamConfig::default()
        }),
    ]
}

/// The plain step for `opt`; `state` holds the velocity or `m` then `v`.
pub fn plain_step(opt: &Optimizer, t: u32, p: &mut [f32], g: &[f32], state: &mut [f32]) {
    match opt {
        Optimizer::Sgd(c) => sgd_step(c, p, g).unwrap(),
        Optimizer::Momentum(c) => momentum_step(c, p, g, state).unwrap(),
        Optimizer::Adam(c) => {
            let (m, v) = state.split_at_mut(N);
            adam_step(c, t, p, g, m, v).unwrap()
        }
    }
}

/// The bit patterns of `x`, for comparisons that must be exact.
pub fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// Six steps of `tower` with `step_mixed` beside an `f32` twin with `step`: after every step the
/// `bf16` copy is the rounded master, and the master takes the twin's steps bit for bit.
pub fn assert_mixed_steps_round_the_master(tower: Tower, what: &str) {
    let (mut tower, mut twin) = (tower, tower);
    let (mut master, mut plain) = (start(), start());
    let mut copy = vec![bf16::from_f32(f32::NAN); N];
    let mut state = vec![0.0; tower.state_len(N).unwrap()];
    let mut twin_state = state.clone();
    for t in 1..=6 {
        let g = grads(t);
        tower
            .step_mixed(&mut master, &mut copy, &g, &mut state)
            .unwrap();
        twin.step(&mut plain, &g, &mut twin_state).unwrap();
        for i in 0..N {
            assert_eq!(copy[i], bf16::from_f32(master[i]), "{what} i {i}");
        }
        assert_eq!(bits(&master), bits(&plain), "{what} step {t}");
    }
    assert_eq!(tower, twin);
}
