//! Average pooling: `avgpoolK` with `/sS` (stride, default K; PyTorch's
//! `AvgPool2d(K, S)`, no padding, divisor `K·K`; `petal_kernels::pool::avg`).

use super::max_pool::{pool_shape, window, write_window};
use super::{Backward, Forward, Kind, Layer, LayerSpec, Reference, SpecKind};
use crate::shape::Shape;
use petal_kernels as k;
use petal_kernels::{reference, Pool2dShape, PoolKind};
use std::fmt;

/// An average pooling as the spec describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPoolSpec {
    /// Window side and stride.
    pub k: usize,
    pub stride: usize,
}

/// `avgpoolK[/sS]` tokens.
pub(super) fn parse(head: &str, opts: &[&str]) -> Option<Result<LayerSpec, String>> {
    let r = window("avgpool", head, opts)?;
    Some(r.map(|(k, stride)| LayerSpec::AvgPool2d(AvgPoolSpec { k, stride })))
}

impl fmt::Display for AvgPoolSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_window(f, "avgpool", self.k, self.stride)
    }
}

impl SpecKind for AvgPoolSpec {
    fn build(&self, _name: &str, input: Shape) -> Result<(Layer, Shape), String> {
        let (shape, out) = pool_shape(input, self.k, self.stride, PoolKind::Avg)?;
        Ok((Layer::AvgPool2d(AvgPool2d { shape }), out))
    }
}

/// An average pooling layer: its shape, for batch 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPool2d {
    pub shape: Pool2dShape,
}

impl AvgPool2d {
    fn at(&self, batch: usize) -> Pool2dShape {
        Pool2dShape { batch, ..self.shape }
    }
}

impl Kind for AvgPool2d {
    fn spec(&self) -> Option<LayerSpec> {
        Some(LayerSpec::AvgPool2d(AvgPoolSpec {
            k: self.shape.k,
            stride: self.shape.stride,
        }))
    }
    fn forward(&self, f: Forward<'_>) {
        k::avg_pool2d_forward(&self.at(f.images), f.x, f.y);
    }
    fn backward(&self, b: Backward<'_>) {
        if let Some(dx) = b.dx {
            k::avg_pool2d_backward(&self.at(b.images), b.dy, dx);
        }
    }
    fn reference(&self, r: Reference<'_>) -> (Vec<f64>, Vec<u64>) {
        (reference::avg_pool2d_forward(&self.at(r.batch), r.x), Vec::new())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn gradients_match_finite_differences() {
        super::super::gradcheck_case::check("conv3x3:2,avgpool2/s1,avgpool3,dense:3", [2, 9, 7], 3, 0.0);
    }
}
