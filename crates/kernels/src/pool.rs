//! Max pooling with argmax indices, forward and backward.
//!
//! Shapes: input `x` `[batch, c, h, w]`, output `y` `[batch, c, oh, ow]` with
//! `oh = (h - k) / stride + 1`, `ow = (w - k) / stride + 1` (no padding, floor mode, as
//! PyTorch's `MaxPool2d(k, stride)`).
//!
//! `y[n, c, i, j] = max_{u, v < k} x[n, c, i·stride + u, j·stride + v]`, and `argmax` holds
//! the position `row · w + col` of that maximum within its `h x w` plane. Ties go to the
//! first maximum in row-major window order; a NaN in a window wins (propagates, as in
//! PyTorch; where a window holds several NaNs Petal takes the first, PyTorch's CPU kernel
//! the last, so the gradient may go to another NaN position). The gradient flows only to each window's maximum (the seed's "Pooling_layer"):
//! `dx[n, c, argmax] += dy[n, c, i, j]`, so overlapping windows accumulate.

use crate::shape::{check_len, check_sizes, ShapeError};
use crate::simd::{load, store, LANES};
use rayon::prelude::*;
use wide::{f32x8, i32x8, u32x8, ShuffleExt};

/// The shape of a batched 2-D max pooling with a square `k x k` window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pool2dShape {
    pub batch: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
}

/// Planes handed to one rayon task (each plane is independent, so any grouping gives the
/// same result; this only sets the task size).
const PLANES_PER_TASK: usize = 8;

impl Pool2dShape {
    /// Checks that the window fits the input and no size is zero.
    pub fn validate(&self) -> Result<(), ShapeError> {
        for (field, v) in [
            ("batch", self.batch),
            ("c", self.c),
            ("h", self.h),
            ("w", self.w),
            ("k", self.k),
            ("stride", self.stride),
        ] {
            if v == 0 {
                return Err(ShapeError::Zero {
                    what: "max_pool2d",
                    field,
                });
            }
        }
        if self.k > self.h || self.k > self.w {
            return Err(ShapeError::KernelTooLarge {
                what: "max_pool2d",
                kernel: (self.k, self.k),
                input: (self.h, self.w),
            });
        }
        // Argmax indices are u32 positions within a plane.
        let plane = self.h as u128 * self.w as u128;
        if plane > u32::MAX as u128 {
            return Err(ShapeError::TooLarge {
                what: "max_pool2d",
                quantity: "one plane",
                values: plane,
            });
        }
        check_sizes(
            "max_pool2d",
            &[("the input", &[self.batch, self.c, self.h, self.w])],
        )
    }
    fn check(&self) {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
    }
    /// Output height, `(h - k) / stride + 1`.
    pub fn out_h(&self) -> usize {
        (self.h - self.k) / self.stride + 1
    }
    /// Output width, `(w - k) / stride + 1`.
    pub fn out_w(&self) -> usize {
        (self.w - self.k) / self.stride + 1
    }
    /// Values in the input, `batch · c · h · w`.
    pub fn input_len(&self) -> usize {
        self.batch * self.c * self.h * self.w
    }
    /// Values in the output (and in `argmax`), `batch · c · oh · ow`.
    pub fn output_len(&self) -> usize {
        self.batch * self.c * self.out_h() * self.out_w()
    }
}

/// Max pooling forward: fills `y` and `argmax` (both `[batch, c, oh, ow]`) from `x`
/// (`[batch, c, h, w]`); module docs give the equation.
pub fn max_pool2d_forward(s: &Pool2dShape, x: &[f32], y: &mut [f32], argmax: &mut [u32]) {
    s.check();
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
                    pool_plane_2x2(s, xp, yp, ap);
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

/// `v` beats `best`: greater, or NaN over a number (NaN propagates, ties keep `best`).
#[inline(always)]
fn wins_x8(v: f32x8, best: f32x8) -> f32x8 {
    v.simd_gt(best) | (v.is_nan() & !best.is_nan())
}

/// The 2x2 / stride 2 case (every preset's pooling), branch-free SIMD.
///
/// For 8 outputs at a time, the 16 values of each of the window's two input rows are split
/// into left (even) and right (odd) columns by two-vector shuffles; the winner of each
/// row's pair, then of the two rows (row 0 first, so ties keep row-major order), is picked
/// with masks, and the argmax offsets (0, 1, w, w + 1) ride along as exact small floats.
/// Outputs past the last whole vector take the scalar path.
#[inline(never)]
fn pool_plane_2x2(s: &Pool2dShape, x: &[f32], y: &mut [f32], am: &mut [u32]) {
    let (ow, w) = (s.out_w(), s.w);
    let even = u32x8::new([0, 2, 4, 6, 8, 10, 12, 14]);
    let odd = u32x8::new([1, 3, 5, 7, 9, 11, 13, 15]);
    let (one, wf, wf1) = (
        f32x8::splat(1.0),
        f32x8::splat(w as f32),
        f32x8::splat(w as f32 + 1.0),
    );
    let steps = f32x8::new([0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0]);
    // Argmax positions travel as f32: exact below 2^24.
    let simd = s.h * s.w < (1 << 24);
    for (i, (yrow, arow)) in y.chunks_exact_mut(ow).zip(am.chunks_exact_mut(ow)).enumerate() {
        let r0 = &x[2 * i * w..(2 * i + 1) * w];
        let r1 = &x[(2 * i + 1) * w..(2 * i + 2) * w];
        let mut j = 0;
        while simd && j + LANES <= ow {
            let (a0, a1) = (load(&r0[2 * j..]), load(&r0[2 * j + LANES..]));
            let (b0, b1) = (load(&r1[2 * j..]), load(&r1[2 * j + LANES..]));
            let (l0, q0) = ([a0, a1].shuffle(even), [a0, a1].shuffle(odd));
            let (l1, q1) = ([b0, b1].shuffle(even), [b0, b1].shuffle(odd));
            let w0 = wins_x8(q0, l0);
            let (m0, o0) = (w0.select(q0, l0), w0 & one);
            let w1 = wins_x8(q1, l1);
            let (m1, o1) = (w1.select(q1, l1), w1.select(wf1, wf));
            let wr = wins_x8(m1, m0);
            store(&mut yrow[j..], wr.select(m1, m0));
            let idx = wr.select(o1, o0) + steps + f32x8::splat((2 * i * w + 2 * j) as f32);
            for (a, v) in arow[j..j + LANES].iter_mut().zip(idx.round_int().to_array()) {
                *a = v as u32;
            }
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

/// Max pooling backward: `dx` (`[batch, c, h, w]`, overwritten) is 0 except that each
/// `dy[n, c, i, j]` is added at `argmax[n, c, i, j]` of its plane.
///
/// `argmax` must come from [`max_pool2d_forward`] on the same shape: an index outside its
/// plane panics, and on the 2x2 / stride 2 path one outside its own window panics too.
pub fn max_pool2d_backward(s: &Pool2dShape, dy: &[f32], argmax: &[u32], dx: &mut [f32]) {
    s.check();
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
                    unpool_plane_2x2(s, dyp, ap, dxp);
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
/// column 0), with no zero-fill pass and no scatter. Per 8 outputs, the argmax offset in
/// its window (0, 1, w or w + 1, exact as f32 below 2^24) gives four masks, and two
/// interleaving shuffles per input row write 16 values.
#[inline(never)]
fn unpool_plane_2x2(s: &Pool2dShape, dy: &[f32], am: &[u32], dx: &mut [f32]) {
    let (oh, ow, w) = (s.out_h(), s.out_w(), s.w);
    let lo = u32x8::new([0, 8, 1, 9, 2, 10, 3, 11]);
    let hi = u32x8::new([4, 12, 5, 13, 6, 14, 7, 15]);
    let steps = f32x8::new([0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0]);
    let (zero, one, wf, wf1) = (
        f32x8::ZERO,
        f32x8::splat(1.0),
        f32x8::splat(w as f32),
        f32x8::splat(w as f32 + 1.0),
    );
    let outside = |i: usize, j: usize, a: u32| -> ! {
        if a as usize >= s.h * w {
            panic!("max_pool2d_backward: argmax {a} outside the {}x{w} plane", s.h);
        }
        panic!(
            "max_pool2d_backward: argmax {a} of output ({i}, {j}) outside its 2x2 window in the {}x{w} plane",
            s.h
        )
    };
    for (i, (dyrow, arow)) in dy.chunks_exact(ow).zip(am.chunks_exact(ow)).enumerate() {
        let (top, bottom) = dx[2 * i * w..(2 * i + 2) * w].split_at_mut(w);
        let mut j = 0;
        while j + LANES <= ow {
            let d = load(&dyrow[j..]);
            let a = i32x8::new(std::array::from_fn(|l| arow[j + l] as i32)).round_float();
            let off = a - (steps + f32x8::splat((2 * i * w + 2 * j) as f32));
            let (m0, m1, m2, m3) = (
                off.simd_eq(zero),
                off.simd_eq(one),
                off.simd_eq(wf),
                off.simd_eq(wf1),
            );
            let hit = (m0 | m1 | m2 | m3).to_bitmask();
            if hit != 0xff {
                let l = (!hit).trailing_zeros() as usize;
                outside(i, j + l, arow[j + l]);
            }
            let (tl, tr) = (m0.select(d, zero), m1.select(d, zero));
            let (bl, br) = (m2.select(d, zero), m3.select(d, zero));
            store(&mut top[2 * j..], [tl, tr].shuffle(lo));
            store(&mut top[2 * j + LANES..], [tl, tr].shuffle(hi));
            store(&mut bottom[2 * j..], [bl, br].shuffle(lo));
            store(&mut bottom[2 * j + LANES..], [bl, br].shuffle(hi));
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
                _ => outside(i, j, arow[j]),
            }
            top[2 * j..2 * j + 2].copy_from_slice(&cell[..2]);
            bottom[2 * j..2 * j + 2].copy_from_slice(&cell[2..]);
        }
        top[2 * ow..].fill(0.0);
        bottom[2 * ow..].fill(0.0);
    }
    dx[2 * oh * w..].fill(0.0);
}
