//! [`InputGradPath::Transposed`](super::InputGradPath::Transposed): the input gradient of
//! a stride-1 convolution with a square kernel and `pad < k` as the direct forward pass
//! of [`Conv2dShape::transposed`] (no im2col, no GEMM packing). The other shapes take
//! [`InputGradPath::Col2im`](super::InputGradPath::Col2im) (`lowering.rs`).

use super::forward_direct::{self, halves::HalfLoad};
use super::Conv2dShape;

/// `dx = conv(dy, W')` with `W'[c, o, u, v] = W[o, c, k-1-u, k-1-v]` written to the first
/// `weight_len()` values of `scratch`, the rest the transposed convolution's forward
/// scratch ([`InputGradPath::scratch_len`](super::InputGradPath::scratch_len)), on that
/// convolution's own forward path.
pub(super) fn backward_input_transposed<V: HalfLoad>(
    s: &Conv2dShape,
    weight: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    scratch: &mut [f32],
) {
    let t = s.transposed();
    let (flipped, rest) = scratch.split_at_mut(s.weight_len());
    let k = s.kh * s.kw;
    for o in 0..s.out_c {
        for c in 0..s.in_c {
            for uv in 0..k {
                flipped[(c * s.out_c + o) * k + uv] = weight[(o * s.in_c + c) * k + (k - 1 - uv)];
            }
        }
    }
    forward_direct::forward::<V>(&t, t.forward_path(), dy, flipped, None, dx, rest);
}
