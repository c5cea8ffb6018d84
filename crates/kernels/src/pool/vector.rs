//! The vector operations of the 2x2 / stride 2 max pooling paths (`max.rs`), for 8 lanes
//! (`f32x8`) and 16 (`f32x16`, [`Lanes::Sixteen`](crate::arch::Lanes::Sixteen): what
//! AVX-512 builds use). The one vector family written per instruction set: AVX2's 8 lanes
//! have their own shuffles (`mod avx2`, compiled only where the build has AVX2).
//!
//! Masks are vectors whose lanes are all ones or zero; `N` is the vector's lanes
//! ([`Vector::LANES`]).
//!
//! **Pair order.** Splitting `2N` consecutive values into their `N` left (even) and `N`
//! right (odd) columns takes a shuffle across both source vectors. AVX-512 has one
//! instruction for it (`vpermt2ps`); AVX2 does not (`wide` builds it from byte shuffles,
//! a dozen instructions), but `vshufps` splits within each 128-bit half in one. So
//! [`PoolVector::deinterleave`] returns the `N` pairs in an order of the type's choosing,
//! the *pair order*: the kernels compute in it, [`PoolVector::steps`] is in it, and
//! [`PoolVector::to_natural_order`] / [`PoolVector::to_pair_order`] convert a whole vector at the
//! store or the load (one `vpermpd` on AVX2; nothing for 16 lanes, whose pair order is
//! the natural one).

use crate::vector::Vector;
use std::ops::{BitAnd, BitOr};
use wide::bytemuck::cast;
use wide::{f32x16, i32x16, u32x16, ShuffleExt};

/// The column-pair operations on top of [`Vector`]'s (`LANES`, `splat`, `load`, `store`).
pub(super) trait PoolVector: Vector + BitAnd<Output = Self> + BitOr<Output = Self> {
    /// `N` indices as exact floats (they are below 2^24).
    fn load_index(s: &[u32]) -> Self;
    /// `N` exact float indices below 2^23 back to `u32`.
    fn store_index(self, s: &mut [u32]);
    /// `2p` for pair `p = 0 .. N`, in pair order.
    fn steps() -> Self;
    /// The left (even) and the right (odd) values of the `N` pairs in `a` then `b`, in
    /// pair order.
    fn deinterleave(a: Self, b: Self) -> (Self, Self);
    /// A vector of `N` pairs' values from natural order to pair order.
    fn to_pair_order(self) -> Self;
    /// A vector of `N` pairs' values from pair order to natural order.
    fn to_natural_order(self) -> Self;
    /// `a0 b0 a1 b1 ..` of pair-ordered `a` and `b`, in natural order: its first `N`
    /// lanes, then its last `N`.
    fn interleave(a: Self, b: Self) -> (Self, Self);
    /// Where `self` beats `best`: greater, or NaN over a number (NaN propagates; ties,
    /// and a NaN against a NaN, keep `best`).
    fn beats(self, best: Self) -> Self;
    fn eq(self, o: Self) -> Self;
    fn select(self, if_true: Self, if_false: Self) -> Self;
    /// Every lane of the mask is set.
    fn all(self) -> bool;
}

/// The methods whose code is the same for both widths of `wide`'s `$f` (with its `$i`
/// and `$u` integer twins) of `$n` lanes.
macro_rules! common {
    ($f:ident, $i:ident, $u:ident, $n:literal) => {
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
        fn eq(self, o: Self) -> Self {
            self.simd_eq(o)
        }
        #[inline(always)]
        fn select(self, if_true: Self, if_false: Self) -> Self {
            $f::select(self, if_true, if_false)
        }
        #[inline(always)]
        fn all(self) -> bool {
            self.to_bitmask() == (1u32 << $n) - 1
        }
    };
}

/// The pair-order methods as `wide`'s two-vector shuffles in natural order (pair order
/// is the natural one): one instruction each with AVX-512.
macro_rules! natural_pairs {
    ($f:ident, $u:ident, $n:literal) => {
        #[inline(always)]
        fn steps() -> Self {
            $f::new(std::array::from_fn(|l| 2.0 * l as f32))
        }
        #[inline(always)]
        fn deinterleave(a: Self, b: Self) -> (Self, Self) {
            let (a, b): ($u, $u) = (cast(a), cast(b));
            let even = $u::new(std::array::from_fn(|l| 2 * l as u32));
            let odd = $u::new(std::array::from_fn(|l| 2 * l as u32 + 1));
            (cast([a, b].shuffle(even)), cast([a, b].shuffle(odd)))
        }
        #[inline(always)]
        fn to_pair_order(self) -> Self {
            self
        }
        #[inline(always)]
        fn to_natural_order(self) -> Self {
            self
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
        fn beats(self, best: Self) -> Self {
            self.simd_gt(best) | (self.is_nan() & !best.is_nan())
        }
    };
}

impl PoolVector for f32x16 {
    common!(f32x16, i32x16, u32x16, 16);
    natural_pairs!(f32x16, u32x16, 16);
}

/// 8 lanes without AVX2: natural pair order, `wide`'s shuffles.
#[cfg(not(all(target_arch = "x86_64", target_feature = "avx2")))]
mod generic8 {
    use super::*;
    use wide::{f32x8, i32x8, u32x8};

    impl PoolVector for f32x8 {
        common!(f32x8, i32x8, u32x8, 8);
        natural_pairs!(f32x8, u32x8, 8);
    }
}

/// AVX2's 8 lanes: pair order swaps the middle two 64-bit quarters of natural order
/// (pairs 0 1 4 5 2 3 6 7), which is what `vshufps` of two vectors yields and what
/// `vunpcklps` / `vunpckhps` take to produce natural order. The swap is its own inverse.
#[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
mod avx2 {
    use super::PoolVector;
    use safe_arch::{
        bitand_m256, cast_to_m256_from_m256d, cast_to_m256d_from_m256, cmp_op, cmp_op_mask_m256, m256,
        shuffle_ai_f64_all_m256d, shuffle_m256, unpack_hi_m256, unpack_lo_m256,
    };
    use wide::bytemuck::cast;
    use wide::{f32x8, i32x8, u32x8};

    #[inline(always)]
    fn m(v: f32x8) -> m256 {
        m256(cast(v))
    }
    #[inline(always)]
    fn v(m: m256) -> f32x8 {
        cast(m.0)
    }
    /// Swaps 64-bit quarters 1 and 2.
    #[inline(always)]
    fn swap_middle(a: f32x8) -> f32x8 {
        v(cast_to_m256_from_m256d(
            shuffle_ai_f64_all_m256d::<0b11_01_10_00>(cast_to_m256d_from_m256(m(a))),
        ))
    }

    impl PoolVector for f32x8 {
        common!(f32x8, i32x8, u32x8, 8);
        #[inline(always)]
        fn steps() -> Self {
            f32x8::new([0.0, 2.0, 8.0, 10.0, 4.0, 6.0, 12.0, 14.0])
        }
        #[inline(always)]
        fn deinterleave(a: Self, b: Self) -> (Self, Self) {
            // Per 128-bit half: a's two evens (odds) then b's.
            let even = shuffle_m256::<0b10_00_10_00>(m(a), m(b));
            let odd = shuffle_m256::<0b11_01_11_01>(m(a), m(b));
            (v(even), v(odd))
        }
        #[inline(always)]
        fn to_pair_order(self) -> Self {
            swap_middle(self)
        }
        #[inline(always)]
        fn to_natural_order(self) -> Self {
            swap_middle(self)
        }
        #[inline(always)]
        fn interleave(a: Self, b: Self) -> (Self, Self) {
            // Pair order holds pairs 0 1 4 5 | 2 3 6 7: each half's low two lanes are
            // pairs 0 1 | 2 3, so the unpack of the low lanes is pairs 0-3 interleaved in
            // natural order, that of the high lanes pairs 4-7.
            (v(unpack_lo_m256(m(a), m(b))), v(unpack_hi_m256(m(a), m(b))))
        }
        #[inline(always)]
        fn beats(self, best: Self) -> Self {
            // Not (self <= best), unordered: greater, or either is NaN; and best is a
            // number.
            let nle = cmp_op_mask_m256::<{ cmp_op!(NotLessEqualUnordered) }>(m(self), m(best));
            v(bitand_m256(
                nle,
                cmp_op_mask_m256::<{ cmp_op!(Ordered) }>(m(best), m(best)),
            ))
        }
    }
}
