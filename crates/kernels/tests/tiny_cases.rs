//! Hand-worked tiny cases with their expected values written out: conv (both paths, with
//! padding and an all-padding border), dense, pool ties and NaN propagation, ReLU with NaN,
//! softmax with huge logits, cross-entropy where `p_c` underflows, label errors, and SGD.
//! Each is small enough to check by hand in the comment next to it.

mod common;

use common::*;
use petal_kernels::*;

/// x = [1, 2], W = [[1,0],[0,1],[1,1]], b = [0.5, -1, 0]: y = [1.5, 1, 3].
/// dy = [1, 2, 3]: dW = dyᵀx = [[1,2],[2,4],[3,6]], db = [1,2,3], dx = dy·W = [4, 5].
#[test]
fn dense_hand_worked() {
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

fn pool_run(s: &Pool2dShape, x: &[f32]) -> (Vec<f32>, Vec<u32>) {
    let mut y = vec![0.0; s.output_len()];
    let mut am = vec![u32::MAX; s.output_len()];
    max_pool2d_forward(s, x, &mut y, &mut am);
    (y, am)
}

fn pool_back(s: &Pool2dShape, dy: &[f32], am: &[u32]) -> Vec<f32> {
    let mut dx = vec![f32::NAN; s.input_len()];
    max_pool2d_backward(s, dy, am, &mut dx);
    dx
}

/// 2x2/2 windows of
/// ```text
/// 1  5 | 2 0
/// 3  4 | 8 8
/// -----+-----
/// 0  0 | 1 1
/// 9 -1 | 1 1
/// ```
/// maxima 5 (index 1), 8 (tie: first, index 6), 9 (index 12), 1 (all equal: first, 10).
#[test]
fn pool_hand_worked_ties_go_to_first_maximum() {
    let s = pool(1, 1, 4, 4, 2, 2);
    #[rustfmt::skip]
    let x = [
        1.0, 5.0, 2.0, 0.0,
        3.0, 4.0, 8.0, 8.0,
        0.0, 0.0, 1.0, 1.0,
        9.0, -1.0, 1.0, 1.0,
    ];
    let (y, am) = pool_run(&s, &x);
    assert_eq!(y, vec![5.0, 8.0, 9.0, 1.0]);
    assert_eq!(am, vec![1, 6, 12, 10]);
    let dx = pool_back(&s, &[1.0, 2.0, 3.0, 4.0], &am);
    let mut want = vec![0.0; 16];
    (want[1], want[6], want[12], want[10]) = (1.0, 2.0, 3.0, 4.0);
    assert_eq!(dx, want);
}

/// All-equal input: every window's argmax is its first (top-left) element, on the 2x2/2
/// path, the general path with overlap (3, stride 1), and windows of -inf; -0.0 and 0.0
/// compare equal, so the first of them wins too.
#[test]
fn pool_all_equal_windows_pick_first_element() {
    let s = pool(1, 1, 4, 4, 2, 2);
    assert_eq!(pool_run(&s, &[7.0; 16]), (vec![7.0; 4], vec![0, 2, 8, 10]));
    let s = pool(1, 1, 4, 4, 3, 1);
    assert_eq!(pool_run(&s, &[7.0; 16]), (vec![7.0; 4], vec![0, 1, 4, 5]));
    let s = pool(1, 1, 5, 5, 3, 2);
    let (y, am) = pool_run(&s, &[f32::NEG_INFINITY; 25]);
    assert_eq!((y, am), (vec![f32::NEG_INFINITY; 4], vec![0, 2, 10, 12]));
    let s = pool(1, 1, 2, 2, 2, 2);
    let (_, am) = pool_run(&s, &[-0.0, 0.0, 0.0, 0.0]);
    assert_eq!(am, vec![0]);
    let s = pool(1, 1, 3, 3, 3, 1);
    let (_, am) = pool_run(&s, &[-0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    assert_eq!(am, vec![0]);
}

/// Overlapping windows that share one maximum both send their gradient to it: 2x2 windows
/// with stride 1 over [[0, 9, 0], [0, 0, 0]] both pick index 1, so dx[1] = dy0 + dy1.
/// Same for k 3 stride 2 where the shared column holds the maximum.
#[test]
fn pool_overlapping_windows_accumulate_gradient() {
    let s = pool(1, 1, 2, 3, 2, 1);
    let (y, am) = pool_run(&s, &[0.0, 9.0, 0.0, 0.0, 0.0, 0.0]);
    assert_eq!((y, am.clone()), (vec![9.0, 9.0], vec![1, 1]));
    assert_eq!(
        pool_back(&s, &[0.25, 0.5], &am),
        vec![0.0, 0.75, 0.0, 0.0, 0.0, 0.0]
    );

    let s = pool(1, 1, 3, 5, 3, 2);
    #[rustfmt::skip]
    let x = [
        0.0, 1.0, 2.0, 1.0, 0.0,
        0.0, 1.0, 5.0, 1.0, 0.0,
        0.0, 1.0, 2.0, 1.0, 0.0,
    ];
    let (y, am) = pool_run(&s, &x);
    assert_eq!((y, am.clone()), (vec![5.0, 5.0], vec![7, 7]));
    let mut want = vec![0.0; 15];
    want[7] = 3.0;
    assert_eq!(pool_back(&s, &[1.0, 2.0], &am), want);
}

/// A NaN in a window wins (propagates) at the first NaN position, even after a larger
/// value and even when it is the window's first element; on both pool paths. Backward
/// routes the gradient to the NaN's position.
#[test]
fn pool_propagates_nan() {
    let nan = f32::NAN;
    // 2x2/2 path: windows {1, NaN, 7, 8} and {5, 6, NaN, NaN}.
    let s = pool(1, 1, 2, 4, 2, 2);
    let (y, am) = pool_run(&s, &[1.0, nan, 5.0, 6.0, 7.0, 8.0, nan, nan]);
    assert!(y[0].is_nan() && y[1].is_nan());
    assert_eq!(am, vec![1, 6]);
    assert_eq!(
        pool_back(&s, &[1.0, 2.0], &am),
        vec![0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0]
    );
    // NaN first, larger values after: still NaN.
    let (y, am) = pool_run(&s, &[nan, 9.0, 1.0, 1.0, 1.0, 1.0, 3.0, 1.0]);
    assert!(y[0].is_nan());
    assert_eq!((y[1], am.clone()), (3.0, vec![0, 6]));
    // General path (3x3, stride 1): NaN in the last tap of the first window only.
    let s = pool(1, 1, 3, 4, 3, 1);
    #[rustfmt::skip]
    let x = [
        9.0, 1.0, 1.0, 1.0,
        1.0, 1.0, 1.0, 1.0,
        1.0, 1.0, 1.0, nan,
    ];
    let (y, am) = pool_run(&s, &x);
    assert_eq!(y[0], 9.0);
    assert!(y[1].is_nan());
    assert_eq!(am, vec![0, 11]);
    let (y, am) = pool_run(&s, &[nan, 9.0, 1.0, 1.0, 1.0, nan, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
    assert!(y[0].is_nan() && y[1].is_nan());
    assert_eq!(am, vec![0, 5]);
}

/// ReLU keeps NaN (SIMD body and scalar tail: 10 values), zeroes negatives, -0.0, -inf;
/// the backward gives 0 where y is NaN, 0 (the kink) or negative.
#[test]
fn relu_nan_and_special_values() {
    let nan = f32::NAN;
    let inf = f32::INFINITY;
    let x = [nan, -1.0, 2.0, -0.0, 0.0, inf, -inf, nan, 3.0, nan];
    let mut y = [0.5; 10];
    relu_forward(&x, &mut y);
    let mut inplace = x;
    relu_forward_inplace(&mut inplace);
    for out in [y, inplace] {
        assert!(out[0].is_nan() && out[7].is_nan() && out[9].is_nan(), "{out:?}");
        assert_eq!(
            [out[1], out[2], out[3], out[4], out[5], out[6], out[8]],
            [0.0, 2.0, 0.0, 0.0, inf, 0.0, 3.0]
        );
    }
    let mut dx = [nan; 10];
    relu_backward(&y, &[1.0; 10], &mut dx);
    assert_eq!(dx, [0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]);
}

fn ce(
    t: &[f32],
    labels: &[usize],
    classes: usize,
) -> (Result<f32, LabelError>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut p = vec![f32::NAN; t.len()];
    let mut l = vec![f32::NAN; labels.len()];
    let mut g = vec![f32::NAN; t.len()];
    let r = softmax_cross_entropy(t, labels, classes, &mut p, &mut l, &mut g);
    (r, p, l, g)
}

/// Logits (1000, -1000): exp(1000) overflows f32, the max-shifted form does not.
/// p = (1, 0); label 1: L = log(1 + e^-2000) + 2000 = 2000, grad (p - onehot) / 2 =
/// (0.5, -0.5); label 0: L = 0, grad 0. Mean 1000.
#[test]
fn softmax_huge_logits_stay_finite() {
    let mut p = [f32::NAN; 3];
    softmax_forward(&[1000.0, 999.0, -1000.0], 3, &mut p);
    let e = (-1.0f64).exp();
    assert!((p[0] as f64 - 1.0 / (1.0 + e)).abs() < 1e-6 && (p[1] as f64 - e / (1.0 + e)).abs() < 1e-6);
    assert_eq!(p[2], 0.0);
    let mut p = [f32::NAN; 4];
    softmax_forward(&[-1000.0, -1000.0, 88.0, 88.0], 2, &mut p);
    assert_eq!(p, [0.5; 4]);

    let (r, p, l, g) = ce(&[1000.0, -1000.0, 1000.0, -1000.0], &[1, 0], 2);
    assert_eq!(r, Ok(1000.0));
    assert_eq!(p, vec![1.0, 0.0, 1.0, 0.0]);
    assert_eq!(l, vec![2000.0, 0.0]);
    assert_eq!(g, vec![0.5, -0.5, 0.0, 0.0]);
}

/// p_c underflows to 0 in f32 (e^-200), so -log p_c computed naively is inf; the fused
/// form gives L = 200 + log(1 + e^-200) = 200 and grad (p - onehot) = (-1, 1), finite.
#[test]
fn cross_entropy_with_underflowed_true_class_probability() {
    for (t, want) in [
        ([0.0f32, 200.0], 200.0f64),
        ([-50.0, 60.0], 110.0),
        ([0.0, 20.0], 20.0f64.exp().ln_1p()),
    ] {
        let (r, p, l, g) = ce(&t, &[0], 2);
        let loss = r.expect("valid label");
        assert!(loss.is_finite() && l[0].is_finite());
        assert!(
            (loss as f64 - want).abs() <= 1e-6 * want,
            "loss {loss}, want {want}"
        );
        assert_eq!(loss, l[0]);
        assert!(p.iter().all(|v| v.is_finite()));
        assert!((g[0] + 1.0).abs() < 1e-6 && (g[1] - 1.0).abs() < 1e-6, "{g:?}");
    }
    // Three classes, p_0 = e^-300 / (1 + e^-1 + ...): L = 300 + log(1 + e^-1).
    let (r, ..) = ce(&[-300.0, 0.0, -1.0], &[0], 3);
    let want = 300.0 + (-1.0f64).exp().ln_1p();
    assert!((r.unwrap() as f64 - want).abs() <= 1e-6 * want);
}

/// An out-of-range label is reported (the first one, by sample) and nothing is written.
#[test]
fn cross_entropy_label_out_of_range_is_an_error_and_writes_nothing() {
    let t: Vec<f32> = (0..15).map(|v| v as f32 * 0.1).collect();
    for (labels, sample, label) in [(vec![0, 5, 7], 1, 5), (vec![4, 3, usize::MAX], 2, usize::MAX)] {
        let sentinel = f32::from_bits(0x7fc0_1234); // a NaN with a payload
        let mut p = vec![sentinel; 15];
        let mut l = vec![sentinel; 3];
        let mut g = vec![sentinel; 15];
        let r = softmax_cross_entropy(&t, &labels, 5, &mut p, &mut l, &mut g);
        let err = r.expect_err("label out of range");
        assert_eq!(
            err,
            LabelError {
                sample,
                label,
                classes: 5
            }
        );
        assert_eq!(
            err.to_string(),
            format!("label {label} of sample {sample} is out of range: there are 5 classes (0..5)")
        );
        let untouched = |v: &[f32]| v.iter().all(|x| x.to_bits() == sentinel.to_bits());
        assert!(
            untouched(&p) && untouched(&l) && untouched(&g),
            "outputs were written"
        );
    }
}

/// Momentum 0 and an empty velocity: w -= lr·(g + wd·w).
/// w = (1, -2), g = (0.5, 0.25), lr 0.1, wd 0.01: d = (0.51, 0.23), w = (0.949, -2.023).
/// Nine values cover the SIMD body and the tail.
#[test]
fn sgd_momentum_zero_with_empty_velocity() {
    let cfg = SgdConfig {
        lr: 0.1,
        momentum: 0.0,
        weight_decay: 0.01,
    };
    let mut w = vec![1.0f32, -2.0, 1.0, -2.0, 1.0, -2.0, 1.0, -2.0, 1.0];
    let g = [0.5f32, 0.25, 0.5, 0.25, 0.5, 0.25, 0.5, 0.25, 0.5];
    sgd_step(&cfg, &mut w, &g, &mut []);
    for (i, &v) in w.iter().enumerate() {
        let want = if i % 2 == 0 { 0.949 } else { -2.023 };
        assert!((v as f64 - want).abs() < 1e-6, "w[{i}] = {v}, want {want}");
    }
    // Passing a velocity buffer with momentum 0 must not change the update.
    let mut w2 = vec![1.0f32, -2.0, 1.0, -2.0, 1.0, -2.0, 1.0, -2.0, 1.0];
    let mut v = vec![0.0f32; 9];
    sgd_step(&cfg, &mut w2, &g, &mut v);
    assert!(
        w.iter().zip(&w2).all(|(a, b)| a.to_bits() == b.to_bits()),
        "{w:?} vs {w2:?}"
    );
    // No weight decay: w - lr·g.
    let cfg = SgdConfig {
        weight_decay: 0.0,
        ..cfg
    };
    let mut w = [1.0f32, -2.0];
    sgd_step(&cfg, &mut w, &[0.5, 0.25], &mut []);
    assert_eq!(w, [0.95, -2.025]);
}

/// Momentum 0.9, lr 0.1, constant gradient 1, w0 = 0: v = 1, 1.9, 2.71 and
/// w = -0.1, -0.29, -0.561 (PyTorch: v = m·v + g; w -= lr·v). With weight decay 0.5 and
/// w0 = 2, g = 0: d = 1, v = 1, w = 1.9; then d = 0.95, v = 1.85, w = 1.715.
#[test]
fn sgd_momentum_hand_worked() {
    let cfg = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.0,
    };
    let mut w = vec![0.0f32; 11];
    let mut v = vec![0.0f32; 11];
    for (want_v, want_w) in [(1.0, -0.1), (1.9, -0.29), (2.71, -0.561)] {
        sgd_step(&cfg, &mut w, &[1.0; 11], &mut v);
        assert!(v.iter().all(|&x| (x as f64 - want_v).abs() < 1e-6), "{v:?}");
        assert!(w.iter().all(|&x| (x as f64 - want_w).abs() < 1e-6), "{w:?}");
    }
    let cfg = SgdConfig {
        weight_decay: 0.5,
        ..cfg
    };
    let mut w = vec![2.0f32; 9];
    let mut v = vec![0.0f32; 9];
    for (want_v, want_w) in [(1.0, 1.9), (1.85, 1.715)] {
        sgd_step(&cfg, &mut w, &[0.0; 9], &mut v);
        assert!(v.iter().all(|&x| (x as f64 - want_v).abs() < 1e-6), "{v:?}");
        assert!(w.iter().all(|&x| (x as f64 - want_w).abs() < 1e-6), "{w:?}");
    }
}
