//! Shared by the conv test files (`conv2d_*.rs`): the three conv kernels run on a forced
//! path and vector width on NaN-filled buffers, and checks of each kernel against its f64
//! reference twin (`common/reference.rs`) on the shape's own path at both widths.
//!
//! Every conv test file pulls this in with `mod conv_checks;` (after `mod common;`) and
//! uses only part of it.
#![allow(dead_code)]

use crate::common::reference as refk;
use crate::common::*;
use petal_kernels::conv::{
    conv2d_backward_input_with, conv2d_backward_weights_with, conv2d_forward_with, ForwardPath,
    InputGradPath, WeightGradPath,
};
use petal_kernels::simd::Lanes;
use petal_kernels::*;

/// A GEMM-path conv (in_c 4): input 2·4·5·5 = 200, weight 3·4·3·3 = 108, output 2·3·5·5 = 150.
pub fn gemm_shape() -> Conv2dShape {
    conv(2, 4, 5, 5, 3, 3, 3, 1, 1)
}

/// A direct-path conv (in_c 1): input 50, weight 27, output 150.
pub fn direct_shape() -> Conv2dShape {
    conv(2, 1, 5, 5, 3, 3, 3, 1, 1)
}

/// Panics unless `got` and `want` hold the same bits.
pub fn assert_bits_eq(what: &str, got: &[f32], want: &[f32]) {
    assert!(
        got.len() == want.len() && got.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits()),
        "{what}: results differ"
    );
}

/// `conv2d_forward_with` on a NaN-filled output and scratch of the path's size.
pub fn forward_with(
    s: &Conv2dShape,
    path: ForwardPath,
    lanes: Lanes,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
) -> Vec<f32> {
    let mut y = vec![f32::NAN; s.output_len()];
    let mut scratch = vec![f32::NAN; path.scratch_len(s)];
    conv2d_forward_with(s, path, lanes, x, w, b, &mut y, &mut scratch);
    y
}

/// `conv2d_backward_weights_with` on NaN-filled buffers: `(grad_weight, grad_bias)`, the
/// bias gradient only when `bias`.
pub fn weights_with(
    s: &Conv2dShape,
    path: WeightGradPath,
    lanes: Lanes,
    x: &[f32],
    dy: &[f32],
    bias: bool,
) -> (Vec<f32>, Vec<f32>) {
    let mut scratch = vec![f32::NAN; path.scratch_len(s)];
    let mut gw = vec![f32::NAN; s.weight_len()];
    let mut gb = vec![f32::NAN; s.out_c];
    let gbo = if bias { Some(&mut gb[..]) } else { None };
    conv2d_backward_weights_with(s, path, lanes, x, dy, &mut gw, gbo, &mut scratch);
    (gw, gb)
}

/// `conv2d_backward_input_with` on NaN-filled buffers.
pub fn input_with(s: &Conv2dShape, path: InputGradPath, lanes: Lanes, w: &[f32], dy: &[f32]) -> Vec<f32> {
    let mut scratch = vec![f32::NAN; path.scratch_len(s)];
    let mut gx = vec![f32::NAN; s.input_len()];
    conv2d_backward_input_with(s, path, lanes, w, dy, &mut gx, &mut scratch);
    gx
}

/// Forward tolerance: each output sums `in_c·kh·kw` products.
pub fn forward_tol(s: &Conv2dShape) -> f64 {
    reduction_tol(s.col_rows())
}

/// Weight and bias gradient tolerance: each sums over every image and output position.
pub fn weights_tol(s: &Conv2dShape) -> f64 {
    reduction_tol(s.batch * s.out_h() * s.out_w())
}

/// Input gradient tolerance: each sums over `out_c` and the taps.
pub fn input_tol(s: &Conv2dShape) -> f64 {
    reduction_tol(s.out_c * s.kh * s.kw)
}

/// Runs the fast forward on NaN-filled outputs and compares with the reference, with and
/// without bias; the shape's own path at both vector widths gives the same bits (one
/// lane per output, summed in tap order).
pub fn check_conv_forward(s: &Conv2dShape, seed: u64) {
    let mut r = rng(seed);
    let x = rand_vec(&mut r, s.input_len());
    let w = rand_vec(&mut r, s.weight_len());
    let b = rand_vec(&mut r, s.out_c);
    let mut scratch = vec![f32::NAN; s.forward_scratch_len()];
    for bias in [Some(&b[..]), None] {
        let mut y = vec![f32::NAN; s.output_len()];
        conv2d_forward(s, &x, &w, bias, &mut y, &mut scratch);
        let b64 = bias.map(f64s);
        let want = refk::conv2d_forward(s, &f64s(&x), &f64s(&w), b64.as_deref());
        let what = format!(
            "conv2d_forward {s:?} ({:?}, bias: {})",
            s.forward_path(),
            bias.is_some()
        );
        assert_close(&what, &y, &want, forward_tol(s));
        for lanes in Lanes::ALL {
            let yl = forward_with(s, s.forward_path(), lanes, &x, &w, bias);
            assert_bits_eq(&format!("{what} at {lanes:?}"), &yl, &y);
        }
    }
}

/// Runs the fast weight and bias gradients on NaN-filled buffers and compares with the
/// reference; without the bias gradient the weight gradient must not change at all; the
/// shape's own path at the other vector width is checked against the reference too.
pub fn check_conv_backward_weights(s: &Conv2dShape, seed: u64) {
    let mut r = rng(seed);
    let x = rand_vec(&mut r, s.input_len());
    let _w = rand_vec(&mut r, s.weight_len());
    let dy = rand_vec(&mut r, s.output_len());
    let mut scratch = vec![f32::NAN; s.backward_weights_scratch_len()];
    let mut gw = vec![f32::NAN; s.weight_len()];
    let mut gb = vec![f32::NAN; s.out_c];
    conv2d_backward_weights(s, &x, &dy, &mut gw, Some(&mut gb), &mut scratch);
    let mut gw2 = vec![f32::NAN; s.weight_len()];
    scratch.fill(f32::NAN);
    conv2d_backward_weights(s, &x, &dy, &mut gw2, None, &mut scratch);
    assert_bits_eq(
        &format!("{s:?}: grad_weight with and without grad_bias"),
        &gw2,
        &gw,
    );
    let (want_w, want_b) = refk::conv2d_backward_weights(s, &f64s(&x), &f64s(&dy));
    let path = s.weight_grad_path();
    let what = format!("{s:?} ({path:?})");
    assert_close(
        &format!("conv2d_backward_weights grad_weight {what}"),
        &gw,
        &want_w,
        weights_tol(s),
    );
    assert_close(
        &format!("conv2d_backward_weights grad_bias {what}"),
        &gb,
        &want_b,
        weights_tol(s),
    );
    for lanes in Lanes::ALL {
        let (gwl, gbl) = weights_with(s, path, lanes, &x, &dy, true);
        let what = format!("{what} at {lanes:?}");
        assert_close(
            &format!("conv2d_backward_weights grad_weight {what}"),
            &gwl,
            &want_w,
            weights_tol(s),
        );
        assert_close(
            &format!("conv2d_backward_weights grad_bias {what}"),
            &gbl,
            &want_b,
            weights_tol(s),
        );
        if lanes == path.build_lanes() {
            assert_bits_eq(&format!("{what}: the public kernel's width"), &gwl, &gw);
        }
    }
}

/// Runs the fast input gradient on a NaN-filled buffer and compares with the reference;
/// the shape's own path at both vector widths gives the same bits (the transposed path is
/// a forward pass; col2im has no width).
pub fn check_conv_backward_input(s: &Conv2dShape, seed: u64) {
    let mut r = rng(seed);
    // Drawn in the same order as the other checks, so a seed gives the same tensors.
    let _x = rand_vec(&mut r, s.input_len());
    let w = rand_vec(&mut r, s.weight_len());
    let dy = rand_vec(&mut r, s.output_len());
    let mut scratch = vec![f32::NAN; s.backward_input_scratch_len()];
    let mut gx = vec![f32::NAN; s.input_len()];
    conv2d_backward_input(s, &w, &dy, &mut gx, &mut scratch);
    let want_x = refk::conv2d_backward_input(s, &f64s(&w), &f64s(&dy));
    let what = format!("conv2d_backward_input {s:?} ({:?})", s.input_grad_path());
    assert_close(&what, &gx, &want_x, input_tol(s));
    for lanes in Lanes::ALL {
        let gxl = input_with(s, s.input_grad_path(), lanes, &w, &dy);
        assert_bits_eq(&format!("{what} at {lanes:?}"), &gxl, &gx);
    }
}

/// The grid of the 3x3 stride-1 weight-gradient kernel's tests: every output width from
/// 1 to 40 (every strip split and tail length) at each padding; channel counts (odd
/// `out_c`: the 1-channel block), heights (oh from 1 up), widths that are not multiples
/// of 8 or 16, paddings and batches, cycled across the grid; the reference networks'
/// layers, one chunk and a partial one. Shapes that do not validate are left out.
pub fn conv3x3_grid_shapes() -> Vec<Conv2dShape> {
    let mut out = Vec::new();
    for w in 1..=40 {
        for pad in 0..=2 {
            out.push(conv(5, 2, 3, w, 3, 3, 3, 1, pad));
        }
    }
    let widths = [5, 13, 17, 23, 31, 37, 16, 24];
    let batches = [1, 3, 4, 5, 13];
    let mut n = 0;
    for in_c in [1, 2, 3, 5, 16] {
        for out_c in [1, 2, 3, 7, 8] {
            for h in [1, 2, 3, 7] {
                for pad in 0..=2 {
                    let (w, batch) = (widths[n % widths.len()], batches[n % batches.len()]);
                    n += 1;
                    out.push(conv(batch, in_c, h, w, out_c, 3, 3, 1, pad));
                }
            }
        }
    }
    for batch in [4, 5] {
        out.push(conv(batch, 1, 50, 50, 8, 3, 3, 1, 0));
        out.push(conv(batch, 3, 64, 64, 16, 3, 3, 1, 1));
        out.push(conv(batch, 16, 32, 32, 32, 3, 3, 1, 1));
        out.push(conv(batch, 32, 16, 16, 64, 3, 3, 1, 1));
    }
    out.retain(|s| s.validate().is_ok());
    out
}

/// The direct paths' tap counts `in_c · kh · kw`: 1, 4, 9 have their own forward kernel
/// (also the transposed input gradient's), the others (18, 25, 27, 12, 6) the grouped one.
pub const TAP_COUNT_CASES: [(usize, usize, usize); 8] = [
    (1, 1, 1), // 1 tap
    (1, 2, 2), // 4
    (1, 3, 3), // 9
    (2, 3, 3), // 18: grouped
    (1, 5, 5), // 25: grouped
    (3, 3, 3), // 27: grouped
    (2, 2, 3), // 12: grouped
    (3, 1, 2), // 6: grouped
];
