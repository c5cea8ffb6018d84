//! Dropout (`src/dropout.rs`): the counter-based mask `dropout_keep` (pinned values, so a
//! change of the hash that would change every saved run's masks fails here; determinism;
//! keep fractions within statistical bounds for p = 0.1, 0.5, 0.9; no correlation between
//! neighbours or seeds), `dropout_forward` / `dropout_backward` against the f64
//! reference, masks independent of how the values are split (`first` offsets), p = 0
//! copying, the backward using the forward's mask, thread independence and contracts.

mod common;

use common::reference as refk;
use common::*;
use petal_kernels::*;

/// The first 64 keep bits (bit i: index i) for two (seed, p) pairs, computed once: the
/// mask must never change between versions or machines.
#[test]
fn dropout_keep_is_pinned() {
    for (seed, p, want) in [
        (42u64, 0.5f32, 0x45c5_2b98_9a48_9d11u64),
        (7, 0.1, 0xf7ff_fffe_fff7_fdff),
    ] {
        let bits = (0..64u64).fold(0u64, |b, i| b | (dropout_keep(seed, i, p) as u64) << i);
        assert_eq!(bits, want, "seed {seed} p {p}: {bits:#018x}");
    }
}

/// Binomial bounds: over `n` indices the kept count is within 5 standard deviations of
/// `n (1 − p)`, for several seeds and far-apart index ranges.
#[test]
fn dropout_keep_fraction_is_within_statistical_bounds() {
    let n = 200_000u64;
    for p in [0.1f32, 0.5, 0.9] {
        for (seed, start) in [(0u64, 0u64), (1, 0), (12345, 1 << 40), (u64::MAX, u64::MAX - n)] {
            let kept = (start..start + n).filter(|&i| dropout_keep(seed, i, p)).count() as f64;
            let (mean, sd) = (
                n as f64 * (1.0 - p as f64),
                (n as f64 * p as f64 * (1.0 - p as f64)).sqrt(),
            );
            assert!(
                (kept - mean).abs() < 5.0 * sd,
                "p {p} seed {seed}: kept {kept} of {n}, expected {mean} ± {sd}"
            );
        }
    }
}

/// Neighbouring indices and neighbouring seeds are independent: both kept with
/// probability (1 − p)², within 5 standard deviations.
#[test]
fn dropout_keep_has_no_correlation_between_neighbours_or_seeds() {
    let (n, p) = (100_000u64, 0.5f32);
    let q = (1.0 - p as f64).powi(2);
    let sd = (n as f64 * q * (1.0 - q)).sqrt();
    let pairs = (0..n)
        .filter(|&i| dropout_keep(3, 2 * i, p) && dropout_keep(3, 2 * i + 1, p))
        .count();
    assert!(
        (pairs as f64 - n as f64 * q).abs() < 5.0 * sd,
        "neighbours: {pairs}"
    );
    let seeds = (0..n)
        .filter(|&i| dropout_keep(3, i, p) && dropout_keep(4, i, p))
        .count();
    assert!(
        (seeds as f64 - n as f64 * q).abs() < 5.0 * sd,
        "seeds 3, 4: {seeds}"
    );
    // Masks of different p are nested: kept at a higher p implies kept at a lower one.
    assert!((0..10_000).all(|i| !dropout_keep(9, i, 0.7) || dropout_keep(9, i, 0.2)));
}

#[test]
fn dropout_forward_and_backward_match_reference() {
    let mut r = rng(8100);
    for (k, n) in (0..=40).chain([16_384, 16_385, 50_001]).enumerate() {
        for p in [0.1f32, 0.5, 0.25] {
            let (seed, first) = (k as u64 * 31 + 5, k as u64 * 1000);
            let x = rand_vec(&mut r, n);
            let dy = rand_vec(&mut r, n);
            let mut y = vec![f32::NAN; n];
            dropout_forward(seed, p, first, &x, &mut y);
            assert_close(
                &format!("forward n {n} p {p}"),
                &y,
                &refk::dropout_forward(seed, p, first, &f64s(&x)),
                1e-6,
            );
            let mut dx = vec![f32::NAN; n];
            dropout_backward(seed, p, first, &dy, &mut dx);
            let want = refk::dropout_backward(seed, p, first, &f64s(&dy));
            assert_close(&format!("backward n {n} p {p}"), &dx, &want, 1e-6);
            for i in 0..n {
                let keep = dropout_keep(seed, first + i as u64, p);
                // Dropped values are exactly 0, kept ones exactly x · (1 / (1 − p)) in f32.
                let scale = 1.0 / (1.0 - p);
                assert_eq!(
                    y[i],
                    if keep { x[i] * scale } else { 0.0 },
                    "forward n {n} at {i}"
                );
                assert_eq!(
                    dx[i],
                    if keep { dy[i] * scale } else { 0.0 },
                    "backward n {n} at {i}"
                );
            }
        }
    }
}

/// The backward drops exactly what the forward dropped: run on the same data, they agree
/// bit for bit; and the backward is the forward's derivative (a linear map: dx = J^T dy).
#[test]
fn dropout_backward_uses_the_forward_mask() {
    let mut r = rng(8200);
    let x: Vec<f32> = rand_vec(&mut r, 1000).iter().map(|v| v + 2.0).collect(); // never 0
    let (mut y, mut dx) = (vec![0.0; 1000], vec![0.0; 1000]);
    dropout_forward(77, 0.3, 500, &x, &mut y);
    dropout_backward(77, 0.3, 500, &x, &mut dx);
    assert_eq!(y, dx);
    let dropped = y.iter().filter(|&&v| v == 0.0).count();
    assert!(
        (200..400).contains(&dropped),
        "dropped {dropped} of 1000 at p 0.3"
    );
    // Another seed or offset gives another mask.
    let mut other = vec![0.0; 1000];
    dropout_backward(78, 0.3, 500, &x, &mut other);
    assert_ne!(other, y);
    dropout_backward(77, 0.3, 501, &x, &mut other);
    assert_ne!(other, y);
    let dy = rand_vec(&mut r, 1000);
    dropout_backward(77, 0.3, 500, &dy, &mut dx);
    let loss = |xx: &[f32]| {
        let mut yy = vec![0.0; xx.len()];
        dropout_forward(77, 0.3, 500, xx, &mut yy);
        weighted_sum(&dy, &yy)
    };
    let fd: Vec<_> = sample_indices(&mut r, 1000, 40)
        .into_iter()
        .map(|i| (i, central_diff32(loss, &x, i, FD_EPS)))
        .collect();
    assert!(
        fd_err(&dx, &fd) < FD_TOL,
        "dropout grad vs finite differences: {:e}",
        fd_err(&dx, &fd)
    );
}

/// Splitting a batch into chunks, each called with its own `first`, gives the whole call's
/// output bit for bit.
#[test]
fn dropout_mask_does_not_depend_on_the_split() {
    let mut r = rng(8300);
    let per_sample = 3 * 7 * 7;
    let batch = 5;
    let x = rand_vec(&mut r, batch * per_sample);
    let mut whole = vec![0.0; x.len()];
    dropout_forward(11, 0.5, 0, &x, &mut whole);
    for sizes in [vec![1, 1, 1, 1, 1], vec![2, 3], vec![4, 1], vec![5]] {
        let mut parts = vec![f32::NAN; x.len()];
        let mut start = 0;
        for b in sizes.iter() {
            let range = start * per_sample..(start + b) * per_sample;
            dropout_forward(
                11,
                0.5,
                (start * per_sample) as u64,
                &x[range.clone()],
                &mut parts[range],
            );
            start += b;
        }
        assert_eq!(parts, whole, "chunks {sizes:?}");
    }
    // Indices past u64::MAX wrap instead of panicking.
    let mut y = vec![0.0; 10];
    dropout_forward(1, 0.5, u64::MAX - 3, &x[..10], &mut y);
}

#[test]
fn dropout_with_p_zero_copies() {
    let mut r = rng(8400);
    let mut x = rand_vec(&mut r, 77);
    x[3] = f32::INFINITY;
    x[4] = -0.0;
    let mut y = vec![f32::NAN; 77];
    dropout_forward(5, 0.0, 123, &x, &mut y);
    assert!(x.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()));
    dropout_backward(5, 0.0, 123, &x, &mut y);
    assert!(x.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()));
    assert!((0..10_000).all(|i| dropout_keep(5, i, 0.0)));
}

#[test]
fn dropout_is_bit_identical_across_thread_counts() {
    let mut r = rng(8500);
    let x = rand_vec(&mut r, 3 * (1 << 14) + 7);
    assert_thread_independent("dropout", || {
        let (mut y, mut dx) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        dropout_forward(99, 0.4, 17, &x, &mut y);
        dropout_backward(99, 0.4, 17, &x, &mut dx);
        vec![y, dx]
    });
}

#[test]
#[should_panic(expected = "dropout_forward: p is 1, it must be in [0, 1)")]
fn dropout_forward_p_one() {
    dropout_forward(0, 1.0, 0, &[1.0; 4], &mut [0.0; 4]);
}

#[test]
#[should_panic(expected = "dropout_backward: p is -0.1, it must be in [0, 1)")]
fn dropout_backward_negative_p() {
    dropout_backward(0, -0.1, 0, &[1.0; 4], &mut [0.0; 4]);
}

#[test]
#[should_panic(expected = "dropout_forward: x has 4 values, y has 3")]
fn dropout_forward_length_mismatch() {
    dropout_forward(0, 0.5, 0, &[1.0; 4], &mut [0.0; 3]);
}
