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
use crate::simd::{Lanes, LANES};
use rayon::prelude::*;
use std::ops::{Add, BitAnd, BitOr, Not, Sub};
use wide::bytemuck::cast;
use wide::{f32x16, f32x8, i32x16, i32x8, u32x16, u32x8, ShuffleExt};

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
    max_pool2d_forward_lanes(Lanes::BUILD, s, x, y, argmax);
}

/// [`max_pool2d_forward`] with the 2x2 / stride 2 path's widest blocks at `lanes`
/// ([`Lanes::BUILD`] there), so tests run both widths on any x86-64 machine. The result
/// does not depend on `lanes`.
#[doc(hidden)]
pub fn max_pool2d_forward_lanes(lanes: Lanes, s: &Pool2dShape, x: &[f32], y: &mut [f32], argmax: &mut [u32]) {
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

/// The vector operations of the 2x2 / stride 2 paths, for 8 lanes (`f32x8`) and 16
/// (`f32x16`, [`Lanes::Sixteen`]: what AVX-512 builds use). Masks are vectors whose lanes
/// are all ones or zero.
trait PoolVector:
    Copy
    + BitAnd<Output = Self>
    + BitOr<Output = Self>
    + Not<Output = Self>
    + Add<Output = Self>
    + Sub<Output = Self>
{
    const N: usize;
    fn splat(v: f32) -> Self;
    /// `[0, 2, 4, .., 2 (N - 1)]`.
    fn steps() -> Self;
    fn load(s: &[f32]) -> Self;
    fn store(self, s: &mut [f32]);
    /// `N` indices as exact floats (they are below 2^24).
    fn load_index(s: &[u32]) -> Self;
    /// `N` exact float indices below 2^23 back to `u32`.
    fn store_index(self, s: &mut [u32]);
    /// The even and the odd lanes of `a` then `b`.
    fn deinterleave(a: Self, b: Self) -> (Self, Self);
    /// `a0 b0 a1 b1 ..`: its first `N` lanes, then its last `N`.
    fn interleave(a: Self, b: Self) -> (Self, Self);
    fn gt(self, o: Self) -> Self;
    fn eq(self, o: Self) -> Self;
    fn nan(self) -> Self;
    fn select(self, if_true: Self, if_false: Self) -> Self;
    fn bitmask(self) -> u32;
}

/// Implements [`PoolVector`] for `wide`'s `$f` (with its `$i` and `$u` integer twins) of
/// `$n` lanes. Two-vector shuffles go through `$u` (`wide` has them for the unsigned
/// types): the casts move no data.
macro_rules! pool_vector {
    ($f:ident, $i:ident, $u:ident, $n:literal) => {
        impl PoolVector for $f {
            const N: usize = $n;
            #[inline(always)]
            fn splat(v: f32) -> Self {
                $f::splat(v)
            }
            #[inline(always)]
            fn steps() -> Self {
                $f::new(std::array::from_fn(|l| 2.0 * l as f32))
            }
            #[inline(always)]
            fn load(s: &[f32]) -> Self {
                $f::new(s[..$n].try_into().expect("a whole vector"))
            }
            #[inline(always)]
            fn store(self, s: &mut [f32]) {
                s[..$n].copy_from_slice(&self.to_array());
            }
            #[inline(always)]
            fn load_index(s: &[u32]) -> Self {
                $i::new(std::array::from_fn(|l| s[l] as i32)).round_float()
            }
            #[inline(always)]
            fn store_index(self, s: &mut [u32]) {
                // An integer v below 2^23 plus 2^23 is exact, and its bits are
                // 0x4B00_0000 + v: one add and one xor, where a conversion with
                // `round_int`'s range checks took five instructions more.
                let biased: $u = cast(self + $f::splat(8_388_608.0));
                let v = biased ^ $u::splat(0x4B00_0000);
                s[..$n].copy_from_slice(&v.to_array());
            }
            #[inline(always)]
            fn deinterleave(a: Self, b: Self) -> (Self, Self) {
                let (a, b): ($u, $u) = (cast(a), cast(b));
                let even = $u::new(std::array::from_fn(|l| 2 * l as u32));
                let odd = $u::new(std::array::from_fn(|l| 2 * l as u32 + 1));
                (cast([a, b].shuffle(even)), cast([a, b].shuffle(odd)))
            }
            #[inline(always)]
            fn interleave(a: Self, b: Self) -> (Self, Self) {
                let (a, b): ($u, $u) = (cast(a), cast(b));
                let lo = $u::new(std::array::from_fn(|l| (l / 2 + $n * (l % 2)) as u32));
                let hi = $u::new(std::array::from_fn(|l| {
                    ($n / 2 + l / 2 + $n * (l % 2)) as u32
                }));
                (cast([a, b].shuffle(lo)), cast([a, b].shuffle(hi)))
            }
            #[inline(always)]
            fn gt(self, o: Self) -> Self {
                self.simd_gt(o)
            }
            #[inline(always)]
            fn eq(self, o: Self) -> Self {
                self.simd_eq(o)
            }
            #[inline(always)]
            fn nan(self) -> Self {
                self.is_nan()
            }
            #[inline(always)]
            fn select(self, if_true: Self, if_false: Self) -> Self {
                $f::select(self, if_true, if_false)
            }
            #[inline(always)]
            fn bitmask(self) -> u32 {
                self.to_bitmask()
            }
        }
    };
}
pool_vector!(f32x8, i32x8, u32x8, 8);
pool_vector!(f32x16, i32x16, u32x16, 16);

/// `v` beats `best`: greater, or NaN over a number (NaN propagates, ties keep `best`).
#[inline(always)]
fn wins_v<V: PoolVector>(v: V, best: V) -> V {
    v.gt(best) | (v.nan() & !best.nan())
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
    let n = V::N;
    let (l0, q0) = V::deinterleave(V::load(&r0[2 * j..]), V::load(&r0[2 * j + n..]));
    let (l1, q1) = V::deinterleave(V::load(&r1[2 * j..]), V::load(&r1[2 * j + n..]));
    let w0 = wins_v(q0, l0);
    let (m0, o0) = (w0.select(q0, l0), w0 & V::splat(1.0));
    let w1 = wins_v(q1, l1);
    let (m1, o1) = (
        w1.select(q1, l1),
        w1.select(V::splat(w as f32 + 1.0), V::splat(w as f32)),
    );
    let wr = wins_v(m1, m0);
    wr.select(m1, m0).store(&mut yrow[j..]);
    let idx = wr.select(o1, o0) + V::steps() + V::splat((row_base + 2 * j) as f32);
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
    let (n, w) = (V::N, s.w as f32);
    let d = V::load(&dyrow[j..]);
    let off = V::load_index(&arow[j..]) - (V::steps() + V::splat((2 * i * s.w + 2 * j) as f32));
    let (m0, m1) = (off.eq(V::splat(0.0)), off.eq(V::splat(1.0)));
    let (m2, m3) = (off.eq(V::splat(w)), off.eq(V::splat(w + 1.0)));
    let hit = (m0 | m1 | m2 | m3).bitmask();
    if hit != (1u32 << n) - 1 {
        let l = (!hit).trailing_zeros() as usize;
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
