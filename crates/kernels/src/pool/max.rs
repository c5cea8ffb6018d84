//! Max pooling with argmax indices, forward and backward, on [`Pool2dShape`]s (module docs
//! of [`pool`](super) give the shapes).
//!
//! `y[n, c, i, j] = max_{u, v < k} x[n, c, i·stride + u, j·stride + v]`, and `argmax` holds
//! the position `row · w + col` of that maximum within its `h x w` plane. Ties go to the
//! first maximum in row-major window order; a NaN in a window wins (propagates, as in
//! PyTorch; where a window holds several NaNs Petal takes the first, PyTorch's CPU kernel
//! the last, so the gradient may go to another NaN position). The gradient flows only to
//! each window's maximum (the seed's "Pooling_layer"): `dx[n, c, argmax] += dy[n, c, i,
//! j]`, so overlapping windows accumulate.
//!
//! The 2x2 / stride 2 case (every preset's pooling) runs branch-free SIMD blocks on the
//! column-pair operations of `vector.rs`.

use super::vector::PoolVector;
use super::{Pool2dShape, PoolKind};
use crate::arch::Lanes;
use crate::shape::check_len;
use crate::simd::LANES;
use rayon::prelude::*;
use wide::{f32x16, f32x8};

/// Planes handed to one rayon task (each plane is independent, so any grouping gives the
/// same result; this only sets the task size).
const PLANES_PER_TASK: usize = 8;

/// Max pooling forward: fills `y` and `argmax` (both `[batch, c, oh, ow]`) from `x`
/// (`[batch, c, h, w]`); module docs give the equation.
pub fn max_pool2d_forward(s: &Pool2dShape, x: &[f32], y: &mut [f32], argmax: &mut [u32]) {
    max_pool2d_forward_lanes(Lanes::BUILD, s, x, y, argmax);
}

/// [`max_pool2d_forward`] with the 2x2 / stride 2 path's widest blocks at `lanes`
/// ([`Lanes::BUILD`] there), so tests run both widths on any x86-64 machine. The result
/// does not depend on `lanes`.
#[doc(hidden)]
pub fn max_pool2d_forward_lanes(lanes: Lanes, s: &Pool2dShape, x: &[f32], y: &mut [f32], argmax: &mut [u32]) {
    s.check(PoolKind::Max);
    check_len("max_pool2d_forward", "x", x.len(), s.input_len());
    check_len("max_pool2d_forward", "y", y.len(), s.output_len());
    check_len("max_pool2d_forward", "argmax", argmax.len(), s.output_len());
    assert!(
        s.h * s.w <= u32::MAX as usize,
        "max_pool2d_forward: plane of {}x{} too large for u32 indices",
        s.h,
        s.w
    );
    let (pl, ol) = (s.h * s.w, s.out_h() * s.out_w());
    x.par_chunks(PLANES_PER_TASK * pl)
        .zip(y.par_chunks_mut(PLANES_PER_TASK * ol))
        .zip(argmax.par_chunks_mut(PLANES_PER_TASK * ol))
        .for_each(|((xc, yc), ac)| {
            for ((xp, yp), ap) in xc
                .chunks_exact(pl)
                .zip(yc.chunks_exact_mut(ol))
                .zip(ac.chunks_exact_mut(ol))
            {
                if s.k == 2 && s.stride == 2 {
                    match lanes {
                        Lanes::Eight => pool_plane_2x2::<false>(s, xp, yp, ap),
                        Lanes::Sixteen => pool_plane_2x2::<true>(s, xp, yp, ap),
                    }
                } else {
                    pool_plane(s, xp, yp, ap);
                }
            }
        });
}

#[inline(always)]
fn wins(v: f32, best: f32) -> bool {
    v > best || (v.is_nan() && !best.is_nan())
}

#[inline(never)]
fn pool_plane(s: &Pool2dShape, x: &[f32], y: &mut [f32], am: &mut [u32]) {
    let ow = s.out_w();
    for (i, (yrow, arow)) in y.chunks_exact_mut(ow).zip(am.chunks_exact_mut(ow)).enumerate() {
        for (j, (yv, av)) in yrow.iter_mut().zip(arow.iter_mut()).enumerate() {
            let (r0, c0) = (i * s.stride, j * s.stride);
            let mut best_idx = r0 * s.w + c0;
            let mut best = x[best_idx];
            for r in r0..r0 + s.k {
                for (c, &v) in x[r * s.w + c0..r * s.w + c0 + s.k].iter().enumerate() {
                    if wins(v, best) {
                        best = v;
                        best_idx = r * s.w + c0 + c;
                    }
                }
            }
            *yv = best;
            *av = best_idx as u32;
        }
    }
}

/// The 2x2 / stride 2 case (every preset's pooling), branch-free SIMD.
///
/// For `N` outputs at a time (16 when `WIDE`, then 8), the `2N` values of each of the
/// window's two input rows are split into left (even) and right (odd) columns by
/// two-vector shuffles; the winner of each row's pair, then of the two rows (row 0 first,
/// so ties keep row-major order), is picked with masks, and the argmax offsets (0, 1, w,
/// w + 1) ride along as exact small floats. Outputs past the last whole vector take the
/// scalar path.
#[inline(never)]
fn pool_plane_2x2<const WIDE: bool>(s: &Pool2dShape, x: &[f32], y: &mut [f32], am: &mut [u32]) {
    let (ow, w) = (s.out_w(), s.w);
    // Argmax positions travel as f32, exact below 2^24; stored through the 2^23 bias of
    // `store_index`, so planes below 2^23 values.
    let simd = s.h * s.w < (1 << 23);
    for (i, (yrow, arow)) in y.chunks_exact_mut(ow).zip(am.chunks_exact_mut(ow)).enumerate() {
        let r0 = &x[2 * i * w..(2 * i + 1) * w];
        let r1 = &x[(2 * i + 1) * w..(2 * i + 2) * w];
        let mut j = 0;
        while simd && WIDE && j + 16 <= ow {
            pool_block_2x2::<f32x16>(r0, r1, w, 2 * i * w, j, yrow, arow);
            j += 16;
        }
        while simd && j + LANES <= ow {
            pool_block_2x2::<f32x8>(r0, r1, w, 2 * i * w, j, yrow, arow);
            j += LANES;
        }
        for j in j..ow {
            let base = (2 * i * w + 2 * j) as u32;
            let (mut best, mut idx) = (r0[2 * j], base);
            for (v, k) in [
                (r0[2 * j + 1], base + 1),
                (r1[2 * j], base + w as u32),
                (r1[2 * j + 1], base + w as u32 + 1),
            ] {
                if wins(v, best) {
                    best = v;
                    idx = k;
                }
            }
            yrow[j] = best;
            arow[j] = idx;
        }
    }
}

/// Outputs `j .. j + N` of one output row from input rows `r0` and `r1` (which start at
/// `row_base` in the plane).
#[inline(always)]
fn pool_block_2x2<V: PoolVector>(
    r0: &[f32],
    r1: &[f32],
    w: usize,
    row_base: usize,
    j: usize,
    yrow: &mut [f32],
    arow: &mut [u32],
) {
    let n = V::LANES;
    let (l0, q0) = V::deinterleave(V::load(&r0[2 * j..]), V::load(&r0[2 * j + n..]));
    let (l1, q1) = V::deinterleave(V::load(&r1[2 * j..]), V::load(&r1[2 * j + n..]));
    let w0 = q0.beats(l0);
    let (m0, o0) = (w0.select(q0, l0), w0 & V::splat(1.0));
    let w1 = q1.beats(l1);
    let (m1, o1) = (
        w1.select(q1, l1),
        w1.select(V::splat(w as f32 + 1.0), V::splat(w as f32)),
    );
    let wr = m1.beats(m0);
    wr.select(m1, m0).to_natural_order().store(&mut yrow[j..]);
    let idx = wr.select(o1, o0) + V::steps() + V::splat((row_base + 2 * j) as f32);
    let idx = idx.to_natural_order();
    idx.store_index(&mut arow[j..]);
}

/// Max pooling backward: `dx` (`[batch, c, h, w]`, overwritten) is 0 except that each
/// `dy[n, c, i, j]` is added at `argmax[n, c, i, j]` of its plane.
///
/// `argmax` must come from [`max_pool2d_forward`] on the same shape: an index outside its
/// plane panics, and on the 2x2 / stride 2 path one outside its own window panics too.
pub fn max_pool2d_backward(s: &Pool2dShape, dy: &[f32], argmax: &[u32], dx: &mut [f32]) {
    max_pool2d_backward_lanes(Lanes::BUILD, s, dy, argmax, dx);
}

/// [`max_pool2d_backward`] with the 2x2 / stride 2 path's widest blocks at `lanes`
/// ([`Lanes::BUILD`] there), so tests run both widths on any x86-64 machine. The result
/// does not depend on `lanes`.
#[doc(hidden)]
pub fn max_pool2d_backward_lanes(lanes: Lanes, s: &Pool2dShape, dy: &[f32], argmax: &[u32], dx: &mut [f32]) {
    s.check(PoolKind::Max);
    check_len("max_pool2d_backward", "dy", dy.len(), s.output_len());
    check_len("max_pool2d_backward", "argmax", argmax.len(), s.output_len());
    check_len("max_pool2d_backward", "dx", dx.len(), s.input_len());
    let (pl, ol) = (s.h * s.w, s.out_h() * s.out_w());
    dx.par_chunks_mut(PLANES_PER_TASK * pl)
        .zip(dy.par_chunks(PLANES_PER_TASK * ol))
        .zip(argmax.par_chunks(PLANES_PER_TASK * ol))
        .for_each(|((dxc, dyc), ac)| {
            for ((dxp, dyp), ap) in dxc
                .chunks_exact_mut(pl)
                .zip(dyc.chunks_exact(ol))
                .zip(ac.chunks_exact(ol))
            {
                if s.k == 2 && s.stride == 2 && pl < (1 << 24) {
                    match lanes {
                        Lanes::Eight => unpool_plane_2x2::<false>(s, dyp, ap, dxp),
                        Lanes::Sixteen => unpool_plane_2x2::<true>(s, dyp, ap, dxp),
                    }
                } else {
                    unpool_plane(s, dyp, ap, dxp);
                }
            }
        });
}

/// Any window: zero the plane, then add each gradient at its argmax.
fn unpool_plane(s: &Pool2dShape, dy: &[f32], am: &[u32], dx: &mut [f32]) {
    dx.fill(0.0);
    for (&g, &a) in dy.iter().zip(am) {
        assert!(
            (a as usize) < dx.len(),
            "max_pool2d_backward: argmax {a} outside the {}x{} plane",
            s.h,
            s.w
        );
        dx[a as usize] += g;
    }
}

/// The 2x2 / stride 2 case: windows do not overlap, so every `dx` value is written once
/// (the window's maximum gets `dy`, its other three values and the odd last row or
/// column 0), with no zero-fill pass and no scatter. Per `N` outputs (16 when `WIDE`,
/// then 8), the argmax offset in its window (0, 1, w or w + 1, exact as f32 below 2^24)
/// gives four masks, and two interleaving shuffles per input row write `2N` values.
#[inline(never)]
fn unpool_plane_2x2<const WIDE: bool>(s: &Pool2dShape, dy: &[f32], am: &[u32], dx: &mut [f32]) {
    let (oh, ow, w) = (s.out_h(), s.out_w(), s.w);
    for (i, (dyrow, arow)) in dy.chunks_exact(ow).zip(am.chunks_exact(ow)).enumerate() {
        let (top, bottom) = dx[2 * i * w..(2 * i + 2) * w].split_at_mut(w);
        let mut j = 0;
        while WIDE && j + 16 <= ow {
            unpool_block_2x2::<f32x16>(s, i, j, dyrow, arow, top, bottom);
            j += 16;
        }
        while j + LANES <= ow {
            unpool_block_2x2::<f32x8>(s, i, j, dyrow, arow, top, bottom);
            j += LANES;
        }
        for j in j..ow {
            let base = 2 * i * w + 2 * j;
            let (g, a) = (dyrow[j], arow[j] as usize);
            let mut cell = [0.0f32; 4];
            match a.checked_sub(base) {
                Some(0) => cell[0] = g,
                Some(1) => cell[1] = g,
                Some(o) if o == w => cell[2] = g,
                Some(o) if o == w + 1 => cell[3] = g,
                _ => outside_window(s, i, j, arow[j]),
            }
            top[2 * j..2 * j + 2].copy_from_slice(&cell[..2]);
            bottom[2 * j..2 * j + 2].copy_from_slice(&cell[2..]);
        }
        top[2 * ow..].fill(0.0);
        bottom[2 * ow..].fill(0.0);
    }
    dx[2 * oh * w..].fill(0.0);
}

/// Gradients of outputs `(i, j .. j + N)` into input rows `top` and `bottom`.
#[inline(always)]
fn unpool_block_2x2<V: PoolVector>(
    s: &Pool2dShape,
    i: usize,
    j: usize,
    dyrow: &[f32],
    arow: &[u32],
    top: &mut [f32],
    bottom: &mut [f32],
) {
    let (n, w) = (V::LANES, s.w as f32);
    let d = V::load(&dyrow[j..]).to_pair_order();
    let idx = V::load_index(&arow[j..]).to_pair_order();
    let off = idx - (V::steps() + V::splat((2 * i * s.w + 2 * j) as f32));
    let (m0, m1) = (off.eq(V::splat(0.0)), off.eq(V::splat(1.0)));
    let (m2, m3) = (off.eq(V::splat(w)), off.eq(V::splat(w + 1.0)));
    if !(m0 | m1 | m2 | m3).all() {
        let base = 2 * i * s.w + 2 * j;
        let l = (0..n)
            .find(|&l| ![0, 1, s.w, s.w + 1].contains(&(arow[j + l] as usize).wrapping_sub(base + 2 * l)))
            .expect("a lane outside its window");
        outside_window(s, i, j + l, arow[j + l]);
    }
    let zero = V::splat(0.0);
    let (t0, t1) = V::interleave(m0.select(d, zero), m1.select(d, zero));
    t0.store(&mut top[2 * j..]);
    t1.store(&mut top[2 * j + n..]);
    let (b0, b1) = V::interleave(m2.select(d, zero), m3.select(d, zero));
    b0.store(&mut bottom[2 * j..]);
    b1.store(&mut bottom[2 * j + n..]);
}

/// An argmax that [`max_pool2d_forward`] could not have produced for output `(i, j)`.
#[cold]
fn outside_window(s: &Pool2dShape, i: usize, j: usize, a: u32) -> ! {
    if a as usize >= s.h * s.w {
        panic!(
            "max_pool2d_backward: argmax {a} outside the {}x{} plane",
            s.h, s.w
        );
    }
    panic!(
        "max_pool2d_backward: argmax {a} of output ({i}, {j}) outside its 2x2 window in the {}x{} plane",
        s.h, s.w
    )
}
