//! [`Vector`]: the vector operations every SIMD kernel is written against, for `f32x8`
//! and `f32x16`, so each kernel is written once and runs at either width
//! ([`Lanes`](crate::arch::Lanes)). A blocked kernel runs its main loop on the widest
//! vector and its remainder on the narrower one.
//!
//! Every operation but [`Vector::reduce_add`] is lane by lane, so a value's result does
//! not depend on the width it ran at. Kernels with operations of their own extend the
//! trait: `conv/halves.rs` (a vector loaded from two rows), `pool/vector.rs` (the 2x2
//! pooling's column shuffles).

use std::ops::{Add, Mul, Sub};
use wide::{f32x16, f32x8};

/// A vector of [`Vector::LANES`] `f32` lanes. `+`, `-` and `*` are lane by lane.
pub(crate) trait Vector: Copy + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> {
    /// Lanes in the vector.
    const LANES: usize;
    const ZERO: Self;
    fn splat(v: f32) -> Self;
    /// The first `LANES` values of `s`.
    fn load(s: &[f32]) -> Self;
    /// Into the first `LANES` values of `s`.
    fn store(self, s: &mut [f32]);
    /// The first `n` lanes (`n <= LANES`) into the first `n` values of `s`.
    fn store_prefix(self, s: &mut [f32], n: usize);
    /// The `LANES` values of `s` from `at`, without a bounds check.
    ///
    /// # Safety
    /// `at + LANES <= s.len()`.
    unsafe fn load_at(s: &[f32], at: usize) -> Self;
    /// Into the `LANES` values of `s` from `at`, without a bounds check.
    ///
    /// # Safety
    /// `at + LANES <= s.len()`.
    unsafe fn store_at(self, s: &mut [f32], at: usize);
    /// `self · a + b`, fused where the CPU has FMA.
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// Sum of the lanes, in a fixed order.
    fn reduce_add(self) -> f32;
    /// `max(self, 0)` with NaN kept (as [`relu_forward`](crate::relu_forward)).
    fn relu(self) -> Self;
    /// `self` where `y > 0`, else 0 (as [`relu_backward`](crate::relu_backward)).
    fn where_positive(self, y: Self) -> Self;
}

macro_rules! vector {
    ($f:ident, $n:literal) => {
        impl Vector for $f {
            const LANES: usize = $n;
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
            fn store_prefix(self, s: &mut [f32], n: usize) {
                if n == $n {
                    self.store(s);
                } else {
                    s[..n].copy_from_slice(&self.to_array()[..n]);
                }
            }
            #[inline(always)]
            unsafe fn load_at(s: &[f32], at: usize) -> Self {
                debug_assert!(at + $n <= s.len());
                // SAFETY: the caller's `at + LANES <= s.len()`; unaligned reads of f32s.
                unsafe { $f::new(s.as_ptr().add(at).cast::<[f32; $n]>().read_unaligned()) }
            }
            #[inline(always)]
            unsafe fn store_at(self, s: &mut [f32], at: usize) {
                debug_assert!(at + $n <= s.len());
                // SAFETY: the caller's `at + LANES <= s.len()`; `s` is borrowed uniquely.
                unsafe {
                    s.as_mut_ptr()
                        .add(at)
                        .cast::<[f32; $n]>()
                        .write_unaligned(self.to_array())
                }
            }
            #[inline(always)]
            fn mul_add(self, a: Self, b: Self) -> Self {
                $f::mul_add(self, a, b)
            }
            #[inline(always)]
            fn reduce_add(self) -> f32 {
                $f::reduce_add(self)
            }
            #[inline(always)]
            fn relu(self) -> Self {
                // Keep positives and NaN (NaN > 0 is false, so NaN is tested apart).
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
vector!(f32x8, 8);
vector!(f32x16, 16);

/// Scalar `max(v, 0)` with NaN kept, for the tails of [`Vector::relu`].
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
pub(crate) fn vectors<V: Vector>(start: usize, len: usize, mut body: impl FnMut(usize)) -> usize {
    let mut i = start;
    while i + V::LANES <= len {
        body(i);
        i += V::LANES;
    }
    i
}
