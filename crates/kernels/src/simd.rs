//! Small SIMD helpers over `f32` slices, built on `wide::f32x8`.
//!
//! Every helper handles lengths that are not a multiple of [`LANES`] with a scalar tail,
//! and sums in one fixed order for a given length, so results never depend on threads.

use wide::f32x8;

/// Lanes in the vector type the kernels use.
pub const LANES: usize = 8;

/// Whether the build targets AVX-512 (32 vector registers, an `f32x16` in one register):
/// the kernels' register tiles and widest blocks follow it.
pub(crate) const AVX512: bool = cfg!(target_feature = "avx512f");

/// The width of the widest vector a kernel's main blocks use. A build runs
/// [`Lanes::BUILD`]; tests run every vector kernel at both widths on any x86-64 machine
/// (without AVX-512 an `f32x16` runs as two AVX2 halves), through the kernels' `_lanes` and
/// `_with` entry points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lanes {
    /// `f32x8`: one AVX2 register.
    Eight,
    /// `f32x16`: one AVX-512 register (two AVX2 registers).
    Sixteen,
}

impl Lanes {
    /// What this build uses: 16 lanes where it targets AVX-512, else 8.
    pub const BUILD: Lanes = if AVX512 { Lanes::Sixteen } else { Lanes::Eight };
    /// Both widths, for tests and benches.
    pub const ALL: [Lanes; 2] = [Lanes::Eight, Lanes::Sixteen];
    /// Lanes in the vector.
    pub const fn count(self) -> usize {
        match self {
            Lanes::Eight => 8,
            Lanes::Sixteen => 16,
        }
    }
}

/// Loads `LANES` values from the start of `s` (which must hold at least that many).
#[inline(always)]
pub(crate) fn load(s: &[f32]) -> f32x8 {
    let a: [f32; LANES] = s[..LANES].try_into().expect("slice holds LANES values");
    f32x8::new(a)
}

/// Stores `v` into the first `LANES` values of `s`.
#[inline(always)]
pub(crate) fn store(s: &mut [f32], v: f32x8) {
    s[..LANES].copy_from_slice(&v.to_array());
}

/// `a · b + c` for the scalar tails: fused where the CPU has FMA (as `wide`'s `mul_add`
/// on the vector body then is), plain multiply-add otherwise. `f32::mul_add` without the
/// `fma` target feature calls the C library's software `fmaf`, tens of times slower.
#[inline(always)]
pub fn fma(a: f32, b: f32, c: f32) -> f32 {
    if cfg!(target_feature = "fma") {
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
        acc += load(c);
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
        store(yv, load(yv) + load(xv));
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
        store(yv, load(xv).mul_add(av, load(yv)));
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
        acc = load(av).mul_add(load(bv), acc);
    }
    let mut s = acc.reduce_add();
    for (&x, &y) in ac.remainder().iter().zip(bc.remainder()) {
        s = fma(x, y, s);
    }
    s
}

/// The operations the blocked kernels need from a vector, for `f32x16`
/// (one AVX-512 register, or two AVX2 halves) and `f32x8`. A kernel runs its main loop on
/// the widest vector and the remainder on the narrower one.
pub(crate) trait Vector: Copy {
    /// Lanes in the vector.
    const LANES: usize;
    fn splat(v: f32) -> Self;
    /// The first lanes' worth of values of `s`.
    fn load(s: &[f32]) -> Self;
    /// Sum of the lanes, in a fixed order.
    fn reduce_add(self) -> f32;
    /// `self + a`.
    fn add(self, a: Self) -> Self;
    /// `self · a + b`.
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// The first `n` lanes into the first `n` values of `s`.
    fn store_prefix(self, s: &mut [f32], n: usize);
}

impl Vector for f32x8 {
    const LANES: usize = 8;
    #[inline(always)]
    fn splat(v: f32) -> Self {
        f32x8::splat(v)
    }
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        load(s)
    }
    #[inline(always)]
    fn reduce_add(self) -> f32 {
        f32x8::reduce_add(self)
    }
    #[inline(always)]
    fn add(self, a: Self) -> Self {
        self + a
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        f32x8::mul_add(self, a, b)
    }
    #[inline(always)]
    fn store_prefix(self, s: &mut [f32], n: usize) {
        if n == 8 {
            store(s, self);
        } else {
            s[..n].copy_from_slice(&self.to_array()[..n]);
        }
    }
}

impl Vector for wide::f32x16 {
    const LANES: usize = 16;
    #[inline(always)]
    fn splat(v: f32) -> Self {
        wide::f32x16::splat(v)
    }
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        let a: [f32; 16] = s[..16].try_into().expect("slice holds 16 values");
        wide::f32x16::new(a)
    }
    #[inline(always)]
    fn reduce_add(self) -> f32 {
        wide::f32x16::reduce_add(self)
    }
    #[inline(always)]
    fn add(self, a: Self) -> Self {
        self + a
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        wide::f32x16::mul_add(self, a, b)
    }
    #[inline(always)]
    fn store_prefix(self, s: &mut [f32], n: usize) {
        if n == 16 {
            s[..16].copy_from_slice(&self.to_array());
        } else {
            s[..n].copy_from_slice(&self.to_array()[..n]);
        }
    }
}
