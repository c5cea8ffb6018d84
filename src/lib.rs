//! Petal: train convolutional networks on the CPU, fast.
//!
//! This root crate re-exports the workspace's crates and hosts the workspace-level
//! benches and integration tests.

pub use petal_kernels as kernels;
pub use petal_model as model;
