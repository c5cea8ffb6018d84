//! Checks of the f64 reference twins themselves (`common/reference.rs`), before the other
//! suites trust them as the ground truth:
//!
//! - central finite differences in f64 prove each reference backward formula is the true
//!   derivative of its reference forward: for `L = Σ r ⊙ f(x)` with a fixed random `r`,
//!   `(L(x + ε e_i) - L(x - ε e_i)) / 2ε` must equal the analytic `dL/dx_i` that the
//!   backward twin computes from `dy = r`. Conv, dense, pooling and ReLU are piecewise
//!   linear, so the difference is exact up to f64 rounding (~1e-13 here) and the tolerance
//!   is 1e-8; softmax cross-entropy is smooth and its O(ε²) truncation with ε = 1e-5 is
//!   ~1e-10, tolerance 1e-6;
//! - the lowered form agrees with the direct sum: `conv(x) = W · im2col(x) + b`, and
//!   `col2im` is the adjoint of `im2col` (`<im2col(x), c> = <x, col2im(c)>`).
//!
//! Since `forward.rs` and `backward.rs` show the fast kernels match these twins, together
//! they prove the fast backward kernels are the derivatives of the fast forward kernels.

mod common;

use common::reference as refk;
use common::*;
use petal_kernels::DenseShape;

/// Relative error between an analytic gradient and finite differences at sampled indices,
/// normalised by the gradient's largest magnitude over the whole tensor.
fn fd_rel_err(analytic: &[f64], fd: &[(usize, f64)]) -> f64 {
    let scale = analytic.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
    fd.iter()
        .map(|&(i, d)| (analytic[i] - d).abs())
        .fold(0.0, f64::max)
        / scale
}

/// Proves the reference dense weight, bias and input gradients are the derivatives of the
/// reference forward.
#[test]
fn reference_dense_gradients_match_finite_differences() {
    let mut r = rng(102);
    for (batch, inputs, outputs) in [(1, 7, 3), (5, 19, 4), (13, 33, 9)] {
        let s = DenseShape {
            batch,
            inputs,
            outputs,
        };
        let x = f64s(&rand_vec(&mut r, batch * inputs));
        let w = f64s(&rand_vec(&mut r, outputs * inputs));
        let b = f64s(&rand_vec(&mut r, outputs));
        let dy = f64s(&rand_vec(&mut r, batch * outputs));
        let (gw, gb, gx) = refk::dense_backward(&s, &x, &w, &dy);
        let eps = 1e-3;
        let loss_x = |xx: &[f64]| weighted_sum64(&dy, &refk::dense_forward(&s, xx, &w, Some(&b)));
        let loss_w = |ww: &[f64]| weighted_sum64(&dy, &refk::dense_forward(&s, &x, ww, Some(&b)));
        let loss_b = |bb: &[f64]| weighted_sum64(&dy, &refk::dense_forward(&s, &x, &w, Some(bb)));
        for (name, grad, fd) in [
            (
                "dx",
                &gx,
                sample_indices(&mut r, x.len(), 20)
                    .into_iter()
                    .map(|i| (i, central_diff64(loss_x, &x, i, eps)))
                    .collect::<Vec<_>>(),
            ),
            (
                "dW",
                &gw,
                sample_indices(&mut r, w.len(), 20)
                    .into_iter()
                    .map(|i| (i, central_diff64(loss_w, &w, i, eps)))
                    .collect(),
            ),
            (
                "db",
                &gb,
                (0..outputs)
                    .map(|i| (i, central_diff64(loss_b, &b, i, eps)))
                    .collect(),
            ),
        ] {
            let e = fd_rel_err(grad, &fd);
            assert!(
                e < 1e-8,
                "{s:?}: reference dense {name} vs finite differences: {e:e}"
            );
        }
    }
}

/// Proves the reference pool backward (scatter-add to the argmax, accumulating where
/// windows overlap) is the derivative of the reference max pooling, away from ties: an
/// index is skipped when the ±ε perturbation changes any window's argmax.
#[test]
fn reference_pool_gradient_matches_finite_differences() {
    let mut r = rng(103);
    for s in [
        pool(2, 2, 7, 9, 3, 2),
        pool(1, 3, 6, 6, 2, 2),
        pool(2, 1, 8, 7, 3, 1),
        pool(1, 2, 10, 11, 4, 3),
    ] {
        let x = f64s(&rand_vec(&mut r, s.input_len()));
        let (_, am) = refk::max_pool2d_forward(&s, &x);
        let dy = f64s(&rand_vec(&mut r, s.output_len()));
        let gx = refk::max_pool2d_backward(&s, &dy, &am);
        let eps = 1e-4;
        let loss = |xx: &[f64]| weighted_sum64(&dy, &refk::max_pool2d_forward(&s, xx).0);
        let mut fd = Vec::new();
        for i in sample_indices(&mut r, x.len(), 40) {
            let mut xp = x.clone();
            xp[i] += eps;
            let mut xm = x.clone();
            xm[i] -= eps;
            if refk::max_pool2d_forward(&s, &xp).1 != am || refk::max_pool2d_forward(&s, &xm).1 != am {
                continue; // within ε of a tie: not differentiable there
            }
            fd.push((i, central_diff64(loss, &x, i, eps)));
        }
        assert!(fd.len() >= 20, "{s:?}: too few differentiable points sampled");
        // Some sampled points must be window maxima, or the check proves nothing.
        assert!(fd.iter().any(|&(i, _)| gx[i] != 0.0), "{s:?}: no sampled maximum");
        let e = fd_rel_err(&gx, &fd);
        assert!(e < 1e-8, "{s:?}: reference pool dx vs finite differences: {e:e}");
    }
}

/// Proves the reference ReLU backward is the derivative of the reference forward away from
/// the kink (points within 2ε of 0 are skipped).
#[test]
fn reference_relu_gradient_matches_finite_differences() {
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

/// Proves the reference cross-entropy gradient `(p - onehot) / B` is the derivative of the
/// reference mean loss with respect to the logits.
#[test]
fn reference_softmax_cross_entropy_gradient_matches_finite_differences() {
    let mut r = rng(105);
    for (batch, classes) in [(1, 2), (3, 5), (7, 10), (4, 1)] {
        let t: Vec<f64> = rand_vec(&mut r, batch * classes)
            .iter()
            .map(|&v| 3.0 * v as f64)
            .collect();
        let labels: Vec<usize> = (0..batch).map(|n| (n * 7 + 3) % classes).collect();
        let ce = refk::softmax_cross_entropy(&t, &labels, classes);
        let eps = 1e-5;
        let loss = |tt: &[f64]| refk::softmax_cross_entropy(tt, &labels, classes).mean;
        let fd: Vec<_> = (0..t.len())
            .map(|i| (i, central_diff64(loss, &t, i, eps)))
            .collect();
        let e = fd_rel_err(&ce.grad, &fd);
        if classes > 1 {
            assert!(
                e < 1e-6,
                "batch {batch}, classes {classes}: reference CE grad vs FD: {e:e}"
            );
        } else {
            // One class: p = 1, the loss is constant 0 and so is the gradient.
            assert!(ce.grad.iter().all(|&g| g == 0.0) && fd.iter().all(|&(_, d)| d.abs() < 1e-12));
        }
        // The probabilities of each row sum to 1 and the losses are -log p[c].
        for n in 0..batch {
            let row = &ce.probs[n * classes..(n + 1) * classes];
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            assert!((ce.losses[n] + row[labels[n]].ln()).abs() < 1e-12);
        }
    }
}

/// The reference pool on a hand-worked plane: strict maxima, a tie going to the first
/// position, and an all-equal window going to its first element.
#[test]
fn reference_pool_hand_worked() {
    let s = pool(1, 1, 4, 4, 2, 2);
    #[rustfmt::skip]
    let x = [
        1.0, 5.0, 2.0, 0.0,
        3.0, 4.0, 8.0, 8.0,
        0.0, 0.0, 1.0, 1.0,
        9.0, -1.0, 1.0, 1.0,
    ];
    let (y, am) = refk::max_pool2d_forward(&s, &x);
    assert_eq!(y, vec![5.0, 8.0, 9.0, 1.0]);
    assert_eq!(am, vec![1, 6, 12, 10]);
    let dx = refk::max_pool2d_backward(&s, &[1.0, 2.0, 3.0, 4.0], &am);
    let mut want = vec![0.0; 16];
    want[1] = 1.0;
    want[6] = 2.0;
    want[12] = 3.0;
    want[10] = 4.0;
    assert_eq!(dx, want);
}
