//! `relu_forward`, `relu_backward` and their in-place forms (`src/activation.rs`): exact
//! against the f64 reference on every SIMD tail with NaN, ±0 and ±inf, against finite
//! differences away from the kink (the reference's too), hand-worked special values,
//! bit-identical results on any number of threads, and length contracts.

mod common;

use common::reference as refk;
use common::*;
use petal_kernels::*;
use rand::Rng;

/// ReLU forward is exact: lengths 0..=40 (every SIMD tail) and one longer than a rayon
/// block (2^14), with NaN, ±0 and ±inf sprinkled in; the in-place form must agree bit for
/// bit with the out-of-place one.
#[test]
fn relu_forward_matches_reference_exactly() {
    let mut r = rng(6000);
    let lens: Vec<usize> = (0..=40).chain([16_384, 40_003]).collect();
    for n in lens {
        let mut x = rand_vec(&mut r, n);
        for _ in 0..n / 5 {
            let i = r.random_range(0..n);
            x[i] = [f32::NAN, 0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY][r.random_range(0..5)];
        }
        let mut y = vec![f32::NAN; n];
        relu_forward(&x, &mut y);
        let want = refk::relu_forward(&f64s(&x));
        for i in 0..n {
            let ok = if want[i].is_nan() {
                y[i].is_nan()
            } else {
                y[i] as f64 == want[i]
            };
            assert!(
                ok,
                "relu_forward len {n} at {i}: x {} gave {}, want {}",
                x[i], y[i], want[i]
            );
        }
        let mut inplace = x.clone();
        relu_forward_inplace(&mut inplace);
        for i in 0..n {
            assert!(
                inplace[i].to_bits() == y[i].to_bits() || (inplace[i] == 0.0 && y[i] == 0.0),
                "relu_forward_inplace len {n} at {i}: {} vs {}",
                inplace[i],
                y[i]
            );
        }
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

/// Proves relu_backward (given the forward's output) is the derivative of relu_forward away
/// from the kink: points within 2ε of 0 are skipped.
#[test]
fn relu_backward_matches_finite_differences_of_relu_forward() {
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

/// Proves the reference ReLU backward is the derivative of the reference forward away from
/// the kink (points within 2ε of 0 are skipped).
#[test]
fn reference_relu_backward_matches_finite_differences() {
    let mut r = rng(104);
    let x = f64s(&rand_vec(&mut r, 200));
    let dy = f64s(&rand_vec(&mut r, 200));
    let gx = refk::relu_backward(&x, &dy);
    let eps = 1e-4;
    let loss = |xx: &[f64]| weighted_sum64(&dy, &refk::relu_forward(xx));
    let fd: Vec<_> = sample_indices(&mut r, x.len(), 40)
        .into_iter()
        .filter(|&i| x[i].abs() > 2.0 * eps)
        .map(|i| (i, central_diff64(loss, &x, i, eps)))
        .collect();
    assert!(fd.len() >= 20);
    let e = fd_rel_err(&gx, &fd);
    assert!(e < 1e-8, "reference relu dx vs finite differences: {e:e}");
}

/// ReLU keeps NaN (SIMD body and scalar tail: 10 values), zeroes negatives, -0.0, -inf;
/// the backward gives 0 where y is NaN, 0 (the kink) or negative.
#[test]
fn relu_forward_and_relu_backward_nan_and_special_values() {
    let nan = f32::NAN;
    let inf = f32::INFINITY;
    let x = [nan, -1.0, 2.0, -0.0, 0.0, inf, -inf, nan, 3.0, nan];
    let mut y = [0.5; 10];
    relu_forward(&x, &mut y);
    let mut inplace = x;
    relu_forward_inplace(&mut inplace);
    for out in [y, inplace] {
        assert!(out[0].is_nan() && out[7].is_nan() && out[9].is_nan(), "{out:?}");
        assert_eq!(
            [out[1], out[2], out[3], out[4], out[5], out[6], out[8]],
            [0.0, 2.0, 0.0, 0.0, inf, 0.0, 3.0]
        );
    }
    let mut dx = [nan; 10];
    relu_backward(&y, &[1.0; 10], &mut dx);
    assert_eq!(dx, [0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]);
}

/// ReLU forward and backward over several rayon blocks (2^14 values each).
#[test]
fn relu_forward_and_relu_backward_are_bit_identical_across_thread_counts() {
    let n = 3 * (1 << 14) + 5;
    let mut r = rng(99);
    let x = rand_vec(&mut r, n);
    let g = rand_vec(&mut r, n);
    assert_thread_independent("relu", || {
        let mut y = vec![0.0; n];
        relu_forward(&x, &mut y);
        let mut dx = vec![0.0; n];
        relu_backward(&y, &g, &mut dx);
        vec![y, dx]
    });
}

#[test]
#[should_panic(expected = "relu_forward: x has 3 values, y has 4")]
fn relu_forward_length_mismatch() {
    relu_forward(&[0.0; 3], &mut [0.0; 4]);
}

#[test]
#[should_panic(expected = "relu_backward: y has 3, dy 3, dx 2 values; they must match")]
fn relu_backward_length_mismatch() {
    relu_backward(&[0.0; 3], &[0.0; 3], &mut [0.0; 2]);
}

#[test]
#[should_panic(expected = "relu_backward: y has 2, dy 3, dx 3 values; they must match")]
fn relu_backward_y_length_mismatch() {
    relu_backward(&[0.0; 2], &[0.0; 3], &mut [0.0; 3]);
}
