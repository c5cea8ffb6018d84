//! The fast backward kernels, two ways:
//!
//! 1. against their f64 reference twins on many seeded shapes (conv weight, bias and input
//!    gradients on both paths, col2im, pool scatter-add, dense, ReLU); `reference.rs`
//!    proves those twins are the derivatives of the reference forwards by finite
//!    differences, and `forward.rs` that the fast forwards match the reference forwards;
//! 2. reference-free: central finite differences of the fast f32 forward kernels
//!    themselves, against the fast backward kernels. The scalar loss is `L = Σ r ⊙ f(x)`
//!    with a fixed random `r` (so `dL/dy = r`), accumulated in f64; inputs have scale 1,
//!    ε = 1e-2, and ~20 sampled indices per tensor. Conv, dense, pool and ReLU are
//!    piecewise linear, so the only error is the f32 rounding of the few outputs an input
//!    touches (outputs it does not touch are bit-identical in both evaluations and cancel):
//!    ~(touched outputs)·u·|y| / ε ≈ 1e-4 of the gradient scale; softmax cross-entropy adds
//!    an O(ε²) truncation. The tolerance 1e-2 of the gradient's largest magnitude still
//!    catches any wrong index, sign, scale or missing term (errors of order 1).
//!
//! Gradient outputs and scratch are pre-filled with NaN, so "overwritten" is checked too.

mod common;

use common::reference as refk;
use common::*;
use petal_kernels::*;
use rand::Rng;

/// Pool backward: the gradient goes to each window's argmax and accumulates where
/// overlapping windows share a maximum. With the tie data, many windows share one.
#[test]
fn max_pool_backward_matches_reference() {
    let mut shapes = pool_fixed_shapes();
    shapes.extend(pool_random_shapes(78, 30));
    let mut r = rng(15_000);
    let mut accumulated = 0;
    for s in shapes {
        for ties in [false, true] {
            let x = if ties {
                rand_ties(&mut r, s.input_len())
            } else {
                rand_vec(&mut r, s.input_len())
            };
            let mut y = vec![0.0; s.output_len()];
            let mut am = vec![0u32; s.output_len()];
            max_pool2d_forward(&s, &x, &mut y, &mut am);
            let dy = rand_vec(&mut r, s.output_len());
            let mut dx = vec![f32::NAN; s.input_len()];
            max_pool2d_backward(&s, &dy, &am, &mut dx);
            let (_, want_am) = refk::max_pool2d_forward(&s, &f64s(&x));
            assert_eq!(am, want_am, "{s:?}: argmax");
            let want = refk::max_pool2d_backward(&s, &f64s(&dy), &want_am);
            let mut sorted = want_am.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() < want_am.len() {
                accumulated += 1;
            }
            assert_close(
                &format!("max_pool2d_backward {s:?} (ties: {ties})"),
                &dx,
                &want,
                reduction_tol(s.k * s.k),
            );
        }
    }
    assert!(accumulated >= 10, "too few cases where windows share a maximum");
}

#[test]
fn dense_backward_matches_reference() {
    let mut shapes: Vec<(usize, usize, usize)> = vec![
        (1, 1, 1),
        (1, 37, 5),
        (3, 8, 16),
        (5, 17, 9),
        (13, 33, 7),
        (16, 64, 10),
        (17, 5, 3),
        (33, 70, 20),
        (8, 4608, 5),
        (5, 1100, 6), // direct path: several column blocks, the last partial, a column tail
        (4, 1100, 9), // GEMM path at the same size
    ];

    let mut r = rng(16_000);
    for _ in 0..24 {
        shapes.push((
            r.random_range(1..=40),
            r.random_range(1..=80),
            r.random_range(1..=24),
        ));
    }
    for (batch, inputs, outputs) in shapes {
        let s = DenseShape {
            batch,
            inputs,
            outputs,
        };
        let x = rand_vec(&mut r, batch * inputs);
        let w = rand_vec(&mut r, outputs * inputs);
        let dy = rand_vec(&mut r, batch * outputs);
        let mut gw = vec![f32::NAN; w.len()];
        let mut gb = vec![f32::NAN; outputs];
        let mut gx = vec![f32::NAN; x.len()];
        dense_backward(&s, &x, &w, &dy, &mut gw, Some(&mut gb), Some(&mut gx));
        let (want_w, want_b, want_x) = refk::dense_backward(&s, &f64s(&x), &f64s(&w), &f64s(&dy));
        assert_close(
            &format!("dense grad_weight {s:?}"),
            &gw,
            &want_w,
            reduction_tol(batch),
        );
        assert_close(
            &format!("dense grad_bias {s:?}"),
            &gb,
            &want_b,
            reduction_tol(batch),
        );
        assert_close(
            &format!("dense grad_input {s:?}"),
            &gx,
            &want_x,
            reduction_tol(outputs),
        );
        // Skipping the optional gradients leaves grad_weight bit-identical.
        let mut gw2 = vec![f32::NAN; w.len()];
        dense_backward(&s, &x, &w, &dy, &mut gw2, None, None);
        assert!(
            gw.iter().zip(&gw2).all(|(a, b)| a.to_bits() == b.to_bits()),
            "{s:?}: grad_weight changed"
        );
    }
}

/// ReLU backward is a selection, exact: lengths with every SIMD tail and beyond one rayon
/// block, with `y` exactly 0 (kink, gradient 0) and NaN (gradient 0) sprinkled in.
#[test]
fn relu_backward_matches_reference_exactly() {
    let mut r = rng(17_000);
    for n in (0..=40).chain([16_385, 40_003]) {
        let mut y = rand_vec(&mut r, n);
        for _ in 0..n / 5 {
            let i = r.random_range(0..n);
            y[i] = [0.0, -0.0, f32::NAN][r.random_range(0..3)];
        }
        let dy = rand_vec(&mut r, n);
        let mut dx = vec![f32::NAN; n];
        relu_backward(&y, &dy, &mut dx);
        let want = refk::relu_backward(&f64s(&y), &f64s(&dy));
        assert!(
            dx.iter().zip(&want).all(|(&a, &b)| a as f64 == b),
            "relu_backward len {n} differs from the reference"
        );
        let mut g = dy.clone();
        relu_backward_inplace(&y, &mut g);
        assert!(
            g.iter().zip(&want).all(|(&a, &b)| a as f64 == b),
            "relu_backward_inplace len {n} differs from the reference"
        );
    }
}

// ------------------------------------------------- reference-free finite differences

/// Max over sampled indices of |finite difference - analytic|, over the analytic
/// gradient's largest magnitude.
fn fd_err(analytic: &[f32], fd: &[(usize, f64)]) -> f64 {
    let scale = analytic.iter().fold(1e-12f64, |m, &v| m.max(v.abs() as f64));
    fd.iter()
        .map(|&(i, d)| (analytic[i] as f64 - d).abs())
        .fold(0.0, f64::max)
        / scale
}

const FD_EPS: f32 = 1e-2;
const FD_TOL: f64 = 1e-2;

/// Proves dense_backward's three gradients are the derivatives of dense_forward.
#[test]
fn dense_gradients_match_finite_differences_of_fast_forward() {
    let mut r = rng(19_000);
    for (batch, inputs, outputs) in [(1, 9, 3), (5, 17, 6), (18, 40, 5)] {
        let s = DenseShape {
            batch,
            inputs,
            outputs,
        };
        let x = rand_vec(&mut r, batch * inputs);
        let w = rand_vec(&mut r, outputs * inputs);
        let b = rand_vec(&mut r, outputs);
        let dy = rand_vec(&mut r, batch * outputs);
        let mut gw = vec![0.0; w.len()];
        let mut gb = vec![0.0; outputs];
        let mut gx = vec![0.0; x.len()];
        dense_backward(&s, &x, &w, &dy, &mut gw, Some(&mut gb), Some(&mut gx));
        let loss = |x: &[f32], w: &[f32], b: &[f32]| {
            let mut y = vec![0.0; batch * outputs];
            dense_forward(&s, x, w, Some(b), &mut y);
            weighted_sum(&dy, &y)
        };
        let fd_x: Vec<_> = sample_indices(&mut r, x.len(), 20)
            .into_iter()
            .map(|i| (i, central_diff32(|xx| loss(xx, &w, &b), &x, i, FD_EPS)))
            .collect();
        let fd_w: Vec<_> = sample_indices(&mut r, w.len(), 20)
            .into_iter()
            .map(|i| (i, central_diff32(|ww| loss(&x, ww, &b), &w, i, FD_EPS)))
            .collect();
        let fd_b: Vec<_> = (0..outputs)
            .map(|i| (i, central_diff32(|bb| loss(&x, &w, bb), &b, i, FD_EPS)))
            .collect();
        for (name, g, fd) in [
            ("input", &gx, &fd_x),
            ("weight", &gw, &fd_w),
            ("bias", &gb, &fd_b),
        ] {
            let e = fd_err(g, fd);
            assert!(
                e < FD_TOL,
                "{s:?}: dense grad_{name} vs finite differences of dense_forward: {e:e}"
            );
        }
    }
}

/// Proves max_pool2d_backward is the derivative of max_pool2d_forward, including
/// accumulation where overlapping windows share a maximum; indices whose ±ε perturbation
/// changes any argmax (within ε of a tie) are skipped.
#[test]
fn pool_gradient_matches_finite_differences_of_fast_forward() {
    let mut r = rng(20_000);
    for s in [
        pool(2, 3, 8, 8, 2, 2),
        pool(1, 2, 9, 11, 3, 2),
        pool(2, 2, 7, 7, 3, 1),
        pool(1, 3, 10, 9, 4, 3),
    ] {
        let x = rand_vec(&mut r, s.input_len());
        let dy = rand_vec(&mut r, s.output_len());
        let fwd = |x: &[f32]| {
            let mut y = vec![0.0; s.output_len()];
            let mut am = vec![0u32; s.output_len()];
            max_pool2d_forward(&s, x, &mut y, &mut am);
            (y, am)
        };
        let (_, am) = fwd(&x);
        let mut gx = vec![0.0; x.len()];
        max_pool2d_backward(&s, &dy, &am, &mut gx);
        let mut fd = Vec::new();
        // Sample among window maxima and non-maxima alike.
        let mut idx = sample_indices(&mut r, x.len(), 20);
        idx.extend(
            am.iter()
                .take(10)
                .enumerate()
                .map(|(q, &a)| (q / (s.out_h() * s.out_w())) * s.h * s.w + a as usize),
        );
        for i in idx {
            let mut xp = x.clone();
            xp[i] += FD_EPS;
            let mut xm = x.clone();
            xm[i] -= FD_EPS;
            if fwd(&xp).1 != am || fwd(&xm).1 != am {
                continue;
            }
            fd.push((
                i,
                central_diff32(|xx| weighted_sum(&dy, &fwd(xx).0), &x, i, FD_EPS),
            ));
        }
        assert!(fd.len() >= 15, "{s:?}: too few differentiable points");
        assert!(
            fd.iter().any(|&(i, _)| gx[i] != 0.0),
            "{s:?}: no window maximum sampled"
        );
        let e = fd_err(&gx, &fd);
        assert!(
            e < FD_TOL,
            "{s:?}: pool grad vs finite differences of max_pool2d_forward: {e:e}"
        );
    }
}

/// Proves relu_backward (given the forward's output) is the derivative of relu_forward away
/// from the kink: points within 2ε of 0 are skipped.
#[test]
fn relu_gradient_matches_finite_differences_of_fast_forward() {
    let mut r = rng(21_000);
    let x = rand_vec(&mut r, 101);
    let dy = rand_vec(&mut r, 101);
    let mut y = vec![0.0; 101];
    relu_forward(&x, &mut y);
    let mut gx = vec![0.0; 101];
    relu_backward(&y, &dy, &mut gx);
    let loss = |xx: &[f32]| {
        let mut yy = vec![0.0; xx.len()];
        relu_forward(xx, &mut yy);
        weighted_sum(&dy, &yy)
    };
    let fd: Vec<_> = sample_indices(&mut r, x.len(), 40)
        .into_iter()
        .filter(|&i| x[i].abs() > 2.0 * FD_EPS)
        .map(|i| (i, central_diff32(loss, &x, i, FD_EPS)))
        .collect();
    assert!(fd.len() >= 20);
    assert!(fd.iter().any(|&(i, _)| gx[i] != 0.0) && fd.iter().any(|&(i, _)| gx[i] == 0.0));
    let e = fd_err(&gx, &fd);
    assert!(
        e < FD_TOL,
        "relu grad vs finite differences of relu_forward: {e:e}"
    );
}

/// Proves softmax_cross_entropy's logit gradient is the derivative of the mean loss it
/// returns (the loss is taken as the f64 mean of the per-sample losses it writes, so its
/// rounding stays ~1e-7 per sample). With ε = 1e-2 the O(ε²) truncation is ~1e-5 of the
/// gradient scale.
#[test]
fn softmax_cross_entropy_gradient_matches_finite_differences_of_its_loss() {
    let mut r = rng(22_000);
    for (batch, classes) in [(1, 2), (3, 5), (6, 10), (13, 4)] {
        let t: Vec<f32> = rand_vec(&mut r, batch * classes)
            .iter()
            .map(|v| 2.0 * v)
            .collect();
        let labels: Vec<usize> = (0..batch).map(|_| r.random_range(0..classes)).collect();
        let run = |t: &[f32]| {
            let mut p = vec![0.0; t.len()];
            let mut losses = vec![0.0; batch];
            let mut g = vec![0.0; t.len()];
            let mean = softmax_cross_entropy(t, &labels, classes, &mut p, &mut losses, &mut g).unwrap();
            (mean, losses, g)
        };
        let (mean, losses, g) = run(&t);
        let mean64 = losses.iter().map(|&l| l as f64).sum::<f64>() / batch as f64;
        assert!(
            (mean as f64 - mean64).abs() <= 1e-6 * mean64.abs().max(1.0),
            "mean {mean} vs {mean64}"
        );
        let loss = |tt: &[f32]| {
            let (_, l, _) = run(tt);
            l.iter().map(|&v| v as f64).sum::<f64>() / batch as f64
        };
        let fd: Vec<_> = sample_indices(&mut r, t.len(), 20)
            .into_iter()
            .map(|i| (i, central_diff32(loss, &t, i, FD_EPS)))
            .collect();
        let e = fd_err(&g, &fd);
        assert!(
            e < FD_TOL,
            "{batch}x{classes}: CE grad vs finite differences of the loss: {e:e}"
        );
    }
}
