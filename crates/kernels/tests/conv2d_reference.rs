//! Checks of the conv f64 reference twins themselves (`common/reference.rs`), before the
//! other conv suites trust them as the ground truth:
//!
//! - central finite differences in f64 prove the reference weight, bias and input
//!   gradients are the true derivatives of the reference forward (piecewise linear, so
//!   exact up to f64 rounding; tolerance 1e-8);
//! - the lowered form agrees with the direct sum: `conv(x) = W · im2col(x) + b`, and
//!   `col2im` is the adjoint of `im2col` (`<im2col(x), c> = <x, col2im(c)>`).

mod common;

use common::reference as refk;
use common::*;
use petal_kernels::Conv2dShape;

/// Relative error between an analytic gradient and finite differences at sampled indices,
/// normalised by the gradient's largest magnitude over the whole tensor.
fn fd_rel_err(analytic: &[f64], fd: &[(usize, f64)]) -> f64 {
    let scale = analytic.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
    fd.iter()
        .map(|&(i, d)| (analytic[i] - d).abs())
        .fold(0.0, f64::max)
        / scale
}

fn conv_fd_shapes() -> Vec<Conv2dShape> {
    vec![
        conv(2, 2, 6, 7, 3, 3, 3, 1, 1),
        conv(1, 1, 5, 4, 2, 2, 3, 1, 2),
        conv(3, 4, 7, 8, 2, 3, 2, 2, 1),
        conv(2, 3, 9, 7, 2, 3, 3, 3, 2),
        conv(5, 2, 4, 4, 3, 1, 1, 2, 0),
    ]
}

/// Proves the reference conv weight, bias and input gradients are the derivatives of the
/// reference forward (with padding, stride and bias).
#[test]
fn conv2d_reference_gradients_match_finite_differences() {
    let mut r = rng(101);
    for s in conv_fd_shapes() {
        let x = f64s(&rand_vec(&mut r, s.input_len()));
        let w = f64s(&rand_vec(&mut r, s.weight_len()));
        let b = f64s(&rand_vec(&mut r, s.out_c));
        let dy = f64s(&rand_vec(&mut r, s.output_len()));
        let (gw, gb) = refk::conv2d_backward_weights(&s, &x, &dy);
        let gx = refk::conv2d_backward_input(&s, &w, &dy);
        let eps = 1e-3;

        let loss_x = |xx: &[f64]| weighted_sum64(&dy, &refk::conv2d_forward(&s, xx, &w, Some(&b)));
        let fd: Vec<_> = sample_indices(&mut r, x.len(), 20)
            .into_iter()
            .map(|i| (i, central_diff64(loss_x, &x, i, eps)))
            .collect();
        let e = fd_rel_err(&gx, &fd);
        assert!(e < 1e-8, "{s:?}: reference conv dx vs finite differences: {e:e}");

        let loss_w = |ww: &[f64]| weighted_sum64(&dy, &refk::conv2d_forward(&s, &x, ww, Some(&b)));
        let fd: Vec<_> = sample_indices(&mut r, w.len(), 20)
            .into_iter()
            .map(|i| (i, central_diff64(loss_w, &w, i, eps)))
            .collect();
        let e = fd_rel_err(&gw, &fd);
        assert!(e < 1e-8, "{s:?}: reference conv dW vs finite differences: {e:e}");

        let loss_b = |bb: &[f64]| weighted_sum64(&dy, &refk::conv2d_forward(&s, &x, &w, Some(bb)));
        let fd: Vec<_> = (0..b.len())
            .map(|i| (i, central_diff64(loss_b, &b, i, eps)))
            .collect();
        let e = fd_rel_err(&gb, &fd);
        assert!(e < 1e-8, "{s:?}: reference conv db vs finite differences: {e:e}");
    }
}

/// Proves the reference's direct convolution sum equals its lowered form
/// `W · im2col(x_n) + b` (so the im2col twin indexes the same taps), and that col2im is
/// the adjoint of im2col: `<im2col(x), c> = <x, col2im(c)>` (what makes `dx = col2im(Wᵀ dy)`
/// the input gradient).
#[test]
fn conv2d_reference_lowering_is_consistent() {
    let mut r = rng(106);
    let mut shapes = conv_fixed_shapes();
    shapes.extend(conv_random_shapes(107, 10));
    for s in shapes {
        let x = f64s(&rand_vec(&mut r, s.input_len()));
        let w = f64s(&rand_vec(&mut r, s.weight_len()));
        let b = f64s(&rand_vec(&mut r, s.out_c));
        let y = refk::conv2d_forward(&s, &x, &w, Some(&b));
        let (oh, ow) = refk::conv_out_hw(&s);
        assert_eq!((oh, ow), (s.out_h(), s.out_w()), "{s:?}: output size");
        let (il, p, rows) = (s.in_c * s.h * s.w, oh * ow, s.in_c * s.kh * s.kw);
        for n in 0..s.batch {
            let col = refk::im2col(&s, &x[n * il..(n + 1) * il]);
            for o in 0..s.out_c {
                for q in 0..p {
                    let lowered = b[o] + (0..rows).map(|k| w[o * rows + k] * col[k * p + q]).sum::<f64>();
                    let direct = y[(n * s.out_c + o) * p + q];
                    assert!((lowered - direct).abs() < 1e-12, "{s:?}: lowered conv differs");
                }
            }
            let c = f64s(&rand_vec(&mut r, col.len()));
            let lhs = weighted_sum64(&col, &c);
            let rhs = weighted_sum64(&x[n * il..(n + 1) * il], &refk::col2im(&s, &c));
            assert!(
                (lhs - rhs).abs() < 1e-10,
                "{s:?}: col2im is not the adjoint of im2col"
            );
        }
    }
}
