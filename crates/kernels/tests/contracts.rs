//! Shape contracts: a kernel called with slices that do not fit its shape panics with a
//! message naming the mismatch (the exact texts are in the kernels' source), bad shapes are
//! reported by `validate()` with the right `ShapeError` variant, and scratch buffers larger
//! than asked for (and holding garbage) are fine.

mod common;

use common::*;
use petal_kernels::*;

// ---------------------------------------------------------------- pooling

#[test]
#[should_panic(expected = "max_pool2d_forward: x has 15 values, expected 16")]
fn pool_forward_x_wrong() {
    max_pool2d_forward(&pool(1, 1, 4, 4, 2, 2), &[0.0; 15], &mut [0.0; 4], &mut [0; 4]);
}

#[test]
#[should_panic(expected = "max_pool2d_forward: y has 5 values, expected 4")]
fn pool_forward_y_wrong() {
    max_pool2d_forward(&pool(1, 1, 4, 4, 2, 2), &[0.0; 16], &mut [0.0; 5], &mut [0; 4]);
}

#[test]
#[should_panic(expected = "max_pool2d_forward: argmax has 3 values, expected 4")]
fn pool_forward_argmax_wrong() {
    max_pool2d_forward(&pool(1, 1, 4, 4, 2, 2), &[0.0; 16], &mut [0.0; 4], &mut [0; 3]);
}

#[test]
#[should_panic(expected = "max_pool2d_backward: argmax 16 outside the 4x4 plane")]
fn pool_backward_argmax_outside_plane() {
    // The second plane's index must be in-plane (0..16), not a flat index.
    max_pool2d_backward(
        &pool(1, 2, 4, 4, 2, 2),
        &[1.0; 8],
        &[0, 2, 8, 10, 16, 2, 8, 10],
        &mut [0.0; 32],
    );
}

#[test]
#[should_panic(
    expected = "max_pool2d_backward: argmax 6 of output (0, 0) outside its 2x2 window in the 4x4 plane"
)]
fn pool_backward_argmax_outside_its_window() {
    // In the plane, but in the window of output (0, 1), not (0, 0): not from this forward.
    max_pool2d_backward(&pool(1, 1, 4, 4, 2, 2), &[1.0; 4], &[6, 2, 8, 10], &mut [0.0; 16]);
}

#[test]
#[should_panic(
    expected = "max_pool2d_backward: argmax 70 of output (0, 1) outside its 2x2 window in the 4x20 plane"
)]
fn pool_backward_argmax_outside_its_window_simd() {
    // Ten outputs per row: the first eight take the SIMD path.
    let am: Vec<u32> = (0..20).map(|o| ((o / 10) * 40 + (o % 10) * 2) as u32).collect();
    let mut am = am;
    am[1] = 70;
    max_pool2d_backward(&pool(1, 1, 4, 20, 2, 2), &[1.0; 20], &am, &mut [0.0; 80]);
}

#[test]
#[should_panic(
    expected = "max_pool2d_backward: argmax 4 of output (0, 3) outside its 2x2 window in the 2x40 plane"
)]
fn pool_backward_argmax_outside_its_window_wide_simd() {
    // Twenty outputs: the first sixteen take the 16-lane path where the CPU has AVX-512.
    // Output 3's window starts at column 6; 4 is output 2's.
    let mut am: Vec<u32> = (0..20).map(|o| 2 * o as u32).collect();
    am[3] = 4;
    max_pool2d_backward(&pool(1, 1, 2, 40, 2, 2), &[1.0; 20], &am, &mut [0.0; 80]);
}

#[test]
#[should_panic(expected = "max_pool2d_backward: dx has 31 values, expected 32")]
fn pool_backward_dx_wrong() {
    max_pool2d_backward(&pool(1, 2, 4, 4, 2, 2), &[1.0; 8], &[0; 8], &mut [0.0; 31]);
}

#[test]
#[should_panic(expected = "max_pool2d_backward: dy has 7 values, expected 8")]
fn pool_backward_dy_wrong() {
    max_pool2d_backward(&pool(1, 2, 4, 4, 2, 2), &[1.0; 7], &[0; 8], &mut [0.0; 32]);
}

#[test]
#[should_panic(expected = "max_pool2d_backward: argmax has 9 values, expected 8")]
fn pool_backward_argmax_len_wrong() {
    max_pool2d_backward(&pool(1, 2, 4, 4, 2, 2), &[1.0; 8], &[0; 9], &mut [0.0; 32]);
}

#[test]
#[should_panic(expected = "max_pool2d: k must be at least 1")]
fn pool_zero_kernel() {
    max_pool2d_forward(&pool(1, 1, 4, 4, 0, 1), &[0.0; 16], &mut [], &mut []);
}

#[test]
#[should_panic(expected = "max_pool2d: kernel 5x5 is larger than the input 4x6")]
fn pool_kernel_larger_than_input() {
    max_pool2d_forward(&pool(1, 1, 4, 6, 5, 1), &[0.0; 24], &mut [], &mut []);
}

// ---------------------------------------------------------------- dense

fn dense(batch: usize, inputs: usize, outputs: usize) -> DenseShape {
    DenseShape {
        batch,
        inputs,
        outputs,
    }
}

#[test]
#[should_panic(expected = "dense: batch must be at least 1")]
fn dense_zero_batch() {
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

// ---------------------------------------------------------------- ReLU, softmax, SGD, SIMD

#[test]
#[should_panic(expected = "relu_forward: x has 3 values, y has 4")]
fn relu_forward_length_mismatch() {
    relu_forward(&[0.0; 3], &mut [0.0; 4]);
}

#[test]
#[should_panic(expected = "relu_backward: y has 3, dy 3, dx 2 values; they must match")]
fn relu_backward_length_mismatch() {
    relu_backward(&[0.0; 3], &[0.0; 3], &mut [0.0; 2]);
}

#[test]
#[should_panic(expected = "relu_backward: y has 2, dy 3, dx 3 values; they must match")]
fn relu_backward_y_length_mismatch() {
    relu_backward(&[0.0; 2], &[0.0; 3], &mut [0.0; 3]);
}

#[test]
#[should_panic(expected = "softmax_forward: classes must be at least 1")]
fn softmax_zero_classes() {
    softmax_forward(&[0.0; 4], 0, &mut [0.0; 4]);
}

#[test]
#[should_panic(expected = "softmax_forward: logits has 7 values, not a multiple of 5 classes")]
fn softmax_logits_not_a_multiple() {
    softmax_forward(&[0.0; 7], 5, &mut [0.0; 7]);
}

#[test]
#[should_panic(expected = "softmax_forward: probs has 9 values, expected 10")]
fn softmax_probs_wrong() {
    softmax_forward(&[0.0; 10], 5, &mut [0.0; 9]);
}

#[test]
#[should_panic(expected = "softmax_cross_entropy: labels has 3 values, expected 2")]
fn cross_entropy_labels_wrong() {
    let _ = softmax_cross_entropy(
        &[0.0; 10],
        &[0, 1, 2],
        5,
        &mut [0.0; 10],
        &mut [0.0; 2],
        &mut [0.0; 10],
    );
}

#[test]
#[should_panic(expected = "softmax_cross_entropy: losses has 1 values, expected 2")]
fn cross_entropy_losses_wrong() {
    let _ = softmax_cross_entropy(
        &[0.0; 10],
        &[0, 1],
        5,
        &mut [0.0; 10],
        &mut [0.0; 1],
        &mut [0.0; 10],
    );
}

#[test]
#[should_panic(expected = "softmax_cross_entropy: grad_logits has 11 values, expected 10")]
fn cross_entropy_grad_wrong() {
    let _ = softmax_cross_entropy(
        &[0.0; 10],
        &[0, 1],
        5,
        &mut [0.0; 10],
        &mut [0.0; 2],
        &mut [0.0; 11],
    );
}

fn sgd_cfg(momentum: f32) -> SgdConfig {
    SgdConfig {
        lr: 0.1,
        momentum,
        weight_decay: 0.0,
    }
}

#[test]
#[should_panic(expected = "sgd_step: params has 3 values, grads has 2")]
fn sgd_grads_length_mismatch() {
    sgd_step(&sgd_cfg(0.0), &mut [0.0; 3], &[0.0; 2], &mut []);
}

#[test]
#[should_panic(expected = "sgd_step: velocity has 0 values, params has 3 (momentum 0.9)")]
fn sgd_momentum_needs_velocity() {
    sgd_step(&sgd_cfg(0.9), &mut [0.0; 3], &[0.0; 3], &mut []);
}

#[test]
#[should_panic(expected = "sgd_step: velocity has 2 values, params has 3 (momentum 0.9)")]
fn sgd_velocity_length_mismatch() {
    sgd_step(&sgd_cfg(0.9), &mut [0.0; 3], &[0.0; 3], &mut [0.0; 2]);
}

#[test]
#[should_panic(expected = "sgd_step: velocity has 2 values, params has 3 (momentum 0)")]
fn sgd_velocity_length_mismatch_without_momentum() {
    sgd_step(&sgd_cfg(0.0), &mut [0.0; 3], &[0.0; 3], &mut [0.0; 2]);
}

#[test]
#[should_panic(expected = "add_assign: y has 3 values, x has 2")]
fn simd_add_assign_mismatch() {
    simd::add_assign(&mut [0.0; 3], &[0.0; 2]);
}

#[test]
#[should_panic(expected = "axpy: y has 9 values, x has 8")]
fn simd_axpy_mismatch() {
    simd::axpy(&mut [0.0; 9], 1.0, &[0.0; 8]);
}

#[test]
#[should_panic(expected = "dot: a has 8 values, b has 9")]
fn simd_dot_mismatch() {
    simd::dot(&[0.0; 8], &[0.0; 9]);
}

// ---------------------------------------------------------------- validate()

/// Sets one field of a shape to zero.
type Zeroer<S> = fn(&mut S);

#[test]
fn pool_validate_reports_bad_shapes() {
    let ok = pool(2, 3, 5, 6, 2, 2);
    assert_eq!(ok.validate(), Ok(()));
    let fields: [(&str, Zeroer<Pool2dShape>); 6] = [
        ("batch", |s| s.batch = 0),
        ("c", |s| s.c = 0),
        ("h", |s| s.h = 0),
        ("w", |s| s.w = 0),
        ("k", |s| s.k = 0),
        ("stride", |s| s.stride = 0),
    ];
    for (field, zero) in fields {
        let mut s = ok;
        zero(&mut s);
        assert_eq!(
            s.validate(),
            Err(ShapeError::Zero {
                what: "max_pool2d",
                field
            }),
            "{s:?}"
        );
    }
    for (h, w) in [(2, 5), (5, 2)] {
        assert_eq!(
            pool(1, 1, h, w, 3, 1).validate(),
            Err(ShapeError::KernelTooLarge {
                what: "max_pool2d",
                kernel: (3, 3),
                input: (h, w)
            })
        );
    }
    // A window exactly the input's size is valid: one output.
    let whole = pool(1, 1, 3, 3, 3, 5);
    assert_eq!(whole.validate(), Ok(()));
    assert_eq!((whole.out_h(), whole.out_w(), whole.output_len()), (1, 1, 1));
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

#[test]
#[should_panic(expected = "dense: the input would hold")]
fn dense_kernel_refuses_wrapping_sizes() {
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
