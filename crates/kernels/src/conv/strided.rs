//! The polyphase paths ([`ForwardPath::Polyphase`](super::ForwardPath::Polyphase),
//! [`WeightGradPath::Polyphase`](super::WeightGradPath::Polyphase),
//! [`InputGradPath::Polyphase`](super::InputGradPath::Polyphase)) over the batch: each
//! image split into its stride phases (`polyphase.rs`), then the tap-offset kernels
//! (`offset_taps.rs`). They serve any shape; the shapes pick them for stride 2 (ResNet's
//! 3x3 pad-1 and 1x1 projection convolutions), where the other direct paths do not
//! apply.

use super::polyphase::{gather_rows, merge_phases, pad_dy, split_phases, spread_dy};
use super::{for_each_image, offset_taps, Conv2dShape, BATCH_CHUNK};
use crate::vector::Vector;

impl Conv2dShape {
    /// Per-chunk buffer of the forward: the phases of one image, then its output at the
    /// phases' row stride.
    pub(crate) fn phase_forward_buf_len(&self) -> usize {
        self.phases_len() + self.out_c * self.phase_out_plane()
    }
    /// Per-chunk buffer of the weight gradient: per image of a chunk, its phases and its
    /// `dy` at the phases' row stride.
    pub(crate) fn phase_weights_buf_len(&self) -> usize {
        self.batch.min(BATCH_CHUNK) * (self.phases_len() + self.out_c * self.phase_out_plane())
    }
    /// Per-chunk buffer of the input gradient: the padded `dy` of one image, then its
    /// phases' gradients.
    pub(crate) fn phase_input_buf_len(&self) -> usize {
        self.dy_pad_len() + self.stride * self.stride * self.in_c * self.phase_grad_plane()
    }
}

/// Forward: the weights grouped by 8 output channels into the last
/// `grouped_weight_len()` values of `scratch`; per image, its phases and its flat output
/// in its chunk's [`Conv2dShape::phase_forward_buf_len`] values, then the output rows
/// copied to `y`.
pub(super) fn forward<V: Vector>(
    s: &Conv2dShape,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    scratch: &mut [f32],
) {
    let bl = s.phase_forward_buf_len();
    let (bufs, grouped) = scratch.split_at_mut(s.chunks() * bl);
    let taps = s.col_rows();
    let grouped = &mut grouped[..s.grouped_weight_len()];
    offset_taps::group_taps(s.out_c, taps, weight, taps, |t| t, grouped);
    let grouped = &*grouped;
    let taps_at = s.phase_taps();
    for_each_image(
        (y, s.out_image_len()),
        (x, s.in_image_len()),
        (bufs, bl),
        |yn, xn, buf| {
            let (phases, flat) = buf.split_at_mut(s.phases_len());
            split_phases(s, xn, phases);
            let plane = s.phase_out_plane();
            if s.phase_rows_exact() {
                offset_taps::forward::<V>(phases, &taps_at, grouped, bias, s.out_c, yn, plane);
                return;
            }
            let flat = &mut flat[..s.out_c * plane];
            offset_taps::forward::<V>(phases, &taps_at, grouped, bias, s.out_c, flat, plane);
            gather_rows(s, flat, yn);
        },
    );
}

/// Weight gradient of one chunk (`xc`: `[images, in_c, h, w]`, `dyc`: `[images, out_c, oh,
/// ow]`), written to `gw`: every image's phases and spread `dy` into `buf`
/// ([`Conv2dShape::phase_weights_buf_len`]), then [`offset_taps::weight_grad`] over all of
/// them.
pub(super) fn backward_weights_chunk<V: Vector>(
    s: &Conv2dShape,
    xc: &[f32],
    dyc: &[f32],
    buf: &mut [f32],
    gw: &mut [f32],
) {
    let (il, ol) = (s.in_image_len(), s.out_image_len());
    let images = xc.len() / il;
    let (pl, plane) = (s.phases_len(), s.phase_out_plane());
    let (phases, spread) = buf.split_at_mut(images * pl);
    let spread = &mut spread[..images * s.out_c * plane];
    for (xn, bn) in xc.chunks_exact(il).zip(phases.chunks_exact_mut(pl)) {
        split_phases(s, xn, bn);
    }
    let taps = s.phase_taps();
    if s.phase_rows_exact() {
        offset_taps::weight_grad::<V>(images, phases, pl, &taps, dyc, s.out_c, plane, gw);
        return;
    }
    for (dyn_, bn) in dyc.chunks_exact(ol).zip(spread.chunks_exact_mut(s.out_c * plane)) {
        spread_dy(s, dyn_, bn);
    }
    offset_taps::weight_grad::<V>(images, phases, pl, &taps, spread, s.out_c, plane, gw);
}

/// Input gradient: per phase `(p, q)`, its sub-kernel's weights, transposed and grouped
/// by 8 input channels, into the last [`Conv2dShape::phase_grad_weights_len`] values of
/// `scratch`; per image, its padded `dy`, every phase's gradient by
/// [`offset_taps::forward`], then [`merge_phases`], in its chunk's
/// [`Conv2dShape::phase_input_buf_len`] values.
pub(super) fn backward_input<V: Vector>(
    s: &Conv2dShape,
    weight: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    scratch: &mut [f32],
) {
    let st = s.stride;
    let bl = s.phase_input_buf_len();
    let (bufs, rest) = scratch.split_at_mut(s.chunks() * bl);
    let mut weights = &mut rest[..s.phase_grad_weights_len()];
    let k = s.kh * s.kw;
    for p in 0..st {
        for q in 0..st {
            let (ka, kb) = (s.sub_kh(p), s.sub_kw(q));
            let len = s.in_c.div_ceil(8) * 8 * s.phase_grad_taps(p, q);
            let (mine, later) = weights.split_at_mut(len);
            // Tap (o, a, b) for input channel c: W[o, c, s·a + p, s·b + q].
            let tap_at = |t: usize| {
                let (o, a, b) = (t / (ka * kb), t / kb % ka, t % kb);
                o * s.in_c * k + (st * a + p) * s.kw + st * b + q
            };
            offset_taps::group_taps(s.in_c, s.phase_grad_taps(p, q), weight, k, tap_at, mine);
            weights = later;
        }
    }
    let weights = &rest[..s.phase_grad_weights_len()];
    let gp = s.phase_grad_plane();
    let empty = |p: usize, q: usize| s.phase_grad_taps(p, q) == 0;
    for_each_image(
        (dx, s.in_image_len()),
        (dy, s.out_image_len()),
        (bufs, bl),
        |dxn, dyn_, buf| {
            let (padded, grads) = buf.split_at_mut(s.dy_pad_len());
            let padded: &[f32] = if s.dy_unpadded() {
                dyn_
            } else {
                pad_dy(s, dyn_, padded);
                padded
            };
            let mut wrest = weights;
            for (k, g) in grads[..st * st * s.in_c * gp]
                .chunks_exact_mut(s.in_c * gp)
                .enumerate()
            {
                let (p, q) = (k / st, k % st);
                let len = s.in_c.div_ceil(8) * 8 * s.phase_grad_taps(p, q);
                let (wg, later) = wrest.split_at(len);
                wrest = later;
                if empty(p, q) {
                    continue;
                }
                let off = s.phase_grad_taps_at(p, q);
                offset_taps::forward::<V>(padded, &off, wg, None, s.in_c, g, gp);
            }
            merge_phases(s, grads, dxn, empty);
        },
    );
}
