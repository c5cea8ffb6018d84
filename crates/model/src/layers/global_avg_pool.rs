//! Global average pooling: `gap`, `[c, h, w]` to `[c, 1, 1]`, each channel's mean (PyTorch's
//! `AdaptiveAvgPool2d(1)`; `petal_kernels::pool::avg`).

use super::token::bare;
use super::{needs_spatial, Backward, Forward, Kind, Layer, LayerSpec, Reference, SpecKind};
use crate::shape::Shape;
use petal_kernels as k;
use petal_kernels::reference;
use std::fmt;

/// The spec token.
const TOKEN: &str = "gap";

/// A global average pooling as the spec describes it (no arguments).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalAvgPoolSpec;

pub(super) fn parse(head: &str, opts: &[&str]) -> Option<Result<LayerSpec, String>> {
    bare(head, opts, TOKEN, LayerSpec::GlobalAvgPool)
}

impl fmt::Display for GlobalAvgPoolSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(TOKEN)
    }
}

impl SpecKind for GlobalAvgPoolSpec {
    fn build(&self, _name: &str, input: Shape) -> Result<(Layer, Shape), String> {
        let (c, h, w) = needs_spatial(input)?;
        Ok((
            Layer::GlobalAvgPool(GlobalAvgPool { c, hw: h * w }),
            Shape::Spatial { c, h: 1, w: 1 },
        ))
    }
}

/// A global average pooling layer: channels and values per channel of one sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalAvgPool {
    pub c: usize,
    pub hw: usize,
}

impl Kind for GlobalAvgPool {
    fn spec(&self) -> Option<LayerSpec> {
        Some(LayerSpec::GlobalAvgPool)
    }
    fn forward(&self, f: Forward<'_>) {
        k::global_avg_pool_forward(f.images, self.c, self.hw, f.x, f.y);
    }
    fn backward(&self, b: Backward<'_>) {
        if let Some(dx) = b.dx {
            k::global_avg_pool_backward(b.images, self.c, self.hw, b.dy, dx);
        }
    }
    fn reference(&self, r: Reference<'_>) -> (Vec<f64>, Vec<u64>) {
        (
            reference::global_avg_pool_forward(r.batch, self.c, self.hw, r.x),
            Vec::new(),
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn gradients_match_finite_differences() {
        super::super::gradcheck_case::check("conv3x3:3,gap,dense:2", [1, 6, 5], 5, 0.0);
    }
}
