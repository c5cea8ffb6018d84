//! The f64 straight-loop twins of every kernel: `petal_kernels::reference`, under the
//! names the tests have always used.

// Unused in the test files that need no reference.
#[allow(unused_imports)]
pub use petal_kernels::reference::*;
