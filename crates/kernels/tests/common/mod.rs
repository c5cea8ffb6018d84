//! Shared helpers for the `petal-kernels` integration tests: seeded random data, the
//! relative-error metric with its tolerance rule, finite differences and their error
//! metrics, the thread-count check, and the shape lists the tests sweep. The f64
//! straight-loop twins of every kernel are `petal_kernels::reference`, re-exported as
//! [`reference`].
//!
//! Every test file pulls this in with `mod common;` and uses only part of it.
#![allow(dead_code)]

pub mod norm;
pub mod reference;

use petal_kernels::conv::WeightGradPath;
use petal_kernels::{Conv2dShape, Pool2dShape};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A reproducible generator.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// `n` values uniform in `[-1, 1)`.
pub fn rand_vec(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// `n` values from the small set {-2, -1, 0, 1, 2}: many exact ties (pool tie-breaking).
pub fn rand_ties(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-2i32..=2) as f32).collect()
}

/// Widens to f64 (exact: every f32 is an f64).
pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// The test metric: `max_i |a_i - b_i| / max(max_i |b_i|, 1e-6)`, `a` the f32 kernel's
/// output and `b` the f64 reference. A NaN anywhere in `a` (and not at the same place in
/// `b`) gives infinity, so it can never pass.
pub fn rel_err(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "rel_err: lengths differ");
    let mut num = 0.0f64;
    let mut den = 1e-6f64;
    for (&x, &y) in a.iter().zip(b) {
        if x.is_nan() != y.is_nan() {
            return f64::INFINITY;
        }
        if y.is_nan() {
            continue;
        }
        num = num.max((x as f64 - y).abs());
        den = den.max(y.abs());
    }
    num / den
}

/// Asserts `rel_err(got, want) <= tol`, naming the worst element when it is not.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    let e = rel_err(got, want);
    if e <= tol {
        return;
    }
    let (i, _) = got
        .iter()
        .zip(want)
        .map(|(&a, &b)| {
            if a.is_nan() != b.is_nan() {
                f64::INFINITY
            } else {
                (a as f64 - b).abs()
            }
        })
        .enumerate()
        .fold((0, -1.0f64), |acc, (i, d)| if d > acc.1 { (i, d) } else { acc });
    panic!(
        "{what}: relative error {e:.3e} > {tol:.1e}; worst at index {i} of {}: got {}, want {}",
        got.len(),
        got[i],
        want[i]
    );
}

/// Tolerance for an f32 kernel output whose entries are sums of `k` products, against the
/// exact f64 value, in the [`rel_err`] metric.
///
/// Why: the inputs are exact in f64, so the whole difference is the kernel's f32 rounding.
/// f32's unit roundoff is u = 2^-24 ≈ 6e-8. Summing `k` terms of size ~1 with random signs
/// (SIMD lanes, GEMM blocks, or a plain loop) accumulates rounding errors of size
/// u·|partial sum| ≈ u·sqrt(k) that add up like a random walk, ~u·k in the worst of many
/// outputs, while the metric divides by the largest output, ~sqrt(k). So the error is of
/// order u·sqrt(k): 1e-5 (≈170u) leaves a wide margin up to k = 256 and we scale with
/// sqrt(k / 256) beyond, the same margin for long reductions (dense with 4608 inputs:
/// 4.2e-5). Observed errors are 10-100x below these bounds; a wrong index or a dropped
/// term gives errors of order 1.
pub fn reduction_tol(k: usize) -> f64 {
    1e-5 * (k as f64 / 256.0).sqrt().max(1.0)
}

/// Tolerance for element-wise kernels (a few f32 operations per value: softmax, SGD):
/// a handful of roundings of u ≈ 6e-8 each, relative to the largest value; 1e-6 is ~17u.
pub const ELEMENTWISE_TOL: f64 = 1e-6;

/// `Σ r_i · y_i` in f64: the scalar loss whose gradient with respect to `y` is `r`.
pub fn weighted_sum(r: &[f32], y: &[f32]) -> f64 {
    assert_eq!(r.len(), y.len());
    r.iter().zip(y).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// `Σ r_i · y_i` in f64 for a reference output.
pub fn weighted_sum64(r: &[f64], y: &[f64]) -> f64 {
    assert_eq!(r.len(), y.len());
    r.iter().zip(y).map(|(a, b)| a * b).sum()
}

/// Up to `count` distinct indices in `0..len` (all of them when `len <= count`).
pub fn sample_indices(rng: &mut ChaCha8Rng, len: usize, count: usize) -> Vec<usize> {
    if len <= count {
        return (0..len).collect();
    }
    let mut out: Vec<usize> = Vec::with_capacity(count);
    while out.len() < count {
        let i = rng.random_range(0..len);
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// Central difference `(f(x + eps e_i) - f(x - eps e_i)) / 2 eps` in f64.
pub fn central_diff64(f: impl Fn(&[f64]) -> f64, x: &[f64], i: usize, eps: f64) -> f64 {
    let mut xp = x.to_vec();
    xp[i] += eps;
    let mut xm = x.to_vec();
    xm[i] -= eps;
    (f(&xp) - f(&xm)) / (2.0 * eps)
}

/// Central difference on an f32 input: the perturbed values are rounded to f32 and the
/// difference is divided by the step actually taken, `x+ - x-`, so rounding of the input
/// itself adds no error.
pub fn central_diff32(f: impl Fn(&[f32]) -> f64, x: &[f32], i: usize, eps: f32) -> f64 {
    let mut xp = x.to_vec();
    xp[i] += eps;
    let mut xm = x.to_vec();
    xm[i] -= eps;
    let step = xp[i] as f64 - xm[i] as f64;
    (f(&xp) - f(&xm)) / step
}

/// Step of the finite differences of the fast f32 forward kernels.
///
/// The scalar loss is `L = Σ r ⊙ f(x)` with a fixed random `r` (so `dL/dy = r`),
/// accumulated in f64; inputs have scale 1, ε = 1e-2, and ~20 sampled indices per tensor.
/// Conv, dense, pool and ReLU are piecewise linear, so the only error is the f32 rounding
/// of the few outputs an input touches (outputs it does not touch are bit-identical in
/// both evaluations and cancel): ~(touched outputs)·u·|y| / ε ≈ 1e-4 of the gradient scale;
/// softmax cross-entropy adds an O(ε²) truncation.
pub const FD_EPS: f32 = 1e-2;

/// Tolerance of [`fd_err`] for the fast kernels: 1e-2 of the gradient's largest magnitude
/// still catches any wrong index, sign, scale or missing term (errors of order 1).
pub const FD_TOL: f64 = 1e-2;

/// Max over sampled indices of |finite difference - analytic|, over the analytic
/// gradient's largest magnitude.
pub fn fd_err(analytic: &[f32], fd: &[(usize, f64)]) -> f64 {
    let scale = analytic.iter().fold(1e-12f64, |m, &v| m.max(v.abs() as f64));
    fd.iter()
        .map(|&(i, d)| (analytic[i] as f64 - d).abs())
        .fold(0.0, f64::max)
        / scale
}

/// [`fd_err`] for an f64 reference gradient: the relative error between an analytic
/// gradient and finite differences at sampled indices, normalised by the gradient's
/// largest magnitude over the whole tensor. The reference kernels are piecewise linear
/// (conv, dense, pooling, ReLU), so with f64 differences this is ~1e-13 and tests ask
/// for 1e-8; softmax cross-entropy's O(ε²) truncation with ε = 1e-5 is ~1e-10 (1e-6 asked).
pub fn fd_rel_err(analytic: &[f64], fd: &[(usize, f64)]) -> f64 {
    let scale = analytic.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
    fd.iter()
        .map(|&(i, d)| (analytic[i] - d).abs())
        .fold(0.0, f64::max)
        / scale
}

/// The rayon pool sizes [`assert_thread_independent`] compares.
pub const THREADS: [usize; 4] = [1, 2, 3, 7];

/// Runs `f` in a rayon pool of each size in [`THREADS`] and asserts every returned tensor
/// is bit-identical (`f32::to_bits`) to the 1-thread run: work is split into fixed chunks
/// and reductions over the batch are summed in a fixed order (lib docs).
pub fn assert_thread_independent(what: &str, f: impl Fn() -> Vec<Vec<f32>> + Sync) {
    let mut first: Option<Vec<Vec<u32>>> = None;
    for n in THREADS {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap();
        let out = pool.install(&f);
        let bits: Vec<Vec<u32>> = out
            .iter()
            .map(|t| t.iter().map(|v| v.to_bits()).collect())
            .collect();
        assert!(bits.iter().all(|t| !t.is_empty()));
        match &first {
            None => first = Some(bits),
            Some(want) => {
                for (k, (got, want)) in bits.iter().zip(want).enumerate() {
                    assert!(
                        got == want,
                        "{what}: output {k} differs between 1 and {n} threads"
                    );
                }
            }
        }
    }
}

/// Shorthand for a conv shape: `(batch, in_c, h, w, out_c, kh, kw, stride, pad)`.
#[allow(clippy::too_many_arguments)]
pub fn conv(
    batch: usize,
    in_c: usize,
    h: usize,
    w: usize,
    out_c: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    pad: usize,
) -> Conv2dShape {
    Conv2dShape {
        batch,
        in_c,
        h,
        w,
        out_c,
        kh,
        kw,
        stride,
        pad,
    }
}

/// Shorthand for a pool shape: `(batch, c, h, w, k, stride)`.
pub fn pool(batch: usize, c: usize, h: usize, w: usize, k: usize, stride: usize) -> Pool2dShape {
    Pool2dShape {
        batch,
        c,
        h,
        w,
        k,
        stride,
    }
}

/// Hand-picked conv shapes covering every branch of the kernels: the direct paths
/// (`direct_weight_grad`: 3x3 stride 1 at any `in_c`, other stride-1 kernels with `in_c <= 3`)
/// with pad 0, 1, 2, non-square and 1x1 kernels, kernels
/// wider than the unpadded input, outputs made only of padding; the im2col + GEMM path
/// with `in_c >= 4`, with `in_c <= 3` but stride 2 or 3, with padding; batches of 1 and
/// not a multiple of `BATCH_CHUNK` (4); widths that are not multiples of 8 (the SIMD width).
pub fn conv_fixed_shapes() -> Vec<Conv2dShape> {
    vec![
        // Direct path.
        conv(1, 1, 5, 5, 1, 3, 3, 1, 0),
        conv(1, 1, 50, 50, 8, 3, 3, 1, 0), // the seed network's first layer, batch 1
        conv(5, 3, 17, 37, 4, 3, 3, 1, 1),
        conv(3, 2, 9, 23, 3, 5, 5, 1, 2),
        conv(2, 1, 7, 13, 2, 2, 5, 1, 1),  // non-square, padded
        conv(6, 3, 12, 19, 2, 4, 1, 1, 2), // non-square, padded, kh > kw
        conv(4, 3, 6, 6, 2, 1, 1, 1, 0),   // 1x1
        conv(2, 2, 4, 3, 3, 1, 1, 1, 2),   // 1x1 with pad 2: a border of bias-only outputs
        conv(3, 1, 2, 2, 2, 5, 5, 1, 2),   // kernel larger than the unpadded input
        conv(6, 1, 1, 37, 2, 1, 3, 1, 1),  // h = 1
        conv(1, 3, 37, 1, 2, 3, 1, 1, 0),  // w = 1
        conv(7, 2, 8, 16, 3, 3, 3, 1, 1),  // widths exactly 8 and 16
        // Direct 3x3 weight gradient with more input channels.
        conv(5, 4, 11, 13, 6, 3, 3, 1, 1),
        conv(9, 16, 8, 8, 16, 3, 3, 1, 1),
        // im2col + GEMM path.
        conv(13, 8, 9, 10, 5, 3, 2, 1, 0),
        conv(2, 5, 16, 16, 7, 1, 1, 1, 0), // 1x1
        conv(3, 1, 17, 19, 4, 3, 3, 2, 0), // in_c 1 but stride 2
        conv(2, 3, 20, 21, 3, 5, 3, 3, 2), // stride 3, pad 2, non-square
        conv(4, 6, 15, 14, 8, 3, 3, 2, 1),
        conv(1, 4, 2, 3, 2, 4, 5, 3, 2), // kernel larger than the unpadded input
        conv(7, 2, 9, 9, 3, 1, 1, 3, 2), // 1x1, stride 3, pad 2
        conv(5, 4, 1, 37, 3, 1, 4, 2, 0),
    ]
}

/// `count` random valid conv shapes (about half on each path), sizes kept small so the
/// f64 reference stays cheap.
pub fn conv_random_shapes(seed: u64, count: usize) -> Vec<Conv2dShape> {
    let mut r = rng(seed);
    let mut out = Vec::new();
    while out.len() < count {
        let direct = out.len() % 2 == 0;
        let in_c = if direct {
            r.random_range(1..=3)
        } else {
            r.random_range(1..=7)
        };
        let stride = if direct { 1 } else { r.random_range(1..=3) };
        let s = conv(
            r.random_range(1..=9),
            in_c,
            r.random_range(1..=37),
            r.random_range(1..=37),
            r.random_range(1..=9),
            r.random_range(1..=5),
            r.random_range(1..=5),
            stride,
            r.random_range(0..=2),
        );
        if direct != direct_weight_grad(&s) || s.validate().is_err() {
            continue;
        }
        let work = s.output_len() * s.col_rows();
        if work > 400_000 {
            continue;
        }
        out.push(s);
    }
    out
}

/// Hand-picked pool shapes: 2x2/2 (the unrolled path) with even and odd sizes,
/// overlapping windows (k 3 stride 2, k 3 stride 1, k 2 stride 1), `(h - k)` not a
/// multiple of the stride, stride larger than the window (skipped inputs), a window the
/// size of the input, k = 1, and plane counts below, at and above the 8 planes per task.
pub fn pool_fixed_shapes() -> Vec<Pool2dShape> {
    vec![
        pool(1, 1, 4, 4, 2, 2),
        pool(2, 3, 7, 9, 2, 2),
        pool(3, 5, 24, 24, 2, 2),
        pool(2, 3, 9, 11, 3, 2),
        pool(1, 4, 8, 7, 3, 1),
        pool(2, 2, 10, 10, 3, 3),
        pool(1, 2, 11, 13, 4, 3),
        pool(3, 3, 5, 5, 5, 1),
        pool(2, 2, 6, 6, 1, 1),
        pool(1, 1, 1, 1, 1, 1),
        pool(5, 2, 37, 29, 2, 1),
        pool(13, 1, 4, 6, 2, 2),
        pool(9, 1, 5, 5, 2, 3),
        pool(1, 8, 48, 48, 2, 2), // the seed network's pooling, one image
        pool(2, 4, 3, 17, 3, 2),
    ]
}

/// `count` random valid pool shapes.
pub fn pool_random_shapes(seed: u64, count: usize) -> Vec<Pool2dShape> {
    let mut r = rng(seed);
    let mut out = Vec::new();
    while out.len() < count {
        let k = r.random_range(1..=4);
        let s = pool(
            r.random_range(1..=6),
            r.random_range(1..=10),
            r.random_range(k..=37),
            r.random_range(k..=37),
            k,
            r.random_range(1..=3),
        );
        if s.validate().is_ok() {
            out.push(s);
        }
    }
    out
}

/// Whether the weight gradient of `s` takes a direct path (any but im2col + GEMM).
pub fn direct_weight_grad(s: &Conv2dShape) -> bool {
    s.weight_grad_path() != WeightGradPath::Gemm
}
