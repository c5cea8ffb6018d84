//! `softmax_forward`, `softmax_cross_entropy` (the fused loss and logit gradient) and
//! `softmax_cross_entropy_loss` (`src/softmax.rs`): against the f64 reference, the gradient
//! against finite differences of the loss (the reference's too), hand-worked extreme logits
//! and underflowing probabilities, label errors, and shape contracts.

mod common;

use common::reference as refk;
use common::*;
use petal_kernels::*;
use rand::Rng;

// ------------------------------------------------- against the f64 reference

fn softmax_cases(r: &mut rand_chacha::ChaCha8Rng) -> Vec<(usize, usize, f32)> {
    let mut cases = vec![
        (1, 1, 1.0),
        (1, 5, 1.0),
        (4, 5, 10.0),
        (13, 2, 3.0),
        (32, 10, 5.0),
        (7, 37, 30.0),
    ];
    for _ in 0..24 {
        cases.push((
            r.random_range(1..=20),
            r.random_range(1..=40),
            r.random_range(0.1..50.0),
        ));
    }
    cases
}

#[test]
fn softmax_forward_matches_reference() {
    let mut r = rng(7000);
    for (batch, classes, scale) in softmax_cases(&mut r) {
        let t: Vec<f32> = rand_vec(&mut r, batch * classes)
            .iter()
            .map(|v| v * scale)
            .collect();
        let mut p = vec![f32::NAN; t.len()];
        softmax_forward(&t, classes, &mut p);
        let want = refk::softmax(&f64s(&t), classes);
        // Element-wise exp and one normalisation: a few roundings per value.
        assert_close(
            &format!("softmax_forward {batch}x{classes}"),
            &p,
            &want,
            ELEMENTWISE_TOL,
        );
    }
}

/// The fused kernel's probabilities, per-sample losses, mean loss and logit gradients all
/// match the reference.
#[test]
fn softmax_cross_entropy_matches_reference() {
    let mut r = rng(7100);
    for (batch, classes, scale) in softmax_cases(&mut r) {
        let t: Vec<f32> = rand_vec(&mut r, batch * classes)
            .iter()
            .map(|v| v * scale)
            .collect();
        let labels: Vec<usize> = (0..batch).map(|_| r.random_range(0..classes)).collect();
        let mut p = vec![f32::NAN; t.len()];
        let mut losses = vec![f32::NAN; batch];
        let mut g = vec![f32::NAN; t.len()];
        let mean =
            softmax_cross_entropy(&t, &labels, classes, &mut p, &mut losses, &mut g).expect("valid labels");
        let want = refk::softmax_cross_entropy(&f64s(&t), &labels, classes);
        let what = format!("softmax_cross_entropy {batch}x{classes} scale {scale}");
        assert_close(&format!("{what}: probs"), &p, &want.probs, ELEMENTWISE_TOL);
        // L_n = log Σ exp(t - m) - (t_c - m): the rounding of the logits' difference (up
        // to 2·scale) and of the log-sum, relative to the largest loss.
        assert_close(&format!("{what}: losses"), &losses, &want.losses, 1e-5);
        assert_close(&format!("{what}: mean"), &[mean], &[want.mean], 1e-5);
        assert_close(&format!("{what}: grad"), &g, &want.grad, ELEMENTWISE_TOL);
    }
}

/// The forward-only loss returns exactly the fused kernel's mean loss and probabilities
/// (one shared row computation), which match the f64 reference; bad labels are refused.
#[test]
fn softmax_cross_entropy_loss_matches_the_fused_kernel_and_reference() {
    let mut r = rng(17_000);
    for (batch, classes) in [(1, 1), (3, 5), (17, 10), (64, 5)] {
        let t: Vec<f32> = (0..batch * classes)
            .map(|_| r.random_range(-30.0f32..30.0))
            .collect();
        let labels: Vec<usize> = (0..batch).map(|_| r.random_range(0..classes)).collect();
        let (mut p1, mut p2) = (vec![f32::NAN; t.len()], vec![f32::NAN; t.len()]);
        let (mut losses, mut g) = (vec![0.0; batch], vec![0.0; t.len()]);
        let fused = softmax_cross_entropy(&t, &labels, classes, &mut p1, &mut losses, &mut g).unwrap();
        let alone = softmax_cross_entropy_loss(&t, &labels, classes, &mut p2).unwrap();
        assert_eq!(
            fused.to_bits(),
            alone.to_bits(),
            "batch {batch}, classes {classes}"
        );
        assert_eq!(p1, p2);
        let want = refk::softmax_cross_entropy(&f64s(&t), &labels, classes);
        assert!(
            (alone as f64 - want.mean).abs() <= 1e-5 * want.mean.abs().max(1.0),
            "{alone} vs {}",
            want.mean
        );
    }
    let mut p = vec![0.0; 10];
    let e = softmax_cross_entropy_loss(&[0.0; 10], &[1, 5], 5, &mut p).unwrap_err();
    assert_eq!(
        e,
        LabelError {
            sample: 1,
            label: 5,
            classes: 5
        }
    );
}

// ------------------------------------------------- finite differences

/// Proves softmax_cross_entropy's logit gradient is the derivative of the mean loss it
/// returns (the loss is taken as the f64 mean of the per-sample losses it writes, so its
/// rounding stays ~1e-7 per sample). With ε = 1e-2 the O(ε²) truncation is ~1e-5 of the
/// gradient scale.
#[test]
fn softmax_cross_entropy_gradient_matches_finite_differences_of_its_loss() {
    let mut r = rng(22_000);
    for (batch, classes) in [(1, 2), (3, 5), (6, 10), (13, 4)] {
        let t: Vec<f32> = rand_vec(&mut r, batch * classes)
            .iter()
            .map(|v| 2.0 * v)
            .collect();
        let labels: Vec<usize> = (0..batch).map(|_| r.random_range(0..classes)).collect();
        let run = |t: &[f32]| {
            let mut p = vec![0.0; t.len()];
            let mut losses = vec![0.0; batch];
            let mut g = vec![0.0; t.len()];
            let mean = softmax_cross_entropy(t, &labels, classes, &mut p, &mut losses, &mut g).unwrap();
            (mean, losses, g)
        };
        let (mean, losses, g) = run(&t);
        let mean64 = losses.iter().map(|&l| l as f64).sum::<f64>() / batch as f64;
        assert!(
            (mean as f64 - mean64).abs() <= 1e-6 * mean64.abs().max(1.0),
            "mean {mean} vs {mean64}"
        );
        let loss = |tt: &[f32]| {
            let (_, l, _) = run(tt);
            l.iter().map(|&v| v as f64).sum::<f64>() / batch as f64
        };
        let fd: Vec<_> = sample_indices(&mut r, t.len(), 20)
            .into_iter()
            .map(|i| (i, central_diff32(loss, &t, i, FD_EPS)))
            .collect();
        let e = fd_err(&g, &fd);
        assert!(
            e < FD_TOL,
            "{batch}x{classes}: CE grad vs finite differences of the loss: {e:e}"
        );
    }
}

/// Proves the reference cross-entropy gradient `(p - onehot) / B` is the derivative of the
/// reference mean loss with respect to the logits.
#[test]
fn reference_softmax_cross_entropy_gradient_matches_finite_differences() {
    let mut r = rng(105);
    for (batch, classes) in [(1, 2), (3, 5), (7, 10), (4, 1)] {
        let t: Vec<f64> = rand_vec(&mut r, batch * classes)
            .iter()
            .map(|&v| 3.0 * v as f64)
            .collect();
        let labels: Vec<usize> = (0..batch).map(|n| (n * 7 + 3) % classes).collect();
        let ce = refk::softmax_cross_entropy(&t, &labels, classes);
        let eps = 1e-5;
        let loss = |tt: &[f64]| refk::softmax_cross_entropy(tt, &labels, classes).mean;
        let fd: Vec<_> = (0..t.len())
            .map(|i| (i, central_diff64(loss, &t, i, eps)))
            .collect();
        let e = fd_rel_err(&ce.grad, &fd);
        if classes > 1 {
            assert!(
                e < 1e-6,
                "batch {batch}, classes {classes}: reference CE grad vs FD: {e:e}"
            );
        } else {
            // One class: p = 1, the loss is constant 0 and so is the gradient.
            assert!(ce.grad.iter().all(|&g| g == 0.0) && fd.iter().all(|&(_, d)| d.abs() < 1e-12));
        }
        // The probabilities of each row sum to 1 and the losses are -log p[c].
        for n in 0..batch {
            let row = &ce.probs[n * classes..(n + 1) * classes];
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            assert!((ce.losses[n] + row[labels[n]].ln()).abs() < 1e-12);
        }
    }
}

// ------------------------------------------------- hand-worked cases

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
fn softmax_forward_and_softmax_cross_entropy_huge_logits_stay_finite() {
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
fn softmax_cross_entropy_with_underflowed_true_class_probability() {
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
fn softmax_cross_entropy_label_out_of_range_is_an_error_and_writes_nothing() {
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

// ------------------------------------------------- shape contracts

#[test]
#[should_panic(expected = "softmax_forward: classes must be at least 1")]
fn softmax_forward_zero_classes() {
    softmax_forward(&[0.0; 4], 0, &mut [0.0; 4]);
}

#[test]
#[should_panic(expected = "softmax_forward: logits has 7 values, not a multiple of 5 classes")]
fn softmax_forward_logits_not_a_multiple() {
    softmax_forward(&[0.0; 7], 5, &mut [0.0; 7]);
}

#[test]
#[should_panic(expected = "softmax_forward: probs has 9 values, expected 10")]
fn softmax_forward_probs_wrong() {
    softmax_forward(&[0.0; 10], 5, &mut [0.0; 9]);
}

#[test]
#[should_panic(expected = "softmax_cross_entropy: labels has 3 values, expected 2")]
fn softmax_cross_entropy_labels_wrong() {
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
fn softmax_cross_entropy_losses_wrong() {
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
fn softmax_cross_entropy_grad_wrong() {
    let _ = softmax_cross_entropy(
        &[0.0; 10],
        &[0, 1],
        5,
        &mut [0.0; 10],
        &mut [0.0; 2],
        &mut [0.0; 11],
    );
}
