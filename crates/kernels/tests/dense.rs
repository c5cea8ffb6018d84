//! `dense_forward` and `dense_backward` (`src/dense.rs`): against the f64 reference on
//! fixed and random shapes (both the direct and the GEMM path, a 4608-input reduction),
//! against finite differences of the fast forward (and the reference backward against
//! finite differences of the reference forward), a hand-worked case, bit-identical results
//! on any number of threads, and shape contracts.

mod common;

use common::reference as refk;
use common::*;
use petal_kernels::*;
use rand::Rng;

// ------------------------------------------------- against the f64 reference

fn dense_shapes() -> Vec<DenseShape> {
    let mut out: Vec<DenseShape> = [
        (1, 1, 1),
        (1, 37, 5),
        (3, 8, 16),
        (5, 17, 9),
        (13, 33, 7),
        (16, 64, 10),
        (17, 5, 3),
        (33, 70, 20),
        (8, 4608, 5), // the seed network's classifier: a long reduction
        (5, 1100, 6), // direct path: several column blocks, the last partial, a column tail
        (4, 1100, 9), // GEMM path at the same size
    ]
    .into_iter()
    .map(|(batch, inputs, outputs)| DenseShape {
        batch,
        inputs,
        outputs,
    })
    .collect();
    let mut r = rng(5000);
    for _ in 0..24 {
        out.push(DenseShape {
            batch: r.random_range(1..=40),
            inputs: r.random_range(1..=80),
            outputs: r.random_range(1..=24),
        });
    }
    out
}

#[test]
fn dense_forward_matches_reference() {
    let mut r = rng(5100);
    for s in dense_shapes() {
        let x = rand_vec(&mut r, s.batch * s.inputs);
        let w = rand_vec(&mut r, s.outputs * s.inputs);
        let b = rand_vec(&mut r, s.outputs);
        for bias in [Some(&b[..]), None] {
            let mut y = vec![f32::NAN; s.batch * s.outputs];
            dense_forward(&s, &x, &w, bias, &mut y);
            let b64 = bias.map(f64s);
            let want = refk::dense_forward(&s, &f64s(&x), &f64s(&w), b64.as_deref());
            assert_close(
                &format!("dense_forward {s:?} (bias: {})", bias.is_some()),
                &y,
                &want,
                reduction_tol(s.inputs),
            );
        }
    }
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

// ------------------------------------------------- finite differences

/// Proves dense_backward's three gradients are the derivatives of dense_forward.
#[test]
fn dense_backward_matches_finite_differences_of_dense_forward() {
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

/// Proves the reference dense weight, bias and input gradients are the derivatives of the
/// reference forward.
#[test]
fn reference_dense_backward_matches_finite_differences() {
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

// ------------------------------------------------- hand-worked, threads

/// x = [1, 2], W = [[1,0],[0,1],[1,1]], b = [0.5, -1, 0]: y = [1.5, 1, 3].
/// dy = [1, 2, 3]: dW = dyᵀx = [[1,2],[2,4],[3,6]], db = [1,2,3], dx = dy·W = [4, 5].
#[test]
fn dense_forward_and_dense_backward_hand_worked() {
    let s = DenseShape {
        batch: 1,
        inputs: 2,
        outputs: 3,
    };
    let (x, w) = ([1.0, 2.0], [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    let mut y = [f32::NAN; 3];
    dense_forward(&s, &x, &w, Some(&[0.5, -1.0, 0.0]), &mut y);
    assert_eq!(y, [1.5, 1.0, 3.0]);
    let (mut gw, mut gb, mut gx) = ([f32::NAN; 6], [f32::NAN; 3], [f32::NAN; 2]);
    dense_backward(
        &s,
        &x,
        &w,
        &[1.0, 2.0, 3.0],
        &mut gw,
        Some(&mut gb),
        Some(&mut gx),
    );
    assert_eq!(gw, [1.0, 2.0, 2.0, 4.0, 3.0, 6.0]);
    assert_eq!(gb, [1.0, 2.0, 3.0]);
    assert_eq!(gx, [4.0, 5.0]);
}

#[test]
fn dense_forward_and_dense_backward_are_bit_identical_across_thread_counts() {
    for batch in [13, 32, 50] {
        let s = DenseShape {
            batch,
            inputs: 300,
            outputs: 10,
        };
        let mut r = rng(batch as u64);
        let x = rand_vec(&mut r, batch * s.inputs);
        let w = rand_vec(&mut r, s.outputs * s.inputs);
        let b = rand_vec(&mut r, s.outputs);
        let dy = rand_vec(&mut r, batch * s.outputs);
        assert_thread_independent(&format!("dense {s:?}"), || {
            let mut y = vec![0.0; batch * s.outputs];
            dense_forward(&s, &x, &w, Some(&b), &mut y);
            let mut gw = vec![0.0; w.len()];
            let mut gb = vec![0.0; s.outputs];
            let mut gx = vec![0.0; x.len()];
            dense_backward(&s, &x, &w, &dy, &mut gw, Some(&mut gb), Some(&mut gx));
            vec![y, gw, gb, gx]
        });
    }
}

// ------------------------------------------------- shape contracts

fn dense(batch: usize, inputs: usize, outputs: usize) -> DenseShape {
    DenseShape {
        batch,
        inputs,
        outputs,
    }
}

#[test]
#[should_panic(expected = "dense: batch must be at least 1")]
fn dense_forward_zero_batch() {
    dense_forward(&dense(0, 3, 2), &[], &[0.0; 6], None, &mut []);
}

#[test]
#[should_panic(expected = "dense: outputs must be at least 1")]
fn dense_backward_zero_outputs() {
    dense_backward(&dense(2, 3, 0), &[0.0; 6], &[], &[], &mut [], None, None);
}

#[test]
#[should_panic(expected = "dense_forward: x has 5 values, expected 6")]
fn dense_forward_x_wrong() {
    dense_forward(&dense(2, 3, 2), &[0.0; 5], &[0.0; 6], None, &mut [0.0; 4]);
}

#[test]
#[should_panic(expected = "dense_forward: weight has 7 values, expected 6")]
fn dense_forward_weight_wrong() {
    dense_forward(&dense(2, 3, 2), &[0.0; 6], &[0.0; 7], None, &mut [0.0; 4]);
}

#[test]
#[should_panic(expected = "dense_forward: bias has 3 values, expected 2")]
fn dense_forward_bias_wrong() {
    dense_forward(
        &dense(2, 3, 2),
        &[0.0; 6],
        &[0.0; 6],
        Some(&[0.0; 3]),
        &mut [0.0; 4],
    );
}

#[test]
#[should_panic(expected = "dense_forward: y has 3 values, expected 4")]
fn dense_forward_y_wrong() {
    dense_forward(&dense(2, 3, 2), &[0.0; 6], &[0.0; 6], None, &mut [0.0; 3]);
}

#[test]
#[should_panic(expected = "dense_backward: dy has 5 values, expected 4")]
fn dense_backward_dy_wrong() {
    dense_backward(
        &dense(2, 3, 2),
        &[0.0; 6],
        &[0.0; 6],
        &[0.0; 5],
        &mut [0.0; 6],
        None,
        None,
    );
}

#[test]
#[should_panic(expected = "dense_backward: grad_weight has 5 values, expected 6")]
fn dense_backward_grad_weight_wrong() {
    dense_backward(
        &dense(2, 3, 2),
        &[0.0; 6],
        &[0.0; 6],
        &[0.0; 4],
        &mut [0.0; 5],
        None,
        None,
    );
}

#[test]
#[should_panic(expected = "dense_backward: grad_bias has 1 values, expected 2")]
fn dense_backward_grad_bias_wrong() {
    dense_backward(
        &dense(2, 3, 2),
        &[0.0; 6],
        &[0.0; 6],
        &[0.0; 4],
        &mut [0.0; 6],
        Some(&mut [0.0; 1]),
        None,
    );
}

#[test]
#[should_panic(expected = "dense_backward: grad_input has 7 values, expected 6")]
fn dense_backward_grad_input_wrong() {
    dense_backward(
        &dense(2, 3, 2),
        &[0.0; 6],
        &[0.0; 6],
        &[0.0; 4],
        &mut [0.0; 6],
        None,
        Some(&mut [0.0; 7]),
    );
}

#[test]
#[should_panic(expected = "dense: the input would hold")]
fn dense_backward_refuses_wrapping_sizes() {
    // 8 · (2^61 + 1) wraps to 8 in usize: the lengths below would pass an unchecked test.
    let s = DenseShape {
        batch: 8,
        inputs: (1 << 61) + 1,
        outputs: 8,
    };
    let (x, w, dy) = (vec![0.0f32; 8], vec![0.0f32; 8], vec![0.0f32; 64]);
    let mut gw = vec![0.0f32; 8];
    dense_backward(&s, &x, &w, &dy, &mut gw, None, None);
}

/// The bias gradient alone (what a model summing dense gradients chunk by chunk calls):
/// the reference's `Σ_n dy[n, o]` to f32 rounding, and the same bits as the bias that
/// `dense_backward_weights` writes, at batch sizes 1 to 5 and 1 to 13 outputs.
#[test]
fn dense_backward_bias_matches_reference_and_dense_backward_weights() {
    let mut r = rng(4242);
    for batch in 1..=5 {
        for outputs in [1, 3, 8, 9, 13] {
            let s = DenseShape {
                batch,
                inputs: 7,
                outputs,
            };
            let (x, dy) = (rand_vec(&mut r, batch * 7), rand_vec(&mut r, batch * outputs));
            let mut gb = vec![f32::NAN; outputs];
            dense_backward_bias(&s, &dy, &mut gb);
            let w = vec![0.0; 7 * outputs];
            let (_, want, _) = refk::dense_backward(&s, &f64s(&x), &f64s(&w), &f64s(&dy));
            for (o, (&a, &b)) in gb.iter().zip(&want).enumerate() {
                assert!(
                    (a as f64 - b).abs() <= 1e-6 * (1.0 + b.abs()),
                    "{s:?}: db[{o}] = {a}, want {b}"
                );
            }
            let (mut gw, mut gb2) = (vec![0.0; 7 * outputs], vec![f32::NAN; outputs]);
            dense_backward_weights(&s, &x, &dy, &mut gw, Some(&mut gb2));
            assert!(
                gb.iter().zip(&gb2).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{s:?}"
            );
        }
    }
}

#[test]
#[should_panic(expected = "dense_backward_bias")]
fn dense_backward_bias_refuses_a_short_bias() {
    let s = DenseShape {
        batch: 2,
        inputs: 3,
        outputs: 4,
    };
    dense_backward_bias(&s, &[0.0; 8], &mut [0.0; 3]);
}
