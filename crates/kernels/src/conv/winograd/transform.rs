//! The transforms of Winograd's minimal filtering F(m x m, 3 x 3) (Lavin & Gray 2016), for
//! m = 2 ([`F2`]) and m = 4 ([`F4`]), written out (no multiplications by 0 or 1):
//!
//! - input `V = Bᵀ d B` (`d` a `t x t` input tile, `t = m + 2`);
//! - filter `U = G g Gᵀ` (`g` 3 x 3);
//! - output `Y = Aᵀ M A` (`M = U ⊙ V` summed over the input channels, `Y` `m x m`);
//! - for the weight gradient, the output gradient `dM = A dY Aᵀ` and the filter gradient
//!   `dg = Gᵀ dU G` (`dU = dM ⊙ V` summed over tiles).
//!
//! The filter transform runs in f64 (rounded once); the others in f32 vectors.
//!
//! A 2-D transform is the 1-D one applied to every column, then to every row. The vector
//! forms work lane by lane (a lane per channel), so a value's result does not depend on
//! the vector width.

use crate::vector::Vector;

/// One Winograd tile size: its 1-D transforms on values of any [`Vector`] (the input and
/// output sides, vectors of channels) or on scalars (the filter side).
pub(crate) trait Tile {
    /// Output values per tile side (m; the input tile's side is `m + 2`).
    const M: usize;
    /// `Bᵀ d`: `T` values from `T`.
    fn input<V: Vector>(d: &[V], out: &mut [V]);
    /// `Aᵀ m`: `M` values from `T`.
    fn output<V: Vector>(m: &[V], out: &mut [V]);
    /// `A dy`: `T` values from `M`.
    fn output_grad<V: Vector>(dy: &[V], out: &mut [V]);
    /// `G g`: `T` values from 3 (f64, rounded once to f32 by the caller).
    fn filter(g: &[f64], out: &mut [f64]);
    /// `Gᵀ u`: 3 values from `T`.
    fn filter_grad<V: Vector>(u: &[V], out: &mut [V]);
}

/// F(2 x 2, 3 x 3): 16 products per 2 x 2 outputs (2.25x fewer than 36).
pub(crate) struct F2;

/// F(4 x 4, 3 x 3) on the points 0, ±1, ±2: 36 products per 4 x 4 outputs (4x fewer than
/// 144), with constants up to 8 in `A` and 1/24 in `G`.
pub(crate) struct F4;

#[inline(always)]
fn k<V: Vector>(c: f32) -> V {
    V::splat(c)
}

impl Tile for F2 {
    const M: usize = 2;
    #[inline(always)]
    fn input<V: Vector>(d: &[V], out: &mut [V]) {
        out[0] = d[0] - d[2];
        out[1] = d[1] + d[2];
        out[2] = d[2] - d[1];
        out[3] = d[1] - d[3];
    }
    #[inline(always)]
    fn output<V: Vector>(m: &[V], out: &mut [V]) {
        out[0] = m[0] + m[1] + m[2];
        out[1] = m[1] - m[2] - m[3];
    }
    #[inline(always)]
    fn output_grad<V: Vector>(dy: &[V], out: &mut [V]) {
        out[0] = dy[0];
        out[1] = dy[0] + dy[1];
        out[2] = dy[0] - dy[1];
        out[3] = V::ZERO - dy[1];
    }
    fn filter(g: &[f64], out: &mut [f64]) {
        out[0] = g[0];
        out[1] = (g[0] + g[1] + g[2]) / 2.0;
        out[2] = (g[0] - g[1] + g[2]) / 2.0;
        out[3] = g[2];
    }
    #[inline(always)]
    fn filter_grad<V: Vector>(u: &[V], out: &mut [V]) {
        let half = k::<V>(0.5);
        out[0] = (u[1] + u[2]).mul_add(half, u[0]);
        out[1] = (u[1] - u[2]) * half;
        out[2] = (u[1] + u[2]).mul_add(half, u[3]);
    }
}

impl Tile for F4 {
    const M: usize = 4;
    #[inline(always)]
    fn input<V: Vector>(d: &[V], out: &mut [V]) {
        // Bᵀ rows: [4,0,-5,0,1,0], [0,-4,-4,1,1,0], [0,4,-4,-1,1,0], [0,-2,-1,2,1,0],
        // [0,2,-1,-2,1,0], [0,4,0,-5,0,1].
        let s12 = d[2].mul_add(k(-4.0), d[4]); // -4 d2 + d4
        let t12 = d[1].mul_add(k(-4.0), d[3]); // -4 d1 + d3
        let s34 = d[4] - d[2];
        let t34 = (d[3] - d[1]) * k(2.0);
        out[0] = d[2].mul_add(k(-5.0), d[0].mul_add(k(4.0), d[4]));
        out[1] = s12 + t12;
        out[2] = s12 - t12;
        out[3] = s34 + t34;
        out[4] = s34 - t34;
        out[5] = d[3].mul_add(k(-5.0), d[1].mul_add(k(4.0), d[5]));
    }
    #[inline(always)]
    fn output<V: Vector>(m: &[V], out: &mut [V]) {
        // Aᵀ rows: [1,1,1,1,1,0], [0,1,-1,2,-2,0], [0,1,1,4,4,0], [0,1,-1,8,-8,1].
        let s12 = m[1] + m[2];
        let d12 = m[1] - m[2];
        let s34 = m[3] + m[4];
        let d34 = m[3] - m[4];
        out[0] = m[0] + s12 + s34;
        out[1] = d34.mul_add(k(2.0), d12);
        out[2] = s34.mul_add(k(4.0), s12);
        out[3] = d34.mul_add(k(8.0), d12) + m[5];
    }
    #[inline(always)]
    fn output_grad<V: Vector>(dy: &[V], out: &mut [V]) {
        // A = (Aᵀ)ᵀ rows: [1,0,0,0], [1,1,1,1], [1,-1,1,-1], [1,2,4,8], [1,-2,4,-8], [0,0,0,1].
        let e = dy[0] + dy[2];
        let o = dy[1] + dy[3];
        let e4 = dy[2].mul_add(k(4.0), dy[0]);
        let o8 = dy[3].mul_add(k(8.0), dy[1] * k(2.0));
        out[0] = dy[0];
        out[1] = e + o;
        out[2] = e - o;
        out[3] = e4 + o8;
        out[4] = e4 - o8;
        out[5] = dy[3];
    }
    fn filter(g: &[f64], out: &mut [f64]) {
        // G rows: [1/4,0,0], [-1/6,-1/6,-1/6], [-1/6,1/6,-1/6], [1/24,1/12,1/6],
        // [1/24,-1/12,1/6], [0,0,1].
        out[0] = g[0] / 4.0;
        out[1] = -(g[0] + g[1] + g[2]) / 6.0;
        out[2] = -(g[0] - g[1] + g[2]) / 6.0;
        out[3] = g[0] / 24.0 + g[1] / 12.0 + g[2] / 6.0;
        out[4] = g[0] / 24.0 - g[1] / 12.0 + g[2] / 6.0;
        out[5] = g[2];
    }
    #[inline(always)]
    fn filter_grad<V: Vector>(u: &[V], out: &mut [V]) {
        // Gᵀ rows: [1/4,-1/6,-1/6,1/24,1/24,0], [0,-1/6,1/6,1/12,-1/12,0],
        // [0,-1/6,-1/6,1/6,1/6,1].
        let s12 = u[1] + u[2];
        let s34 = u[3] + u[4];
        out[0] = s34.mul_add(k(1.0 / 24.0), s12.mul_add(k(-1.0 / 6.0), u[0] * k(0.25)));
        out[1] = (u[3] - u[4]).mul_add(k(1.0 / 12.0), (u[2] - u[1]) * k(1.0 / 6.0));
        out[2] = (s34 - s12).mul_add(k(1.0 / 6.0), u[5]);
    }
}

/// The 2-D form of a 1-D transform `f` (`N` values from `NI`) on the `NI x NI` tile
/// whose value at row `u`, column `w` is `load(u, w)`: `f` on every row, then on every
/// column of the result; `store(i, j, v)` receives the `N x N` result's value at row `i`,
/// column `j`. Inlined, the lines stay in registers and the intermediate tile on the
/// stack.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // `j` is the result's column: an index of both sides.
fn two_d<V: Copy, const NI: usize, const N: usize>(
    load: impl Fn(usize, usize) -> V,
    f: impl Fn(&[V], &mut [V]),
    mut store: impl FnMut(usize, usize, V),
) {
    let tmp: [[V; N]; NI] = std::array::from_fn(|u| {
        let line: [V; NI] = std::array::from_fn(|w| load(u, w));
        let mut res = [line[0]; N];
        f(&line, &mut res);
        res
    });
    for j in 0..N {
        let line: [V; NI] = std::array::from_fn(|u| tmp[u][j]);
        let mut res = [line[0]; N];
        f(&line, &mut res);
        for (i, v) in res.into_iter().enumerate() {
            store(i, j, v);
        }
    }
}

/// The 2-D transforms of a [`Tile`] of input side `$t`, from its 1-D ones.
macro_rules! two_d_forms {
    ($tile:ty, $m:literal, $t:literal) => {
        impl TwoD for $tile {
            #[inline(always)]
            fn input_2d<V: Vector>(load: impl Fn(usize, usize) -> V, store: impl FnMut(usize, usize, V)) {
                two_d::<V, $t, $t>(load, Self::input::<V>, store)
            }
            #[inline(always)]
            fn output_2d<V: Vector>(load: impl Fn(usize, usize) -> V, store: impl FnMut(usize, usize, V)) {
                two_d::<V, $t, $m>(load, Self::output::<V>, store)
            }
            #[inline(always)]
            fn output_grad_2d<V: Vector>(
                load: impl Fn(usize, usize) -> V,
                store: impl FnMut(usize, usize, V),
            ) {
                two_d::<V, $m, $t>(load, Self::output_grad::<V>, store)
            }
            #[inline(always)]
            fn filter_2d(load: impl Fn(usize, usize) -> f64, store: impl FnMut(usize, usize, f64)) {
                two_d::<f64, 3, $t>(load, Self::filter, store)
            }
            #[inline(always)]
            fn filter_grad_2d<V: Vector>(
                load: impl Fn(usize, usize) -> V,
                store: impl FnMut(usize, usize, V),
            ) {
                two_d::<V, $t, 3>(load, Self::filter_grad::<V>, store)
            }
        }
    };
}

/// The 2-D transforms of a tile: `load(u, w)` gives the value at row `u`, column `w` of
/// the tile transformed, `store(i, j, v)` takes the result's. Sides as the 1-D forms'.
pub(crate) trait TwoD: Tile {
    /// `Bᵀ d B`.
    fn input_2d<V: Vector>(load: impl Fn(usize, usize) -> V, store: impl FnMut(usize, usize, V));
    /// `Aᵀ m A`.
    fn output_2d<V: Vector>(load: impl Fn(usize, usize) -> V, store: impl FnMut(usize, usize, V));
    /// `A dy Aᵀ`.
    fn output_grad_2d<V: Vector>(load: impl Fn(usize, usize) -> V, store: impl FnMut(usize, usize, V));
    /// `G g Gᵀ`, in f64.
    fn filter_2d(load: impl Fn(usize, usize) -> f64, store: impl FnMut(usize, usize, f64));
    /// `Gᵀ u G`.
    fn filter_grad_2d<V: Vector>(load: impl Fn(usize, usize) -> V, store: impl FnMut(usize, usize, V));
}

two_d_forms!(F2, 2, 4);
two_d_forms!(F4, 4, 6);
