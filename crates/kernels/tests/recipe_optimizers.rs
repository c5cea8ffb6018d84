//! The training recipe's kernels against their f64 references: Nesterov SGD
//! (`src/nesterov.rs`), AdamW (`src/adamw.rs`) over several steps on lengths with every
//! SIMD tail and one spanning several rayon blocks, and the label-smoothed cross-entropy
//! (`src/softmax.rs`), whose ε = 0 is the one-hot kernel bit for bit.

mod common;

use common::reference as refk;
use common::*;
use petal_kernels::*;

fn lens() -> Vec<usize> {
    (1..=17).chain([31, 40_001]).collect()
}

#[test]
fn nesterov_matches_reference() {
    let mut r = rng(8100);
    for &(lr, momentum, wd) in &[(0.05f32, 0.9f32, 0.0f32), (0.01, 0.9, 5e-4), (0.5, 0.5, 0.1)] {
        let cfg = SgdConfig {
            lr,
            momentum,
            weight_decay: wd,
        };
        for n in lens() {
            let mut w = rand_vec(&mut r, n);
            let mut v = vec![0.0f32; n];
            for step in 0..3 {
                let g = rand_vec(&mut r, n);
                let (nw, nv) = refk::sgd_nesterov_step(
                    lr as f64,
                    momentum as f64,
                    wd as f64,
                    &f64s(&w),
                    &f64s(&g),
                    &f64s(&v),
                );
                sgd_nesterov_step(&cfg, &mut w, &g, &mut v);
                let what = format!("nesterov lr {lr} m {momentum} wd {wd} len {n} step {step}");
                assert_close(&format!("{what}: params"), &w, &nw, ELEMENTWISE_TOL);
                assert_close(&format!("{what}: velocity"), &v, &nv, ELEMENTWISE_TOL);
            }
        }
    }
}

#[test]
fn adamw_matches_reference() {
    let mut r = rng(8200);
    let configs = [
        AdamWConfig::torch_default(),
        AdamWConfig {
            lr: 0.01,
            beta1: 0.8,
            beta2: 0.99,
            eps: 1e-6,
            weight_decay: 0.0,
        },
        AdamWConfig {
            lr: 0.1,
            beta1: 0.0,
            beta2: 0.5,
            eps: 1e-3,
            weight_decay: 0.5,
        },
    ];
    for cfg in configs {
        for n in lens() {
            let mut w = rand_vec(&mut r, n);
            let (mut m, mut v) = (vec![0.0f32; n], vec![0.0f32; n]);
            for t in 1..=4u64 {
                let g = rand_vec(&mut r, n);
                let (nw, nm, nv) = refk::adamw_step(
                    cfg.lr as f64,
                    cfg.beta1 as f64,
                    cfg.beta2 as f64,
                    cfg.eps as f64,
                    cfg.weight_decay as f64,
                    t,
                    &f64s(&w),
                    &f64s(&g),
                    &f64s(&m),
                    &f64s(&v),
                );
                adamw_step(&cfg, t, &mut w, &g, &mut m, &mut v);
                let what = format!("adamw {cfg:?} len {n} step {t}");
                assert_close(&format!("{what}: params"), &w, &nw, 1e-5);
                assert_close(&format!("{what}: exp_avg"), &m, &nm, ELEMENTWISE_TOL);
                assert_close(&format!("{what}: exp_avg_sq"), &v, &nv, ELEMENTWISE_TOL);
            }
        }
    }
}

/// Element-wise: the same values on one thread and on four.
#[test]
fn optimizers_are_thread_count_independent() {
    let mut r = rng(8300);
    let n = 100_003;
    let (w0, g) = (rand_vec(&mut r, n), rand_vec(&mut r, n));
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let (mut w, mut v) = (w0.clone(), vec![0.0f32; n]);
            let cfg = SgdConfig {
                lr: 0.1,
                momentum: 0.9,
                weight_decay: 1e-4,
            };
            sgd_nesterov_step(&cfg, &mut w, &g, &mut v);
            let (mut a, mut m, mut s) = (w0.clone(), vec![0.0f32; n], vec![0.0f32; n]);
            adamw_step(&AdamWConfig::torch_default(), 1, &mut a, &g, &mut m, &mut s);
            (w, v, a, m, s)
        })
    };
    assert!(run(1) == run(4));
}

#[test]
fn smoothed_cross_entropy_matches_reference() {
    let mut r = rng(8400);
    for &(batch, classes) in &[(1usize, 1usize), (3, 5), (7, 10), (4, 17)] {
        let t: Vec<f32> = rand_vec(&mut r, batch * classes)
            .iter()
            .map(|v| v * 8.0)
            .collect();
        let labels: Vec<usize> = (0..batch).map(|n| (n * 7 + 3) % classes).collect();
        for eps in [0.0f32, 0.1, 0.5, 1.0] {
            let mut p = vec![0.0f32; t.len()];
            let mut losses = vec![0.0f32; batch];
            let mut g = vec![0.0f32; t.len()];
            smoothed_cross_entropy_rows(
                &t,
                &labels,
                classes,
                eps,
                1.0 / batch as f32,
                &mut p,
                &mut losses,
                &mut g,
            )
            .unwrap();
            let want = refk::smoothed_cross_entropy(&f64s(&t), &labels, classes, eps as f64);
            let what = format!("batch {batch} classes {classes} eps {eps}");
            assert_close(&format!("{what}: losses"), &losses, &want.losses, 1e-5);
            assert_close(&format!("{what}: grad"), &g, &want.grad, 1e-6);
            assert_close(&format!("{what}: probs"), &p, &want.probs, 1e-6);
        }
    }
}

#[test]
fn smoothing_zero_is_the_one_hot_kernel_bit_for_bit() {
    let mut r = rng(8500);
    let (batch, classes) = (6, 5);
    let t = rand_vec(&mut r, batch * classes);
    let labels = [0, 1, 2, 3, 4, 0];
    let mut a = (vec![0.0f32; 30], vec![0.0f32; 6], vec![0.0f32; 30]);
    let mut b = a.clone();
    softmax_cross_entropy_rows(&t, &labels, classes, 0.25, &mut a.0, &mut a.1, &mut a.2).unwrap();
    smoothed_cross_entropy_rows(&t, &labels, classes, 0.0, 0.25, &mut b.0, &mut b.1, &mut b.2).unwrap();
    assert!(a == b);
    let e = smoothed_cross_entropy_rows(
        &t,
        &[0, 1, 2, 3, 9, 0],
        classes,
        0.1,
        0.25,
        &mut b.0,
        &mut b.1,
        &mut b.2,
    )
    .unwrap_err();
    assert_eq!(e.label, 9);
}
