//! Winograd's weight gradient (the module docs): `dU[ξ] = Σ_p dM[ξ][p]ᵀ V[ξ][p]` over a
//! chunk's tiles, then `dW[o, c] = Gᵀ dU[o, c] G`.

use super::layout::stage;
use super::product;
use super::transform::{TwoD, F2, F4};
use super::{tile_of, transform_input_tile, Geometry, WinogradTile};
use crate::conv::Conv2dShape;
use crate::vector::Vector;

/// The weight gradient of one chunk's images on `tile` into `gw` (`[out_c, in_c, 3, 3]`,
/// overwritten): `x` and `dy` its images' input and output gradient, `buf` at least
/// [`weight_grad_buf_len`] values.
pub(in crate::conv) fn backward_weights_chunk<V: Vector>(
    s: &Conv2dShape,
    tile: WinogradTile,
    x: &[f32],
    dy: &[f32],
    buf: &mut [f32],
    gw: &mut [f32],
) {
    match tile {
        WinogradTile::F2 => weight_grad_on::<V, F2>(s, x, dy, buf, gw),
        WinogradTile::F4 => weight_grad_on::<V, F4>(s, x, dy, buf, gw),
    }
}

/// The per-chunk buffer of [`backward_weights_chunk`] at `lanes` channels a vector: the
/// staged input and output gradient, a block's `V` and `dM`, and `dU` (`[t²][op][cp]`).
pub(in crate::conv) fn weight_grad_buf_len(s: &Conv2dShape, tile: WinogradTile, lanes: usize) -> usize {
    let g = Geometry::new(s, tile, lanes);
    g.staged_input_len() + g.staged_output_len() + g.block_len() + g.points() * g.op * g.cp
}

fn weight_grad_on<V: Vector, T: TwoD>(
    s: &Conv2dShape,
    x: &[f32],
    dy: &[f32],
    buf: &mut [f32],
    gw: &mut [f32],
) {
    let g = Geometry::new(s, tile_of::<T>(), V::LANES);
    let images = x.len() / s.in_image_len();
    let (staged, rest) = buf.split_at_mut(g.staged_input_len());
    let (dys, rest) = rest.split_at_mut(g.staged_output_len());
    let (blk, rest) = rest.split_at_mut(g.block_len());
    let (v, dm) = blk.split_at_mut(g.block * g.v_row());
    let (vrow, mrow) = (g.v_row(), g.m_row());
    let du = &mut rest[..g.points() * g.op * g.cp];
    stage::<V>(x, s.in_c, (s.h, s.w), s.pad, g.cp, (g.hp, g.wp), staged);
    // The output gradient, unpadded: zeros past the output.
    stage::<V>(dy, s.out_c, (s.out_h(), s.out_w()), 0, g.op, g.tiled(), dys);
    du.fill(0.0);
    let tiles = images * g.tiles();
    for p0 in (0..tiles).step_by(g.block) {
        let n = g.block.min(tiles - p0);
        for r in 0..n {
            transform_input_tile::<V, T>(&g, staged, p0 + r, &mut v[r * vrow..]);
            transform_output_grad_tile::<V, T>(&g, dys, p0 + r, &mut dm[r * mrow..]);
        }
        for pt in 0..g.points() {
            product::accumulate_transposed::<V>(
                &dm[pt * g.op..n * mrow],
                mrow,
                &v[pt * g.cp..n * vrow],
                vrow,
                &mut du[pt * g.op * g.cp..][..g.op * g.cp],
                g.op,
                n,
                g.cp,
            );
        }
    }
    filter_grads::<V, T>(s, &g, du, gw);
}

/// `dW[o, c] = Gᵀ dU[o, c] G` for every filter, a vector of input channels at a time:
/// `du` `[t²][op][cp]`, `gw` `[out_c, in_c, 3, 3]` (overwritten).
fn filter_grads<V: Vector, T: TwoD>(s: &Conv2dShape, g: &Geometry, du: &[f32], gw: &mut [f32]) {
    let (l, t) = (V::LANES, T::M + 2);
    let point = g.op * g.cp;
    let mut out = [0.0f32; 9 * 16];
    for o in 0..s.out_c {
        for c0 in (0..s.in_c).step_by(l) {
            let src = &du[o * g.cp + c0..];
            T::filter_grad_2d(
                |a, b| V::load(&src[(a * t + b) * point..]),
                |a, b, r: V| r.store(&mut out[(a * 3 + b) * l..]),
            );
            let n = (s.in_c - c0).min(l);
            for (c, w) in gw[(o * s.in_c + c0) * 9..][..n * 9]
                .chunks_exact_mut(9)
                .enumerate()
            {
                for (k, wv) in w.iter_mut().enumerate() {
                    *wv = out[k * l + c];
                }
            }
        }
    }
}

/// `dM[ξ][ob·L..] = (A dy Aᵀ)[ξ]` of tile `p` of the staged output gradient `dys`
/// (`[image][op / L][rows][cols][L]`), every block `ob` of output channels, into `dm`
/// (`[t²][op]`).
fn transform_output_grad_tile<V: Vector, T: TwoD>(g: &Geometry, dys: &[f32], p: usize, dm: &mut [f32]) {
    let (l, t, m) = (V::LANES, T::M + 2, T::M);
    let (image, i, j) = g.tile_at(p);
    let (trows, tcols) = g.tiled();
    let block = trows * tcols * l;
    let si = &dys[image * g.op * trows * tcols..][..g.op * trows * tcols];
    // The tile's outputs lie inside the staged image, its points inside `dm`.
    assert!(i * m + m <= trows && j * m + m <= tcols && dm.len() >= t * t * g.op);
    for (ob, sb) in si.chunks_exact(block).enumerate() {
        let src = &sb[((i * m) * tcols + j * m) * l..];
        let dst = &mut dm[ob * l..];
        // SAFETY (both): `(a·tcols + b)·l + l <= ((m-1)·tcols + m)·l <= src.len()` by the
        // assert; `(a·t + b)·op + l <= t²·op - ob·l <= dst.len()` as `ob·l + l <= op`.
        T::output_grad_2d(
            |a, b| unsafe { V::load_at(src, (a * tcols + b) * l) },
            |a, b, r: V| unsafe { r.store_at(dst, (a * t + b) * g.op) },
        );
    }
}
