//! `Conv2dShape`: `validate()` reports bad shapes with the right `ShapeError` variant; the
//! three kernels' paths are chosen by the shape as the `conv` module's table says; the
//! scratch sizes are those of the chosen paths; scratch larger than asked for (and
//! holding garbage) is fine.

mod common;
mod conv_checks;

use common::*;
use conv_checks::*;
use petal_kernels::conv::{ForwardPath, InputGradPath, WeightGradPath};
use petal_kernels::simd::Lanes;
use petal_kernels::*;

/// Sets one field of a shape to zero.
type Zeroer<S> = fn(&mut S);

#[test]
fn conv2d_validate_reports_each_zero_field() {
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
fn conv2d_validate_reports_kernel_larger_than_padded_input() {
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
fn conv2d_oversized_garbage_scratch_is_fine() {
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

/// The path table of the `conv` module docs, shape by shape.
#[test]
fn conv2d_paths_are_chosen_by_the_shape() {
    let avx512 = Lanes::BUILD == Lanes::Sixteen;
    // 9 taps: the tap kernels with AVX-512 (row pairs for 8 channels), the grouped
    // kernel with AVX2 (whose 3 x 4 tile fits 16 registers).
    let (pairs, nine) = if avx512 {
        (ForwardPath::TapPairs, ForwardPath::Taps)
    } else {
        (ForwardPath::Grouped, ForwardPath::Grouped)
    };
    let cases = [
        // (shape, forward, weight gradient, input gradient)
        (
            conv(1, 1, 50, 50, 8, 3, 3, 1, 0),
            pairs,
            WeightGradPath::Direct3x3,
            InputGradPath::Transposed,
        ),
        (
            conv(1, 1, 50, 50, 16, 3, 3, 1, 0),
            nine,
            WeightGradPath::Direct3x3,
            InputGradPath::Transposed,
        ),
        (
            conv(1, 4, 9, 9, 3, 1, 1, 1, 0),
            ForwardPath::Taps,
            WeightGradPath::Gemm,
            InputGradPath::Transposed,
        ),
        (
            conv(1, 1, 9, 9, 3, 2, 2, 1, 1),
            ForwardPath::Taps,
            WeightGradPath::DirectArea,
            InputGradPath::Transposed,
        ),
        (
            conv(1, 3, 64, 64, 16, 3, 3, 1, 1),
            ForwardPath::Grouped,
            WeightGradPath::Direct3x3,
            InputGradPath::Transposed,
        ),
        (
            conv(1, 32, 16, 16, 64, 3, 3, 1, 1),
            ForwardPath::Grouped,
            WeightGradPath::Direct3x3,
            InputGradPath::Transposed,
        ),
        (
            conv(1, 3, 9, 9, 3, 5, 5, 1, 2),
            ForwardPath::Grouped,
            WeightGradPath::DirectArea,
            InputGradPath::Transposed,
        ),
        (
            conv(1, 2, 9, 9, 3, 1, 3, 1, 0),
            ForwardPath::Grouped,
            WeightGradPath::DirectRows,
            InputGradPath::Col2im,
        ),
        (
            conv(1, 2, 9, 9, 3, 2, 5, 1, 1),
            ForwardPath::Grouped,
            WeightGradPath::DirectRows,
            InputGradPath::Col2im,
        ),
        (
            conv(1, 4, 9, 9, 3, 2, 5, 1, 1),
            ForwardPath::Grouped,
            WeightGradPath::Gemm,
            InputGradPath::Col2im,
        ),
        (
            conv(1, 2, 9, 9, 3, 2, 2, 1, 2),
            ForwardPath::Grouped,
            WeightGradPath::DirectArea,
            InputGradPath::Col2im,
        ),
        (
            conv(1, 1, 9, 9, 3, 3, 3, 2, 1),
            ForwardPath::Polyphase,
            WeightGradPath::Gemm, // ow 5 < 16
            InputGradPath::Polyphase,
        ),
        // ResNet's stride-2 convs: 3x3 pad 1 and the 1x1 projection, at 32x32 and 16x16.
        (
            conv(16, 16, 32, 32, 32, 3, 3, 2, 1),
            ForwardPath::Polyphase,
            WeightGradPath::Polyphase,
            InputGradPath::Polyphase,
        ),
        (
            conv(16, 32, 16, 16, 64, 3, 3, 2, 1),
            ForwardPath::Polyphase,
            WeightGradPath::Gemm, // ow 8 < 16
            InputGradPath::Polyphase,
        ),
        (
            conv(16, 16, 32, 32, 32, 1, 1, 2, 0),
            ForwardPath::Polyphase,
            WeightGradPath::Polyphase,
            InputGradPath::Polyphase,
        ),
        (
            conv(16, 32, 16, 16, 64, 1, 1, 2, 0),
            ForwardPath::Polyphase,
            WeightGradPath::Polyphase, // 1x1: any width
            InputGradPath::Polyphase,
        ),
        // Other strided kernels stay on GEMM.
        (
            conv(2, 4, 20, 20, 8, 2, 2, 2, 0),
            ForwardPath::Gemm,
            WeightGradPath::Gemm,
            InputGradPath::Col2im,
        ),
        (
            conv(2, 4, 40, 40, 8, 3, 3, 3, 1),
            ForwardPath::Gemm,
            WeightGradPath::Gemm,
            InputGradPath::Col2im,
        ),
        (
            conv(2, 4, 40, 40, 8, 3, 1, 2, 1),
            ForwardPath::Gemm,
            WeightGradPath::Gemm,
            InputGradPath::Col2im,
        ),
    ];
    for (s, fwd, dw, dx) in cases {
        assert_eq!(
            (s.forward_path(), s.weight_grad_path(), s.input_grad_path()),
            (fwd, dw, dx),
            "{s:?}"
        );
        assert!(fwd.supports(&s) && dw.supports(&s) && dx.supports(&s), "{s:?}");
    }
}

/// Each kernel's scratch size is its chosen path's, and a forced path asks for its own.
#[test]
fn conv2d_scratch_lens_are_those_of_the_chosen_paths() {
    let mut shapes = conv_fixed_shapes();
    shapes.extend(conv_random_shapes(33_000, 30));
    for s in shapes {
        assert_eq!(s.forward_scratch_len(), s.forward_path().scratch_len(&s), "{s:?}");
        assert_eq!(
            s.backward_weights_scratch_len(),
            s.weight_grad_path().scratch_len(&s),
            "{s:?}"
        );
        assert_eq!(
            s.backward_input_scratch_len(),
            s.input_grad_path().scratch_len(&s),
            "{s:?}"
        );
        // The model bounds one sample's scratch with this after validate().
        let one = Conv2dShape { batch: 1, ..s };
        assert!(one.scratch_len() <= s.scratch_len(), "{s:?}");
    }
}
