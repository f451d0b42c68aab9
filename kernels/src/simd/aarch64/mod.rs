//! aarch64 backends: NEON.

mod neon;

pub(crate) use neon::Neon;
