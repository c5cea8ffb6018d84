//! The two register-tiled kernels of the polyphase paths (`strided.rs`): a convolution
//! written as taps at fixed offsets into one flat buffer, computed over a flat run of
//! positions `q` (rows of the output laid end to end at the buffer's row stride, the
//! columns past a row's end computed and discarded or multiplied by zero):
//!
//! - [`forward`]: `out[o, q] = b[o] + Σ_t W[o, t] · inp[off[t] + q]`, each output summed
//!   from its bias in tap order, one lane per output (so the same bits at either width);
//! - [`weight_grad`]: `gw[o, t] = Σ_n Σ_q dy_n[o, q] · inp_n[off[t] + q]`, per tile of
//!   output channels and taps vector accumulators over every image of a chunk, then one
//!   horizontal sum each (the order depends on the width, never on threads).
//!
//! No im2col matrix and no GEMM packing: the taps read the buffer where it is.

use super::forward_direct::{FWD_CHANNELS, FWD_TILE};
use crate::arch::TILES;
use crate::vector::Vector;

/// Output channels per register tile of [`weight_grad`] (the instruction set's
/// `Tiles::polyphase_dw_channels`, `arch/`).
const DW_CHANNELS: usize = TILES.polyphase_dw_channels;
/// Taps per register tile of [`weight_grad`] (`Tiles::polyphase_dw_taps`).
const DW_TAPS: usize = TILES.polyphase_dw_taps;

/// Regroups the weights of `out_c` channels and `taps` taps, `w(o, t) = weight[o ·
/// ch_stride + tap_at(t)]`, as `[ceil(out_c / 8), taps, 8]`, zeros past `out_c`: the 8
/// weights one input vector meets are then adjacent. `grouped` holds exactly
/// `ceil(out_c / 8) · 8 · taps` values.
pub(super) fn group_taps(
    out_c: usize,
    taps: usize,
    weight: &[f32],
    ch_stride: usize,
    tap_at: impl Fn(usize) -> usize,
    grouped: &mut [f32],
) {
    debug_assert_eq!(grouped.len(), out_c.div_ceil(8) * 8 * taps);
    if taps == 0 {
        return;
    }
    for (og, block) in grouped.chunks_exact_mut(8 * taps).enumerate() {
        for (t, lane) in block.chunks_exact_mut(8).enumerate() {
            let at = tap_at(t);
            for (g, v) in lane.iter_mut().enumerate() {
                let o = og * 8 + g;
                *v = if o < out_c {
                    weight[o * ch_stride + at]
                } else {
                    0.0
                };
            }
        }
    }
}

/// Most taps per channel of [`Taps`] (a kernel of up to 8x8): the offsets of one
/// channel's taps live on the stack.
pub(crate) const MAX_AREA: usize = 64;

/// The tap offsets of a kernel: tap `t = c · area + k` (`c < channels`, `k < area`) at
/// `c · stride + base[k]`.
#[derive(Clone, Copy)]
pub(super) struct Taps {
    base: [usize; MAX_AREA],
    area: usize,
    channels: usize,
    stride: usize,
}

impl Taps {
    /// The offsets `base` yields (at most [`MAX_AREA`]) for each of `channels` channels
    /// `stride` values apart.
    pub(super) fn new(base: impl Iterator<Item = usize>, channels: usize, stride: usize) -> Self {
        let mut b = [0; MAX_AREA];
        let mut area = 0;
        for v in base {
            assert!(
                area < MAX_AREA,
                "offset taps: more than {MAX_AREA} taps per channel"
            );
            b[area] = v;
            area += 1;
        }
        Self {
            base: b,
            area,
            channels,
            stride,
        }
    }
    /// Taps in all.
    pub(super) fn len(&self) -> usize {
        self.area * self.channels
    }
    #[inline(always)]
    fn get(&self, t: usize) -> usize {
        t / self.area * self.stride + self.base[t % self.area]
    }
    /// Panics unless every tap reads `span` values from its offset inside `len` values;
    /// the kernels then load without bounds checks.
    fn check_reads(&self, span: usize, len: usize) {
        let most = self.base[..self.area].iter().max().map(|&m| {
            (self.channels - 1)
                .checked_mul(self.stride)
                .and_then(|c| c.checked_add(m))
        });
        let end = most.flatten().and_then(|m| m.checked_add(span));
        assert!(
            self.len() == 0 || end.is_some_and(|e| e <= len),
            "offset taps: a tap reads {span} values past a buffer of {len}"
        );
    }
}

/// `out[o, q] = b[o] + Σ_t W[o, t] · inp[off[t] + q]` for the `out_c` channels and `q` in
/// `0 .. plane` (`plane` a multiple of `V::LANES`; `out` is `[out_c, plane]`, every value
/// written), `grouped` the weights as [`group_taps`] lays them out (`off.len()` taps in the order of [`Taps`]).
///
/// Tiles as [`ForwardPath::Grouped`](super::ForwardPath::Grouped)'s: per group of 8
/// channels, per pass of [`FWD_CHANNELS`] of them, [`FWD_TILE`] output vectors at a time
/// (then single vectors), `FWD_TILE · FWD_CHANNELS` accumulators from the bias; per tap,
/// one input vector per tile vector and `FWD_CHANNELS` broadcast weights.
pub(super) fn forward<V: Vector>(
    inp: &[f32],
    off: &Taps,
    grouped: &[f32],
    bias: Option<&[f32]>,
    out_c: usize,
    out: &mut [f32],
    plane: usize,
) {
    let taps = off.len();
    assert!(plane % V::LANES == 0 && out.len() == out_c * plane);
    assert_eq!(grouped.len(), out_c.div_ceil(8) * 8 * taps);
    off.check_reads(plane, inp.len());
    if taps == 0 {
        for (o, row) in out.chunks_exact_mut(plane).enumerate() {
            row.fill(bias.map_or(0.0, |b| b[o]));
        }
        return;
    }
    let count = plane / V::LANES;
    for (og, wg) in grouped.chunks_exact(8 * taps).enumerate() {
        let b: [f32; 8] = std::array::from_fn(|g| {
            let o = og * 8 + g;
            bias.filter(|_| o < out_c).map_or(0.0, |b| b[o])
        });
        let outs = out_c.min(og * 8 + 8) - og * 8;
        let yg = &mut out[og * 8 * plane..(og * 8 + outs) * plane];
        for g0 in (0..outs).step_by(FWD_CHANNELS) {
            let mut q = 0;
            while q + FWD_TILE <= count {
                let at = std::array::from_fn(|k| (q + k) * V::LANES);
                forward_tile::<V, FWD_TILE, FWD_CHANNELS>(inp, off, wg, &b, at, yg, plane, g0);
                q += FWD_TILE;
            }
            while q < count {
                forward_tile::<V, 1, FWD_CHANNELS>(inp, off, wg, &b, [q * V::LANES], yg, plane, g0);
                q += 1;
            }
        }
    }
}

/// One tile of [`forward`]: output vectors at positions `at` of channels `g0 .. g0 + G`
/// of one group of 8 (`wg`: its `[taps, 8]` weights, `b` its biases, `yg` its real
/// channels' output planes).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_tile<V: Vector, const P: usize, const G: usize>(
    inp: &[f32],
    off: &Taps,
    wg: &[f32],
    b: &[f32; 8],
    at: [usize; P],
    yg: &mut [f32],
    plane: usize,
    g0: usize,
) {
    assert!(g0 + G <= 8 && wg.len() == off.len() * 8);
    for &q in &at {
        assert!(q + V::LANES <= plane, "tile vector at {q} past the plane");
    }
    let mut acc: [[V; G]; P] = [std::array::from_fn(|g| V::splat(b[g0 + g])); P];
    let base = &off.base[..off.area];
    let mut wvs = wg.chunks_exact(8);
    for c in 0..off.channels {
        let cb = c * off.stride;
        for (&bk, wv) in base.iter().zip(&mut wvs) {
            let o = cb + bk;
            // SAFETY: `forward` checked that every tap's offset plus `plane` lies in `inp`,
            // and `q + V::LANES <= plane` was asserted above.
            let xv: [V; P] = std::array::from_fn(|p| {
                V::load(unsafe { inp.get_unchecked(o + at[p]..o + at[p] + V::LANES) })
            });
            for g in 0..G {
                let wgv = V::splat(wv[g0 + g]);
                for p in 0..P {
                    acc[p][g] = xv[p].mul_add(wgv, acc[p][g]);
                }
            }
        }
    }
    for p in 0..P {
        store_channels(acc[p], &mut yg[g0 * plane..], plane, at[p]);
    }
}

/// Stores one vector at `q` of each of `G` channels (`yg`: their planes of `plane`
/// values, fewer than `G` where the group's real channels end). Not inlined, so the tap
/// loop never indexes its accumulators at run time (as in `forward_direct.rs`).
#[inline(never)]
fn store_channels<V: Vector, const G: usize>(acc: [V; G], yg: &mut [f32], plane: usize, q: usize) {
    for (a, yo) in acc.into_iter().zip(yg.chunks_exact_mut(plane)) {
        a.store_prefix(&mut yo[q..], V::LANES);
    }
}

/// `gw[o, t] = Σ_n Σ_q dy_n[o, q] · inp_n[off[t] + q]` over the `images` images of a chunk
/// (`inp`: `[images, in_len]`; `dy`: `[images, out_c, plane]`, `plane` a multiple of
/// `V::LANES`, zero wherever `q` is not a real output), written (not added) to `gw`
/// (`[out_c, off.len()]`).
///
/// Tiles of [`DW_CHANNELS`] channels by [`DW_TAPS`] taps (the remainders one channel at a
/// time, 4, 2 or 1 taps at a time) keep their accumulators in registers across every vector of every
/// image; per vector, one `dy` load per channel and one input load per tap.
#[allow(clippy::too_many_arguments)]
pub(super) fn weight_grad<V: Vector>(
    images: usize,
    inp: &[f32],
    in_len: usize,
    off: &Taps,
    dy: &[f32],
    out_c: usize,
    plane: usize,
    gw: &mut [f32],
) {
    let taps = off.len();
    assert!(plane % V::LANES == 0 && dy.len() >= images * out_c * plane);
    assert!(inp.len() >= images * in_len && gw.len() == out_c * taps);
    off.check_reads(plane, in_len);
    let mut o = 0;
    while o < out_c {
        let g = if o + DW_CHANNELS <= out_c { DW_CHANNELS } else { 1 };
        let mut t = 0;
        while t < taps {
            // The widest tile of DW_TAPS, 4, 2 or 1 taps that fits.
            let k = [DW_TAPS, 4, 2, 1]
                .into_iter()
                .find(|&k| t + k <= taps)
                .unwrap_or(1);
            let a = (images, in_len, plane, out_c);
            match (g, k) {
                (DW_CHANNELS, DW_TAPS) => dw_tile::<V, DW_CHANNELS, DW_TAPS>(inp, off, dy, a, o, t, gw),
                (DW_CHANNELS, 4) => dw_tile::<V, DW_CHANNELS, 4>(inp, off, dy, a, o, t, gw),
                (DW_CHANNELS, 2) => dw_tile::<V, DW_CHANNELS, 2>(inp, off, dy, a, o, t, gw),
                (DW_CHANNELS, _) => dw_tile::<V, DW_CHANNELS, 1>(inp, off, dy, a, o, t, gw),
                (_, DW_TAPS) => dw_tile::<V, 1, DW_TAPS>(inp, off, dy, a, o, t, gw),
                (_, 4) => dw_tile::<V, 1, 4>(inp, off, dy, a, o, t, gw),
                (_, 2) => dw_tile::<V, 1, 2>(inp, off, dy, a, o, t, gw),
                _ => dw_tile::<V, 1, 1>(inp, off, dy, a, o, t, gw),
            }
            t += k;
        }
        o += g;
    }
}

/// Channels `o0 .. o0 + G` by taps `t0 .. t0 + T` of [`weight_grad`], for
/// `(images, in_len, plane, out_c)`.
#[allow(clippy::needless_range_loop)]
#[inline(never)]
fn dw_tile<V: Vector, const G: usize, const T: usize>(
    inp: &[f32],
    off: &Taps,
    dy: &[f32],
    (images, in_len, plane, out_c): (usize, usize, usize, usize),
    o0: usize,
    t0: usize,
    gw: &mut [f32],
) {
    let taps = off.len();
    let o: [usize; T] = std::array::from_fn(|t| off.get(t0 + t));
    let mut acc = [[V::splat(0.0); T]; G];
    for n in 0..images {
        let xn = &inp[n * in_len..(n + 1) * in_len];
        let dyn_: [&[f32]; G] = std::array::from_fn(|g| {
            let at = (n * out_c + o0 + g) * plane;
            &dy[at..at + plane]
        });
        let mut q = 0;
        while q < plane {
            let d: [V; G] = std::array::from_fn(|g| V::load(&dyn_[g][q..]));
            for t in 0..T {
                // SAFETY: `weight_grad` checked `off[t] + plane <= in_len` for every tap,
                // and `q + V::LANES <= plane`.
                let x = V::load(unsafe { xn.get_unchecked(o[t] + q..o[t] + q + V::LANES) });
                for g in 0..G {
                    acc[g][t] = d[g].mul_add(x, acc[g][t]);
                }
            }
            q += V::LANES;
        }
    }
    for g in 0..G {
        for t in 0..T {
            gw[(o0 + g) * taps + t0 + t] = acc[g][t].reduce_add();
        }
    }
}
