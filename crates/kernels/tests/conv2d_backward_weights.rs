//! `conv2d_backward_weights` (weight and bias gradients) against the f64 reference twin
//! (`common/reference.rs`) on many seeded shapes and each direct path's specialisations,
//! both vector widths (`conv_checks`); reference-free: central finite differences of the
//! fast `conv2d_forward` against the fast weight, bias and input gradients; and the
//! kernel's shape contracts.
//!
//! Gradient outputs and scratch are pre-filled with NaN, so "overwritten" is checked too.

mod common;
mod conv_checks;

use common::*;
use conv_checks::*;
use petal_kernels::conv::WeightGradPath;
use petal_kernels::*;

#[test]
fn conv2d_backward_weights_matches_reference_on_fixed_shapes() {
    for (k, s) in conv_fixed_shapes().iter().enumerate() {
        check_conv_backward_weights(s, 11_000 + k as u64);
    }
}

#[test]
fn conv2d_backward_weights_matches_reference_on_random_shapes() {
    for (k, s) in conv_random_shapes(2026, 36).iter().enumerate() {
        check_conv_backward_weights(s, 12_000 + k as u64);
    }
}

/// Every width 1..=37 on both paths (SIMD dot products of every length and tail).
#[test]
fn conv2d_backward_weights_matches_reference_for_every_width() {
    for w in 1..=37 {
        check_conv_backward_weights(&conv(2, 2, 5, w, 3, 3, 3, 1, 1), 13_000 + w as u64);
        check_conv_backward_weights(&conv(1, 1, 3, w, 2, 1, 5, 1, 2), 13_100 + w as u64);
        check_conv_backward_weights(&conv(5, 4, 4, w, 2, 3, 2, 1, 1), 13_200 + w as u64);
        check_conv_backward_weights(&conv(2, 3, 5, w, 2, 2, 3, 2, 1), 13_300 + w as u64);
    }
}

/// The direct paths' tap counts (`TAP_COUNT_CASES`), with and without padding, at widths
/// that leave a SIMD tail: areas 1, 4, 9, 25 (`DirectArea` for `in_c <= 3`), others
/// (`DirectRows`), 3x3 (`Direct3x3`).
#[test]
fn conv2d_backward_weights_direct_tap_counts_match_reference() {
    for (k, (in_c, kh, kw)) in TAP_COUNT_CASES.into_iter().enumerate() {
        for pad in [0, 1, 2] {
            let s = conv(3, in_c, 13, 21, 5, kh, kw, 1, pad);
            assert!(direct_weight_grad(&s));
            check_conv_backward_weights(&s, 13_000 + 10 * k as u64 + pad as u64);
        }
    }
}

/// The 3x3 stride-1 weight-gradient kernel (`WeightGradPath::Direct3x3`): register blocks
/// of 2 output channels (AVX-512) with a 1-channel remainder for odd `out_c`; strips of 16
/// then 8 columns (or 8 only) with a partial last strip read from a zero-padded copy of
/// `dy`; the first two and last two input rows as separate steps (`oh` of 1 and 2 are
/// special); accumulators kept across the images of a 4-image chunk (partial chunks at
/// batches 1, 3, 5, 13); the bias gradient folded into its first input channel; for
/// `pad == 0` with only full strips, the input read without a padded copy. Both widths
/// (`check_conv_backward_weights`). Shapes: `conv3x3_grid_shapes`.
#[test]
fn conv2d_backward_weights_3x3_matches_reference_on_grid() {
    for (k, s) in conv3x3_grid_shapes().iter().enumerate() {
        assert_eq!(s.weight_grad_path(), WeightGradPath::Direct3x3, "{s:?}");
        check_conv_backward_weights(s, 15_000 + k as u64);
    }
}

// ------------------------------------------------- reference-free finite differences

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
fn conv2d_backward_weights_and_input_match_finite_differences_of_conv2d_forward() {
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

// ---------------------------------------------------------------- contracts

fn bw(s: Conv2dShape, dy_delta: isize, gb_delta: isize, scratch_delta: isize) {
    let len = |n: usize, d: isize| (n as isize + d) as usize;
    let x = vec![0.0; s.input_len()];
    let dy = vec![0.0; len(s.output_len(), dy_delta)];
    let mut gw = vec![0.0; s.weight_len()];
    let mut gb = vec![0.0; len(s.out_c, gb_delta)];
    let mut scratch = vec![0.0; len(s.backward_weights_scratch_len(), scratch_delta)];
    conv2d_backward_weights(&s, &x, &dy, &mut gw, Some(&mut gb), &mut scratch);
}

#[test]
#[should_panic(expected = "conv2d_backward_weights: dy has 151 values, expected 150")]
fn conv2d_backward_weights_dy_wrong() {
    bw(gemm_shape(), 1, 0, 0);
}

#[test]
#[should_panic(expected = "conv2d_backward_weights: grad_bias has 2 values, expected 3")]
fn conv2d_backward_weights_grad_bias_wrong() {
    bw(direct_shape(), 0, -1, 0);
}

#[test]
#[should_panic(expected = "conv2d_backward_weights: scratch has")]
fn conv2d_backward_weights_scratch_too_small_gemm() {
    bw(gemm_shape(), 0, 0, -1);
}

#[test]
#[should_panic(expected = "conv2d_backward_weights: scratch has")]
fn conv2d_backward_weights_scratch_too_small_direct() {
    bw(direct_shape(), 0, 0, -1);
}

#[test]
#[should_panic(expected = "conv2d_backward_weights: grad_weight has 26 values, expected 27")]
fn conv2d_backward_weights_grad_weight_wrong() {
    let s = direct_shape();
    let mut scratch = vec![0.0; s.scratch_len()];
    conv2d_backward_weights(&s, &[0.0; 50], &[0.0; 150], &mut [0.0; 26], None, &mut scratch);
}

#[test]
#[should_panic(expected = "conv2d_backward_weights: x has 49 values, expected 50")]
fn conv2d_backward_weights_x_wrong() {
    let s = direct_shape();
    let mut scratch = vec![0.0; s.scratch_len()];
    conv2d_backward_weights(&s, &[0.0; 49], &[0.0; 150], &mut [0.0; 27], None, &mut scratch);
}

#[test]
#[should_panic(expected = "conv2d (input size includes padding): kernel 1x6 is larger than the input 7x5")]
fn conv2d_backward_weights_kernel_wider_than_input() {
    let s = conv(1, 1, 5, 3, 1, 1, 6, 1, 1);
    conv2d_backward_weights(&s, &[0.0; 15], &[], &mut [0.0; 6], None, &mut []);
}
