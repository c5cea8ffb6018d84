//! The fast forward kernels against their f64 reference twins (`common/reference.rs`) on
//! many seeded shapes: conv (both the direct SIMD path and im2col + GEMM), im2col, max
//! pooling (values and argmax, with continuous data and with many exact ties), dense,
//! ReLU, softmax, the fused softmax cross-entropy, SGD and the SIMD helpers.
//!
//! Outputs and scratch are pre-filled with NaN so a kernel that leaves any value unwritten,
//! or reads scratch it did not write, fails. Scratch is sized exactly as the shape asks, so
//! a kernel that reaches past its own sizing panics on a slice bound.

mod common;

use common::reference as refk;
use common::*;
use petal_kernels::*;
use rand::Rng;

/// Pool forward is a selection, so values and argmax must be exactly the reference's; the
/// tie data (values in {-2..2}) has ties in most windows and checks "first maximum in
/// row-major window order" on both the unrolled 2x2/2 path and the general path.
#[test]
fn max_pool_forward_matches_reference_exactly() {
    let mut shapes = pool_fixed_shapes();
    shapes.extend(pool_random_shapes(77, 30));
    let mut r = rng(4000);
    for s in shapes {
        for ties in [false, true] {
            let x = if ties {
                rand_ties(&mut r, s.input_len())
            } else {
                rand_vec(&mut r, s.input_len())
            };
            let mut y = vec![f32::NAN; s.output_len()];
            let mut am = vec![u32::MAX; s.output_len()];
            max_pool2d_forward(&s, &x, &mut y, &mut am);
            let (want_y, want_am) = refk::max_pool2d_forward(&s, &f64s(&x));
            assert!(
                y.iter().zip(&want_y).all(|(&a, &b)| a as f64 == b),
                "max_pool2d_forward {s:?} (ties: {ties}): values differ"
            );
            assert_eq!(
                am, want_am,
                "max_pool2d_forward {s:?} (ties: {ties}): argmax differs"
            );
        }
    }
}

/// NaN inputs at random places: the NaN must win its window, at the first NaN position.
#[test]
fn max_pool_forward_propagates_nan_like_reference() {
    let mut r = rng(4100);
    for s in [
        pool(2, 3, 8, 8, 2, 2),
        pool(1, 2, 9, 9, 3, 2),
        pool(1, 2, 7, 6, 2, 1),
        pool(3, 1, 5, 7, 3, 3),
    ] {
        let mut x = rand_vec(&mut r, s.input_len());
        for _ in 0..x.len() / 6 {
            let i = r.random_range(0..x.len());
            x[i] = f32::NAN;
        }
        let mut y = vec![0.0; s.output_len()];
        let mut am = vec![0; s.output_len()];
        max_pool2d_forward(&s, &x, &mut y, &mut am);
        let (want_y, want_am) = refk::max_pool2d_forward(&s, &f64s(&x));
        assert!(want_y.iter().any(|v| v.is_nan()) && want_y.iter().any(|v| !v.is_nan()));
        assert!(
            y.iter()
                .zip(&want_y)
                .all(|(&a, &b)| (a.is_nan() && b.is_nan()) || a as f64 == b),
            "{s:?}: NaN propagation differs"
        );
        assert_eq!(am, want_am, "{s:?}: argmax with NaN differs");
    }
}

fn dense_shapes() -> Vec<DenseShape> {
    let mut out: Vec<DenseShape> = [
        (1, 1, 1),
        (1, 37, 5),
        (3, 8, 16),
        (5, 17, 9),
        (13, 33, 7),
        (16, 64, 10),
        (17, 5, 3),
        (33, 70, 20),
        (8, 4608, 5), // the seed network's classifier: a long reduction
        (5, 1100, 6), // direct path: several column blocks, the last partial, a column tail
        (4, 1100, 9), // GEMM path at the same size
    ]
    .into_iter()
    .map(|(batch, inputs, outputs)| DenseShape {
        batch,
        inputs,
        outputs,
    })
    .collect();
    let mut r = rng(5000);
    for _ in 0..24 {
        out.push(DenseShape {
            batch: r.random_range(1..=40),
            inputs: r.random_range(1..=80),
            outputs: r.random_range(1..=24),
        });
    }
    out
}

#[test]
fn dense_forward_matches_reference() {
    let mut r = rng(5100);
    for s in dense_shapes() {
        let x = rand_vec(&mut r, s.batch * s.inputs);
        let w = rand_vec(&mut r, s.outputs * s.inputs);
        let b = rand_vec(&mut r, s.outputs);
        for bias in [Some(&b[..]), None] {
            let mut y = vec![f32::NAN; s.batch * s.outputs];
            dense_forward(&s, &x, &w, bias, &mut y);
            let b64 = bias.map(f64s);
            let want = refk::dense_forward(&s, &f64s(&x), &f64s(&w), b64.as_deref());
            assert_close(
                &format!("dense_forward {s:?} (bias: {})", bias.is_some()),
                &y,
                &want,
                reduction_tol(s.inputs),
            );
        }
    }
}

/// ReLU forward is exact: lengths 0..=40 (every SIMD tail) and one longer than a rayon
/// block (2^14), with NaN, ±0 and ±inf sprinkled in; the in-place form must agree bit for
/// bit with the out-of-place one.
#[test]
fn relu_forward_matches_reference_exactly() {
    let mut r = rng(6000);
    let lens: Vec<usize> = (0..=40).chain([16_384, 40_003]).collect();
    for n in lens {
        let mut x = rand_vec(&mut r, n);
        for _ in 0..n / 5 {
            let i = r.random_range(0..n);
            x[i] = [f32::NAN, 0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY][r.random_range(0..5)];
        }
        let mut y = vec![f32::NAN; n];
        relu_forward(&x, &mut y);
        let want = refk::relu_forward(&f64s(&x));
        for i in 0..n {
            let ok = if want[i].is_nan() {
                y[i].is_nan()
            } else {
                y[i] as f64 == want[i]
            };
            assert!(
                ok,
                "relu_forward len {n} at {i}: x {} gave {}, want {}",
                x[i], y[i], want[i]
            );
        }
        let mut inplace = x.clone();
        relu_forward_inplace(&mut inplace);
        for i in 0..n {
            assert!(
                inplace[i].to_bits() == y[i].to_bits() || (inplace[i] == 0.0 && y[i] == 0.0),
                "relu_forward_inplace len {n} at {i}: {} vs {}",
                inplace[i],
                y[i]
            );
        }
    }
}

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

/// SGD against the PyTorch rule over several steps, with and without momentum and weight
/// decay, on lengths with every SIMD tail and one spanning several rayon blocks.
#[test]
fn sgd_step_matches_reference() {
    let mut r = rng(8000);
    let configs = [
        (0.1f32, 0.0f32, 0.0f32),
        (0.05, 0.9, 0.0),
        (0.01, 0.9, 5e-4),
        (0.2, 0.0, 0.01),
        (0.5, 0.5, 0.1),
    ];
    let lens: Vec<usize> = (1..=17).chain([31, 40_001]).collect();
    for &(lr, momentum, wd) in &configs {
        let cfg = SgdConfig {
            lr,
            momentum,
            weight_decay: wd,
        };
        for &n in &lens {
            let mut w = rand_vec(&mut r, n);
            let use_velocity = momentum != 0.0 || n % 2 == 0; // momentum 0 with and without a buffer
            let mut v = if use_velocity { vec![0.0f32; n] } else { Vec::new() };
            let mut w64 = f64s(&w);
            let mut v64 = (momentum != 0.0).then(|| vec![0.0f64; n]);
            for step in 0..3 {
                let g = rand_vec(&mut r, n);
                sgd_step(&cfg, &mut w, &g, &mut v);
                // With momentum 0 the params follow w -= lr·(g + wd·w) whether or not a
                // buffer is passed; what the kernel then leaves in the buffer is not part of
                // the contract ("the velocity is not used"), so only params are compared.
                let (nw, nv) = if momentum == 0.0 {
                    refk::sgd_step(lr as f64, 0.0, wd as f64, &w64, &f64s(&g), None)
                } else {
                    refk::sgd_step(
                        lr as f64,
                        momentum as f64,
                        wd as f64,
                        &w64,
                        &f64s(&g),
                        v64.as_deref(),
                    )
                };
                // Compare, then continue the reference from the kernel's own state so
                // rounding does not compound across steps.
                let what = format!("sgd_step lr {lr} m {momentum} wd {wd} len {n} step {step}");
                assert_close(&format!("{what}: params"), &w, &nw, ELEMENTWISE_TOL);
                if let Some(nv) = nv {
                    assert_close(&format!("{what}: velocity"), &v, &nv, ELEMENTWISE_TOL);
                    v64 = Some(f64s(&v));
                }
                w64 = f64s(&w);
            }
        }
    }
}

/// The public SIMD helpers against plain loops, on every length 0..=40 and a long one.
#[test]
fn simd_helpers_match_reference() {
    let mut r = rng(9000);
    for n in (0..=40).chain([1000, 4099]) {
        let a = rand_vec(&mut r, n);
        let b = rand_vec(&mut r, n);
        let (a64, b64) = (f64s(&a), f64s(&b));
        // A single sum can cancel to near zero, so the error is measured against Σ|terms|.
        // For n <= 64 the bound is twice the classical worst case of summing n terms in any
        // order, n·u·Σ|terms| (u = 2^-24, EPSILON = 2u). Beyond, random-sign rounding errors
        // grow like a random walk, ~u·Σ|terms| in practice, so 64·2u stays a wide margin
        // while one dropped or doubled term (~Σ|terms| / n, 2.4e-4 of it at n = 4099) fails.
        let bound = |terms: &[f64]| {
            n.min(64) as f64 * f32::EPSILON as f64 * terms.iter().map(|t| t.abs()).sum::<f64>()
        };

        let want_sum: f64 = a64.iter().sum();
        let err = (simd::sum(&a) as f64 - want_sum).abs();
        assert!(err <= bound(&a64), "sum len {n}: error {err:e}");

        let prods: Vec<f64> = a64.iter().zip(&b64).map(|(x, y)| x * y).collect();
        let want_dot: f64 = prods.iter().sum();
        let err = (simd::dot(&a, &b) as f64 - want_dot).abs();
        assert!(err <= bound(&prods), "dot len {n}: error {err:e}");

        let mut y = a.clone();
        simd::add_assign(&mut y, &b);
        let want: Vec<f64> = a64.iter().zip(&b64).map(|(x, y)| x + y).collect();
        assert_close(&format!("add_assign len {n}"), &y, &want, ELEMENTWISE_TOL);

        let mut y = a.clone();
        simd::axpy(&mut y, -0.75, &b);
        let want: Vec<f64> = a64.iter().zip(&b64).map(|(x, y)| x - 0.75 * y).collect();
        assert_close(&format!("axpy len {n}"), &y, &want, ELEMENTWISE_TOL);
    }
}

/// The 2x2 / stride 2 pool has a SIMD path for 8 outputs at a time, forward and backward:
/// every width from 16 to 41 (whole vectors plus every tail, odd widths leaving a column
/// outside every window), an odd height (a row outside every window), with exact ties and
/// NaNs sprinkled in, matches the reference value for value (NaN for NaN), argmax for
/// argmax, and its gradient (every value written, from a NaN-filled `dx`) bit for bit.
#[test]
fn pool_2x2_simd_path_matches_reference_with_ties_and_nans() {
    for w in 16..=41 {
        let s = pool(2, 3, 7, w, 2, 2);
        let mut r = rng(15_000 + w as u64);
        let mut x = rand_ties(&mut r, s.input_len());
        for _ in 0..w / 4 {
            let i = r.random_range(0..x.len());
            x[i] = f32::NAN;
        }
        let mut y = vec![0.0f32; s.output_len()];
        let mut am = vec![u32::MAX; s.output_len()];
        max_pool2d_forward(&s, &x, &mut y, &mut am);
        let (want_y, want_am) = refk::max_pool2d_forward(&s, &f64s(&x));
        assert_eq!(am, want_am, "argmax, width {w}");
        for (k, (a, b)) in y.iter().zip(&want_y).enumerate() {
            assert!(
                a.is_nan() == b.is_nan() && (a.is_nan() || *a as f64 == *b),
                "width {w}, output {k}: {a} vs {b}"
            );
        }
        let dy: Vec<f32> = (0..s.output_len())
            .map(|_| r.random_range(-1.0f32..1.0))
            .collect();
        let mut dx = vec![f32::NAN; s.input_len()];
        max_pool2d_backward(&s, &dy, &am, &mut dx);
        let want_dx = refk::max_pool2d_backward(&s, &f64s(&dy), &want_am);
        for (k, (a, b)) in dx.iter().zip(&want_dx).enumerate() {
            assert!(*a as f64 == *b, "width {w}, dx[{k}]: {a} vs {b}");
        }
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
