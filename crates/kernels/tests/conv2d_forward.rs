//! `conv2d_forward` (and `im2col`) against the f64 reference twin (`common/reference.rs`)
//! on many seeded shapes, each path's own specialisations (tap kernels, row pairs, the
//! grouped kernel, GEMM), and its shape contracts. Every shape also runs on its own path
//! at both vector widths, with the same bits (`conv_checks`).
//!
//! Outputs and scratch are pre-filled with NaN so a kernel that leaves any value unwritten,
//! or reads scratch it did not write, fails. Scratch is sized exactly as the shape asks, so
//! a kernel that reaches past its own sizing panics on a slice bound.

mod common;
mod conv_checks;

use common::reference as refk;
use common::*;
use conv_checks::*;
use petal_kernels::conv::ForwardPath;
use petal_kernels::simd::Lanes;
use petal_kernels::*;

#[test]
fn conv2d_forward_matches_reference_on_fixed_shapes() {
    let shapes = conv_fixed_shapes();
    // The list must exercise both paths, padding on the direct path, and strides 2 and 3.
    assert!(shapes.iter().any(|s| direct_weight_grad(s) && s.pad == 1));
    assert!(shapes.iter().any(|s| direct_weight_grad(s) && s.pad == 2));
    assert!(shapes.iter().any(|s| !direct_weight_grad(s) && s.in_c >= 4));
    assert!(shapes.iter().any(|s| !direct_weight_grad(s) && s.in_c <= 3));
    assert!(shapes.iter().any(|s| s.stride == 2) && shapes.iter().any(|s| s.stride == 3));
    assert!(shapes.iter().any(|s| s.batch == 1) && shapes.iter().any(|s| s.batch % 4 != 0 && s.batch > 4));
    for (k, s) in shapes.iter().enumerate() {
        check_conv_forward(s, 1000 + k as u64);
    }
}

#[test]
fn conv2d_forward_matches_reference_on_random_shapes() {
    let shapes = conv_random_shapes(2024, 36);
    assert!(shapes.iter().filter(|s| direct_weight_grad(s)).count() >= 12);
    assert!(shapes.iter().filter(|s| !direct_weight_grad(s)).count() >= 12);
    for (k, s) in shapes.iter().enumerate() {
        check_conv_forward(s, 2000 + k as u64);
    }
}

/// Every width 1..=37 on both paths: SIMD bodies of 0-4 vectors of 8 and every tail length,
/// with padding so the direct path's edge columns (scalar) border its SIMD columns.
#[test]
fn conv2d_forward_matches_reference_for_every_width() {
    for w in 1..=37 {
        check_conv_forward(&conv(2, 2, 5, w, 3, 3, 3, 1, 1), 3000 + w as u64);
        check_conv_forward(&conv(1, 1, 3, w, 2, 1, 5, 1, 2), 3100 + w as u64);
        check_conv_forward(&conv(3, 4, 4, w, 2, 3, 2, 1, 1), 3200 + w as u64);
        check_conv_forward(&conv(2, 3, 5, w, 2, 2, 3, 2, 1), 3300 + w as u64);
    }
}

/// Every direct-path tap specialisation and the tap counts that now take the grouped
/// kernel (see `conv2d_backward_weights_direct_tap_counts_match_reference`), with and
/// without padding.
#[test]
fn conv2d_forward_tap_specialisations_match_reference() {
    for (k, (in_c, kh, kw)) in [
        (1, 1, 1),
        (1, 2, 2),
        (1, 3, 3),
        (2, 3, 3),
        (1, 5, 5),
        (3, 3, 3),
        (2, 2, 3),
        (3, 1, 2),
    ]
    .into_iter()
    .enumerate()
    {
        for pad in [0, 1, 2] {
            let s = conv(3, in_c, 13, 21, 5, kh, kw, 1, pad);
            assert!(direct_weight_grad(&s));
            check_conv_forward(&s, 14_000 + 10 * k as u64 + pad as u64);
        }
    }
}

/// The grouped direct kernel (`ForwardPath::Grouped`, every stride-1 tap count `in_c · kh · kw` but 1, 4 and 9): tiles of
/// 2 output vectors (AVX-512; 3 with AVX2) over the plane's vectors in row-major order,
/// so with a count of vectors not a multiple of that, 1-vector tiles; tiles that hold two segments of a
/// row, two rows (`ow <= 16`) or straddle a row end; a partial last vector per row (widths
/// not a multiple of 16 or 8); heights 1 and 2; `out_c` not a multiple of 8 (a partial
/// channel group) and below 8; kernel widths 1, 2, 3, 5 (unrolled) and 4, 6 (the generic loop);
/// the reference networks' layers and their input gradients' transposed convolutions.
#[test]
fn conv2d_forward_grouped_kernel_matches_reference() {
    let mut k = 0u64;
    let mut check = |s: Conv2dShape| {
        assert!(
            s.validate().is_ok() && s.forward_path() == ForwardPath::Grouped,
            "{s:?}"
        );
        assert!(![1, 4, 9].contains(&s.col_rows()), "{s:?} takes a tap kernel");
        check_conv_forward(&s, 16_000 + k);
        k += 1;
    };
    for w in [1, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 40, 47, 48, 49] {
        for h in [1, 2, 3, 5] {
            check(conv(2, 2, h, w, 11, 3, 3, 1, 1));
        }
    }
    for out_c in [1, 3, 7, 8, 9, 15, 16, 17] {
        check(conv(1, 4, 5, 19, out_c, 3, 3, 1, 1));
        check(conv(2, 5, 6, 16, out_c, 3, 3, 1, 0));
    }
    for (kh, kw) in [(1, 1), (2, 2), (3, 5), (5, 5), (4, 4), (2, 6), (1, 4)] {
        for pad in [0, 1, 2] {
            check(conv(2, 3, 9, 21, 10, kh, kw, 1, pad.min(kh - 1)));
        }
    }
    for batch in [1, 5] {
        check(conv(batch, 3, 64, 64, 16, 3, 3, 1, 1)); // flowernet c1: 27 taps
        check(conv(batch, 16, 32, 32, 32, 3, 3, 1, 1)); // c2
        check(conv(batch, 32, 16, 16, 64, 3, 3, 1, 1)); // c3
        check(conv(batch, 32, 32, 32, 16, 3, 3, 1, 1)); // c2's input gradient
        check(conv(batch, 64, 16, 16, 32, 3, 3, 1, 1)); // c3's input gradient
    }
}

/// The tap kernels (1, 4, 9 taps) with exactly 8 output channels pair output rows
/// (`ForwardPath::TapPairs`, the build's choice with AVX-512): even and odd heights (an odd last row alone; 1 and 2 rows), widths below 16,
/// at 16 and 48, and with 8-column and partial blocks after the paired 16-column ones.
#[test]
fn conv2d_forward_tap_pairs_match_reference() {
    let mut k = 0u64;
    for (in_c, kh, kw) in [(1, 1, 1), (1, 2, 2), (4, 1, 1), (1, 3, 3)] {
        for h in [1, 2, 3, 5, 8] {
            for w in [7, 16, 23, 33, 48, 50] {
                let pad = if kh == 3 { (h + w) % 2 } else { 0 };
                let s = conv(
                    2,
                    in_c,
                    h + kh - 1 - 2 * pad,
                    w + kw - 1 - 2 * pad,
                    8,
                    kh,
                    kw,
                    1,
                    pad,
                );
                assert!(s.validate().is_ok() && [1, 4, 9].contains(&s.col_rows()), "{s:?}");
                assert_eq!((s.out_h(), s.out_w()), (h, w));
                check_conv_forward(&s, 17_000 + k);
                // Forced, at both widths (the build pairs rows only with AVX-512): the
                // same bits as the grouped kernel, which sums in the same order.
                let mut r = rng(17_500 + k);
                let (x, w, b) = (
                    rand_vec(&mut r, s.input_len()),
                    rand_vec(&mut r, s.weight_len()),
                    rand_vec(&mut r, s.out_c),
                );
                for lanes in Lanes::ALL {
                    let pairs = forward_with(&s, ForwardPath::TapPairs, lanes, &x, &w, Some(&b));
                    let grouped = forward_with(&s, ForwardPath::Grouped, lanes, &x, &w, Some(&b));
                    assert_bits_eq(
                        &format!("{s:?} TapPairs vs Grouped at {lanes:?}"),
                        &pairs,
                        &grouped,
                    );
                }
                k += 1;
            }
        }
    }
}

/// im2col only copies, so it must agree with the reference exactly (zeros in the padding).
#[test]
fn im2col_matches_reference_exactly() {
    let mut shapes = conv_fixed_shapes();
    shapes.extend(conv_random_shapes(2025, 30));
    let mut r = rng(3400);
    for s in shapes {
        let x = rand_vec(&mut r, s.in_image_len());
        let mut col = vec![f32::NAN; s.col_len()];
        im2col(&s, &x, &mut col);
        let want = refk::im2col(&s, &f64s(&x));
        assert!(
            col.iter().zip(&want).all(|(&a, &b)| a as f64 == b),
            "im2col {s:?} differs from the reference"
        );
    }
}

// ---------------------------------------------------------------- contracts

fn fwd(s: Conv2dShape, dx: isize, dw: isize, db: isize, dy: isize, dscratch: isize) {
    let len = |n: usize, d: isize| (n as isize + d) as usize;
    let x = vec![0.0; len(s.input_len(), dx)];
    let w = vec![0.0; len(s.weight_len(), dw)];
    let b = vec![0.0; len(s.out_c, db)];
    let mut y = vec![0.0; len(s.output_len(), dy)];
    let mut scratch = vec![0.0; len(s.forward_scratch_len(), dscratch)];
    conv2d_forward(&s, &x, &w, Some(&b), &mut y, &mut scratch);
}

#[test]
#[should_panic(expected = "conv2d_forward: x has 199 values, expected 200")]
fn conv2d_forward_x_too_short() {
    fwd(gemm_shape(), -1, 0, 0, 0, 0);
}

#[test]
#[should_panic(expected = "conv2d_forward: x has 51 values, expected 50")]
fn conv2d_forward_x_too_long_direct() {
    fwd(direct_shape(), 1, 0, 0, 0, 0);
}

#[test]
#[should_panic(expected = "conv2d_forward: weight has 107 values, expected 108")]
fn conv2d_forward_weight_wrong() {
    fwd(gemm_shape(), 0, -1, 0, 0, 0);
}

#[test]
#[should_panic(expected = "conv2d_forward: bias has 4 values, expected 3")]
fn conv2d_forward_bias_wrong() {
    fwd(gemm_shape(), 0, 0, 1, 0, 0);
}

#[test]
#[should_panic(expected = "conv2d_forward: y has 149 values, expected 150")]
fn conv2d_forward_y_wrong() {
    fwd(direct_shape(), 0, 0, 0, -1, 0);
}

#[test]
#[should_panic(expected = "conv2d_forward: scratch has")]
fn conv2d_forward_scratch_too_small() {
    let s = gemm_shape();
    assert!(s.forward_scratch_len() > 0);
    fwd(s, 0, 0, 0, 0, -1);
}

#[test]
#[should_panic(expected = "conv2d: batch must be at least 1")]
fn conv2d_forward_zero_batch() {
    let s = conv(0, 1, 5, 5, 1, 3, 3, 1, 0);
    conv2d_forward(&s, &[], &[0.0; 9], None, &mut [], &mut []);
}

#[test]
#[should_panic(expected = "conv2d: stride must be at least 1")]
fn conv2d_forward_zero_stride() {
    let s = conv(1, 1, 5, 5, 1, 3, 3, 0, 0);
    conv2d_forward(&s, &[0.0; 25], &[0.0; 9], None, &mut [0.0; 9], &mut []);
}

#[test]
#[should_panic(expected = "conv2d (input size includes padding): kernel 4x4 is larger than the input 3x3")]
fn conv2d_forward_kernel_larger_than_input() {
    let s = conv(1, 1, 3, 3, 1, 4, 4, 1, 0);
    conv2d_forward(&s, &[0.0; 9], &[0.0; 16], None, &mut [0.0; 1], &mut []);
}

#[test]
#[should_panic(expected = "im2col: x has 49 values, expected 50")]
fn im2col_x_wrong() {
    // im2col takes one image: in_c·h·w = 2·5·5.
    let s = conv(3, 2, 5, 5, 1, 3, 3, 1, 0);
    im2col(&s, &[0.0; 49], &mut vec![0.0; s.col_len()]);
}

#[test]
#[should_panic(expected = "im2col: col has")]
fn im2col_col_wrong() {
    let s = conv(3, 2, 5, 5, 1, 3, 3, 1, 0);
    im2col(&s, &[0.0; 50], &mut vec![0.0; s.col_len() + 1]);
}
