//! The vector operations of the element-wise kernels (batch norm, the residual add), for
//! `f32x8` and `f32x16`, so each kernel is written once and runs at either width
//! ([`Lanes`](crate::simd::Lanes)). Every operation is lane by lane, so a value's result
//! does not depend on the width it ran at.

use std::ops::{Add, Mul, Sub};
use wide::{f32x16, f32x8};

/// A vector of `N` `f32` lanes.
pub(crate) trait Lane: Copy + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> {
    /// Lanes in the vector.
    const N: usize;
    const ZERO: Self;
    fn splat(v: f32) -> Self;
    /// The first `N` values of `s`.
    fn load(s: &[f32]) -> Self;
    /// Into the first `N` values of `s`.
    fn store(self, s: &mut [f32]);
    /// `self · a + b`, fused where the CPU has FMA.
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// `max(self, 0)` with NaN kept (as [`relu_forward`](crate::relu_forward)).
    fn relu(self) -> Self;
    /// `self` where `y > 0`, else 0 (as [`relu_backward`](crate::relu_backward)).
    fn where_positive(self, y: Self) -> Self;
}

macro_rules! lane {
    ($f:ident, $n:literal) => {
        impl Lane for $f {
            const N: usize = $n;
            const ZERO: Self = $f::ZERO;
            #[inline(always)]
            fn splat(v: f32) -> Self {
                $f::splat(v)
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
            fn mul_add(self, a: Self, b: Self) -> Self {
                $f::mul_add(self, a, b)
            }
            #[inline(always)]
            fn relu(self) -> Self {
                let keep = self.simd_gt($f::ZERO) | self.is_nan();
                keep.select(self, $f::ZERO)
            }
            #[inline(always)]
            fn where_positive(self, y: Self) -> Self {
                y.simd_gt($f::ZERO).select(self, $f::ZERO)
            }
        }
    };
}
lane!(f32x8, 8);
lane!(f32x16, 16);

/// Scalar `max(v, 0)` with NaN kept, for the tails.
#[inline(always)]
pub(crate) fn relu1(v: f32) -> f32 {
    if v > 0.0 || v.is_nan() {
        v
    } else {
        0.0
    }
}

/// Runs `body` over `len` positions in whole vectors of `V` from `start`, then returns
/// where the whole vectors stopped: the caller's narrower vectors or scalar tail go on
/// from there.
#[inline(always)]
pub(crate) fn vectors<V: Lane>(start: usize, len: usize, mut body: impl FnMut(usize)) -> usize {
    let mut i = start;
    while i + V::N <= len {
        body(i);
        i += V::N;
    }
    i
}
