//! The public SIMD helpers (`src/simd.rs`: `sum`, `dot`, `add_assign`, `axpy`) against
//! plain f64 loops on every length and tail, and their length contracts.

mod common;

use common::*;
use petal_kernels::*;

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
