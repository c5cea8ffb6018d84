//! Max pooling: `maxpoolK` with `/sS` (stride, default K; PyTorch's `MaxPool2d(K, S)`, no
//! padding, floor mode): each output the maximum of its `K x K` window, the gradient
//! flowing to that maximum (the seed's "Pooling_layer"; `petal_kernels::pool::max`). A ReLU
//! right before it runs on its output (the plan's fusion: max and ReLU commute).

use super::token::number;
use super::{needs_spatial, Backward, Forward, Kind, Layer, LayerSpec, Reference, SpecKind, Traits};
use crate::shape::Shape;
use petal_kernels as k;
use petal_kernels::{reference, Pool2dShape, PoolKind};
use std::fmt;

/// A max pooling as the spec describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPoolSpec {
    /// Window side and stride.
    pub k: usize,
    pub stride: usize,
}

/// `maxpoolK[/sS]` tokens.
pub(super) fn parse(head: &str, opts: &[&str]) -> Option<Result<LayerSpec, String>> {
    let r = window("maxpool", head, opts)?;
    Some(r.map(|(k, stride)| LayerSpec::MaxPool2d(MaxPoolSpec { k, stride })))
}

/// The window `(k, stride)` of a pooling token `{name}K[/sS]`; `None` for another head.
pub(super) fn window(name: &str, head: &str, opts: &[&str]) -> Option<Result<(usize, usize), String>> {
    let rest = head.strip_prefix(name)?;
    Some((|| {
        if rest.is_empty() {
            return Err(format!("a pool needs its window size: `{name}2`"));
        }
        let k = number(rest, "pool size")?;
        let mut stride = k;
        for o in opts {
            match o.strip_prefix('s') {
                Some(v) => stride = number(v, "stride")?,
                None => return Err(format!("unknown {name} option `/{o}` (expected /sN)")),
            }
        }
        Ok((k, stride))
    })())
}

/// Writes a pooling token: `{name}K`, and `/sS` when the stride is not `K`.
pub(super) fn write_window(f: &mut fmt::Formatter<'_>, name: &str, k: usize, stride: usize) -> fmt::Result {
    write!(f, "{name}{k}")?;
    if stride != k {
        write!(f, "/s{stride}")?;
    }
    Ok(())
}

/// The pooling shape of window `(k, stride)` on `input`, checked for `kind`'s kernels
/// (whose errors name them), and its output shape.
pub(super) fn pool_shape(
    input: Shape,
    k: usize,
    stride: usize,
    kind: PoolKind,
) -> Result<(Pool2dShape, Shape), String> {
    let (c, h, w) = needs_spatial(input)?;
    let shape = Pool2dShape {
        batch: 1,
        c,
        h,
        w,
        k,
        stride,
    };
    shape
        .validate_for(kind)
        .map_err(|e| format!("does not fit its {input} input: {e}"))?;
    let out = Shape::Spatial {
        c,
        h: shape.out_h(),
        w: shape.out_w(),
    };
    Ok((shape, out))
}

impl fmt::Display for MaxPoolSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_window(f, "maxpool", self.k, self.stride)
    }
}

impl SpecKind for MaxPoolSpec {
    fn build(&self, _name: &str, input: Shape) -> Result<(Layer, Shape), String> {
        let (shape, out) = pool_shape(input, self.k, self.stride, PoolKind::Max)?;
        Ok((Layer::MaxPool2d(MaxPool2d { shape }), out))
    }
}

/// A max pooling layer: its shape, for batch 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool2d {
    pub shape: Pool2dShape,
}

impl Kind for MaxPool2d {
    fn spec(&self) -> Option<LayerSpec> {
        Some(LayerSpec::MaxPool2d(MaxPoolSpec {
            k: self.shape.k,
            stride: self.shape.stride,
        }))
    }
    fn traits(&self) -> Traits {
        Traits {
            argmax: true,
            relu_before: true,
            ..Traits::default()
        }
    }
    fn forward(&self, f: Forward<'_>) {
        let s = Pool2dShape {
            batch: f.images,
            ..self.shape
        };
        k::max_pool2d_forward(&s, f.x, f.y, f.argmax);
        if f.ctx.relu_before {
            k::relu_forward_inplace(f.y);
        }
    }
    fn backward(&self, b: Backward<'_>) {
        if b.ctx.relu_before {
            // The fused ReLU on the pool's output gradient, in place.
            k::relu_backward_inplace(b.y, b.dy);
        }
        if let Some(dx) = b.dx {
            let s = Pool2dShape {
                batch: b.images,
                ..self.shape
            };
            k::max_pool2d_backward(&s, b.dy, b.argmax, dx);
        }
    }
    fn reference(&self, r: Reference<'_>) -> (Vec<f64>, Vec<u64>) {
        let s = Pool2dShape {
            batch: r.batch,
            ..self.shape
        };
        let (y, argmax) = reference::max_pool2d_forward(&s, r.x);
        (y, argmax.into_iter().map(u64::from).collect())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn gradients_match_finite_differences() {
        super::super::gradcheck_case::check(
            "conv3x3:3/p1,relu,maxpool3/s2,maxpool2,dense:3",
            [1, 9, 8],
            3,
            0.0,
        );
    }
}
