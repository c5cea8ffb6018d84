//! Flatten: `flatten`, `[c, h, w]` to `[c·h·w]` in C,H,W order (PyTorch's `Flatten`). A view
//! of its input's buffer: it computes nothing. A spec implies one before a `dense` that
//! follows feature maps.

use super::token::bare;
use super::{Backward, Forward, Kind, Layer, LayerSpec, Reference, SpecKind, Traits};
use crate::shape::Shape;
use std::fmt;

/// The spec token.
const TOKEN: &str = "flatten";

/// A flatten, spec and layer (it has no arguments).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flatten;

pub(super) fn parse(head: &str, opts: &[&str]) -> Option<Result<LayerSpec, String>> {
    bare(head, opts, TOKEN, LayerSpec::Flatten)
}

impl fmt::Display for Flatten {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(TOKEN)
    }
}

impl SpecKind for Flatten {
    fn build(&self, _name: &str, input: Shape) -> Result<(Layer, Shape), String> {
        Ok((Layer::Flatten(Flatten), Shape::Flat(input.len())))
    }
}

impl Kind for Flatten {
    fn spec(&self) -> Option<LayerSpec> {
        Some(LayerSpec::Flatten)
    }
    fn traits(&self) -> Traits {
        Traits {
            view: true,
            ..Traits::default()
        }
    }
    fn forward(&self, _f: Forward<'_>) {
        unreachable!("a flatten is a view: the plan never runs it")
    }
    fn backward(&self, _b: Backward<'_>) {
        unreachable!("a flatten is a view: the plan never runs it")
    }
    fn reference(&self, r: Reference<'_>) -> (Vec<f64>, Vec<u64>) {
        (r.x.to_vec(), Vec::new())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn gradients_match_finite_differences() {
        super::super::gradcheck_case::check("conv3x3:2,flatten,dense:3", [2, 4, 5], 3, 0.0);
    }
}
