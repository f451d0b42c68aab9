//! Optimizers: fused single-pass steps over caller-owned parameter, gradient and state slices.
//!
//! State is `f32`. Every step checks its arguments first and returns `Err` without touching
//! anything when a slice length, a hyperparameter or a gradient (NaN or infinity) is bad.

mod adam;
mod check;

pub use adam::{adam_step, AdamConfig};
