//! `max_pool2d_forward` and `max_pool2d_backward` (`src/pool/`):
//!
//! - against the f64 reference (`petal_kernels::reference`) on fixed and random shapes, with
//!   continuous data, many exact ties and NaNs: values and argmax exactly, gradients
//!   (accumulating where overlapping windows share a maximum);
//! - the 2x2 / stride 2 SIMD blocks at both vector widths (`Lanes::ALL`, through
//!   `max_pool2d_{forward,backward}_lanes`), bit for bit against the reference;
//! - the backward against finite differences of the fast forward, and the reference's own
//!   backward against finite differences of the reference forward;
//! - hand-worked planes (ties to the first maximum, NaN propagation, overlapping windows);
//! - bit-identical results on any number of threads.
//!
//! Outputs are pre-filled with NaN (or `u32::MAX`), so "every value written" is checked too.
//! Shape contracts and argmax values the forward could not have produced are tested in
//! `max_pool2d_contracts.rs`.

mod common;

use common::reference as refk;
use common::*;
use petal_kernels::pool::max::{max_pool2d_backward_lanes, max_pool2d_forward_lanes};
use petal_kernels::simd::Lanes;
use petal_kernels::*;
use rand::Rng;

// ------------------------------------------------- against the f64 reference

/// Pool forward is a selection, so values and argmax must be exactly the reference's; the
/// tie data (values in {-2..2}) has ties in most windows and checks "first maximum in
/// row-major window order" on both the unrolled 2x2/2 path and the general path.
#[test]
fn max_pool2d_forward_matches_reference_exactly() {
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
fn max_pool2d_forward_propagates_nan_like_reference() {
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

/// Pool backward: the gradient goes to each window's argmax and accumulates where
/// overlapping windows share a maximum. With the tie data, many windows share one.
#[test]
fn max_pool2d_backward_matches_reference() {
    let mut shapes = pool_fixed_shapes();
    shapes.extend(pool_random_shapes(78, 30));
    let mut r = rng(15_000);
    let mut accumulated = 0;
    for s in shapes {
        for ties in [false, true] {
            let x = if ties {
                rand_ties(&mut r, s.input_len())
            } else {
                rand_vec(&mut r, s.input_len())
            };
            let mut y = vec![0.0; s.output_len()];
            let mut am = vec![0u32; s.output_len()];
            max_pool2d_forward(&s, &x, &mut y, &mut am);
            let dy = rand_vec(&mut r, s.output_len());
            let mut dx = vec![f32::NAN; s.input_len()];
            max_pool2d_backward(&s, &dy, &am, &mut dx);
            let (_, want_am) = refk::max_pool2d_forward(&s, &f64s(&x));
            assert_eq!(am, want_am, "{s:?}: argmax");
            let want = refk::max_pool2d_backward(&s, &f64s(&dy), &want_am);
            let mut sorted = want_am.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() < want_am.len() {
                accumulated += 1;
            }
            assert_close(
                &format!("max_pool2d_backward {s:?} (ties: {ties})"),
                &dx,
                &want,
                reduction_tol(s.k * s.k),
            );
        }
    }
    assert!(accumulated >= 10, "too few cases where windows share a maximum");
}

/// The 2x2 / stride 2 pool has a SIMD path for 8 outputs at a time, forward and backward:
/// every width from 16 to 41 (whole vectors plus every tail, odd widths leaving a column
/// outside every window), an odd height (a row outside every window), with exact ties and
/// NaNs sprinkled in, matches the reference value for value (NaN for NaN), argmax for
/// argmax, and its gradient (every value written, from a NaN-filled `dx`) bit for bit.
#[test]
fn max_pool2d_forward_and_backward_2x2_simd_path_match_reference_with_ties_and_nans() {
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

/// The 2x2 / stride 2 SIMD blocks at both vector widths (`Lanes::ALL`; 16 lanes run as two
/// AVX2 halves where the CPU lacks AVX-512), through `max_pool2d_forward_lanes` and
/// `max_pool2d_backward_lanes`: every output width 1..=41 (input widths 2..=83, the odd
/// ones leaving a column outside every window: no whole vector, whole vectors of 8 and 16,
/// every tail), heights 2, 3 and 5 (odd ones leaving a row outside every window), batches
/// 1, 3, 5 and channels 1, 3, 8, with exact ties and NaNs, match the reference bit for
/// bit: values (NaN for NaN), argmax, and the gradient over a NaN-filled `dx` (every value
/// written, the three non-maxima of each window and the leftover row and column 0).
#[test]
fn max_pool2d_forward_lanes_and_max_pool2d_backward_lanes_match_reference_at_both_widths() {
    let mut cases = 0;
    for lanes in Lanes::ALL {
        for (batch, c) in [1, 3, 5].into_iter().flat_map(|b| [1, 3, 8].map(|c| (b, c))) {
            for h in [2, 3, 5] {
                for w in 2..=83 {
                    let s = pool(batch, c, h, w, 2, 2);
                    let mut r = rng(31_000 + (batch * 1000 + c * 100 + h * 10) as u64 * 100 + w as u64);
                    let mut x = rand_ties(&mut r, s.input_len());
                    if w % 3 != 0 {
                        for _ in 0..x.len() / 12 {
                            let i = r.random_range(0..x.len());
                            x[i] = f32::NAN;
                        }
                    }
                    let what = format!("{lanes:?}, {s:?}");
                    let mut y = vec![f32::NAN; s.output_len()];
                    let mut am = vec![u32::MAX; s.output_len()];
                    max_pool2d_forward_lanes(lanes, &s, &x, &mut y, &mut am);
                    let (want_y, want_am) = refk::max_pool2d_forward(&s, &f64s(&x));
                    assert_eq!(am, want_am, "{what}: argmax");
                    for (k, (&a, &b)) in y.iter().zip(&want_y).enumerate() {
                        assert!(
                            if b.is_nan() {
                                a.is_nan()
                            } else {
                                a.to_bits() == (b as f32).to_bits()
                            },
                            "{what}: y[{k}] = {a}, want {b}"
                        );
                    }
                    let dy = rand_vec(&mut r, s.output_len());
                    let mut dx = vec![f32::NAN; s.input_len()];
                    max_pool2d_backward_lanes(lanes, &s, &dy, &am, &mut dx);
                    let want_dx = refk::max_pool2d_backward(&s, &f64s(&dy), &want_am);
                    for (k, (&a, &b)) in dx.iter().zip(&want_dx).enumerate() {
                        assert!(
                            a.to_bits() == (b as f32).to_bits(),
                            "{what}: dx[{k}] = {a}, want {b}"
                        );
                    }
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 2 * 9 * 3 * 82);
}

/// The public functions are the `_lanes` ones at `Lanes::BUILD`, bit for bit.
#[test]
fn max_pool2d_forward_and_backward_run_lanes_build() {
    for s in [
        pool(3, 8, 48, 48, 2, 2),
        pool(2, 3, 7, 41, 2, 2),
        pool(2, 2, 9, 11, 3, 2),
    ] {
        let mut r = rng(32_000 + s.w as u64);
        let x = rand_ties(&mut r, s.input_len());
        let dy = rand_vec(&mut r, s.output_len());
        let run = |lanes: Option<Lanes>| {
            let mut y = vec![f32::NAN; s.output_len()];
            let mut am = vec![u32::MAX; s.output_len()];
            let mut dx = vec![f32::NAN; s.input_len()];
            match lanes {
                Some(l) => {
                    max_pool2d_forward_lanes(l, &s, &x, &mut y, &mut am);
                    max_pool2d_backward_lanes(l, &s, &dy, &am, &mut dx);
                }
                None => {
                    max_pool2d_forward(&s, &x, &mut y, &mut am);
                    max_pool2d_backward(&s, &dy, &am, &mut dx);
                }
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            (bits(&y), am, bits(&dx))
        };
        assert_eq!(run(None), run(Some(Lanes::BUILD)), "{s:?}");
    }
}

// ------------------------------------------------- finite differences

/// Proves max_pool2d_backward is the derivative of max_pool2d_forward, including
/// accumulation where overlapping windows share a maximum; indices whose ±ε perturbation
/// changes any argmax (within ε of a tie) are skipped.
#[test]
fn max_pool2d_backward_matches_finite_differences_of_max_pool2d_forward() {
    let mut r = rng(20_000);
    for s in [
        pool(2, 3, 8, 8, 2, 2),
        pool(1, 2, 9, 11, 3, 2),
        pool(2, 2, 7, 7, 3, 1),
        pool(1, 3, 10, 9, 4, 3),
    ] {
        let x = rand_vec(&mut r, s.input_len());
        let dy = rand_vec(&mut r, s.output_len());
        let fwd = |x: &[f32]| {
            let mut y = vec![0.0; s.output_len()];
            let mut am = vec![0u32; s.output_len()];
            max_pool2d_forward(&s, x, &mut y, &mut am);
            (y, am)
        };
        let (_, am) = fwd(&x);
        let mut gx = vec![0.0; x.len()];
        max_pool2d_backward(&s, &dy, &am, &mut gx);
        let mut fd = Vec::new();
        // Sample among window maxima and non-maxima alike.
        let mut idx = sample_indices(&mut r, x.len(), 20);
        idx.extend(
            am.iter()
                .take(10)
                .enumerate()
                .map(|(q, &a)| (q / (s.out_h() * s.out_w())) * s.h * s.w + a as usize),
        );
        for i in idx {
            let mut xp = x.clone();
            xp[i] += FD_EPS;
            let mut xm = x.clone();
            xm[i] -= FD_EPS;
            if fwd(&xp).1 != am || fwd(&xm).1 != am {
                continue;
            }
            fd.push((
                i,
                central_diff32(|xx| weighted_sum(&dy, &fwd(xx).0), &x, i, FD_EPS),
            ));
        }
        assert!(fd.len() >= 15, "{s:?}: too few differentiable points");
        assert!(
            fd.iter().any(|&(i, _)| gx[i] != 0.0),
            "{s:?}: no window maximum sampled"
        );
        let e = fd_err(&gx, &fd);
        assert!(
            e < FD_TOL,
            "{s:?}: pool grad vs finite differences of max_pool2d_forward: {e:e}"
        );
    }
}

/// Proves the reference pool backward (scatter-add to the argmax, accumulating where
/// windows overlap) is the derivative of the reference max pooling, away from ties: an
/// index is skipped when the ±ε perturbation changes any window's argmax.
#[test]
fn reference_max_pool2d_backward_matches_finite_differences() {
    let mut r = rng(103);
    for s in [
        pool(2, 2, 7, 9, 3, 2),
        pool(1, 3, 6, 6, 2, 2),
        pool(2, 1, 8, 7, 3, 1),
        pool(1, 2, 10, 11, 4, 3),
    ] {
        let x = f64s(&rand_vec(&mut r, s.input_len()));
        let (_, am) = refk::max_pool2d_forward(&s, &x);
        let dy = f64s(&rand_vec(&mut r, s.output_len()));
        let gx = refk::max_pool2d_backward(&s, &dy, &am);
        let eps = 1e-4;
        let loss = |xx: &[f64]| weighted_sum64(&dy, &refk::max_pool2d_forward(&s, xx).0);
        let mut fd = Vec::new();
        for i in sample_indices(&mut r, x.len(), 40) {
            let mut xp = x.clone();
            xp[i] += eps;
            let mut xm = x.clone();
            xm[i] -= eps;
            if refk::max_pool2d_forward(&s, &xp).1 != am || refk::max_pool2d_forward(&s, &xm).1 != am {
                continue; // within ε of a tie: not differentiable there
            }
            fd.push((i, central_diff64(loss, &x, i, eps)));
        }
        assert!(fd.len() >= 20, "{s:?}: too few differentiable points sampled");
        // Some sampled points must be window maxima, or the check proves nothing.
        assert!(fd.iter().any(|&(i, _)| gx[i] != 0.0), "{s:?}: no sampled maximum");
        let e = fd_rel_err(&gx, &fd);
        assert!(e < 1e-8, "{s:?}: reference pool dx vs finite differences: {e:e}");
    }
}

// ------------------------------------------------- hand-worked cases

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
fn max_pool2d_forward_hand_worked_ties_go_to_first_maximum() {
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

/// The reference pool on a hand-worked plane: strict maxima, a tie going to the first
/// position, and an all-equal window going to its first element.
#[test]
fn reference_max_pool2d_forward_and_backward_hand_worked() {
    let s = pool(1, 1, 4, 4, 2, 2);
    #[rustfmt::skip]
    let x = [
        1.0, 5.0, 2.0, 0.0,
        3.0, 4.0, 8.0, 8.0,
        0.0, 0.0, 1.0, 1.0,
        9.0, -1.0, 1.0, 1.0,
    ];
    let (y, am) = refk::max_pool2d_forward(&s, &x);
    assert_eq!(y, vec![5.0, 8.0, 9.0, 1.0]);
    assert_eq!(am, vec![1, 6, 12, 10]);
    let dx = refk::max_pool2d_backward(&s, &[1.0, 2.0, 3.0, 4.0], &am);
    let mut want = vec![0.0; 16];
    want[1] = 1.0;
    want[6] = 2.0;
    want[12] = 3.0;
    want[10] = 4.0;
    assert_eq!(dx, want);
}

/// All-equal input: every window's argmax is its first (top-left) element, on the 2x2/2
/// path, the general path with overlap (3, stride 1), and windows of -inf; -0.0 and 0.0
/// compare equal, so the first of them wins too.
#[test]
fn max_pool2d_forward_all_equal_windows_pick_first_element() {
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
fn max_pool2d_backward_overlapping_windows_accumulate_gradient() {
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
fn max_pool2d_forward_propagates_nan_hand_worked() {
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

// ------------------------------------------------- threads

#[test]
fn max_pool2d_forward_and_backward_are_bit_identical_across_thread_counts() {
    for batch in [13, 32] {
        for s in [pool(batch, 8, 24, 24, 2, 2), pool(batch, 5, 15, 17, 3, 2)] {
            let mut r = rng(batch as u64 + 7);
            let x = rand_ties(&mut r, s.input_len());
            let dy = rand_vec(&mut r, s.output_len());
            assert_thread_independent(&format!("pool {s:?}"), || {
                let mut y = vec![0.0; s.output_len()];
                let mut am = vec![0u32; s.output_len()];
                max_pool2d_forward(&s, &x, &mut y, &mut am);
                let mut dx = vec![0.0; s.input_len()];
                max_pool2d_backward(&s, &dy, &am, &mut dx);
                let am_bits = am.iter().map(|&a| f32::from_bits(a)).collect();
                vec![y, am_bits, dx]
            });
        }
    }
}
