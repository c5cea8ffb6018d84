//! `conv2d_backward_input` (and `col2im`) against the f64 reference twin
//! (`common/reference.rs`) on many seeded shapes, both paths (the transposed forward and
//! col2im) and both vector widths (`conv_checks`), and the kernel's shape contracts.
//!
//! Gradient outputs and scratch are pre-filled with NaN, so "overwritten" is checked too.

mod common;
mod conv_checks;

use common::reference as refk;
use common::*;
use conv_checks::*;
use petal_kernels::conv::InputGradPath;
use petal_kernels::*;

#[test]
fn conv2d_backward_input_matches_reference_on_fixed_shapes() {
    for (k, s) in conv_fixed_shapes().iter().enumerate() {
        check_conv_backward_input(s, 11_000 + k as u64);
    }
}

#[test]
fn conv2d_backward_input_matches_reference_on_random_shapes() {
    for (k, s) in conv_random_shapes(2026, 36).iter().enumerate() {
        check_conv_backward_input(s, 12_000 + k as u64);
    }
}

/// Every width 1..=37 on both paths (the transposed forward and col2im at every tail).
#[test]
fn conv2d_backward_input_matches_reference_for_every_width() {
    for w in 1..=37 {
        check_conv_backward_input(&conv(2, 2, 5, w, 3, 3, 3, 1, 1), 13_000 + w as u64);
        check_conv_backward_input(&conv(1, 1, 3, w, 2, 1, 5, 1, 2), 13_100 + w as u64);
        check_conv_backward_input(&conv(5, 4, 4, w, 2, 3, 2, 1, 1), 13_200 + w as u64);
        check_conv_backward_input(&conv(2, 3, 5, w, 2, 2, 3, 2, 1), 13_300 + w as u64);
    }
}

/// The transposed path runs the forward kernels on the transposed shape (`out_c` input
/// channels): tap counts 1, 4, 9 take the tap kernels, the others the grouped one.
#[test]
fn conv2d_backward_input_direct_tap_counts_match_reference() {
    for (k, (in_c, kh, kw)) in TAP_COUNT_CASES.into_iter().enumerate() {
        for pad in [0, 1, 2] {
            let s = conv(3, in_c, 13, 21, 5, kh, kw, 1, pad);
            check_conv_backward_input(&s, 13_000 + 10 * k as u64 + pad as u64);
        }
    }
}

/// The input gradients of the 3x3 weight-gradient grid (`conv3x3_grid_shapes`): the
/// transposed path for `pad <= 2`.
#[test]
fn conv2d_backward_input_matches_reference_on_3x3_grid() {
    for (k, s) in conv3x3_grid_shapes().iter().enumerate() {
        assert_eq!(s.input_grad_path(), InputGradPath::Transposed, "{s:?}");
        check_conv_backward_input(s, 15_000 + k as u64);
    }
}

/// Stride-1 shapes the transposed path cannot serve go through col2im: non-square
/// kernels (1x3, 3x1, 2x5) and `pad >= k`; square kernels with `pad < k` do not.
#[test]
fn conv2d_backward_input_non_square_or_wide_pad_takes_col2im() {
    let col2im_shapes = [
        conv(3, 2, 7, 19, 4, 1, 3, 1, 0),
        conv(2, 3, 9, 11, 5, 3, 1, 1, 1),
        conv(1, 1, 6, 13, 2, 2, 5, 1, 2),
        conv(5, 2, 5, 17, 3, 1, 1, 1, 1), // 1x1, pad 1 >= k
        conv(2, 3, 4, 9, 2, 2, 2, 1, 2),  // 2x2, pad 2 >= k
        conv(3, 1, 3, 5, 2, 3, 3, 1, 3),  // 3x3, pad 3 >= k
    ];
    for (k, s) in col2im_shapes.iter().enumerate() {
        assert_eq!(s.input_grad_path(), InputGradPath::Col2im, "{s:?}");
        assert!(!InputGradPath::Transposed.supports(s), "{s:?}");
        check_conv_backward_input(s, 19_000 + k as u64);
    }
    for s in [conv(1, 1, 5, 5, 1, 3, 3, 1, 2), conv(1, 1, 5, 5, 1, 1, 1, 1, 0)] {
        assert_eq!(s.input_grad_path(), InputGradPath::Transposed, "{s:?}");
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

// ---------------------------------------------------------------- contracts

#[test]
#[should_panic(expected = "conv2d_backward_input: dx has 199 values, expected 200")]
fn conv2d_backward_input_dx_wrong() {
    let s = gemm_shape();
    let mut scratch = vec![0.0; s.scratch_len()];
    conv2d_backward_input(&s, &[0.0; 108], &[0.0; 150], &mut [0.0; 199], &mut scratch);
}

#[test]
#[should_panic(expected = "conv2d_backward_input: weight has 109 values, expected 108")]
fn conv2d_backward_input_weight_wrong() {
    let s = gemm_shape();
    let mut scratch = vec![0.0; s.scratch_len()];
    conv2d_backward_input(&s, &[0.0; 109], &[0.0; 150], &mut [0.0; 200], &mut scratch);
}

#[test]
#[should_panic(expected = "conv2d_backward_input: scratch has")]
fn conv2d_backward_input_scratch_too_small() {
    let s = direct_shape();
    let mut scratch = vec![0.0; s.backward_input_scratch_len() - 1];
    conv2d_backward_input(&s, &[0.0; 27], &[0.0; 150], &mut [0.0; 50], &mut scratch);
}

#[test]
#[should_panic(expected = "conv2d: in_c must be at least 1")]
fn conv2d_backward_input_zero_in_c() {
    let s = conv(1, 0, 5, 5, 1, 3, 3, 1, 0);
    conv2d_backward_input(&s, &[], &[0.0; 9], &mut [], &mut []);
}

#[test]
#[should_panic(expected = "col2im: dcol has")]
fn col2im_dcol_wrong() {
    let s = conv(3, 2, 5, 5, 1, 3, 3, 1, 0);
    col2im(&s, &vec![0.0; s.col_len() - 1], &mut [0.0; 50]);
}

#[test]
#[should_panic(expected = "col2im: dx has 150 values, expected 50")]
fn col2im_dx_is_one_image() {
    let s = conv(3, 2, 5, 5, 1, 3, 3, 1, 0);
    col2im(&s, &vec![0.0; s.col_len()], &mut [0.0; 150]);
}
