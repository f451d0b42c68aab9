//! Size limits the kernels accept, in a module of their own so the error messages and the checks
//! read the same constant.

/// Largest accepted flash tile size along either axis.
pub const MAX_TILE: usize = 4096;
