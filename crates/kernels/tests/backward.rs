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

/// Fast conv gradients on NaN-filled buffers, with and without the bias gradient.
fn fast_conv_grads(s: &Conv2dShape, x: &[f32], w: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut scratch = vec![f32::NAN; s.backward_weights_scratch_len()];
    let mut gw = vec![f32::NAN; s.weight_len()];
    let mut gb = vec![f32::NAN; s.out_c];
    conv2d_backward_weights(s, x, dy, &mut gw, Some(&mut gb), &mut scratch);
    // Without the bias gradient, the weight gradient must not change at all.
    let mut gw2 = vec![f32::NAN; s.weight_len()];
    scratch.fill(f32::NAN);
    conv2d_backward_weights(s, x, dy, &mut gw2, None, &mut scratch);
    assert!(
        gw.iter().zip(&gw2).all(|(a, b)| a.to_bits() == b.to_bits()),
        "{s:?}: grad_weight depends on whether grad_bias is asked for"
    );
    let mut scratch = vec![f32::NAN; s.backward_input_scratch_len()];
    let mut gx = vec![f32::NAN; s.input_len()];
    conv2d_backward_input(s, w, dy, &mut gx, &mut scratch);
    (gw, gb, gx)
}

fn check_conv_backward(s: &Conv2dShape, seed: u64) {
    let mut r = rng(seed);
    let x = rand_vec(&mut r, s.input_len());
    let w = rand_vec(&mut r, s.weight_len());
    let dy = rand_vec(&mut r, s.output_len());
    let (gw, gb, gx) = fast_conv_grads(s, &x, &w, &dy);
    let (dy64, x64, w64) = (f64s(&dy), f64s(&x), f64s(&w));
    let (want_w, want_b) = refk::conv2d_backward_weights(s, &x64, &dy64);
    let want_x = refk::conv2d_backward_input(s, &w64, &dy64);
    let what = format!("{s:?} (direct: {})", s.uses_direct());
    // dW and db sum over every image and output position; dx over out_c and the taps.
    let k_batch = s.batch * s.out_h() * s.out_w();
    assert_close(
        &format!("conv grad_weight {what}"),
        &gw,
        &want_w,
        reduction_tol(k_batch),
    );
    assert_close(
        &format!("conv grad_bias {what}"),
        &gb,
        &want_b,
        reduction_tol(k_batch),
    );
    assert_close(
        &format!("conv grad_input {what}"),
        &gx,
        &want_x,
        reduction_tol(s.out_c * s.kh * s.kw),
    );
}

#[test]
fn conv_backward_matches_reference_on_fixed_shapes() {
    for (k, s) in conv_fixed_shapes().iter().enumerate() {
        check_conv_backward(s, 11_000 + k as u64);
    }
}

#[test]
fn conv_backward_matches_reference_on_random_shapes() {
    for (k, s) in conv_random_shapes(2026, 36).iter().enumerate() {
        check_conv_backward(s, 12_000 + k as u64);
    }
}

/// Every width 1..=37 on both paths (SIMD dot products of every length and tail).
#[test]
fn conv_backward_matches_reference_for_every_width() {
    for w in 1..=37 {
        check_conv_backward(&conv(2, 2, 5, w, 3, 3, 3, 1, 1), 13_000 + w as u64);
        check_conv_backward(&conv(1, 1, 3, w, 2, 1, 5, 1, 2), 13_100 + w as u64);
        check_conv_backward(&conv(5, 4, 4, w, 2, 3, 2, 1, 1), 13_200 + w as u64);
        check_conv_backward(&conv(2, 3, 5, w, 2, 2, 3, 2, 1), 13_300 + w as u64);
    }
}

/// col2im scatters each dcol entry to where im2col read it: at most kh·kw terms per value.
#[test]
fn col2im_matches_reference() {
    let mut shapes = conv_fixed_shapes();
    shapes.extend(conv_random_shapes(2027, 30));
    let mut r = rng(14_000);
    for s in shapes {
        let dcol = rand_vec(&mut r, s.col_len());
        let mut dx = vec![f32::NAN; s.in_image_len()];
        col2im(&s, &dcol, &mut dx);
        let want = refk::col2im(&s, &f64s(&dcol));
        assert_close(&format!("col2im {s:?}"), &dx, &want, reduction_tol(s.kh * s.kw));
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

/// Proves conv2d_backward_weights (weights and bias) and conv2d_backward_input are the
/// derivatives of conv2d_forward, on both paths, with padding and strides.
#[test]
fn conv_gradients_match_finite_differences_of_fast_forward() {
    let shapes = [
        conv(3, 2, 7, 9, 3, 3, 3, 1, 1),  // direct, padded
        conv(2, 1, 5, 11, 2, 2, 5, 1, 2), // direct, non-square, pad 2
        conv(5, 4, 6, 7, 3, 3, 2, 1, 1),  // GEMM, batch not a multiple of 4
        conv(2, 3, 9, 8, 2, 3, 3, 2, 1),  // GEMM via stride 2
        conv(1, 5, 8, 10, 2, 2, 3, 3, 2), // GEMM, stride 3, pad 2
    ];
    let mut r = rng(18_000);
    for s in shapes {
        let x = rand_vec(&mut r, s.input_len());
        let w = rand_vec(&mut r, s.weight_len());
        let b = rand_vec(&mut r, s.out_c);
        let dy = rand_vec(&mut r, s.output_len());
        let (gw, gb, gx) = fast_conv_grads(&s, &x, &w, &dy);
        let loss = |x: &[f32], w: &[f32], b: &[f32]| {
            let mut y = vec![0.0; s.output_len()];
            let mut scratch = vec![0.0; s.forward_scratch_len()];
            conv2d_forward(&s, x, w, Some(b), &mut y, &mut scratch);
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
        let fd_b: Vec<_> = (0..s.out_c)
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
                "{s:?}: conv grad_{name} vs finite differences of conv2d_forward: {e:e}"
            );
        }
    }
}

/// The direct path has a monomorphised kernel per small tap count `in_c · kh · kw`
/// (1, 4, 9) and a register-tiled grouped one for the rest (18, 25 and 27 had their own
/// kernels before): each is checked, with and without padding, at widths that leave a
/// SIMD tail.
#[test]
fn conv_direct_tap_specialisations_match_reference() {
    let cases = [
        (1, 1, 1), // 1 tap
        (1, 2, 2), // 4
        (1, 3, 3), // 9
        (2, 3, 3), // 18: grouped
        (1, 5, 5), // 25: grouped
        (3, 3, 3), // 27: grouped
        (2, 2, 3), // 12: grouped
        (3, 1, 2), // 6: grouped
    ];
    for (k, (in_c, kh, kw)) in cases.into_iter().enumerate() {
        for pad in [0, 1, 2] {
            let s = conv(3, in_c, 13, 21, 5, kh, kw, 1, pad);
            assert!(s.uses_direct());
            check_conv_backward(&s, 13_000 + 10 * k as u64 + pad as u64);
        }
    }
}

/// The 3x3 stride-1 weight-gradient kernel (`uses_direct_3x3`): register blocks of 2
/// output channels (AVX-512) with a 1-channel remainder for odd `out_c`; strips of 16
/// then 8 columns with a partial last strip read from a zero-padded copy of `dy`; the
/// first two and last two input rows as separate steps (`oh` of 1 and 2 are special);
/// accumulators kept across the images of a 4-image chunk (partial chunks at batches 1,
/// 3, 5, 13); the bias gradient folded into its first input channel; for `pad == 0` with
/// only full strips, the input read without a padded copy.
#[test]
fn conv_3x3_weight_gradient_kernel_matches_reference() {
    let mut k = 0u64;
    let mut check = |s: Conv2dShape| {
        if s.validate().is_err() {
            return;
        }
        assert!(s.uses_direct_3x3() && s.uses_direct(), "{s:?}");
        check_conv_backward(&s, 15_000 + k);
        k += 1;
    };
    // Every output width from 1 to 40 (every strip split and tail length), each padding.
    for w in 1..=40 {
        for pad in 0..=2 {
            check(conv(5, 2, 3, w, 3, 3, 3, 1, pad));
        }
    }
    // Channel counts (odd out_c: the 1-channel block), heights (oh from 1 up), widths that
    // are not multiples of 8 or 16, paddings and batches, cycled across the grid.
    let widths = [5, 13, 17, 23, 31, 37, 16, 24];
    let batches = [1, 3, 4, 5, 13];
    let mut n = 0;
    for in_c in [1, 2, 3, 5, 16] {
        for out_c in [1, 2, 3, 7, 8] {
            for h in [1, 2, 3, 7] {
                for pad in 0..=2 {
                    let (w, batch) = (widths[n % widths.len()], batches[n % batches.len()]);
                    n += 1;
                    check(conv(batch, in_c, h, w, out_c, 3, 3, 1, pad));
                }
            }
        }
    }
    // The reference networks' layers, one chunk and a partial one.
    for batch in [4, 5] {
        check(conv(batch, 1, 50, 50, 8, 3, 3, 1, 0));
        check(conv(batch, 3, 64, 64, 16, 3, 3, 1, 1));
        check(conv(batch, 16, 32, 32, 32, 3, 3, 1, 1));
        check(conv(batch, 32, 16, 16, 64, 3, 3, 1, 1));
    }
}
