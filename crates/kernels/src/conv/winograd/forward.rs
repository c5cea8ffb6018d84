//! Winograd's forward convolution (the module docs' steps 1 to 3).

use super::layout::{stage, unstage};
use super::product;
use super::transform::{TwoD, F2, F4};
use super::{tile_of, transform_filters, transform_input_tile, Filters, Geometry, WinogradTile};
use crate::conv::{Conv2dShape, BATCH_CHUNK};
use crate::vector::Vector;
use rayon::prelude::*;

/// Forward convolution of a stride-1 3x3 shape on `tile` at `V`'s width (module docs):
/// `y` `[batch, out_c, oh, ow]` overwritten; `scratch` at least [`forward_scratch_len`]
/// values.
pub(in crate::conv) fn forward<V: Vector>(
    s: &Conv2dShape,
    tile: WinogradTile,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    scratch: &mut [f32],
) {
    match tile {
        WinogradTile::F2 => forward_on::<V, F2>(s, x, weight, bias, y, scratch),
        WinogradTile::F4 => forward_on::<V, F4>(s, x, weight, bias, y, scratch),
    }
}

/// Scratch values of [`forward`] at `lanes` channels a vector: the transformed filters
/// and each chunk's buffers.
pub(in crate::conv) fn forward_scratch_len(s: &Conv2dShape, tile: WinogradTile, lanes: usize) -> usize {
    let g = Geometry::new(s, tile, lanes);
    g.filters_len() + s.chunks() * chunk_len(&g)
}

/// A chunk's buffers: its staged input and output and one block's `V` and `M`.
fn chunk_len(g: &Geometry) -> usize {
    g.staged_input_len() + g.staged_output_len() + g.block_len()
}

fn forward_on<V: Vector, T: TwoD>(
    s: &Conv2dShape,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    scratch: &mut [f32],
) {
    let g = Geometry::new(s, tile_of::<T>(), V::LANES);
    let (u, rest) = scratch.split_at_mut(g.filters_len());
    transform_filters::<T>(s, &g, Filters::Plain(weight), u);
    filtered::<V, T>(s, &g, u, x, bias, y, rest);
}

/// [`forward`] with the filters already transformed ([`prepare_filters`](super::prepare_filters)
/// at `V`'s width): `u` `[t²][cp][op]`; `scratch` at least [`forward_scratch_len`] values.
#[allow(clippy::too_many_arguments)]
pub(in crate::conv) fn forward_prepared<V: Vector>(
    s: &Conv2dShape,
    tile: WinogradTile,
    u: &[f32],
    x: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    scratch: &mut [f32],
) {
    let g = Geometry::new(s, tile, V::LANES);
    assert_eq!(u.len(), g.filters_len(), "Winograd filters of {s:?} on {tile:?}");
    match tile {
        WinogradTile::F2 => filtered::<V, F2>(s, &g, u, x, bias, y, scratch),
        WinogradTile::F4 => filtered::<V, F4>(s, &g, u, x, bias, y, scratch),
    }
}

/// The forward pass on the transformed filters `u`, chunks in parallel.
fn filtered<V: Vector, T: TwoD>(
    s: &Conv2dShape,
    g: &Geometry,
    u: &[f32],
    x: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    scratch: &mut [f32],
) {
    let (il, ol) = (s.in_image_len(), s.out_image_len());
    let len = chunk_len(g);
    y.par_chunks_mut(BATCH_CHUNK * ol)
        .zip(x.par_chunks(BATCH_CHUNK * il))
        .zip(scratch[..s.chunks() * len].par_chunks_mut(len))
        .for_each(|((yc, xc), buf)| forward_chunk::<V, T>(s, g, u, xc, bias, yc, buf));
}

/// One chunk's images `x` into `y`.
fn forward_chunk<V: Vector, T: TwoD>(
    s: &Conv2dShape,
    g: &Geometry,
    u: &[f32],
    x: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    buf: &mut [f32],
) {
    let images = x.len() / s.in_image_len();
    let (staged, rest) = buf.split_at_mut(g.staged_input_len());
    let (out, rest) = rest.split_at_mut(g.staged_output_len());
    let (v, m) = rest[..g.block_len()].split_at_mut(g.block * g.v_row());
    let (vrow, mrow) = (g.v_row(), g.m_row());
    let tiled = g.tiled();
    stage::<V>(x, s.in_c, (s.h, s.w), s.pad, g.cp, (g.hp, g.wp), staged);
    let tiles = images * g.tiles();
    for p0 in (0..tiles).step_by(g.block) {
        let n = g.block.min(tiles - p0);
        let rows = n.next_multiple_of(product::ROWS);
        for r in 0..n {
            transform_input_tile::<V, T>(g, staged, p0 + r, &mut v[r * vrow..]);
        }
        // The rows past the last tile, zero (their products are dropped).
        v[n * vrow..rows * vrow].fill(0.0);
        for pt in 0..g.points() {
            product::forward::<V>(
                &v[pt * g.cp..rows * vrow],
                vrow,
                &u[pt * g.cp * g.op..][..g.cp * g.op],
                &mut m[pt * g.op..rows * mrow],
                mrow,
                rows,
                g.cp,
                g.op,
            );
        }
        for r in 0..n {
            transform_output_tile::<V, T>(s, g, &m[r * mrow..], p0 + r, bias, out);
        }
    }
    unstage::<V>(out, g.op, tiled, s.out_c, (s.out_h(), s.out_w()), y);
}

/// `Y = Aᵀ M A + b` of tile `p` of the chunk, whose products `m` holds (`[t²][op]`), into
/// the staged output `out` (`[image][op / L][rows][cols][L]`).
fn transform_output_tile<V: Vector, T: TwoD>(
    s: &Conv2dShape,
    g: &Geometry,
    m_tile: &[f32],
    p: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    let (l, t, m) = (V::LANES, T::M + 2, T::M);
    let (image, i, j) = g.tile_at(p);
    let (trows, tcols) = g.tiled();
    let block = trows * tcols * l;
    let oi = &mut out[image * g.op * trows * tcols..][..g.op * trows * tcols];
    // The tile's outputs lie inside the staged image, its points inside `m_tile`.
    assert!(i * m + m <= trows && j * m + m <= tcols && m_tile.len() >= t * t * g.op);
    for (ob, dst) in oi.chunks_exact_mut(block).enumerate() {
        let bv = match bias {
            Some(bias) => {
                let mut b = [0.0f32; 16];
                let n = s.out_c.saturating_sub(ob * l).min(l);
                b[..n].copy_from_slice(&bias[ob * l..][..n]);
                V::load(&b)
            }
            None => V::ZERO,
        };
        let src = &m_tile[ob * l..];
        let to = &mut dst[((i * m) * tcols + j * m) * l..];
        // SAFETY (both): `(a·t + b)·op + l <= t²·op - ob·l <= src.len()` as `ob·l + l <=
        // op`; `(a·tcols + b)·l + l <= ((m-1)·tcols + m)·l <= to.len()` by the assert.
        T::output_2d(
            |a, b| unsafe { V::load_at(src, (a * t + b) * g.op) },
            |a, b, r: V| unsafe { (r + bv).store_at(to, (a * tcols + b) * l) },
        );
    }
}
