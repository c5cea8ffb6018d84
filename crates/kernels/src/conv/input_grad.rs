//! [`InputGradPath::Transposed`](super::InputGradPath::Transposed): the input gradient of
//! a stride-1 convolution with a square kernel and `pad < k` as the direct forward pass
//! of [`Conv2dShape::transposed`] (no im2col, no GEMM packing). The other shapes take
//! [`InputGradPath::Col2im`](super::InputGradPath::Col2im) (`lowering.rs`).

use super::forward_direct;
use super::halves::HalfLoad;
use super::winograd::{self, WinogradTile};
use super::{Conv2dShape, ForwardPath};
use crate::vector::Vector;

/// `dx = conv(dy, W')` with `W'[c, o, u, v] = W[o, c, k-1-u, k-1-v]` written to the first
/// `weight_len()` values of `scratch`, the rest the transposed convolution's forward
/// scratch ([`InputGradPath::scratch_len`](super::InputGradPath::scratch_len)), on that
/// convolution's own forward path. On [`ForwardPath::Grouped`] the flipped weights go
/// straight into that path's regrouped layout (one pass over the weights, not two).
pub(super) fn backward_input_transposed<V: HalfLoad>(
    s: &Conv2dShape,
    weight: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    scratch: &mut [f32],
) {
    let t = s.transposed();
    let path = t.forward_path();
    let (flipped, rest) = scratch.split_at_mut(s.weight_len());
    let k = s.kh * s.kw;
    if path == ForwardPath::Grouped {
        // W'[c, o, uv'] at [c / 8, (o · k + uv') · 8 + c % 8] of `[ceil(in_c / 8), out_c · k, 8]`.
        let taps = t.col_rows();
        let grouped = &mut rest[t.chunks() * t.padded_len()..][..t.grouped_weight_len()];
        if s.in_c % 8 != 0 {
            grouped[s.in_c / 8 * 8 * taps..].fill(0.0);
        }
        // Per group of 8 input channels and output channel, an 8 x k block of `weight`
        // (contiguous) to a k x 8 block of `grouped` (contiguous), the taps reversed.
        for (cg, gc) in grouped.chunks_exact_mut(8 * taps).enumerate() {
            let cs = s.in_c.min(cg * 8 + 8) - cg * 8;
            for (o, dst) in gc.chunks_exact_mut(8 * k).enumerate() {
                let src = &weight[(o * s.in_c + cg * 8) * k..][..cs * k];
                for (g, wc) in src.chunks_exact(k).enumerate() {
                    for (uv, &w) in wc.iter().enumerate() {
                        dst[(k - 1 - uv) * 8 + g] = w;
                    }
                }
            }
        }
        forward_direct::forward_regrouped::<V>(&t, path, dy, &[], None, dx, rest);
        return;
    }
    flip(s, weight, flipped);
    forward_direct::forward::<V>(&t, path, dy, flipped, None, dx, rest);
}

/// The transposed convolution's weights: `W'[c, o, u, v] = W[o, c, k-1-u, k-1-v]`.
fn flip(s: &Conv2dShape, weight: &[f32], flipped: &mut [f32]) {
    let k = s.kh * s.kw;
    for o in 0..s.out_c {
        for c in 0..s.in_c {
            for uv in 0..k {
                flipped[(c * s.out_c + o) * k + uv] = weight[(o * s.in_c + c) * k + (k - 1 - uv)];
            }
        }
    }
}

/// [`InputGradPath::Winograd`](super::InputGradPath::Winograd): `dx = conv(dy, W')` as in
/// [`backward_input_transposed`], the transposed convolution on Winograd's forward path
/// with `tile`.
pub(super) fn backward_input_winograd<V: Vector>(
    s: &Conv2dShape,
    tile: WinogradTile,
    weight: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    scratch: &mut [f32],
) {
    let t = s.transposed();
    let (u, rest) = scratch.split_at_mut(winograd::filters_len(&t, tile, V::LANES));
    winograd::prepare_filters(&t, tile, V::LANES, winograd::Filters::Flipped(weight), u);
    winograd::forward_prepared::<V>(&t, tile, u, dy, None, dx, rest);
}
