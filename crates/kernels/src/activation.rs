//! ReLU, forward and backward, SIMD and threaded over fixed-size blocks.
//!
//! `y = max(x, 0)`; `dx = dy · [x > 0]` (the derivative at 0 is taken as 0, as PyTorch).

use crate::simd::LANES;
use crate::vector::{relu1, Vector};
use rayon::prelude::*;
use wide::f32x8;

/// Values per rayon task; element-wise, so the grouping never changes results.
const BLOCK: usize = 1 << 14;

/// `y[i] = max(x[i], 0)`; a NaN input gives NaN. `x` and `y` have the same length.
pub fn relu_forward(x: &[f32], y: &mut [f32]) {
    assert!(
        x.len() == y.len(),
        "relu_forward: x has {} values, y has {}",
        x.len(),
        y.len()
    );
    y.par_chunks_mut(BLOCK)
        .zip(x.par_chunks(BLOCK))
        .for_each(|(y, x)| {
            let mut yc = y.chunks_exact_mut(LANES);
            let mut xc = x.chunks_exact(LANES);
            for (yv, xv) in (&mut yc).zip(&mut xc) {
                f32x8::load(xv).relu().store(yv);
            }
            for (yv, &xv) in yc.into_remainder().iter_mut().zip(xc.remainder()) {
                *yv = relu1(xv);
            }
        });
}

/// In-place ReLU, `x[i] = max(x[i], 0)` (NaN kept).
pub fn relu_forward_inplace(x: &mut [f32]) {
    x.par_chunks_mut(BLOCK).for_each(|x| {
        let mut xc = x.chunks_exact_mut(LANES);
        for xv in &mut xc {
            f32x8::load(xv).relu().store(xv);
        }
        for xv in xc.into_remainder() {
            *xv = relu1(*xv);
        }
    });
}

/// `dx[i] = dy[i]` where `y[i] > 0`, else 0. `y` may be the ReLU's input or its output
/// (they are positive at the same places).
pub fn relu_backward(y: &[f32], dy: &[f32], dx: &mut [f32]) {
    assert!(
        y.len() == dy.len() && dy.len() == dx.len(),
        "relu_backward: y has {}, dy {}, dx {} values; they must match",
        y.len(),
        dy.len(),
        dx.len()
    );
    dx.par_chunks_mut(BLOCK)
        .zip(dy.par_chunks(BLOCK))
        .zip(y.par_chunks(BLOCK))
        .for_each(|((dx, dy), y)| {
            let mut dxc = dx.chunks_exact_mut(LANES);
            let mut dyc = dy.chunks_exact(LANES);
            let mut yc = y.chunks_exact(LANES);
            for ((dxv, dyv), yv) in (&mut dxc).zip(&mut dyc).zip(&mut yc) {
                f32x8::load(dyv).where_positive(f32x8::load(yv)).store(dxv);
            }
            for ((dxv, &dyv), &yv) in dxc
                .into_remainder()
                .iter_mut()
                .zip(dyc.remainder())
                .zip(yc.remainder())
            {
                *dxv = if yv > 0.0 { dyv } else { 0.0 };
            }
        });
}

/// In-place backward, `g[i] = g[i]` where `y[i] > 0`, else 0 (`g`: the gradient of the
/// ReLU's output on entry, of its input on return). `y` and `g` have the same length.
pub fn relu_backward_inplace(y: &[f32], g: &mut [f32]) {
    assert!(
        y.len() == g.len(),
        "relu_backward_inplace: y has {} values, g has {}",
        y.len(),
        g.len()
    );
    g.par_chunks_mut(BLOCK)
        .zip(y.par_chunks(BLOCK))
        .for_each(|(g, y)| {
            let mut gc = g.chunks_exact_mut(LANES);
            let mut yc = y.chunks_exact(LANES);
            for (gv, yv) in (&mut gc).zip(&mut yc) {
                f32x8::load(gv).where_positive(f32x8::load(yv)).store(gv);
            }
            for (gv, &yv) in gc.into_remainder().iter_mut().zip(yc.remainder()) {
                *gv = if yv > 0.0 { *gv } else { 0.0 };
            }
        });
}
