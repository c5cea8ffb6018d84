//! Shape contracts: a kernel called with slices that do not fit its shape panics with a
//! message naming the mismatch (the exact texts are in the kernels' source), bad shapes are
//! reported by `validate()` with the right `ShapeError` variant, and scratch buffers larger
//! than asked for (and holding garbage) are fine.

mod common;

use common::*;
use petal_kernels::*;

/// A GEMM-path conv (in_c 4): input 2·4·5·5 = 200, weight 3·4·3·3 = 108, output 2·3·5·5 = 150.
fn gemm_shape() -> Conv2dShape {
    conv(2, 4, 5, 5, 3, 3, 3, 1, 1)
}

/// A direct-path conv (in_c 1): input 50, weight 27, output 150.
fn direct_shape() -> Conv2dShape {
    conv(2, 1, 5, 5, 3, 3, 3, 1, 1)
}

fn fwd(s: Conv2dShape, dx: isize, dw: isize, db: isize, dy: isize, dscratch: isize) {
    let len = |n: usize, d: isize| (n as isize + d) as usize;
    let x = vec![0.0; len(s.input_len(), dx)];
    let w = vec![0.0; len(s.weight_len(), dw)];
    let b = vec![0.0; len(s.out_c, db)];
    let mut y = vec![0.0; len(s.output_len(), dy)];
    let mut scratch = vec![0.0; len(s.forward_scratch_len(), dscratch)];
    conv2d_forward(&s, &x, &w, Some(&b), &mut y, &mut scratch);
}

// ---------------------------------------------------------------- conv2d_forward

#[test]
#[should_panic(expected = "conv2d_forward: x has 199 values, expected 200")]
fn conv_forward_x_too_short() {
    fwd(gemm_shape(), -1, 0, 0, 0, 0);
}

#[test]
#[should_panic(expected = "conv2d_forward: x has 51 values, expected 50")]
fn conv_forward_x_too_long_direct() {
    fwd(direct_shape(), 1, 0, 0, 0, 0);
}

#[test]
#[should_panic(expected = "conv2d_forward: weight has 107 values, expected 108")]
fn conv_forward_weight_wrong() {
    fwd(gemm_shape(), 0, -1, 0, 0, 0);
}

#[test]
#[should_panic(expected = "conv2d_forward: bias has 4 values, expected 3")]
fn conv_forward_bias_wrong() {
    fwd(gemm_shape(), 0, 0, 1, 0, 0);
}

#[test]
#[should_panic(expected = "conv2d_forward: y has 149 values, expected 150")]
fn conv_forward_y_wrong() {
    fwd(direct_shape(), 0, 0, 0, -1, 0);
}

#[test]
#[should_panic(expected = "conv2d_forward: scratch has")]
fn conv_forward_scratch_too_small() {
    let s = gemm_shape();
    assert!(s.forward_scratch_len() > 0);
    fwd(s, 0, 0, 0, 0, -1);
}

#[test]
#[should_panic(expected = "conv2d: batch must be at least 1")]
fn conv_forward_zero_batch() {
    let s = conv(0, 1, 5, 5, 1, 3, 3, 1, 0);
    conv2d_forward(&s, &[], &[0.0; 9], None, &mut [], &mut []);
}

#[test]
#[should_panic(expected = "conv2d: stride must be at least 1")]
fn conv_forward_zero_stride() {
    let s = conv(1, 1, 5, 5, 1, 3, 3, 0, 0);
    conv2d_forward(&s, &[0.0; 25], &[0.0; 9], None, &mut [0.0; 9], &mut []);
}

#[test]
#[should_panic(expected = "conv2d (input size includes padding): kernel 4x4 is larger than the input 3x3")]
fn conv_forward_kernel_larger_than_input() {
    let s = conv(1, 1, 3, 3, 1, 4, 4, 1, 0);
    conv2d_forward(&s, &[0.0; 9], &[0.0; 16], None, &mut [0.0; 1], &mut []);
}

// ---------------------------------------------------------------- conv backward

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
fn conv_backward_weights_dy_wrong() {
    bw(gemm_shape(), 1, 0, 0);
}

#[test]
#[should_panic(expected = "conv2d_backward_weights: grad_bias has 2 values, expected 3")]
fn conv_backward_weights_grad_bias_wrong() {
    bw(direct_shape(), 0, -1, 0);
}

#[test]
#[should_panic(expected = "conv2d_backward_weights: scratch has")]
fn conv_backward_weights_scratch_too_small_gemm() {
    bw(gemm_shape(), 0, 0, -1);
}

#[test]
#[should_panic(expected = "conv2d_backward_weights: scratch has")]
fn conv_backward_weights_scratch_too_small_direct() {
    bw(direct_shape(), 0, 0, -1);
}

#[test]
#[should_panic(expected = "conv2d_backward_weights: grad_weight has 26 values, expected 27")]
fn conv_backward_weights_grad_weight_wrong() {
    let s = direct_shape();
    let mut scratch = vec![0.0; s.scratch_len()];
    conv2d_backward_weights(&s, &[0.0; 50], &[0.0; 150], &mut [0.0; 26], None, &mut scratch);
}

#[test]
#[should_panic(expected = "conv2d_backward_weights: x has 49 values, expected 50")]
fn conv_backward_weights_x_wrong() {
    let s = direct_shape();
    let mut scratch = vec![0.0; s.scratch_len()];
    conv2d_backward_weights(&s, &[0.0; 49], &[0.0; 150], &mut [0.0; 27], None, &mut scratch);
}

#[test]
#[should_panic(expected = "conv2d_backward_input: dx has 199 values, expected 200")]
fn conv_backward_input_dx_wrong() {
    let s = gemm_shape();
    let mut scratch = vec![0.0; s.scratch_len()];
    conv2d_backward_input(&s, &[0.0; 108], &[0.0; 150], &mut [0.0; 199], &mut scratch);
}

#[test]
#[should_panic(expected = "conv2d_backward_input: weight has 109 values, expected 108")]
fn conv_backward_input_weight_wrong() {
    let s = gemm_shape();
    let mut scratch = vec![0.0; s.scratch_len()];
    conv2d_backward_input(&s, &[0.0; 109], &[0.0; 150], &mut [0.0; 200], &mut scratch);
}

#[test]
#[should_panic(expected = "conv2d_backward_input: scratch has")]
fn conv_backward_input_scratch_too_small() {
    let s = direct_shape();
    let mut scratch = vec![0.0; s.backward_input_scratch_len() - 1];
    conv2d_backward_input(&s, &[0.0; 27], &[0.0; 150], &mut [0.0; 50], &mut scratch);
}

#[test]
#[should_panic(expected = "conv2d: in_c must be at least 1")]
fn conv_backward_input_zero_in_c() {
    let s = conv(1, 0, 5, 5, 1, 3, 3, 1, 0);
    conv2d_backward_input(&s, &[], &[0.0; 9], &mut [], &mut []);
}

#[test]
#[should_panic(expected = "conv2d (input size includes padding): kernel 1x6 is larger than the input 7x5")]
fn conv_backward_weights_kernel_wider_than_input() {
    let s = conv(1, 1, 5, 3, 1, 1, 6, 1, 1);
    conv2d_backward_weights(&s, &[0.0; 15], &[], &mut [0.0; 6], None, &mut []);
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

// ---------------------------------------------------------------- validate()

/// Sets one field of a shape to zero.
type Zeroer<S> = fn(&mut S);

#[test]
fn conv_validate_reports_each_zero_field() {
    let ok = conv(2, 3, 5, 6, 4, 3, 2, 2, 0);
    assert_eq!(ok.validate(), Ok(()));
    let fields: [(&str, Zeroer<Conv2dShape>); 8] = [
        ("batch", |s| s.batch = 0),
        ("in_c", |s| s.in_c = 0),
        ("h", |s| s.h = 0),
        ("w", |s| s.w = 0),
        ("out_c", |s| s.out_c = 0),
        ("kh", |s| s.kh = 0),
        ("kw", |s| s.kw = 0),
        ("stride", |s| s.stride = 0),
    ];
    for (field, zero) in fields {
        let mut s = ok;
        zero(&mut s);
        let e = s.validate();
        assert_eq!(
            e,
            Err(ShapeError::Zero {
                what: "conv2d",
                field
            }),
            "{s:?}"
        );
        assert_eq!(
            e.unwrap_err().to_string(),
            format!("conv2d: {field} must be at least 1")
        );
    }
}

#[test]
fn conv_validate_reports_kernel_larger_than_padded_input() {
    let e = conv(1, 1, 3, 3, 1, 4, 4, 1, 0).validate();
    assert_eq!(
        e,
        Err(ShapeError::KernelTooLarge {
            what: "conv2d (input size includes padding)",
            kernel: (4, 4),
            input: (3, 3)
        })
    );
    assert_eq!(
        e.unwrap_err().to_string(),
        "conv2d (input size includes padding): kernel 4x4 is larger than the input 3x3"
    );
    // Only the width too small.
    assert_eq!(
        conv(1, 1, 5, 3, 1, 1, 6, 1, 1).validate(),
        Err(ShapeError::KernelTooLarge {
            what: "conv2d (input size includes padding)",
            kernel: (1, 6),
            input: (7, 5)
        })
    );
    // Padding makes room: 2 + 2·1 = 4 >= 4 is fine, 5 is not.
    assert_eq!(conv(1, 1, 2, 2, 1, 4, 4, 1, 1).validate(), Ok(()));
    assert_eq!(
        conv(1, 1, 2, 2, 1, 5, 4, 1, 1).validate(),
        Err(ShapeError::KernelTooLarge {
            what: "conv2d (input size includes padding)",
            kernel: (5, 4),
            input: (4, 4)
        })
    );
    // Pad 0 is valid (it is not a size).
    assert_eq!(conv(1, 1, 3, 3, 1, 3, 3, 1, 0).validate(), Ok(()));
}

/// Scratch "at least" the asked size: a larger buffer full of garbage gives bit-identical
/// results to an exact, zeroed one, for every conv kernel on both paths, and
/// `scratch_len()` serves all three kernels.
#[test]
fn oversized_garbage_scratch_is_fine() {
    for s in [gemm_shape(), direct_shape(), conv(5, 2, 7, 9, 3, 3, 2, 2, 1)] {
        let total = s.scratch_len();
        assert!(total >= s.forward_scratch_len());
        assert!(total >= s.backward_weights_scratch_len());
        assert!(total >= s.backward_input_scratch_len());
        let mut r = rng(5);
        let x = rand_vec(&mut r, s.input_len());
        let w = rand_vec(&mut r, s.weight_len());
        let dy = rand_vec(&mut r, s.output_len());
        let run = |scratch: &mut [f32]| {
            let mut y = vec![0.0; s.output_len()];
            conv2d_forward(&s, &x, &w, None, &mut y, scratch);
            let mut gw = vec![0.0; s.weight_len()];
            let mut gb = vec![0.0; s.out_c];
            conv2d_backward_weights(&s, &x, &dy, &mut gw, Some(&mut gb), scratch);
            let mut gx = vec![0.0; s.input_len()];
            conv2d_backward_input(&s, &w, &dy, &mut gx, scratch);
            [y, gw, gb, gx].map(|t| t.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
        };
        let exact = run(&mut vec![0.0; total]);
        let mut garbage = rand_vec(&mut r, total + 37);
        garbage[0] = f32::NAN;
        garbage[total / 2] = f32::INFINITY;
        assert_eq!(run(&mut garbage), exact, "{s:?}");
    }
}

/// Sizes whose products would wrap a `usize` are refused by `validate`, before any kernel
/// computes a length from them.
#[test]
fn shapes_too_large_for_memory_are_refused() {
    let huge = Conv2dShape {
        batch: 8,
        in_c: 1 << 31,
        h: 1 << 31,
        w: 1 << 31,
        out_c: 8,
        kh: 3,
        kw: 3,
        stride: 1,
        pad: 0,
    };
    assert!(
        matches!(
            huge.validate(),
            Err(ShapeError::TooLarge {
                quantity: "the input",
                ..
            })
        ),
        "{:?}",
        huge.validate()
    );
    let pad = Conv2dShape {
        batch: 1,
        in_c: 1,
        h: 4,
        w: 4,
        out_c: 1,
        kh: 3,
        kw: 3,
        stride: 1,
        pad: usize::MAX / 2,
    };
    assert!(
        matches!(pad.validate(), Err(ShapeError::TooLarge { .. })),
        "{:?}",
        pad.validate()
    );
    let d = DenseShape {
        batch: 8,
        inputs: (1 << 61) + 1,
        outputs: 8,
    };
    assert!(matches!(d.validate(), Err(ShapeError::TooLarge { .. })));
    let p = Pool2dShape {
        batch: 1,
        c: 1,
        h: 1 << 17,
        w: 1 << 17,
        k: 2,
        stride: 2,
    };
    assert!(matches!(
        p.validate(),
        Err(ShapeError::TooLarge {
            quantity: "one plane",
            ..
        })
    ));
}
