//! Filters prepared once for many calls: the Winograd paths transform their filters
//! (`U = G g Gᵀ` for every output and input channel, in f64) on every call, which costs as
//! much as the convolution of a few small images. A caller that runs the same weights over
//! many chunks of a batch (a network's chunk tasks) transforms them once with
//! [`conv2d_prepare`] and passes the result to [`conv2d_forward_prepared`] and
//! [`conv2d_backward_input_prepared`], which give the bits of [`conv2d_forward_algo`] and
//! [`conv2d_backward_input_algo`].
//!
//! The prepared values depend on the shape's channels, image size, kernel, stride and
//! padding and on `algo`, not on its batch: prepare with any batch, run with any other.
//! Paths that transform nothing (the direct ones) need no prepared values:
//! [`Conv2dShape::prepared_len`] is 0 for them, and the prepared kernels ignore the slice.

use super::paths::{ConvAlgo, ForwardPath, InputGradPath};
use super::winograd::{self, Filters};
use super::{check_forward, check_input_grad, conv2d_backward_input_with, conv2d_forward_with, Conv2dShape};
use crate::arch::Lanes;
use crate::shape::check_len;
use wide::{f32x16, f32x8};

impl Conv2dShape {
    /// Values of [`conv2d_prepare`]'s output under `algo`: the forward path's transformed
    /// filters, then the input gradient's (its transposed convolution's), each where that
    /// path is Winograd's (0 where neither is).
    pub fn prepared_len(&self, algo: ConvAlgo) -> usize {
        let (f, i) = self.prepared_parts(algo);
        f + i
    }

    /// The two parts of [`Conv2dShape::prepared_len`], in their order: the forward
    /// pass's, the input gradient's.
    pub fn prepared_parts(&self, algo: ConvAlgo) -> (usize, usize) {
        let f = match self.forward_path_for(algo) {
            ForwardPath::Winograd(t) => winograd::filters_len(self, t, Lanes::BUILD.count()),
            _ => 0,
        };
        let i = match self.input_grad_path_for(algo) {
            InputGradPath::Winograd(t) => winograd::filters_len(&self.transposed(), t, Lanes::BUILD.count()),
            _ => 0,
        };
        (f, i)
    }
}

/// Transforms `weight` (`[out_c, in_c, kh, kw]`) for the Winograd paths `algo` takes on
/// `s` into `prepared` ([`Conv2dShape::prepared_len`] values): the forward filters
/// `U[ξ][c][o] = (G W[o, c] Gᵀ)[ξ]`, then those of the input gradient's transposed
/// convolution (the flipped, transposed weights), each computed in f64 and rounded once.
pub fn conv2d_prepare(s: &Conv2dShape, algo: ConvAlgo, weight: &[f32], prepared: &mut [f32]) {
    prepare(s, algo, weight, prepared, true);
}

/// [`conv2d_prepare`] of the forward pass's filters alone (for inference): the input
/// gradient's part of `prepared` is left as it was, and
/// [`conv2d_backward_input_prepared`] must not read it.
pub fn conv2d_prepare_forward(s: &Conv2dShape, algo: ConvAlgo, weight: &[f32], prepared: &mut [f32]) {
    prepare(s, algo, weight, prepared, false);
}

fn prepare(s: &Conv2dShape, algo: ConvAlgo, weight: &[f32], prepared: &mut [f32], input_grad: bool) {
    const WHAT: &str = "conv2d_prepare";
    s.check();
    check_len(WHAT, "weight", weight.len(), s.weight_len());
    check_len(WHAT, "prepared", prepared.len(), s.prepared_len(algo));
    let lanes = Lanes::BUILD.count();
    let (f, _) = s.prepared_parts(algo);
    let (uf, ui) = prepared.split_at_mut(f);
    if let ForwardPath::Winograd(t) = s.forward_path_for(algo) {
        winograd::prepare_filters(s, t, lanes, Filters::Plain(weight), uf);
    }
    if let (InputGradPath::Winograd(t), true) = (s.input_grad_path_for(algo), input_grad) {
        winograd::prepare_filters(&s.transposed(), t, lanes, Filters::Flipped(weight), ui);
    }
}

/// [`conv2d_forward_algo`](super::conv2d_forward_algo) with the filters `prepared` by
/// [`conv2d_prepare`] from `weight` (the same bits). `scratch`: at least
/// [`Conv2dShape::scratch_len_for`] `algo` values.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_forward_prepared(
    s: &Conv2dShape,
    algo: ConvAlgo,
    x: &[f32],
    weight: &[f32],
    prepared: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    scratch: &mut [f32],
) {
    const WHAT: &str = "conv2d_forward_prepared";
    let path = s.forward_path_for(algo);
    let ForwardPath::Winograd(tile) = path else {
        return conv2d_forward_with(s, path, path.build_lanes(), x, weight, bias, y, scratch);
    };
    check_forward(WHAT, s, path, x, weight, bias, y, scratch);
    check_len(WHAT, "prepared", prepared.len(), s.prepared_len(algo));
    let u = &prepared[..s.prepared_parts(algo).0];
    match Lanes::BUILD {
        Lanes::Eight => winograd::forward_prepared::<f32x8>(s, tile, u, x, bias, y, scratch),
        Lanes::Sixteen => winograd::forward_prepared::<f32x16>(s, tile, u, x, bias, y, scratch),
    }
}

/// [`conv2d_backward_input_algo`](super::conv2d_backward_input_algo) with the filters
/// `prepared` by [`conv2d_prepare`] from `weight` (the same bits). `scratch`: at least
/// [`Conv2dShape::scratch_len_for`] `algo` values.
pub fn conv2d_backward_input_prepared(
    s: &Conv2dShape,
    algo: ConvAlgo,
    weight: &[f32],
    prepared: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    scratch: &mut [f32],
) {
    const WHAT: &str = "conv2d_backward_input_prepared";
    let path = s.input_grad_path_for(algo);
    let InputGradPath::Winograd(tile) = path else {
        return conv2d_backward_input_with(s, path, path.build_lanes(s), weight, dy, dx, scratch);
    };
    check_input_grad(WHAT, s, path, weight, dy, dx, scratch);
    check_len(WHAT, "prepared", prepared.len(), s.prepared_len(algo));
    let u = &prepared[s.prepared_parts(algo).0..];
    let t = s.transposed();
    match Lanes::BUILD {
        Lanes::Eight => winograd::forward_prepared::<f32x8>(&t, tile, u, dy, None, dx, scratch),
        Lanes::Sixteen => winograd::forward_prepared::<f32x16>(&t, tile, u, dy, None, dx, scratch),
    }
}
