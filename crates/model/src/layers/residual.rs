//! Residual blocks: `res(body)` or `res(body|shortcut)`, `y = body(x) + shortcut(x)`
//! (an identity shortcut without `|`). The plan lays a block out as its body's layers, its
//! shortcut's, and an [`Add`] that joins them (`petal_kernels::add`); its tensors are
//! named `{name}.body.{i}...` and `{name}.shortcut.{i}...`, as a PyTorch module with
//! `body` and `shortcut` `nn.Sequential`s. With no `|` and a body that changes the shape,
//! the shortcut is the projection `conv1x1:C/sS/nobias,bn` ([`projection`]), as in the
//! CIFAR ResNets. A ReLU after the block runs inside the add.

use super::{format_spec, Backward, ConvSpec, Forward, Kind, Layer, LayerSpec, Reference, SpecKind, Traits};
use crate::shape::Shape;
use petal_kernels as k;
use petal_kernels::reference;
use std::fmt;

/// A residual block as the spec describes it: its body and its shortcut (empty: the
/// identity).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResidualSpec {
    pub body: Vec<LayerSpec>,
    pub shortcut: Vec<LayerSpec>,
}

impl fmt::Display for ResidualSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "res({}", format_spec(&self.body))?;
        if !self.shortcut.is_empty() {
            write!(f, "|{}", format_spec(&self.shortcut))?;
        }
        write!(f, ")")
    }
}

impl SpecKind for ResidualSpec {
    fn build(&self, _name: &str, _input: Shape) -> Result<(Layer, Shape), String> {
        unreachable!("a residual block is several layers: the plan builds it (`plan::build`)")
    }
}

/// The projection shortcut `conv1x1:C/sS/nobias,bn` from `from` to `to` feature maps, when
/// one stride S maps the sizes (`(h − 1)/S + 1 = h'`, the same for w).
pub(crate) fn projection(from: Shape, to: Shape) -> Option<Vec<LayerSpec>> {
    let ((_, h, w), (c, oh, ow)) = (from.spatial()?, to.spatial()?);
    let stride = (1..=h.max(w)).find(|s| (h - 1) / s + 1 == oh && (w - 1) / s + 1 == ow)?;
    Some(vec![
        LayerSpec::Conv2d(ConvSpec {
            out_c: c,
            kh: 1,
            kw: 1,
            stride,
            pad: 0,
            bias: false,
        }),
        LayerSpec::BatchNorm,
    ])
}

/// The join of a residual block: its output is the sum of its two inputs (the body's
/// output and the shortcut's, or the block's input), with the ReLU after the block fused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Add;

/// The join's backward along one of its edges: the output gradient (masked by the fused
/// ReLU already) written to the input's gradient `dx`, or added to it when another reader
/// of that input wrote it first.
pub(crate) fn add_gradient(add: bool, dx: &mut [f32], dy: &[f32]) {
    if add {
        k::simd::add_assign(dx, dy);
    } else {
        dx.copy_from_slice(dy);
    }
}

impl Kind for Add {
    fn spec(&self) -> Option<LayerSpec> {
        None
    }
    fn traits(&self) -> Traits {
        Traits {
            relu_after: true,
            ..Traits::default()
        }
    }
    fn forward(&self, f: Forward<'_>) {
        k::add_forward(f.x, f.x2, f.ctx.relu_after, f.y);
    }
    fn backward(&self, _b: Backward<'_>) {
        unreachable!("the join's gradient goes along its two edges (`add_gradient`, from the step)")
    }
    fn reference(&self, r: Reference<'_>) -> (Vec<f64>, Vec<u64>) {
        (reference::add_forward(r.x, r.x2, false), Vec::new())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn gradients_match_finite_differences() {
        super::super::gradcheck_case::check(
            "res(conv3x3:3/p1,relu),res(conv3x3:4/s2/p1),relu,res(res(conv1x1:4)|conv1x1:4,relu),dense:3",
            [3, 7, 7],
            5,
            0.0,
        );
    }
}
