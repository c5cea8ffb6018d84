//! Helpers of the batch-norm tests (`tests/batch_norm.rs`, `tests/batch_norm_training.rs`):
//! the shapes they sweep, activations, per-value error bounds, and the training step as a
//! layer composes the kernels over chunks of a batch.

use super::*;
use petal_kernels::norm::{
    batch_norm_apply_lanes, batch_norm_backward_input_lanes, batch_norm_backward_sums_lanes,
    batch_norm_sums_lanes,
};
use petal_kernels::simd::Lanes;
use petal_kernels::BatchNormShape;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

pub const EPS: f64 = 1e-5;

/// Channels 1, 3, 16, 33 times planes 1, 7, 64, 81, 300, 2500, batches cycling 1..=5.
pub fn shapes() -> Vec<BatchNormShape> {
    let mut out = Vec::new();
    for (i, (c, hw)) in [1, 3, 16, 33]
        .into_iter()
        .flat_map(|c| [1, 7, 64, 81, 300, 2500].map(|hw| (c, hw)))
        .enumerate()
    {
        let batch = if c * hw > 40_000 { 1 + i % 2 } else { 1 + i % 5 };
        out.push(BatchNormShape { batch, c, hw });
    }
    out
}

/// Activations with a nonzero mean per channel: `U(-1, 1) · 1.5 + 0.4`.
pub fn activations(r: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    rand_vec(r, n).into_iter().map(|v| v * 1.5 + 0.4).collect()
}

/// Index of every value of channel `ch`.
pub fn channel(s: &BatchNormShape, ch: usize) -> impl Iterator<Item = usize> + '_ {
    (0..s.batch).flat_map(move |n| (0..s.hw).map(move |i| (n * s.c + ch) * s.hw + i))
}

/// Asserts `|got − want| <= tol · scale` for one sum.
#[track_caller]
pub fn assert_sum(what: &str, got: f64, want: f64, scale: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol * scale.max(1e-30),
        "{what}: got {got:e}, want {want:e} (error {:e} of Σ|terms| {scale:e}, tol {tol:e})",
        (got - want).abs() / scale.max(1e-30)
    );
}

/// Asserts `|got[i] − want[i]| <= tol · bound(i)` for every `i`, `bound(i)` the size of
/// the terms that make up value `i` (an f32 sum of terms is only accurate relative to
/// them: `x·scale + shift` cancels where `x` is near the mean).
#[track_caller]
pub fn assert_terms_close(what: &str, got: &[f32], want: &[f64], bound: impl Fn(usize) -> f64, tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for i in 0..got.len() {
        let err = (got[i] as f64 - want[i]).abs();
        assert!(
            err <= tol * bound(i),
            "{what}: at {i} got {}, want {} (error {err:e} > {tol:e} · terms {:e})",
            got[i],
            want[i],
            bound(i)
        );
    }
}

/// Per-channel running statistics, gamma and beta.
pub struct Params {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
}

pub fn params(r: &mut ChaCha8Rng, c: usize) -> Params {
    let mut v = |lo: f32, hi: f32| (0..c).map(|_| r.random_range(lo..hi)).collect::<Vec<f32>>();
    Params {
        gamma: v(0.5, 1.5),
        beta: v(-0.5, 0.5),
        mean: v(-0.5, 0.5),
        var: v(0.2, 2.0),
    }
}

/// `scale = γ / sqrt(var + eps)`, `shift = β − mean · scale`, in f64 then rounded.
pub fn scale_shift(gamma: &[f32], beta: &[f32], mean: &[f64], var: &[f64]) -> (Vec<f32>, Vec<f32>) {
    let scale: Vec<f64> = (0..gamma.len())
        .map(|ch| gamma[ch] as f64 / (var[ch] + EPS).sqrt())
        .collect();
    let shift = (0..gamma.len()).map(|ch| (beta[ch] as f64 - mean[ch] * scale[ch]) as f32);
    (scale.iter().map(|&v| v as f32).collect(), shift.collect())
}

/// Everything one training step produces.
#[derive(Debug, PartialEq)]
pub struct Step {
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
    pub y: Vec<f32>,
    pub sums: Vec<f64>,
    pub mean: Vec<f32>,
    pub invstd: Vec<f32>,
    pub dy: Vec<f32>,
    pub dsums: Vec<f64>,
    pub dx: Vec<f32>,
}

/// The training step as a layer composes it, over chunks of `sizes` images (module docs of
/// `norm.rs`).
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    lanes: Lanes,
    s: &BatchNormShape,
    sizes: &[usize],
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    relu: bool,
    dy: &[f32],
) -> Step {
    assert_eq!(sizes.iter().sum::<usize>(), s.batch);
    let (c, img) = (s.c, s.c * s.hw);
    let chunks: Vec<(BatchNormShape, std::ops::Range<usize>)> = sizes
        .iter()
        .scan(0, |start, &b| {
            let range = *start * img..(*start + b) * img;
            *start += b;
            Some((BatchNormShape { batch: b, ..*s }, range))
        })
        .collect();
    let mut sums = vec![0.0; 2 * c];
    for (cs, range) in &chunks {
        let mut part = vec![f64::NAN; 2 * c];
        batch_norm_sums_lanes(lanes, cs, &x[range.clone()], &mut part);
        sums.iter_mut().zip(&part).for_each(|(t, p)| *t += p);
    }
    let n = s.count() as f64;
    let mean64: Vec<f64> = (0..c).map(|ch| sums[ch] / n).collect();
    let var64: Vec<f64> = (0..c)
        .map(|ch| sums[c + ch] / n - mean64[ch] * mean64[ch])
        .collect();
    let (scale, shift) = scale_shift(gamma, beta, &mean64, &var64);
    let mean: Vec<f32> = mean64.iter().map(|&v| v as f32).collect();
    let invstd: Vec<f32> = var64.iter().map(|&v| (1.0 / (v + EPS).sqrt()) as f32).collect();
    let mut y = vec![f32::NAN; s.len()];
    let mut g = dy.to_vec();
    let mut dsums = vec![0.0; 2 * c];
    for (cs, range) in &chunks {
        batch_norm_apply_lanes(
            lanes,
            cs,
            &x[range.clone()],
            &scale,
            &shift,
            relu,
            &mut y[range.clone()],
        );
        let mut part = vec![f64::NAN; 2 * c];
        let (xc, yc) = (&x[range.clone()], &y[range.clone()]);
        batch_norm_backward_sums_lanes(
            lanes,
            cs,
            xc,
            yc,
            relu,
            &mean,
            &invstd,
            &mut g[range.clone()],
            &mut part,
        );
        dsums.iter_mut().zip(&part).for_each(|(t, p)| *t += p);
    }
    let mean_dy: Vec<f32> = (0..c).map(|ch| (dsums[ch] / n) as f32).collect();
    let mean_dy_xhat: Vec<f32> = (0..c).map(|ch| (dsums[c + ch] / n) as f32).collect();
    let mut dx = vec![f32::NAN; s.len()];
    for (cs, range) in &chunks {
        let (xc, gc) = (&x[range.clone()], &g[range.clone()]);
        let dxc = &mut dx[range.clone()];
        batch_norm_backward_input_lanes(
            lanes,
            cs,
            xc,
            gc,
            &mean,
            &invstd,
            gamma,
            &mean_dy,
            &mean_dy_xhat,
            dxc,
        );
    }
    Step {
        scale,
        shift,
        y,
        sums,
        mean,
        invstd,
        dy: g,
        dsums,
        dx,
    }
}

/// Splits `batch` images into up to 3 chunks.
pub fn chunk_sizes(batch: usize) -> Vec<usize> {
    match batch {
        1 => vec![1],
        2 => vec![1, 1],
        b => vec![b / 3, b / 3, b - 2 * (b / 3)]
            .into_iter()
            .filter(|&v| v > 0)
            .collect(),
    }
}
