//! Average pooling (window `k x k`, stride, no padding) and global average pooling,
//! forward and backward.
//!
//! Window pooling, shapes as [`Pool2dShape`] (`x [batch, c, h, w]` → `y [batch, c, oh, ow]`,
//! `oh = (h − k) / stride + 1`, `ow` likewise; PyTorch's `AvgPool2d(k, stride)`), checked
//! as [`PoolKind::Avg`]:
//! `y[n, c, i, j] = (1 / k²) Σ_{u, v < k} x[n, c, i·stride + u, j·stride + v]`, the window
//! summed in `f32` in row-major order, then divided by `k²`. Backward:
//! `dx[n, c, i·stride + u, j·stride + v] += dy[n, c, i, j] · (1 / k²)` (`1 / k²` rounded to
//! `f32` once), so overlapping windows (stride < k) add and positions in no window get 0.
//!
//! Global pooling (PyTorch's `AdaptiveAvgPool2d(1)`), `x [batch, c, hw]` → `y [batch, c]`:
//! `y[n, c] = Σ_i x[n, c, i] / hw` (summed as [`simd::sum`](crate::simd::sum)), and
//! `dx[n, c, i] = dy[n, c] / hw`.
//!
//! Planes are independent and each is computed by one task, so results are the same on any
//! number of threads.

use super::{Pool2dShape, PoolKind};
use crate::shape::check_len;
use crate::simd::{add_assign, axpy, sum};
use rayon::prelude::*;

/// Values a rayon task gets at least (whole planes).
const TASK: usize = 1 << 14;

/// Planes per rayon task for planes of `len` values.
fn planes_per_task(len: usize) -> usize {
    TASK.div_ceil(len.max(1))
}

/// Average pooling forward: fills `y` (`[batch, c, oh, ow]`) from `x` (`[batch, c, h, w]`);
/// module docs give the equation. Stride 1 adds whole shifted rows with SIMD; other
/// strides gather in a scalar loop.
pub fn avg_pool2d_forward(s: &Pool2dShape, x: &[f32], y: &mut [f32]) {
    s.check(PoolKind::Avg);
    check_len("avg_pool2d_forward", "x", x.len(), s.input_len());
    check_len("avg_pool2d_forward", "y", y.len(), s.output_len());
    let (pl, ol) = (s.h * s.w, s.out_h() * s.out_w());
    let planes = planes_per_task(pl);
    y.par_chunks_mut(planes * ol)
        .zip(x.par_chunks(planes * pl))
        .for_each(|(yc, xc)| {
            for (yp, xp) in yc.chunks_exact_mut(ol).zip(xc.chunks_exact(pl)) {
                avg_plane(s, xp, yp);
            }
        });
}

fn avg_plane(s: &Pool2dShape, x: &[f32], y: &mut [f32]) {
    let (ow, w, k, st) = (s.out_w(), s.w, s.k, s.stride);
    let kk = (k * k) as f32;
    for (i, yrow) in y.chunks_exact_mut(ow).enumerate() {
        yrow.fill(0.0);
        for u in 0..k {
            let xrow = &x[(i * st + u) * w..][..w];
            for v in 0..k {
                if st == 1 {
                    add_assign(yrow, &xrow[v..v + ow]);
                } else {
                    for (j, yv) in yrow.iter_mut().enumerate() {
                        *yv += xrow[j * st + v];
                    }
                }
            }
        }
        for yv in yrow.iter_mut() {
            *yv /= kk;
        }
    }
}

/// Average pooling backward: `dx` (`[batch, c, h, w]`, overwritten) gets `dy / k²` at every
/// position of each output's window; overlapping windows add, positions in no window get 0.
pub fn avg_pool2d_backward(s: &Pool2dShape, dy: &[f32], dx: &mut [f32]) {
    s.check(PoolKind::Avg);
    check_len("avg_pool2d_backward", "dy", dy.len(), s.output_len());
    check_len("avg_pool2d_backward", "dx", dx.len(), s.input_len());
    let (pl, ol) = (s.h * s.w, s.out_h() * s.out_w());
    let planes = planes_per_task(pl);
    dx.par_chunks_mut(planes * pl)
        .zip(dy.par_chunks(planes * ol))
        .for_each(|(dxc, dyc)| {
            for (dxp, dyp) in dxc.chunks_exact_mut(pl).zip(dyc.chunks_exact(ol)) {
                unavg_plane(s, dyp, dxp);
            }
        });
}

fn unavg_plane(s: &Pool2dShape, dy: &[f32], dx: &mut [f32]) {
    let (ow, w, k, st) = (s.out_w(), s.w, s.k, s.stride);
    let inv = 1.0 / (k * k) as f32;
    dx.fill(0.0);
    for (i, dyrow) in dy.chunks_exact(ow).enumerate() {
        for u in 0..k {
            let dxrow = &mut dx[(i * st + u) * w..][..w];
            for v in 0..k {
                if st == 1 {
                    axpy(&mut dxrow[v..v + ow], inv, dyrow);
                } else {
                    for (j, &g) in dyrow.iter().enumerate() {
                        dxrow[j * st + v] += g * inv;
                    }
                }
            }
        }
    }
}

#[track_caller]
fn check_global(what: &str, batch: usize, c: usize, hw: usize, big: (&str, usize), small: (&str, usize)) {
    assert!(hw >= 1, "{what}: hw must be at least 1");
    let planes = batch.checked_mul(c).expect("batch · c overflows");
    let values = planes.checked_mul(hw).expect("batch · c · hw overflows");
    check_len(what, big.0, big.1, values);
    check_len(what, small.0, small.1, planes);
}

/// Global average pooling: `y[n, ch] = Σ_i x[n, ch, i] / hw`. `x` is `[batch, c, hw]`,
/// `y` `[batch, c]`.
pub fn global_avg_pool_forward(batch: usize, c: usize, hw: usize, x: &[f32], y: &mut [f32]) {
    let what = "global_avg_pool_forward";
    check_global(what, batch, c, hw, ("x", x.len()), ("y", y.len()));
    let planes = planes_per_task(hw);
    let n = hw as f32;
    y.par_chunks_mut(planes)
        .zip(x.par_chunks(planes * hw))
        .for_each(|(yc, xc)| {
            for (yv, xp) in yc.iter_mut().zip(xc.chunks_exact(hw)) {
                *yv = sum(xp) / n;
            }
        });
}

/// Global average pooling backward: `dx[n, ch, i] = dy[n, ch] / hw` (overwritten).
pub fn global_avg_pool_backward(batch: usize, c: usize, hw: usize, dy: &[f32], dx: &mut [f32]) {
    let what = "global_avg_pool_backward";
    check_global(what, batch, c, hw, ("dx", dx.len()), ("dy", dy.len()));
    let planes = planes_per_task(hw);
    let n = hw as f32;
    dx.par_chunks_mut(planes * hw)
        .zip(dy.par_chunks(planes))
        .for_each(|(dxc, dyc)| {
            for (dxp, &g) in dxc.chunks_exact_mut(hw).zip(dyc) {
                dxp.fill(g / n);
            }
        });
}
