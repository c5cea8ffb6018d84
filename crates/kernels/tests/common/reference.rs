//! The f64 straight-loop twins of every kernel: `petal_kernels::reference`, under the
//! names the tests have always used.

pub use petal_kernels::reference::*;
