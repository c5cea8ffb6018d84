//! The direct forward paths of stride-1 convolutions ([`ForwardPath::Taps`],
//! [`ForwardPath::TapPairs`], [`ForwardPath::Grouped`]), on a zero-padded copy of each
//! image ([`pad_image`]):
//!
//! `y[o, i, j] = b[o] + Σ_{c,u,v} W[o, c, u, v] · xp[c, i + u, j + v]`.
//!
//! Every path sums each output in tap order from its bias, one lane per output, so they
//! give bit-identical results at either vector width. The input gradient's
//! [`InputGradPath::Transposed`](super::InputGradPath::Transposed) runs them too.

use super::halves::HalfLoad;
use super::padding::pad_image;
use super::{for_each_image, Conv2dShape, ForwardPath};
use crate::arch::TILES;
use crate::vector::Vector;
use wide::f32x8;

/// Output vectors per register tile of [`grouped_tiles`] (the instruction set's
/// `Tiles::grouped_vectors`, `arch/`).
pub(super) const FWD_TILE: usize = TILES.grouped_vectors;

/// Output channels per register tile of [`grouped_tiles`]: a whole group of 8, or half a
/// group per pass over the tiles (`Tiles::grouped_channels`).
pub(super) const FWD_CHANNELS: usize = TILES.grouped_channels;

impl Conv2dShape {
    /// Weights regrouped for [`ForwardPath::Grouped`]: `[ceil(out_c / 8), taps, 8]`.
    pub(crate) fn grouped_weight_len(&self) -> usize {
        self.out_c.div_ceil(8) * 8 * self.col_rows()
    }
}

/// A direct forward path over the batch, `V` the widest vector: per image, the padded
/// copy into its chunk's `padded_len()` part of `scratch`, then the path's kernel. The
/// scratch holds `chunks · padded_len` values, then for [`ForwardPath::Grouped`] the
/// regrouped weights ([`ForwardPath::scratch_len`]).
pub(super) fn forward<V: HalfLoad>(
    s: &Conv2dShape,
    path: ForwardPath,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    scratch: &mut [f32],
) {
    if path == ForwardPath::Grouped {
        let grouped = &mut scratch[s.chunks() * s.padded_len()..][..s.grouped_weight_len()];
        group_weights(s, weight, grouped);
    }
    forward_regrouped::<V>(s, path, x, weight, bias, y, scratch);
}

/// [`forward`] with [`ForwardPath::Grouped`]'s regrouped weights already in `scratch`
/// (after the padded copies; `weight` then unused): the transposed input gradient writes
/// them flipped in one pass.
pub(super) fn forward_regrouped<V: HalfLoad>(
    s: &Conv2dShape,
    path: ForwardPath,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    scratch: &mut [f32],
) {
    let pl = s.padded_len();
    let (bufs, grouped) = scratch.split_at_mut(s.chunks() * pl);
    let grouped = if path == ForwardPath::Grouped {
        &grouped[..s.grouped_weight_len()]
    } else {
        &[]
    };
    for_each_image(
        (y, s.out_image_len()),
        (x, s.in_image_len()),
        (bufs, pl),
        |yn, xn, buf| {
            pad_image(s, xn, buf);
            forward_image::<V>(s, path, buf, weight, grouped, bias, yn);
        },
    );
}

/// One image of a direct path from its padded copy `xp`.
///
/// For the small tap counts `in_c · kh · kw` 1, 4 and 9 (seednet's 1-channel 3x3) a
/// monomorphised kernel ([`forward_taps`]) loads the input vectors of every tap once per
/// block of output columns and reuses them for every output channel; every other count
/// takes the register-tiled [`grouped_tiles`].
#[inline(never)]
fn forward_image<V: HalfLoad>(
    s: &Conv2dShape,
    path: ForwardPath,
    xp: &[f32],
    weight: &[f32],
    grouped: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    let pairs = path == ForwardPath::TapPairs;
    match (path, s.col_rows()) {
        (ForwardPath::Grouped, _) => grouped_kw::<V>(s, xp, grouped, bias, y),
        (ForwardPath::Taps | ForwardPath::TapPairs, 1) => forward_taps::<1, V>(s, xp, weight, bias, y, pairs),
        (ForwardPath::Taps | ForwardPath::TapPairs, 4) => forward_taps::<4, V>(s, xp, weight, bias, y, pairs),
        (ForwardPath::Taps | ForwardPath::TapPairs, 9) => forward_taps::<9, V>(s, xp, weight, bias, y, pairs),
        (path, taps) => unreachable!("{path:?} is not a direct path for {taps} taps"),
    }
}

/// Per tap `t = (c·kh + u)·kw + v`: its offset `c·hp·wp + u·wp + v` in the padded copy.
fn tap_offsets<const T: usize>(s: &Conv2dShape) -> [usize; T] {
    let (plane, wp) = (s.padded_plane(), s.padded_stride());
    std::array::from_fn(|t| {
        let (c, u, v) = (t / (s.kh * s.kw), t / s.kw % s.kh, t % s.kw);
        c * plane + u * wp + v
    })
}

/// [`ForwardPath::Taps`] for `T = in_c · kh · kw` taps: per output row, blocks of
/// `V::LANES` columns ([`forward_block`]), then 8; the last partial block is computed
/// whole and stored in part. With `pairs` ([`ForwardPath::TapPairs`], exactly 8 output
/// channels), rows go in pairs: the `V`-blocks of rows `i` and `i + 1` together
/// ([`tap_pair_block`]), then the rest of both rows as single blocks; an odd last row
/// alone. From 18 taps up the tap kernel's `T` input vectors plus 8 accumulators outgrow
/// the registers, so those take [`ForwardPath::Grouped`] (module docs of `conv`).
fn forward_taps<const T: usize, V: Vector>(
    s: &Conv2dShape,
    xp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    pairs: bool,
) {
    debug_assert_eq!(s.col_rows(), T);
    debug_assert!(!pairs || s.out_c == 8);
    let (oh, ow) = (s.out_h(), s.out_w());
    let off = tap_offsets::<T>(s);
    // Columns `j ..` of output row `i`, one block at a time.
    let row_from = |y: &mut [f32], i: usize, mut j: usize| {
        while j + V::LANES <= ow {
            forward_block::<T, V>(s, xp, weight, bias, y, &off, i, j, V::LANES);
            j += V::LANES;
        }
        while j < ow {
            forward_block::<T, f32x8>(s, xp, weight, bias, y, &off, i, j, 8.min(ow - j));
            j += 8;
        }
    };
    let mut i = 0;
    while i < oh {
        if pairs && i + 1 < oh {
            let mut j = 0;
            while j + V::LANES <= ow {
                tap_pair_block::<T, V>(s, xp, weight, bias, y, &off, i, j);
                j += V::LANES;
            }
            row_from(y, i, j);
            row_from(y, i + 1, j);
            i += 2;
        } else {
            row_from(y, i, 0);
            i += 1;
        }
    }
}

/// Outputs `(i .. i + 2, j .. j + V::LANES)` of the 8 output channels of
/// [`forward_taps`]: `y[o, i', j'] = b[o] + Σ_t W[o, t] · xp[tap t at (i', j')]`, summed
/// in tap order (as [`channels_block`] does), 16 accumulators; each tap's two input
/// vectors are loaded where used, its 8 weights broadcast once for both rows. Index loops
/// (not iterators) over the accumulators, so every index is a constant once unrolled and
/// they stay in registers.
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
#[inline(always)]
fn tap_pair_block<const T: usize, V: Vector>(
    s: &Conv2dShape,
    xp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    off: &[usize; T],
    i: usize,
    j: usize,
) {
    debug_assert_eq!(s.out_c, 8);
    let (wp, ow) = (s.padded_stride(), s.out_w());
    let plane = s.out_h() * ow;
    let base = [i * wp + j, (i + 1) * wp + j];
    let at = [i * ow + j, (i + 1) * ow + j];
    let w = &weight[..8 * T];
    let b: [f32; 8] = std::array::from_fn(|g| bias.map_or(0.0, |b| b[g]));
    let mut acc: [[V; 8]; 2] = [std::array::from_fn(|g| V::splat(b[g])); 2];
    for t in 0..T {
        let xv: [V; 2] = std::array::from_fn(|p| V::load(&xp[off[t] + base[p]..]));
        for g in 0..8 {
            let wv = V::splat(w[g * T + t]);
            for p in 0..2 {
                acc[p][g] = xv[p].mul_add(wv, acc[p][g]);
            }
        }
    }
    for g in 0..8 {
        for p in 0..2 {
            let o = g * plane + at[p];
            acc[p][g].store_prefix(&mut y[o..o + V::LANES], V::LANES);
        }
    }
}

/// Outputs `(i, j .. j + n)` of every output channel (`n <= V::LANES`): the input vector
/// of each tap is loaded once, then channels go in groups of 8/4/1 so several independent
/// FMA chains hide the FMA latency.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_block<const T: usize, V: Vector>(
    s: &Conv2dShape,
    xp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    off: &[usize; T],
    i: usize,
    j: usize,
    n: usize,
) {
    let ow = s.out_w();
    let base = i * s.padded_stride() + j;
    let xv: [V; T] = std::array::from_fn(|t| V::load(&xp[off[t] + base..]));
    let (plane, at) = (s.out_h() * ow, i * ow + j);
    let mut o = 0;
    while o + 8 <= s.out_c {
        channels_block::<T, 8, V>(o, &xv, weight, bias, y, plane, at, n);
        o += 8;
    }
    while o + 4 <= s.out_c {
        channels_block::<T, 4, V>(o, &xv, weight, bias, y, plane, at, n);
        o += 4;
    }
    while o < s.out_c {
        channels_block::<T, 1, V>(o, &xv, weight, bias, y, plane, at, n);
        o += 1;
    }
}

/// Output channels `o0 .. o0 + G` of one block of output columns at offset `at` of each
/// `plane`-sized output channel, its first `n` lanes stored: `y = b + Σ_t W[o, t] · xv[t]`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn channels_block<const T: usize, const G: usize, V: Vector>(
    o0: usize,
    xv: &[V; T],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    plane: usize,
    at: usize,
    n: usize,
) {
    let w: &[f32] = &weight[o0 * T..(o0 + G) * T];
    let mut acc: [V; G] = std::array::from_fn(|g| V::splat(bias.map_or(0.0, |b| b[o0 + g])));
    for t in 0..T {
        for g in 0..G {
            acc[g] = xv[t].mul_add(V::splat(w[g * T + t]), acc[g]);
        }
    }
    for (g, a) in acc.into_iter().enumerate() {
        a.store_prefix(&mut y[(o0 + g) * plane + at..], n);
    }
}

/// Regroups `weight` (`[out_c, taps]`) as `[ceil(out_c / 8), taps, 8]`, zero-filling the
/// channels past `out_c`: the 8 weights one input vector meets are then adjacent.
fn group_weights(s: &Conv2dShape, weight: &[f32], grouped: &mut [f32]) {
    let taps = s.col_rows();
    // Each channel's weights read in order, written 8 apart within its group's block.
    for (og, block) in grouped.chunks_exact_mut(8 * taps).enumerate() {
        let outs = s.out_c.min(og * 8 + 8) - og * 8;
        if outs < 8 {
            block.fill(0.0);
        }
        for (g, wo) in weight[og * 8 * taps..(og * 8 + outs) * taps]
            .chunks_exact(taps)
            .enumerate()
        {
            for (lane, &w) in block.chunks_exact_mut(8).zip(wo) {
                lane[g] = w;
            }
        }
    }
}

/// One output vector of a tile: output row `i`, columns `j .. j + n` (`n <= V::LANES`),
/// `x` = `i · padded_stride + j` (its first tap's input offset in a plane of the padded
/// copy), `y` = `i · ow + j` (its offset in an output plane).
#[derive(Clone, Copy)]
struct OutVec {
    x: usize,
    y: usize,
    n: usize,
}

/// [`grouped_tiles`] with the common kernel widths as constants (the tap loop unrolled).
/// Kept out of [`forward_image`], whose tap kernels are then compiled as on their own.
#[inline(never)]
fn grouped_kw<V: HalfLoad>(
    s: &Conv2dShape,
    xp: &[f32],
    grouped: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    match s.kw {
        1 => grouped_tiles::<V>(s, xp, grouped, bias, y, 1),
        2 => grouped_tiles::<V>(s, xp, grouped, bias, y, 2),
        3 => grouped_tiles::<V>(s, xp, grouped, bias, y, 3),
        5 => grouped_tiles::<V>(s, xp, grouped, bias, y, 5),
        kw => grouped_tiles::<V>(s, xp, grouped, bias, y, kw),
    }
}

/// [`ForwardPath::Grouped`] for one image, any tap count, from the padded copy and the
/// grouped weights ([`group_weights`]), `kw == s.kw`.
///
/// Shapes: `xp` one image's padded copy `[in_c, h + 2 pad, padded_stride]`, `grouped`
/// `[ceil(out_c / 8), in_c · kh · kw, 8]`, `bias` `[out_c]`, `y` one output image
/// `[out_c, oh, ow]` (overwritten).
///
/// Blocking: each output row is cut into `ceil(ow / L)` vectors of `L = V::LANES` columns
/// (the last one partial: computed whole and stored in part; its extra lanes read on into
/// the row's slack and are discarded). Rows exactly half a vector wide (8x8 planes with
/// 16 lanes) go two to a vector instead, its halves loaded from two rows of the padded
/// copy ([`HalfLoad`]) and stored as one (the rows are contiguous in `y`), an odd last
/// row alone: no lane is wasted, where one row per vector would leave half of every
/// vector idle. The vectors of the whole plane, in row-major order, go in tiles of
/// [`FWD_TILE`] (1-vector tiles for the last ones), so a tile holds segments of one row,
/// the same columns of consecutive rows (`ow <= 16`), or straddles a row end. Per group
/// of 8 output channels (outer loop: its weights stay in L1), per pass over
/// [`FWD_CHANNELS`] of its channels (one pass of 8, or two of 4, the second skipped for a
/// group of at most 4 real channels) and per tile, `FWD_TILE · FWD_CHANNELS` vector
/// accumulators start at the bias; per tap `(c, u, v)` one input vector per tile vector
/// and `FWD_CHANNELS` broadcast weights feed that many independent FMAs. Each output is
/// still summed from its bias in tap order, so the tiling does not change a result. The
/// taps of one kernel row `(c, u)` come from one slice per tile vector, checked once per
/// tile ([`grouped_tile`]), `kw` constant for the common widths, so the tap loop has no
/// bounds checks.
#[inline(always)]
fn grouped_tiles<V: HalfLoad>(
    s: &Conv2dShape,
    xp: &[f32],
    grouped: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    kw: usize,
) {
    debug_assert_eq!(s.kw, kw);
    let (oh, ow, wp) = (s.out_h(), s.out_w(), s.padded_stride());
    // Rows half a vector wide go in pairs: one vector holds rows `2q` and `2q + 1`
    // (contiguous in the output), an odd last row a vector of its own.
    let paired = 2 * ow == V::LANES;
    let per_row = ow.div_ceil(V::LANES);
    let count = if paired { oh / 2 } else { oh * per_row };
    let vec_at = |q: usize| {
        if paired {
            return OutVec {
                x: 2 * q * wp,
                y: 2 * q * ow,
                n: V::LANES,
            };
        }
        let (i, j) = (q / per_row, q % per_row * V::LANES);
        OutVec {
            x: i * wp + j,
            y: i * ow + j,
            n: V::LANES.min(ow - j),
        }
    };
    let plane = oh * ow;
    for (og, wg) in grouped.chunks_exact(8 * s.col_rows()).enumerate() {
        let b: [f32; 8] = std::array::from_fn(|g| {
            let o = og * 8 + g;
            bias.filter(|_| o < s.out_c).map_or(0.0, |b| b[o])
        });
        let outs = s.out_c.min(og * 8 + 8) - og * 8;
        let yg = &mut y[og * 8 * plane..(og * 8 + outs) * plane];
        // Channel passes `g0 .. g0 + FWD_CHANNELS` of the group (one where
        // `FWD_CHANNELS` is 8), only those holding a real channel.
        for g0 in (0..outs).step_by(FWD_CHANNELS) {
            let ctx = (s, xp, wg, &b, kw);
            if paired {
                grouped_run::<V, true>(ctx, count, vec_at, yg, plane, g0);
                if oh % 2 == 1 {
                    let i = oh - 1;
                    let at = [OutVec {
                        x: i * wp,
                        y: i * ow,
                        n: ow,
                    }];
                    grouped_tile::<V, 1, FWD_CHANNELS, false>(s, xp, wg, &b, kw, at, yg, plane, g0);
                }
            } else {
                grouped_run::<V, false>(ctx, count, vec_at, yg, plane, g0);
            }
        }
    }
}

/// The `count` output vectors `vec_at(0 .. count)` of [`grouped_tiles`] for channels
/// `g0 .. g0 + FWD_CHANNELS`: tiles of [`FWD_TILE`], then single vectors. `ctx`: the
/// shape, padded copy, the group's weights and biases, and `kw`.
#[inline(always)]
fn grouped_run<V: HalfLoad, const PAIRED: bool>(
    (s, xp, wg, b, kw): (&Conv2dShape, &[f32], &[f32], &[f32; 8], usize),
    count: usize,
    vec_at: impl Fn(usize) -> OutVec,
    yg: &mut [f32],
    plane: usize,
    g0: usize,
) {
    let mut q = 0;
    while q + FWD_TILE <= count {
        let at = std::array::from_fn(|k| vec_at(q + k));
        grouped_tile::<V, FWD_TILE, FWD_CHANNELS, PAIRED>(s, xp, wg, b, kw, at, yg, plane, g0);
        q += FWD_TILE;
    }
    while q < count {
        grouped_tile::<V, 1, FWD_CHANNELS, PAIRED>(s, xp, wg, b, kw, [vec_at(q)], yg, plane, g0);
        q += 1;
    }
}

/// One tile of [`grouped_tiles`]: the `P` output vectors `at` of the `G` output channels
/// `g0 .. g0 + G` of one group of 8 (`g0 + G <= 8`), `wg` the group's grouped weights
/// (`[taps, 8]`), `b` its biases, `yg` its output planes (`plane` values each, only the
/// real channels). With `PAIRED`, each vector's upper half is the next row's (input
/// rows one `padded_stride` further on, [`HalfLoad::load_halves`]).
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
#[inline(always)]
fn grouped_tile<V: HalfLoad, const P: usize, const G: usize, const PAIRED: bool>(
    s: &Conv2dShape,
    xp: &[f32],
    wg: &[f32],
    b: &[f32; 8],
    kw: usize,
    at: [OutVec; P],
    yg: &mut [f32],
    plane: usize,
    g0: usize,
) {
    assert!(g0 + G <= 8, "channels {g0} + {G} of a group of 8");
    let (wp, plane_in) = (s.padded_stride(), s.padded_plane());
    // A row of taps (c, u) reads `row_len` values from `c · plane_in + u · wp + at[p].x`
    // (and with `PAIRED` as many from `wp` further on: `reach` in all); `last` is the
    // greatest `at[p].x` for which the last row, (in_c - 1, kh - 1), and so every row
    // lies in `xp`.
    let row_len = kw - 1 + if PAIRED { V::LANES / 2 } else { V::LANES };
    let second = if PAIRED { wp } else { 0 };
    let last = (|| {
        let last_row = (s.in_c.checked_sub(1)?.checked_mul(plane_in)?)
            .checked_add(s.kh.checked_sub(1)?.checked_mul(wp)?)?;
        let reach = row_len.checked_add(second)?;
        xp.len().checked_sub(last_row.checked_add(reach)?)
    })()
    .expect("the padded copy holds every tap row");
    for o in &at {
        assert!(o.x <= last, "tile vector at {} reads past the padded copy", o.x);
    }
    let mut acc: [[V; G]; P] = [std::array::from_fn(|g| V::splat(b[g0 + g])); P];
    // One row of taps (c, u, v = 0 .. kw) at a time: its kw · 8 weights and, per tile
    // vector, the kw - 1 + L input values its kw shifted vectors read (two runs of
    // kw - 1 + L / 2, `wp` apart, with `PAIRED`).
    let mut w_rows = wg.chunks_exact(kw * 8);
    for c in 0..s.in_c {
        for u in 0..s.kh {
            let w = w_rows.next().expect("in_c · kh rows of taps");
            let off = c * plane_in + u * wp;
            let xr: [[&[f32]; 2]; P] = std::array::from_fn(|p| {
                let start = off + at[p].x;
                // SAFETY: c < in_c and u < kh, so off <= (in_c - 1) · plane_in + (kh - 1) · wp,
                // and at[p].x <= last = xp.len() - ((in_c - 1) · plane_in + (kh - 1) · wp
                // + second + row_len) (asserted above, computed without overflow), so
                // start + second + row_len does not overflow and is at most xp.len().
                unsafe {
                    [
                        xp.get_unchecked(start..start + row_len),
                        xp.get_unchecked(start + second..start + second + row_len),
                    ]
                }
            });
            for v in 0..kw {
                let xv: [V; P] = std::array::from_fn(|p| {
                    if PAIRED {
                        V::load_halves(&xr[p][0][v..], &xr[p][1][v..])
                    } else {
                        V::load(&xr[p][0][v..])
                    }
                });
                let wv: &[f32; 8] = w[v * 8..v * 8 + 8].try_into().expect("8 weights per tap");
                for g in 0..G {
                    let wgv = V::splat(wv[g0 + g]);
                    for p in 0..P {
                        acc[p][g] = xv[p].mul_add(wgv, acc[p][g]);
                    }
                }
            }
        }
    }
    let yg = &mut yg[g0 * plane..];
    if V::LANES == 8 && yg.len() >= G * plane && at.iter().all(|a| a.n == V::LANES) {
        // 8 lanes, whole vectors of G real channels: stored here, every index and length
        // a constant, because a call per tile (`store_channels`) costs the short 9-tap
        // tiles more than its stores. With 16 lanes the same inline stores kept the
        // accumulators in memory, so those tiles keep the call.
        for p in 0..P {
            for g in 0..G {
                let o = g * plane + at[p].y;
                acc[p][g].store_prefix(&mut yg[o..o + V::LANES], V::LANES);
            }
        }
    } else {
        for p in 0..P {
            store_channels(acc[p], yg, plane, at[p]);
        }
    }
}

/// Stores one output vector `at` of each of `G` channels (`yg`: their planes of `plane`
/// values, from the first; fewer planes than `G` where the group's real channels end).
/// Not inlined, and given copies of the accumulators, so the tap loop never indexes its
/// accumulators at run time (which would keep them in memory). (8-lane tiles of whole
/// vectors and channels store inline instead: [`grouped_tile`].)
#[inline(never)]
fn store_channels<V: Vector, const G: usize>(acc: [V; G], yg: &mut [f32], plane: usize, at: OutVec) {
    for (a, yo) in acc.into_iter().zip(yg.chunks_exact_mut(plane)) {
        a.store_prefix(&mut yo[at.y..], at.n);
    }
}
