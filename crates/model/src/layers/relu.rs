//! ReLU: `relu`, `y = max(x, 0)` (PyTorch's `ReLU`). A ReLU after a batch norm or an add
//! runs inside that layer, and one before a max pool on the pool's output (the plan's
//! fusions), so a ReLU layer that runs on its own is the rare case.

use super::token::bare;
use super::{Backward, Forward, Kind, Layer, LayerSpec, Reference, SpecKind};
use crate::shape::Shape;
use petal_kernels as k;
use petal_kernels::reference;
use std::fmt;

/// The spec token.
const TOKEN: &str = "relu";

/// A ReLU, spec and layer (it has no arguments).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Relu;

pub(super) fn parse(head: &str, opts: &[&str]) -> Option<Result<LayerSpec, String>> {
    bare(head, opts, TOKEN, LayerSpec::Relu)
}

impl fmt::Display for Relu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(TOKEN)
    }
}

impl SpecKind for Relu {
    fn build(&self, _name: &str, input: Shape) -> Result<(Layer, Shape), String> {
        Ok((Layer::Relu(Relu), input))
    }
}

impl Kind for Relu {
    fn spec(&self) -> Option<LayerSpec> {
        Some(LayerSpec::Relu)
    }
    fn forward(&self, f: Forward<'_>) {
        k::relu_forward(f.x, f.y);
    }
    fn backward(&self, b: Backward<'_>) {
        if let Some(dx) = b.dx {
            k::relu_backward(b.y, b.dy, dx);
        }
    }
    fn reference(&self, r: Reference<'_>) -> (Vec<f64>, Vec<u64>) {
        let y = reference::relu_forward(r.x);
        let signs = y.iter().map(|&v| (v > 0.0) as u64).collect();
        (y, signs)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn gradients_match_finite_differences() {
        super::super::gradcheck_case::check("relu,conv3x3:2,relu,dense:4,relu,dense:3", [1, 5, 5], 3, 0.0);
    }
}
