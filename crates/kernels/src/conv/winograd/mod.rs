//! Winograd convolution of stride-1 3x3 kernels (Lavin & Gray 2016, "Fast Algorithms for
//! Convolutional Neural Networks"): F(m x m, 3 x 3) computes an `m x m` output tile from
//! a `t x t` input tile, `t = m + 2`, with `t²` products per input and output channel
//! instead of `9 m²`: 2.25x fewer for F(2x2, 3x3) ([`WinogradTile::F2`]), 4x fewer for
//! F(4x4, 3x3) ([`WinogradTile::F4`]). The transforms are in `transform.rs`.
//!
//! Forward, per chunk of [`BATCH_CHUNK`](super::BATCH_CHUNK) images (`forward.rs`):
//! 1. the input staged channels-last in blocks of `L` channels (the vector width),
//!    zero-padded: `[image][c / L][tiles_h·m + 2][tiles_w·m + 2][L]` (`layout.rs`);
//! 2. then per block of [`Geometry::block`] tiles (`p`, numbered image by image, row by
//!    row), small enough for the block's buffers to stay in cache:
//!    `V[ξ][p][c] = (Bᵀ d_p,c B)[ξ]` for each of the `t²` transform points ξ, vectorised
//!    over `L` channels; one product per point, `M[ξ] = V[ξ] · U[ξ]` (`U[ξ][c][o] =
//!    (G g_o,c Gᵀ)[ξ]`, the filters transformed in f64 and rounded once, on each call or
//!    once for many with [`conv2d_prepare`](super::conv2d_prepare); `product.rs`); `Y_p,o = Aᵀ M_p,o A` plus the bias, staged channels-last;
//! 3. the output taken back to `[image, o, h, w]`.
//!
//! The weight gradient is the same in reverse (`weight_grad.rs`): `dU[ξ] = Σ_p dM[ξ][p]ᵀ
//! V[ξ][p]` with `dM_p,o = A dy_p,o Aᵀ` (the output gradient's tiles, zero past the
//! output), then `dW[o, c] = Gᵀ dU[o, c] G` in f64. The input gradient is a stride-1 3x3
//! convolution of `dy` (the transposed convolution), which takes the forward path.
//!
//! Results differ from the direct kernels' in the last bits (another order of operations
//! and the transforms' constants). They depend on nothing but the shape: every
//! transform works lane by lane, every product value is one running sum over channels (or,
//! for the weight gradient, over the chunk's tiles) in order, and the chunks' partial
//! weight gradients are summed in a fixed order; so the thread count, the block size and
//! the vector width change no bit (channels are padded to whole vectors with zeros, whose
//! products are exact zeros; `tests/conv2d_winograd.rs` checks both).
//!
//! Error against the float64 reference, `max |y - y64| / max |y64|`, measured on the CIFAR
//! ResNets' stride-1 3x3 layers (16 channels at 32x32 and 64x64, 32 at 16x16 and 32x32,
//! 64 at 8x8 and 16x16; 8 images; `tests/conv2d_winograd.rs`, which holds each tile to
//! the bound):
//!
//! | tile | forward | weight gradient | input gradient | bound |
//! | --- | --- | --- | --- | --- |
//! | F(2x2, 3x3) | 1.6e-7 to 3.2e-7 | 3.0e-7 to 2.7e-6 | 1.7e-7 to 3.9e-7 | 1e-5 |
//! | F(4x4, 3x3) | 3.3e-6 to 5.9e-6 | 2.1e-6 to 1.7e-5 | 3.2e-6 to 7.7e-6 | 5e-5 |
//!
//! F(4x4)'s larger constants (up to 8 in `A`, 1/24 in `G`) cost it about 20x F(2x2)'s
//! error, still 3x to 6x below the 1e-4 the network gradients are held to against PyTorch's
//! float64.

mod forward;
mod layout;
mod product;
mod transform;
mod weight_grad;

pub(super) use forward::{forward, forward_prepared, forward_scratch_len};
pub(super) use weight_grad::{backward_weights_chunk, weight_grad_buf_len};

use super::{Conv2dShape, BATCH_CHUNK};
use crate::vector::Vector;
use transform::{Tile, TwoD, F2, F4};

/// Which Winograd tile a path computes with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WinogradTile {
    /// F(2 x 2, 3 x 3): 16 products per 4 outputs.
    F2,
    /// F(4 x 4, 3 x 3): 36 products per 16 outputs.
    F4,
}

impl WinogradTile {
    /// Output values per tile side.
    pub fn m(self) -> usize {
        match self {
            WinogradTile::F2 => F2::M,
            WinogradTile::F4 => F4::M,
        }
    }
}

/// Whether the Winograd paths compute a shape: stride 1, a 3x3 kernel, padding up to 2
/// (the input gradient's transposed convolution of a `pad` convolution pads `2 - pad`).
pub(crate) fn supports(s: &Conv2dShape) -> bool {
    s.stride == 1 && s.kh == 3 && s.kw == 3 && s.pad <= 2
}

/// Tiles a block holds at most (a multiple of the product kernels' rows).
const MAX_BLOCK: usize = 96;

/// The sizes a shape takes on a tile of `m x m` outputs at `lanes` channels a vector.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    m: usize,
    t: usize,
    tiles_h: usize,
    tiles_w: usize,
    /// The staged input's rows and columns (`tiles · m + 2`).
    hp: usize,
    wp: usize,
    /// Input and output channels rounded up to whole vectors.
    cp: usize,
    op: usize,
    /// Tiles per block.
    block: usize,
}

impl Geometry {
    pub fn new(s: &Conv2dShape, tile: WinogradTile, lanes: usize) -> Self {
        let m = tile.m();
        let (tiles_h, tiles_w) = (s.out_h().div_ceil(m), s.out_w().div_ceil(m));
        let (cp, op) = (s.in_c.next_multiple_of(lanes), s.out_c.next_multiple_of(lanes));
        // A block's `V` and `M` in about 192 KiB (in L2 with `U[ξ]`), whole kernel rows;
        // from the channels rounded to the widest vector, so that no width needs more
        // scratch than the widest.
        let t = m + 2;
        let per_tile = t * t * (s.in_c.next_multiple_of(16) + s.out_c.next_multiple_of(16)) * 4;
        let block = (192 * 1024 / per_tile / product::ROWS * product::ROWS).clamp(product::ROWS, MAX_BLOCK);
        Geometry {
            m,
            t,
            tiles_h,
            tiles_w,
            hp: tiles_h * m + 2,
            wp: tiles_w * m + 2,
            cp,
            op,
            block,
        }
    }
    /// Transform points per tile (`t²`).
    fn points(&self) -> usize {
        self.t * self.t
    }
    /// Tiles per image.
    fn tiles(&self) -> usize {
        self.tiles_h * self.tiles_w
    }
    /// The output tiles' rows and columns (`tiles · m`).
    fn tiled(&self) -> (usize, usize) {
        (self.tiles_h * self.m, self.tiles_w * self.m)
    }
    /// The transformed filters `U`: `[t²][cp][op]`.
    pub fn filters_len(&self) -> usize {
        self.points() * self.cp * self.op
    }
    /// A chunk's staged input: `[image][cp / L][hp][wp][L]`.
    fn staged_input_len(&self) -> usize {
        BATCH_CHUNK * self.cp * self.hp * self.wp
    }
    /// A chunk's staged output (or output gradient): `[image][op / L][rows][cols][L]`.
    fn staged_output_len(&self) -> usize {
        let (rows, cols) = self.tiled();
        BATCH_CHUNK * self.op * rows * cols
    }
    /// A block's `V` and `M` (or `dM`): `[block][t²][cp]` and `[block][t²][op]`, each
    /// tile's row [`Geometry::v_row`] and [`Geometry::m_row`] values apart.
    fn block_len(&self) -> usize {
        self.block * (self.v_row() + self.m_row())
    }
    /// Values from one tile's `V` to the next's: `t²·cp`, plus a cache line where that
    /// is an even number of lines, so that the rows a product reads, a row apart, do not
    /// all fall in a few cache sets.
    fn v_row(&self) -> usize {
        odd_lines(self.points() * self.cp)
    }
    /// Values from one tile's `M` (or `dM`) to the next's, as [`Geometry::v_row`].
    fn m_row(&self) -> usize {
        odd_lines(self.points() * self.op)
    }
    /// Where tile `p` of a chunk lies: its image, tile row and tile column.
    fn tile_at(&self, p: usize) -> (usize, usize, usize) {
        (
            p / self.tiles(),
            p % self.tiles() / self.tiles_w,
            p % self.tiles_w,
        )
    }
}

/// `len`, plus 16 values (a 64-byte cache line) where `len` is an even number of lines.
fn odd_lines(len: usize) -> usize {
    if (len / 16) % 2 == 0 {
        len + 16
    } else {
        len
    }
}

/// `V[ξ][cb·L..]` of tile `p` of the staged input `staged` (`[image][cp / L][hp][wp]
/// [L]`), every channel block `cb`, into `v` (`[t²][cp]`).
fn transform_input_tile<V: Vector, T: TwoD>(g: &Geometry, staged: &[f32], p: usize, v: &mut [f32]) {
    let (l, t, m) = (V::LANES, T::M + 2, T::M);
    let (image, i, j) = g.tile_at(p);
    let block = g.hp * g.wp * l;
    let si = &staged[image * g.cp * g.hp * g.wp..][..g.cp * g.hp * g.wp];
    // The tile's rows and columns lie inside the staged image, its points inside `v`.
    assert!(i * m + t <= g.hp && j * m + t <= g.wp && v.len() >= t * t * g.cp);
    for (cb, sb) in si.chunks_exact(block).enumerate() {
        let src = &sb[((i * m) * g.wp + j * m) * l..];
        let dst = &mut v[cb * l..];
        // SAFETY (both): `(u·wp + w)·l + l <= ((t-1)·wp + t)·l <= src.len()` by the assert
        // (rows `i·m + u < hp`, columns `j·m + w < wp`); `(a·t + b)·cp + l <= t²·cp - cb·l
        // <= dst.len()` as `cb·l + l <= cp`.
        T::input_2d(
            |u, w| unsafe { V::load_at(src, (u * g.wp + w) * l) },
            |a, b, r: V| unsafe { r.store_at(dst, (a * t + b) * g.cp) },
        );
    }
}

/// The weights a shape's filters come from.
#[derive(Clone, Copy)]
pub(super) enum Filters<'a> {
    /// The shape's own, `[out_c, in_c, 3, 3]`.
    Plain(&'a [f32]),
    /// Those of the convolution the shape is the transpose of (`[in_c, out_c, 3, 3]` of
    /// the shape), flipped: `W'[o, c, u, v] = W[c, o, 2 - u, 2 - v]`.
    Flipped(&'a [f32]),
}

/// `U[ξ][c][o] = (G g_o,c Gᵀ)[ξ]` into `u` (`[t²][cp][op]`), computed in f64 and rounded
/// once; zero for the padded channels.
fn transform_filters<T: TwoD>(s: &Conv2dShape, g: &Geometry, filters: Filters<'_>, u: &mut [f32]) {
    u[..g.filters_len()].fill(0.0);
    let t = T::M + 2;
    for o in 0..s.out_c {
        for c in 0..s.in_c {
            let at = c * g.op + o;
            let store = |a: usize, b: usize, v: f64| u[(a * t + b) * g.cp * g.op + at] = v as f32;
            match filters {
                Filters::Plain(weight) => {
                    let w = &weight[(o * s.in_c + c) * 9..][..9];
                    T::filter_2d(|a, b| w[a * 3 + b] as f64, store);
                }
                Filters::Flipped(weight) => {
                    let w = &weight[(c * s.out_c + o) * 9..][..9];
                    T::filter_2d(|a, b| w[8 - (a * 3 + b)] as f64, store);
                }
            }
        }
    }
}

/// Values of the transformed filters of `s` on `tile` at `lanes` channels a vector
/// ([`prepare_filters`]).
pub(super) fn filters_len(s: &Conv2dShape, tile: WinogradTile, lanes: usize) -> usize {
    Geometry::new(s, tile, lanes).filters_len()
}

/// The transformed filters of `s` on `tile` at `lanes` channels a vector into `u`
/// ([`filters_len`] values), for [`forward_prepared`].
pub(super) fn prepare_filters(
    s: &Conv2dShape,
    tile: WinogradTile,
    lanes: usize,
    filters: Filters<'_>,
    u: &mut [f32],
) {
    let g = Geometry::new(s, tile, lanes);
    assert_eq!(u.len(), g.filters_len(), "Winograd filters of {s:?} on {tile:?}");
    match tile {
        WinogradTile::F2 => transform_filters::<F2>(s, &g, filters, u),
        WinogradTile::F4 => transform_filters::<F4>(s, &g, filters, u),
    }
}

/// The tile of a transform type.
fn tile_of<T: TwoD>() -> WinogradTile {
    if T::M == 2 {
        WinogradTile::F2
    } else {
        WinogradTile::F4
    }
}
