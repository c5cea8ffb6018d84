//! Small SIMD helpers over `f32` slices, built on `wide::f32x8`.
//!
//! Every helper handles lengths that are not a multiple of [`LANES`] with a scalar tail,
//! and sums in one fixed order for a given length, so results never depend on threads.
//!
//! [`Lanes`] (the two vector widths, defined in [`arch`](crate::arch)) is re-exported
//! here for the kernels' `_lanes` and `_with` entry points.

use crate::vector::Vector;
use wide::f32x8;

pub use crate::arch::Lanes;

/// Lanes of the helpers' vectors: `f32x8` on every build, so their sums are the same on
/// every build.
pub const LANES: usize = 8;

/// `a · b + c` for the scalar tails: fused where the build targets FMA (as `wide`'s
/// `mul_add` on the vector body then is), plain multiply-add otherwise. `f32::mul_add` without the
/// `fma` target feature calls the C library's software `fmaf`, tens of times slower.
#[inline(always)]
pub fn fma(a: f32, b: f32, c: f32) -> f32 {
    if crate::arch::FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Sum of `x`: eight lane-wise partial sums, then the lanes, then the tail, in that order.
#[inline]
pub fn sum(x: &[f32]) -> f32 {
    let mut acc = f32x8::ZERO;
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        acc += f32x8::load(c);
    }
    let mut s = acc.reduce_add();
    for &v in chunks.remainder() {
        s += v;
    }
    s
}

/// `y[i] += x[i]` for every `i`.
#[inline]
pub fn add_assign(y: &mut [f32], x: &[f32]) {
    assert_eq!(
        y.len(),
        x.len(),
        "add_assign: y has {} values, x has {}",
        y.len(),
        x.len()
    );
    let mut yc = y.chunks_exact_mut(LANES);
    let mut xc = x.chunks_exact(LANES);
    for (yv, xv) in (&mut yc).zip(&mut xc) {
        (f32x8::load(yv) + f32x8::load(xv)).store(yv);
    }
    for (yv, xv) in yc.into_remainder().iter_mut().zip(xc.remainder()) {
        *yv += xv;
    }
}

/// `y[i] += a * x[i]` for every `i` (fused multiply-add where the CPU has it).
#[inline]
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    assert_eq!(
        y.len(),
        x.len(),
        "axpy: y has {} values, x has {}",
        y.len(),
        x.len()
    );
    let av = f32x8::splat(a);
    let mut yc = y.chunks_exact_mut(LANES);
    let mut xc = x.chunks_exact(LANES);
    for (yv, xv) in (&mut yc).zip(&mut xc) {
        f32x8::load(xv).mul_add(av, f32x8::load(yv)).store(yv);
    }
    for (yv, &xv) in yc.into_remainder().iter_mut().zip(xc.remainder()) {
        *yv = fma(xv, a, *yv);
    }
}

/// Dot product of `a` and `b` in a fixed order (lane partial sums, then the tail).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(
        a.len(),
        b.len(),
        "dot: a has {} values, b has {}",
        a.len(),
        b.len()
    );
    let mut acc = f32x8::ZERO;
    let mut ac = a.chunks_exact(LANES);
    let mut bc = b.chunks_exact(LANES);
    for (av, bv) in (&mut ac).zip(&mut bc) {
        acc = f32x8::load(av).mul_add(f32x8::load(bv), acc);
    }
    let mut s = acc.reduce_add();
    for (&x, &y) in ac.remainder().iter().zip(bc.remainder()) {
        s = fma(x, y, s);
    }
    s
}
