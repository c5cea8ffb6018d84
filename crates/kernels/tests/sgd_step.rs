//! `sgd_step` (`src/sgd.rs`): PyTorch's SGD rule against the f64 reference over several
//! steps, hand-worked momentum and weight decay, bit-identical results on any number of
//! threads, and length contracts.

mod common;

use common::reference as refk;
use common::*;
use petal_kernels::*;

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

/// Momentum 0 and an empty velocity: w -= lr·(g + wd·w).
/// w = (1, -2), g = (0.5, 0.25), lr 0.1, wd 0.01: d = (0.51, 0.23), w = (0.949, -2.023).
/// Nine values cover the SIMD body and the tail.
#[test]
fn sgd_step_momentum_zero_with_empty_velocity() {
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
fn sgd_step_momentum_hand_worked() {
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

/// SGD with momentum and weight decay over several rayon blocks (2^14 values each).
#[test]
fn sgd_step_is_bit_identical_across_thread_counts() {
    let n = 3 * (1 << 14) + 5;
    let mut r = rng(99);
    let x = rand_vec(&mut r, n);
    let g = rand_vec(&mut r, n);
    assert_thread_independent("sgd", || {
        let mut w = x.clone();
        let mut v = g.clone();
        let cfg = SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 1e-3,
        };
        sgd_step(&cfg, &mut w, &g, &mut v);
        vec![w, v]
    });
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
fn sgd_step_grads_length_mismatch() {
    sgd_step(&sgd_cfg(0.0), &mut [0.0; 3], &[0.0; 2], &mut []);
}

#[test]
#[should_panic(expected = "sgd_step: velocity has 0 values, params has 3 (momentum 0.9)")]
fn sgd_step_momentum_needs_velocity() {
    sgd_step(&sgd_cfg(0.9), &mut [0.0; 3], &[0.0; 3], &mut []);
}

#[test]
#[should_panic(expected = "sgd_step: velocity has 2 values, params has 3 (momentum 0.9)")]
fn sgd_step_velocity_length_mismatch() {
    sgd_step(&sgd_cfg(0.9), &mut [0.0; 3], &[0.0; 3], &mut [0.0; 2]);
}

#[test]
#[should_panic(expected = "sgd_step: velocity has 2 values, params has 3 (momentum 0)")]
fn sgd_step_velocity_length_mismatch_without_momentum() {
    sgd_step(&sgd_cfg(0.0), &mut [0.0; 3], &[0.0; 3], &mut [0.0; 2]);
}
