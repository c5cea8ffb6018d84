//! Batch norm (`src/norm.rs`): `batch_norm_sums`, `batch_norm_apply` (and `_inplace`),
//! `batch_norm_backward_sums`, `batch_norm_backward_input`:
//!
//! - each sum kernel against exact `f64` sums, to `1e-6 · Σ|terms|`, on channels 1, 3, 16,
//!   33, planes of 1, 7, 64, 81, 300 and 2500 values (tails of every length, several
//!   `SUM_BLOCK`s), batches 1..5, bit-identical at both vector widths (`Lanes::ALL`);
//! - the apply against the reference's inference mode (running statistics), with and
//!   without the fused ReLU, at both widths and in place;
//! - empty shapes; length contracts.
//!
//! The training step composed over chunks of a batch, against the reference and finite
//! differences, is in `tests/batch_norm_training.rs`; shared helpers in `common/norm.rs`.

mod common;

use common::norm::*;
use common::reference as refk;
use common::*;
use petal_kernels::norm::{batch_norm_apply_lanes, batch_norm_backward_sums_lanes, batch_norm_sums_lanes};
use petal_kernels::simd::Lanes;
use petal_kernels::*;
use rand::Rng;

#[test]
fn batch_norm_sums_match_exact_f64_sums_at_both_widths() {
    let mut r = rng(9100);
    for s in shapes() {
        let x = activations(&mut r, s.len());
        let mut per_lanes = Vec::new();
        for lanes in Lanes::ALL {
            let mut sums = vec![f64::NAN; 2 * s.c];
            batch_norm_sums_lanes(lanes, &s, &x, &mut sums);
            for ch in 0..s.c {
                let v: Vec<f64> = channel(&s, ch).map(|p| x[p] as f64).collect();
                let (sum, abs) = (v.iter().sum::<f64>(), v.iter().map(|a| a.abs()).sum::<f64>());
                let sq = v.iter().map(|a| a * a).sum::<f64>();
                assert_sum(&format!("Σx {s:?} {lanes:?} ch {ch}"), sums[ch], sum, abs, 1e-6);
                assert_sum(
                    &format!("Σx² {s:?} {lanes:?} ch {ch}"),
                    sums[s.c + ch],
                    sq,
                    sq,
                    1e-6,
                );
            }
            per_lanes.push(sums);
        }
        assert_eq!(per_lanes[0], per_lanes[1], "batch_norm_sums {s:?}: widths differ");
        let mut sums = vec![0.0; 2 * s.c];
        batch_norm_sums(&s, &x, &mut sums);
        assert_eq!(sums, per_lanes[0], "batch_norm_sums {s:?}: build width differs");
    }
}

/// Many equal values: a plain running f32 sum would lose ~1e-3 here, the blocked one must
/// not.
#[test]
fn batch_norm_sums_stay_accurate_on_long_constant_planes() {
    let s = BatchNormShape {
        batch: 3,
        c: 2,
        hw: 100_003,
    };
    let x = vec![0.1f32; s.len()];
    let mut sums = vec![0.0; 4];
    batch_norm_sums(&s, &x, &mut sums);
    let n = s.count() as f64;
    let v = 0.1f32 as f64;
    for ch in 0..2 {
        assert_sum("Σx constant", sums[ch], n * v, n * v, 1e-6);
        assert_sum("Σx² constant", sums[2 + ch], n * v * v, n * v * v, 1e-6);
    }
}

#[test]
fn batch_norm_backward_sums_match_exact_f64_sums_at_both_widths() {
    let mut r = rng(9200);
    for (k, s) in shapes().into_iter().enumerate() {
        let relu = k % 2 == 0;
        let x = activations(&mut r, s.len());
        // The apply's output: ties at exactly ±0 (the ReLU's zeros, masked) and NaN (masked).
        let mut y = rand_vec(&mut r, s.len());
        for _ in 0..s.len() / 5 {
            let i = r.random_range(0..s.len());
            y[i] = [0.0, -0.0, f32::NAN][r.random_range(0..3)];
        }
        let dy = rand_vec(&mut r, s.len());
        let mean: Vec<f32> = (0..s.c).map(|_| r.random_range(-0.5..0.5)).collect();
        let invstd: Vec<f32> = (0..s.c).map(|_| r.random_range(0.5..3.0)).collect();
        let mut per_lanes = Vec::new();
        for lanes in Lanes::ALL {
            let mut g = dy.clone();
            let mut sums = vec![f64::NAN; 2 * s.c];
            batch_norm_backward_sums_lanes(lanes, &s, &x, &y, relu, &mean, &invstd, &mut g, &mut sums);
            // The mask, exactly.
            for i in 0..s.len() {
                let want = if !relu || y[i] > 0.0 { dy[i] } else { 0.0 };
                assert_eq!(g[i], want, "backward_sums mask {s:?} relu {relu} at {i}");
            }
            for ch in 0..s.c {
                let (mut s1, mut a1, mut s2, mut a2) = (0.0, 0.0, 0.0, 0.0);
                for p in channel(&s, ch) {
                    let g = g[p] as f64;
                    let xhat = (x[p] as f64 - mean[ch] as f64) * invstd[ch] as f64;
                    (s1, a1, s2, a2) = (s1 + g, a1 + g.abs(), s2 + g * xhat, a2 + (g * xhat).abs());
                }
                assert_sum(&format!("Σdy {s:?} {lanes:?} ch {ch}"), sums[ch], s1, a1, 1e-6);
                assert_sum(
                    &format!("Σdy·x̂ {s:?} {lanes:?} ch {ch}"),
                    sums[s.c + ch],
                    s2,
                    a2,
                    1e-6,
                );
            }
            per_lanes.push((g, sums));
        }
        assert_eq!(
            per_lanes[0], per_lanes[1],
            "batch_norm_backward_sums {s:?}: widths differ"
        );
    }
}

#[test]
fn batch_norm_apply_matches_reference_eval_mode_at_both_widths() {
    let mut r = rng(9300);
    for (k, s) in shapes().into_iter().enumerate() {
        let p = params(&mut r, s.c);
        let x = activations(&mut r, s.len());
        let (mean, var) = (f64s(&p.mean), f64s(&p.var));
        let (scale, shift) = scale_shift(&p.gamma, &p.beta, &mean, &var);
        let (g64, b64) = (f64s(&p.gamma), f64s(&p.beta));
        let want = refk::batch_norm_eval(&f64s(&x), s.batch, s.c, s.hw, &g64, &b64, &mean, &var, EPS);
        for relu in [false, true] {
            let want = if relu {
                refk::relu_forward(&want)
            } else {
                want.clone()
            };
            let mut first: Option<Vec<f32>> = None;
            let terms = |i: usize| {
                let ch = i / s.hw % s.c;
                (x[i] * scale[ch]).abs() as f64 + shift[ch].abs() as f64
            };
            for lanes in Lanes::ALL {
                let mut y = vec![f32::NAN; s.len()];
                batch_norm_apply_lanes(lanes, &s, &x, &scale, &shift, relu, &mut y);
                let what = format!("apply {s:?} relu {relu} {lanes:?}");
                assert_terms_close(&what, &y, &want, terms, ELEMENTWISE_TOL);
                match &first {
                    None => first = Some(y),
                    Some(f) => assert_eq!(&y, f, "apply {s:?} relu {relu}: widths differ"),
                }
            }
            let mut inplace = x.clone();
            batch_norm_apply_inplace(&s, &mut inplace, &scale, &shift, relu);
            assert_eq!(Some(inplace), first, "apply_inplace {s:?} relu {relu} (case {k})");
        }
    }
}

#[test]
fn batch_norm_empty_shapes_do_nothing_and_zero_the_sums() {
    for s in [
        BatchNormShape {
            batch: 0,
            c: 2,
            hw: 5,
        },
        BatchNormShape {
            batch: 3,
            c: 2,
            hw: 0,
        },
    ] {
        assert!(s.is_empty());
        assert_eq!(s.len(), 0);
        let mut sums = vec![f64::NAN; 4];
        batch_norm_sums(&s, &[], &mut sums);
        assert_eq!(sums, vec![0.0; 4]);
        let mut sums = vec![f64::NAN; 4];
        batch_norm_backward_sums(&s, &[], &[], true, &[0.0; 2], &[1.0; 2], &mut [], &mut sums);
        assert_eq!(sums, vec![0.0; 4]);
        batch_norm_apply(&s, &[], &[1.0; 2], &[0.0; 2], true, &mut []);
    }
    let s = BatchNormShape {
        batch: 4,
        c: 3,
        hw: 5,
    };
    assert_eq!((s.len(), s.count(), s.is_empty()), (60, 20, false));
}

#[test]
#[should_panic(expected = "batch_norm_sums: x has 11 values, expected 12")]
fn batch_norm_sums_x_wrong() {
    batch_norm_sums(
        &BatchNormShape {
            batch: 2,
            c: 3,
            hw: 2,
        },
        &[0.0; 11],
        &mut [0.0; 6],
    );
}

#[test]
#[should_panic(expected = "batch_norm_sums: sums has 3 values, expected 6")]
fn batch_norm_sums_sums_wrong() {
    batch_norm_sums(
        &BatchNormShape {
            batch: 2,
            c: 3,
            hw: 2,
        },
        &[0.0; 12],
        &mut [0.0; 3],
    );
}

#[test]
#[should_panic(expected = "batch_norm_apply: shift has 2 values, expected 3")]
fn batch_norm_apply_shift_wrong() {
    let s = BatchNormShape {
        batch: 2,
        c: 3,
        hw: 2,
    };
    batch_norm_apply(&s, &[0.0; 12], &[1.0; 3], &[0.0; 2], false, &mut [0.0; 12]);
}

#[test]
#[should_panic(expected = "batch_norm_backward_sums: y has 0 values, expected 12")]
fn batch_norm_backward_sums_needs_y_with_relu() {
    let s = BatchNormShape {
        batch: 2,
        c: 3,
        hw: 2,
    };
    batch_norm_backward_sums(
        &s,
        &[0.0; 12],
        &[],
        true,
        &[0.0; 3],
        &[1.0; 3],
        &mut [0.0; 12],
        &mut [0.0; 6],
    );
}

#[test]
#[should_panic(expected = "batch_norm_backward_input: mean_dy_xhat has 4 values, expected 3")]
fn batch_norm_backward_input_channel_vector_wrong() {
    let s = BatchNormShape {
        batch: 2,
        c: 3,
        hw: 2,
    };
    let v = [0.0f32; 3];
    batch_norm_backward_input(
        &s,
        &[0.0; 12],
        &[0.0; 12],
        &v,
        &v,
        &v,
        &v,
        &[0.0; 4],
        &mut [0.0; 12],
    );
}

/// Without the ReLU, `y` is unused: empty or not, the same sums and an untouched `dy`.
#[test]
fn batch_norm_backward_sums_without_relu_ignores_y() {
    let mut r = rng(9700);
    let s = BatchNormShape {
        batch: 2,
        c: 3,
        hw: 37,
    };
    let x = activations(&mut r, s.len());
    let y = rand_vec(&mut r, s.len());
    let dy = rand_vec(&mut r, s.len());
    let (mean, invstd) = ([0.1f32, -0.2, 0.3], [1.5f32, 0.5, 2.0]);
    let (mut g1, mut g2) = (dy.clone(), dy.clone());
    let (mut s1, mut s2) = (vec![0.0; 6], vec![0.0; 6]);
    batch_norm_backward_sums(&s, &x, &y, false, &mean, &invstd, &mut g1, &mut s1);
    batch_norm_backward_sums(&s, &x, &[], false, &mean, &invstd, &mut g2, &mut s2);
    assert_eq!((&g1, &s1), (&dy, &s2));
    assert_eq!(g2, dy);
}
