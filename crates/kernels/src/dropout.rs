//! Inverted dropout with a counter-based mask: nothing is stored between forward and
//! backward, and the mask of a value depends only on `(seed, global index, p)`, never on
//! how a batch is split into chunks or threads.
//!
//! Mask: `h = mix(mix(seed) + (index + 1)·φ)` with `mix` splitmix64's finaliser and `φ`
//! its increment `0x9E3779B97F4A7C15` (all wrapping `u64`), `u = h >> 40` (the top 24 bits,
//! uniform in `0 .. 2^24`), kept iff `u >= p·2^24`, so a value is dropped with probability
//! `p` (to within 2^-24).
//!
//! Forward `y = x / (1 − p)` where kept, else 0; backward `dx = dy / (1 − p)` where kept,
//! else 0 (the same mask, recomputed). `p` is in `[0, 1)`; `p = 0` keeps everything and
//! copies.

use rayon::prelude::*;

/// splitmix64's increment, the golden ratio in 64-bit fixed point.
const PHI: u64 = 0x9E37_79B9_7F4A_7C15;

/// Values per rayon task (the mask is per index, so the split changes nothing).
const BLOCK: usize = 1 << 14;

/// splitmix64's finaliser: a bijection of `u64` with good avalanche.
#[inline(always)]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The 24-bit uniform value `u` of element `index` under `seed` (module docs).
#[inline(always)]
fn uniform24(key: u64, index: u64) -> u32 {
    (mix(key.wrapping_add(index.wrapping_add(1).wrapping_mul(PHI))) >> 40) as u32
}

/// `p · 2^24` (exact in `f32`: a power-of-two scaling).
#[inline(always)]
fn threshold(p: f32) -> f32 {
    p * 16_777_216.0
}

/// Whether element `index` is kept by a dropout of probability `p` under `seed`: the
/// module docs' counter-based hash gives a uniform 24-bit `u`, kept iff `u >= p·2^24`.
/// A pure function: the same `(seed, index, p)` gives the same answer on any machine and
/// thread count.
pub fn dropout_keep(seed: u64, index: u64, p: f32) -> bool {
    uniform24(mix(seed), index) as f32 >= threshold(p)
}

#[track_caller]
fn check(what: &str, p: f32, a: (&str, usize), b: (&str, usize)) {
    assert!((0.0..1.0).contains(&p), "{what}: p is {p}, it must be in [0, 1)");
    assert!(
        a.1 == b.1,
        "{what}: {} has {} values, {} has {}",
        a.0,
        a.1,
        b.0,
        b.1
    );
}

/// `out[i] = src[i] · (1 / (1 − p))` where element `first + i` is kept, else 0.
fn masked_scale(seed: u64, p: f32, first: u64, src: &[f32], out: &mut [f32]) {
    if p == 0.0 {
        out.copy_from_slice(src);
        return;
    }
    let (key, t) = (mix(seed), threshold(p));
    let scale = 1.0 / (1.0 - p);
    out.par_chunks_mut(BLOCK)
        .zip(src.par_chunks(BLOCK))
        .enumerate()
        .for_each(|(b, (o, s))| {
            let base = first.wrapping_add((b * BLOCK) as u64);
            for (i, (ov, &sv)) in o.iter_mut().zip(s).enumerate() {
                let kept = uniform24(key, base.wrapping_add(i as u64)) as f32 >= t;
                *ov = if kept { sv * scale } else { 0.0 };
            }
        });
}

/// Dropout forward: `y[i] = x[i] / (1 − p)` (as `x · (1 / (1 − p))`, the scale rounded to
/// `f32` once, as PyTorch) if [`dropout_keep`]`(seed, first + i, p)`, else 0, for `i` in
/// `0 .. x.len()`. `first` is the global index of `x[0]` (the caller passes
/// `sample_index · values_per_sample`, so masks do not depend on how a batch is split into
/// chunks). `p` in `[0, 1)`; `p = 0` copies.
pub fn dropout_forward(seed: u64, p: f32, first: u64, x: &[f32], y: &mut [f32]) {
    check("dropout_forward", p, ("x", x.len()), ("y", y.len()));
    masked_scale(seed, p, first, x, y);
}

/// Dropout backward: `dx[i] = dy[i] / (1 − p)` where kept, else 0 — the forward's mask,
/// recomputed from `(seed, p, first)`. Overwrites `dx`.
pub fn dropout_backward(seed: u64, p: f32, first: u64, dy: &[f32], dx: &mut [f32]) {
    check("dropout_backward", p, ("dy", dy.len()), ("dx", dx.len()));
    masked_scale(seed, p, first, dy, dx);
}
