//! `add_forward` and `add_forward_inplace` (`src/add.rs`), the residual join: exact against
//! the f64 reference (an f32 sum of two f32 values is the f64 sum rounded once) on every
//! SIMD tail and beyond one rayon block, at both vector widths, with and without the fused
//! ReLU, with NaN, ±0 and ±inf; thread independence; length contracts.

mod common;

use common::reference as refk;
use common::*;
use petal_kernels::add::add_forward_lanes;
use petal_kernels::simd::Lanes;
use petal_kernels::*;
use rand::Rng;

/// Same value, or both NaN.
fn same(a: f32, b: f32) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

#[test]
fn add_forward_matches_reference_exactly_at_both_widths() {
    let mut r = rng(6100);
    for n in (0..=40).chain([16_384, 16_389, 40_003]) {
        let mut a = rand_vec(&mut r, n);
        let b = rand_vec(&mut r, n);
        for _ in 0..n / 6 {
            let i = r.random_range(0..n);
            a[i] = [f32::NAN, 0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY][r.random_range(0..5)];
        }
        for relu in [false, true] {
            let want = refk::add_forward(&f64s(&a), &f64s(&b), relu);
            for lanes in Lanes::ALL {
                let mut y = vec![f32::NAN; n];
                add_forward_lanes(lanes, &a, &b, relu, &mut y);
                for i in 0..n {
                    assert!(
                        same(y[i], want[i] as f32),
                        "add n {n} relu {relu} {lanes:?} at {i}: {} + {} gave {}, want {}",
                        a[i],
                        b[i],
                        y[i],
                        want[i]
                    );
                }
            }
            let mut y = vec![f32::NAN; n];
            add_forward(&a, &b, relu, &mut y);
            let mut inplace = a.clone();
            add_forward_inplace(&mut inplace, &b, relu);
            for i in 0..n {
                assert!(same(y[i], want[i] as f32), "add_forward n {n} relu {relu} at {i}");
                assert!(
                    same(inplace[i], y[i]),
                    "add_forward_inplace n {n} relu {relu} at {i}"
                );
            }
        }
    }
}

/// Hand-worked values: the ReLU zeroes negative sums and keeps NaN, in the vector body
/// (first 8) and the tail.
#[test]
fn add_forward_special_values() {
    let nan = f32::NAN;
    let a = [1.0, -3.0, nan, 2.0, f32::INFINITY, -0.5, 0.25, 4.0, -1.0, nan];
    let b = [2.0, 1.0, 1.0, -2.0, 1.0, 0.25, 0.25, -5.0, 3.0, 0.0];
    let mut y = [0.0; 10];
    add_forward(&a, &b, false, &mut y);
    assert_eq!(y[..2], [3.0, -2.0]);
    assert!(y[2].is_nan() && y[9].is_nan());
    add_forward(&a, &b, true, &mut y);
    assert_eq!(y[..2], [3.0, 0.0]);
    assert_eq!(y[3..9], [0.0, f32::INFINITY, 0.0, 0.5, 0.0, 2.0]);
    assert!(y[2].is_nan() && y[9].is_nan());
}

#[test]
fn add_forward_is_bit_identical_across_thread_counts() {
    let mut r = rng(6200);
    let n = 3 * (1 << 14) + 11;
    let (a, b) = (rand_vec(&mut r, n), rand_vec(&mut r, n));
    assert_thread_independent("add", || {
        let mut y = vec![0.0; n];
        add_forward(&a, &b, true, &mut y);
        let mut z = a.clone();
        add_forward_inplace(&mut z, &b, false);
        vec![y, z]
    });
}

#[test]
#[should_panic(expected = "add_forward: a has 3, b 4, y 4 values; they must match")]
fn add_forward_length_mismatch() {
    add_forward(&[0.0; 3], &[0.0; 4], false, &mut [0.0; 4]);
}

#[test]
#[should_panic(expected = "add_forward_inplace: a has 3 values, b has 2")]
fn add_forward_inplace_length_mismatch() {
    add_forward_inplace(&mut [0.0; 3], &[0.0; 2], true);
}
