//! The per-image direct weight gradients of stride-1 convolutions from the zero-padded
//! copy `xp` of an image ([`WeightGradPath::DirectArea`], [`WeightGradPath::DirectRows`]),
//! added into `gw` (`[out_c, in_c, kh, kw]`):
//! `gw[o, c, u, v] += Σ_{i,j} dy[o, i, j] · xp[c, i + u, j + v]`;
//! and the bias gradient's plane sums of every path but the 3x3 kernel.

use super::{Conv2dShape, WeightGradPath};
use crate::simd;
use crate::vector::Vector;
use wide::f32x8;

/// One image of [`WeightGradPath::DirectArea`] (a monomorphised kernel per kernel area
/// `kh · kw` 1, 4, 9, 25) or [`WeightGradPath::DirectRows`] (any area), `V` the widest
/// vector of the per-tap accumulators.
#[inline(never)]
pub(super) fn backward_weights_image<V: Vector>(
    s: &Conv2dShape,
    path: WeightGradPath,
    xp: &[f32],
    dy: &[f32],
    gw: &mut [f32],
) {
    match (path, s.kh * s.kw) {
        (WeightGradPath::DirectRows, _) => backward_weights_rows(s, xp, dy, gw),
        (WeightGradPath::DirectArea, 1) => backward_weights_area::<1, V>(s, xp, dy, gw),
        (WeightGradPath::DirectArea, 4) => backward_weights_area::<4, V>(s, xp, dy, gw),
        (WeightGradPath::DirectArea, 9) => backward_weights_area::<9, V>(s, xp, dy, gw),
        (WeightGradPath::DirectArea, 25) => backward_weights_area::<25, V>(s, xp, dy, gw),
        (path, area) => unreachable!("{path:?} is not a per-image direct path for kernel area {area}"),
    }
}

/// Per output channel and input channel, `K = kh · kw` accumulators (`V::LANES` lanes,
/// plus 8 for a remainder block, plus a scalar tail) over every output position, kept in
/// registers across the whole image; one horizontal sum per tap at the end.
fn backward_weights_area<const K: usize, V: Vector>(s: &Conv2dShape, xp: &[f32], dy: &[f32], gw: &mut [f32]) {
    debug_assert_eq!(s.kh * s.kw, K);
    let (oh, ow, plane, wp) = (s.out_h(), s.out_w(), s.padded_plane(), s.padded_stride());
    let off: [usize; K] = std::array::from_fn(|t| t / s.kw * wp + t % s.kw);
    for (o, dyo) in dy.chunks_exact(oh * ow).enumerate() {
        for c in 0..s.in_c {
            let xc = &xp[c * plane..(c + 1) * plane];
            let mut acc_wide = [V::splat(0.0); K];
            let mut acc8 = [f32x8::ZERO; K];
            let mut tail = [0.0f32; K];
            for (i, dyrow) in dyo.chunks_exact(ow).enumerate() {
                let base = i * wp;
                let mut j = 0;
                while j + V::LANES <= ow {
                    dw_block(xc, dyrow, &off, base, j, &mut acc_wide);
                    j += V::LANES;
                }
                while j + 8 <= ow {
                    dw_block(xc, dyrow, &off, base, j, &mut acc8);
                    j += 8;
                }
                for (jj, &d) in dyrow.iter().enumerate().skip(j) {
                    for (e, &at) in tail.iter_mut().zip(&off) {
                        *e = simd::fma(xc[at + base + jj], d, *e);
                    }
                }
            }
            let gwo = &mut gw[(o * s.in_c + c) * K..(o * s.in_c + c + 1) * K];
            for t in 0..K {
                gwo[t] += acc_wide[t].reduce_add() + Vector::reduce_add(acc8[t]) + tail[t];
            }
        }
    }
}

/// One block of columns `j..` of an output row (input offset `base` in the padded copy):
/// `acc[t] += dy[i, j..] · xp[tap t at (i, j..)]`.
#[inline(always)]
fn dw_block<const T: usize, V: Vector>(
    xp: &[f32],
    dyrow: &[f32],
    off: &[usize; T],
    base: usize,
    j: usize,
    acc: &mut [V; T],
) {
    let d = V::load(&dyrow[j..]);
    for t in 0..T {
        acc[t] = V::load(&xp[off[t] + base + j..]).mul_add(d, acc[t]);
    }
}

/// [`WeightGradPath::DirectRows`]: per output channel and tap, a SIMD dot product
/// ([`simd::dot`], 8 lanes) of each `dy` row with the input row it meets.
fn backward_weights_rows(s: &Conv2dShape, xp: &[f32], dy: &[f32], gw: &mut [f32]) {
    let (oh, ow) = (s.out_h(), s.out_w());
    let (hp, wp) = (s.padded_h(), s.padded_stride());
    let taps = s.col_rows();
    for (o, dyo) in dy.chunks_exact(oh * ow).enumerate() {
        for t in 0..taps {
            let (c, u, v) = (t / (s.kh * s.kw), t / s.kw % s.kh, t % s.kw);
            let mut acc = 0.0f32;
            for (i, dyrow) in dyo.chunks_exact(ow).enumerate() {
                let at = (c * hp + i + u) * wp + v;
                acc += simd::dot(dyrow, &xp[at..at + ow]);
            }
            gw[o * taps + t] += acc;
        }
    }
}

/// Sum of one `dy` plane for the bias gradient: four independent `V::LANES`-lane partial
/// sums (so the adds pipeline instead of waiting on each other), then the lanes, then
/// the tail ([`simd::sum`]), in that order.
pub(super) fn plane_sum<V: Vector>(x: &[f32]) -> f32 {
    let mut acc = [V::splat(0.0); 4];
    let mut blocks = x.chunks_exact(4 * V::LANES);
    for b in &mut blocks {
        for (k, a) in acc.iter_mut().enumerate() {
            *a = *a + V::load(&b[V::LANES * k..]);
        }
    }
    let total = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    total.reduce_add() + simd::sum(blocks.remainder())
}
