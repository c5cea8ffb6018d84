//! Batch normalization over NCHW activations (PyTorch's `BatchNorm2d`), as four pieces a
//! caller composes over chunks of a batch.
//!
//! Shapes: `x`, `y`, `dy`, `dx` are `[batch, c, hw]` ([`BatchNormShape`]); every
//! per-channel vector (`scale`, `shift`, `mean`, `invstd`, `gamma`, `mean_dy`,
//! `mean_dy_xhat`) has `c` values; `sums` has `2c`, the first sum of every channel, then
//! the second.
//!
//! Training step, with `N` the values per channel over the whole batch:
//!
//! 1. [`batch_norm_sums`] on each chunk, the chunks' `sums` added in chunk order:
//!    `mean = Σx / N`, `var = Σx² / N − mean²` (biased), `invstd = 1 / sqrt(var + eps)`.
//! 2. [`batch_norm_apply`] with `scale = γ·invstd`, `shift = β − mean·scale`:
//!    `y = x·scale + shift`, then ReLU when fused (`relu`).
//! 3. [`batch_norm_backward_sums`] on each chunk, added in chunk order: `Σdy = dβ` and
//!    `Σdy·x̂ = dγ`, `x̂ = (x − mean)·invstd` (`dy` first masked by the fused ReLU).
//! 4. [`batch_norm_backward_input`] with `mean_dy = Σdy / N`, `mean_dy_xhat = Σdy·x̂ / N`:
//!    `dx = γ·invstd·(dy − mean_dy − x̂·mean_dy_xhat)`.
//!
//! Inference is step 2 alone with the running statistics.
//!
//! Sums are `f64`, in one fixed order: image by image, and within each `hw` plane in blocks
//! of [`SUM_BLOCK`] values; in a block, 16 `f32` lanes each add every 16th value (lane `l`
//! the values at `16j + l`), then the lanes are added to the `f64` total in lane order; the
//! plane's last `hw mod 16` values are added to the total one by one in `f64`. So each
//! `f32` partial holds at most 16 terms (its error is below `15u·Σ|terms|`,
//! `u = 2^-24`) and the result is the same bit for bit at either vector width and on any
//! number of threads (each rayon task takes a group of whole channels over all images, so
//! one channel's sum is never split).

use crate::arch::Lanes;
use crate::shape::check_len;
use crate::shared_mut::SharedMut;
use crate::simd::fma;
use crate::vector::{relu1, vectors, Vector};
use rayon::prelude::*;
use wide::{f32x16, f32x8};

/// Shape of a batch-norm call: `batch` samples of `c` channels of `hw` values each (NCHW,
/// `x` is `[batch, c, hw]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BatchNormShape {
    pub batch: usize,
    pub c: usize,
    pub hw: usize,
}

impl BatchNormShape {
    /// Values in `x` (and `y`, `dy`, `dx`): `batch · c · hw`.
    pub fn len(&self) -> usize {
        self.batch * self.c * self.hw
    }
    /// Whether the call has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Values per channel in this call: `batch · hw`.
    pub fn count(&self) -> usize {
        self.batch * self.hw
    }
}

/// Values of one plane summed in `f32` lanes before the lanes go into the `f64` total.
pub const SUM_BLOCK: usize = 256;

/// Lanes of the `f32` partial sums (whatever the vector width).
const SUM_LANES: usize = 16;

/// Values a rayon task gets at least (channels are grouped up to this much work).
const TASK: usize = 1 << 14;

/// Checks the per-channel vectors and the tensor slices of a call.
#[track_caller]
fn check(what: &str, s: &BatchNormShape, tensors: &[(&str, usize)], channel: &[(&str, usize)]) {
    for &(name, got) in tensors {
        check_len(what, name, got, s.len());
    }
    for &(name, got) in channel {
        check_len(what, name, got, s.c);
    }
}

/// Planes (or channels) per rayon task: enough for [`TASK`] values when each holds `len`.
fn channels_per_task(len: usize) -> usize {
    TASK.div_ceil(len.max(1))
}

/// Channels per rayon task of the sum kernels: all of them for a call of at most [`TASK`]
/// values, else enough for a contiguous run of 32 KiB per image (a task takes its
/// channels' planes image by image, so the hardware prefetcher streams) but no more than
/// `c / 16` (rounded up), so calls of 16 channels or more split into at least 16 tasks.
fn sum_group(s: &BatchNormShape) -> usize {
    if s.len() <= TASK {
        return s.c.max(1);
    }
    8192usize.div_ceil(s.hw.max(1)).min(s.c.div_ceil(16)).max(1)
}

/// Per-channel sums of `x` in `f64`, in the order of the module docs: `sums[ch] = Σ x`,
/// `sums[c + ch] = Σ x²` over the `batch · hw` values of channel `ch`. Overwrites `sums`
/// (`2c` values).
pub fn batch_norm_sums(s: &BatchNormShape, x: &[f32], sums: &mut [f64]) {
    batch_norm_sums_lanes(Lanes::BUILD, s, x, sums);
}

/// [`batch_norm_sums`] at vector width `lanes`; the result does not depend on it.
#[doc(hidden)]
pub fn batch_norm_sums_lanes(lanes: Lanes, s: &BatchNormShape, x: &[f32], sums: &mut [f64]) {
    check("batch_norm_sums", s, &[("x", x.len())], &[]);
    check_len("batch_norm_sums", "sums", sums.len(), 2 * s.c);
    sums.fill(0.0);
    let (s1, s2) = sums.split_at_mut(s.c);
    if s.is_empty() {
        return;
    }
    let (c, hw) = (s.c, s.hw);
    let group = sum_group(s);
    s1.par_chunks_mut(group)
        .zip(s2.par_chunks_mut(group))
        .enumerate()
        .for_each(|(g, (t1, t2))| {
            for n in 0..s.batch {
                for (k, (t1, t2)) in t1.iter_mut().zip(t2.iter_mut()).enumerate() {
                    let plane = &x[(n * c + g * group + k) * hw..][..hw];
                    match lanes {
                        Lanes::Eight => plane_sums::<f32x8>(plane, plane, 0.0, t1, t2),
                        Lanes::Sixteen => plane_sums::<f32x16>(plane, plane, 0.0, t1, t2),
                    }
                }
            }
        });
}

/// `t1 += Σ p`, `t2 += Σ p·(q − m)` over one plane, in the order of the module docs
/// (`q − m` rounded to `f32` first, `f32` fused multiply-adds in the lanes).
#[inline(always)]
fn plane_sums<V: Vector>(p: &[f32], q: &[f32], m: f32, t1: &mut f64, t2: &mut f64) {
    let (n, per_group) = (V::LANES, SUM_LANES / V::LANES);
    let mv = V::splat(m);
    let mut buf = [0.0f32; SUM_LANES];
    let whole = p.len() - p.len() % SUM_LANES;
    for (pb, qb) in p[..whole].chunks(SUM_BLOCK).zip(q[..whole].chunks(SUM_BLOCK)) {
        let (mut a1, mut a2) = ([V::ZERO; 2], [V::ZERO; 2]);
        for (pg, qg) in pb.chunks_exact(SUM_LANES).zip(qb.chunks_exact(SUM_LANES)) {
            for k in 0..per_group {
                let pv = V::load(&pg[k * n..]);
                let dv = V::load(&qg[k * n..]) - mv;
                a1[k] = a1[k] + pv;
                a2[k] = pv.mul_add(dv, a2[k]);
            }
        }
        for (acc, t) in [(a1, &mut *t1), (a2, &mut *t2)] {
            for k in 0..per_group {
                acc[k].store(&mut buf[k * n..]);
            }
            for &v in &buf {
                *t += v as f64;
            }
        }
    }
    for (&pv, &qv) in p[whole..].iter().zip(&q[whole..]) {
        *t1 += pv as f64;
        *t2 += pv as f64 * (qv - m) as f64;
    }
}

/// `y = x·scale[ch] + shift[ch]` (one fused multiply-add), then `max(·, 0)` (NaN kept, as
/// [`relu_forward`](crate::relu_forward)) when `relu`, for every value of channel `ch`.
/// `x` and `y` are `[batch, c, hw]`, `scale` and `shift` `[c]`.
///
/// Training passes `scale = γ·invstd`, `shift = β − mean·scale` from the batch statistics,
/// inference the same from the running ones (module docs).
pub fn batch_norm_apply(
    s: &BatchNormShape,
    x: &[f32],
    scale: &[f32],
    shift: &[f32],
    relu: bool,
    y: &mut [f32],
) {
    batch_norm_apply_lanes(Lanes::BUILD, s, x, scale, shift, relu, y);
}

/// [`batch_norm_apply`] at vector width `lanes`; the result does not depend on it.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_apply_lanes(
    lanes: Lanes,
    s: &BatchNormShape,
    x: &[f32],
    scale: &[f32],
    shift: &[f32],
    relu: bool,
    y: &mut [f32],
) {
    let what = "batch_norm_apply";
    check(
        what,
        s,
        &[("x", x.len()), ("y", y.len())],
        &[("scale", scale.len()), ("shift", shift.len())],
    );
    if s.is_empty() {
        return;
    }
    let planes = channels_per_task(s.hw);
    y.par_chunks_mut(planes * s.hw)
        .zip(x.par_chunks(planes * s.hw))
        .enumerate()
        .for_each(|(t, (yc, xc))| {
            for (k, (yp, xp)) in yc.chunks_exact_mut(s.hw).zip(xc.chunks_exact(s.hw)).enumerate() {
                let ch = (t * planes + k) % s.c;
                let (a, b) = (scale[ch], shift[ch]);
                let mut i = 0;
                if lanes == Lanes::Sixteen {
                    i = vectors::<f32x16>(i, xp.len(), |i| affine::<f32x16>(xp, a, b, relu, yp, i));
                }
                i = vectors::<f32x8>(i, xp.len(), |i| affine::<f32x8>(xp, a, b, relu, yp, i));
                for (yv, &xv) in yp[i..].iter_mut().zip(&xp[i..]) {
                    let v = fma(xv, a, b);
                    *yv = if relu { relu1(v) } else { v };
                }
            }
        });
}

/// One vector of [`batch_norm_apply`] at position `i`.
#[inline(always)]
fn affine<V: Vector>(x: &[f32], a: f32, b: f32, relu: bool, y: &mut [f32], i: usize) {
    let v = V::load(&x[i..]).mul_add(V::splat(a), V::splat(b));
    (if relu { v.relu() } else { v }).store(&mut y[i..]);
}

/// [`batch_norm_apply`] in place: `x = x·scale[ch] + shift[ch]`, then ReLU when `relu`.
pub fn batch_norm_apply_inplace(s: &BatchNormShape, x: &mut [f32], scale: &[f32], shift: &[f32], relu: bool) {
    let what = "batch_norm_apply_inplace";
    check(
        what,
        s,
        &[("x", x.len())],
        &[("scale", scale.len()), ("shift", shift.len())],
    );
    if s.is_empty() {
        return;
    }
    let planes = channels_per_task(s.hw);
    x.par_chunks_mut(planes * s.hw).enumerate().for_each(|(t, xc)| {
        for (k, xp) in xc.chunks_exact_mut(s.hw).enumerate() {
            let ch = (t * planes + k) % s.c;
            let (a, b) = (scale[ch], shift[ch]);
            let (av, bv) = (f32x8::splat(a), f32x8::splat(b));
            let mut chunks = xp.chunks_exact_mut(8);
            for v in &mut chunks {
                let r = f32x8::load(v).mul_add(av, bv);
                (if relu { r.relu() } else { r }).store(v);
            }
            for v in chunks.into_remainder() {
                let r = fma(*v, a, b);
                *v = if relu { relu1(r) } else { r };
            }
        }
    });
}

/// Backward, first half, over this call's samples.
///
/// When `relu` (the forward fused a ReLU), first `dy[i] = 0` where `y[i] <= 0` (in place;
/// `y` is [`batch_norm_apply`]'s output; unused, and may be empty, when `!relu`). Then per
/// channel, in `f64` and the order of the module docs: `sums[ch] = Σ dy` and
/// `sums[c + ch] = Σ dy·x̂`, `x̂ = (x − mean[ch])·invstd[ch]`, computed as
/// `invstd[ch] · Σ dy·(x − mean[ch])` (the lanes add `dy·(x − mean)` with `x − mean`
/// rounded to `f32`, and the total is multiplied by `invstd` once, in `f64`).
/// Overwrites `sums` (`2c` values). Summed over the whole batch these are `dβ` and `dγ`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward_sums(
    s: &BatchNormShape,
    x: &[f32],
    y: &[f32],
    relu: bool,
    mean: &[f32],
    invstd: &[f32],
    dy: &mut [f32],
    sums: &mut [f64],
) {
    batch_norm_backward_sums_lanes(Lanes::BUILD, s, x, y, relu, mean, invstd, dy, sums);
}

/// [`batch_norm_backward_sums`] at vector width `lanes`; the result does not depend on it.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward_sums_lanes(
    lanes: Lanes,
    s: &BatchNormShape,
    x: &[f32],
    y: &[f32],
    relu: bool,
    mean: &[f32],
    invstd: &[f32],
    dy: &mut [f32],
    sums: &mut [f64],
) {
    let what = "batch_norm_backward_sums";
    check(
        what,
        s,
        &[("x", x.len()), ("dy", dy.len())],
        &[("mean", mean.len()), ("invstd", invstd.len())],
    );
    if relu {
        check_len(what, "y", y.len(), s.len());
    } else if !y.is_empty() {
        check_len(what, "y (unused without relu, may be empty)", y.len(), s.len());
    }
    check_len(what, "sums", sums.len(), 2 * s.c);
    sums.fill(0.0);
    let (s1, s2) = sums.split_at_mut(s.c);
    if s.is_empty() {
        return;
    }
    let (c, hw) = (s.c, s.hw);
    let group = sum_group(s);
    let dy = SharedMut::new(dy);
    s1.par_chunks_mut(group)
        .zip(s2.par_chunks_mut(group))
        .enumerate()
        .for_each(|(g, (t1, t2))| {
            for n in 0..s.batch {
                for (k, (t1, t2)) in t1.iter_mut().zip(t2.iter_mut()).enumerate() {
                    let (ch, start) = (g * group + k, (n * c + g * group + k) * hw);
                    // SAFETY: plane `(n, ch)` is `start .. start + hw`; task `g` takes only
                    // the planes of its channels `g · group ..`, each once, so no two
                    // tasks' planes overlap.
                    let dp = unsafe { dy.range(start, hw) };
                    if relu {
                        mask_plane(lanes, dp, &y[start..start + hw]);
                    }
                    let xp = &x[start..start + hw];
                    match lanes {
                        Lanes::Eight => plane_sums::<f32x8>(dp, xp, mean[ch], t1, t2),
                        Lanes::Sixteen => plane_sums::<f32x16>(dp, xp, mean[ch], t1, t2),
                    }
                }
            }
        });
    for (t2, &is) in s2.iter_mut().zip(invstd) {
        *t2 *= is as f64;
    }
}

/// `g = 0` where `y <= 0` (or NaN), in place.
fn mask_plane(lanes: Lanes, g: &mut [f32], y: &[f32]) {
    fn span<V: Vector>(start: usize, g: &mut [f32], y: &[f32]) -> usize {
        vectors::<V>(start, g.len(), |i| {
            V::load(&g[i..])
                .where_positive(V::load(&y[i..]))
                .store(&mut g[i..])
        })
    }
    let mut i = 0;
    if lanes == Lanes::Sixteen {
        i = span::<f32x16>(i, g, y);
    }
    i = span::<f32x8>(i, g, y);
    for (gv, &yv) in g[i..].iter_mut().zip(&y[i..]) {
        *gv = if yv > 0.0 { *gv } else { 0.0 };
    }
}

/// Backward, second half (training mode, batch statistics):
/// `dx = γ[ch]·invstd[ch]·(dy − mean_dy[ch] − x̂·mean_dy_xhat[ch])`,
/// `x̂ = (x − mean[ch])·invstd[ch]`, where `mean_dy = Σdy / N` and `mean_dy_xhat = Σdy·x̂ / N`
/// over the whole batch (`N` its values per channel; the caller computes them from
/// [`batch_norm_backward_sums`]) and `dy` is the one [`batch_norm_backward_sums`] left
/// (masked by a fused ReLU). Overwrites `dx`.
///
/// Computed as `dx = dy·a + ((x − mean)·b + d)` (two fused multiply-adds) with per-channel
/// `a = γ·invstd` (rounded to `f32`), `b = −a·invstd·mean_dy_xhat`, `d = −a·mean_dy` (in
/// `f64` from the rounded `a`, then rounded).
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward_input(
    s: &BatchNormShape,
    x: &[f32],
    dy: &[f32],
    mean: &[f32],
    invstd: &[f32],
    gamma: &[f32],
    mean_dy: &[f32],
    mean_dy_xhat: &[f32],
    dx: &mut [f32],
) {
    batch_norm_backward_input_lanes(
        Lanes::BUILD,
        s,
        x,
        dy,
        mean,
        invstd,
        gamma,
        mean_dy,
        mean_dy_xhat,
        dx,
    );
}

/// [`batch_norm_backward_input`] at vector width `lanes`; the result does not depend on it.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward_input_lanes(
    lanes: Lanes,
    s: &BatchNormShape,
    x: &[f32],
    dy: &[f32],
    mean: &[f32],
    invstd: &[f32],
    gamma: &[f32],
    mean_dy: &[f32],
    mean_dy_xhat: &[f32],
    dx: &mut [f32],
) {
    let what = "batch_norm_backward_input";
    check(
        what,
        s,
        &[("x", x.len()), ("dy", dy.len()), ("dx", dx.len())],
        &[
            ("mean", mean.len()),
            ("invstd", invstd.len()),
            ("gamma", gamma.len()),
            ("mean_dy", mean_dy.len()),
            ("mean_dy_xhat", mean_dy_xhat.len()),
        ],
    );
    if s.is_empty() {
        return;
    }
    let planes = channels_per_task(s.hw);
    dx.par_chunks_mut(planes * s.hw)
        .zip(x.par_chunks(planes * s.hw).zip(dy.par_chunks(planes * s.hw)))
        .enumerate()
        .for_each(|(t, (dxc, (xc, dyc)))| {
            let planes_iter = dxc
                .chunks_exact_mut(s.hw)
                .zip(xc.chunks_exact(s.hw).zip(dyc.chunks_exact(s.hw)));
            for (k, (dxp, (xp, dyp))) in planes_iter.enumerate() {
                let ch = (t * planes + k) % s.c;
                let a = (gamma[ch] as f64 * invstd[ch] as f64) as f32 as f64;
                let k = BackCoef {
                    a: a as f32,
                    b: (-a * invstd[ch] as f64 * mean_dy_xhat[ch] as f64) as f32,
                    d: (-a * mean_dy[ch] as f64) as f32,
                    m: mean[ch],
                };
                let mut i = 0;
                if lanes == Lanes::Sixteen {
                    i = vectors::<f32x16>(i, xp.len(), |i| k.apply::<f32x16>(xp, dyp, dxp, i));
                }
                i = vectors::<f32x8>(i, xp.len(), |i| k.apply::<f32x8>(xp, dyp, dxp, i));
                for ((g, &xv), &dv) in dxp[i..].iter_mut().zip(&xp[i..]).zip(&dyp[i..]) {
                    *g = fma(dv, k.a, fma(xv - k.m, k.b, k.d));
                }
            }
        });
}

/// One channel's constants of [`batch_norm_backward_input`].
#[derive(Clone, Copy)]
struct BackCoef {
    a: f32,
    b: f32,
    d: f32,
    m: f32,
}

impl BackCoef {
    /// One vector of `dx` at position `i`.
    #[inline(always)]
    fn apply<V: Vector>(self, x: &[f32], dy: &[f32], dx: &mut [f32], i: usize) {
        let xc = V::load(&x[i..]) - V::splat(self.m);
        let inner = xc.mul_add(V::splat(self.b), V::splat(self.d));
        V::load(&dy[i..])
            .mul_add(V::splat(self.a), inner)
            .store(&mut dx[i..]);
    }
}
