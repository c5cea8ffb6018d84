//! Average pooling and global average pooling (`src/pool/avg.rs`):
//!
//! - against the f64 reference on the shared pool shapes (overlapping windows k3/s2, k3/s1,
//!   k2/s1, strides past the window, k = 1, whole-input windows), random shapes, and
//!   channels 1, 3, 16, 33 with planes up to 81x81;
//! - hand-worked planes: k2/s2 means, k3/s2 overlap counts in the backward (1, 2 or 4
//!   windows per position), positions in no window getting 0;
//! - the backward as the forward's adjoint (`⟨dy, f(x)⟩ = ⟨f*(dy), x⟩`), against finite
//!   differences of the fast forward, and the reference backward against finite
//!   differences of the reference forward;
//! - global pooling (batch 1..5, c 1, 3, 16, 33, hw 1, 7, 64, 81, 2500) forward and backward;
//! - bit-identical results on any number of threads; shape contracts.

mod common;

use common::reference as refk;
use common::*;
use petal_kernels::*;

fn avg_fwd(s: &Pool2dShape, x: &[f32]) -> Vec<f32> {
    let mut y = vec![f32::NAN; s.output_len()];
    avg_pool2d_forward(s, x, &mut y);
    y
}

fn avg_bwd(s: &Pool2dShape, dy: &[f32]) -> Vec<f32> {
    let mut dx = vec![f32::NAN; s.input_len()];
    avg_pool2d_backward(s, dy, &mut dx);
    dx
}

/// The shared pool shapes, random ones, and channel counts 1, 3, 16, 33 on 7x7, 8x8, 9x9
/// and 81x81 planes with k2/s2 and k3/s2.
fn shapes() -> Vec<Pool2dShape> {
    let mut out = pool_fixed_shapes();
    out.extend(pool_random_shapes(31, 30));
    for (i, c) in [1, 3, 16, 33].into_iter().enumerate() {
        for (h, w) in [(7, 7), (8, 8), (9, 9), (81, 81), (1, 64)] {
            for (k, st) in [(2, 2), (3, 2), (1, 1)] {
                let s = pool(1 + (i + h) % 5, c, h, w, k, st);
                if s.k <= s.h && s.input_len() <= 300_000 {
                    out.push(s);
                }
            }
        }
    }
    out
}

#[test]
fn avg_pool2d_forward_and_backward_match_reference() {
    let mut r = rng(7100);
    for s in shapes() {
        let x = rand_vec(&mut r, s.input_len());
        let dy = rand_vec(&mut r, s.output_len());
        let tol = reduction_tol(s.k * s.k);
        assert_close(
            &format!("avg forward {s:?}"),
            &avg_fwd(&s, &x),
            &refk::avg_pool2d_forward(&s, &f64s(&x)),
            tol,
        );
        let want = refk::avg_pool2d_backward(&s, &f64s(&dy));
        assert_close(&format!("avg backward {s:?}"), &avg_bwd(&s, &dy), &want, tol);
    }
}

#[test]
fn avg_pool2d_hand_worked_k2_s2() {
    let s = pool(1, 1, 4, 4, 2, 2);
    let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
    assert_eq!(avg_fwd(&s, &x), vec![2.5, 4.5, 10.5, 12.5]);
    #[rustfmt::skip]
    let want = vec![
        1.0, 1.0, 2.0, 2.0,
        1.0, 1.0, 2.0, 2.0,
        3.0, 3.0, 4.0, 4.0,
        3.0, 3.0, 4.0, 4.0,
    ];
    let dx = avg_bwd(&s, &[4.0, 8.0, 12.0, 16.0]);
    assert_eq!(dx, want);
}

/// k3/s2 on 5x5: corners are in one window, edge midpoints in two, the centre in four.
/// Backward of dy = 9 everywhere counts the windows holding each position.
#[test]
fn avg_pool2d_hand_worked_k3_s2_overlap() {
    let s = pool(1, 1, 5, 5, 3, 2);
    let x: Vec<f32> = (0..25).map(|v| v as f32).collect();
    // Window means are the centre values: 6, 8, 16, 18.
    assert_eq!(avg_fwd(&s, &x), vec![6.0, 8.0, 16.0, 18.0]);
    #[rustfmt::skip]
    let counts = vec![
        1.0, 1.0, 2.0, 1.0, 1.0,
        1.0, 1.0, 2.0, 1.0, 1.0,
        2.0, 2.0, 4.0, 2.0, 2.0,
        1.0, 1.0, 2.0, 1.0, 1.0,
        1.0, 1.0, 2.0, 1.0, 1.0,
    ];
    assert_close("k3/s2 counts", &avg_bwd(&s, &[9.0; 4]), &counts, 1e-6);
    // Stride 1: the centre of 5x5 is in all 9 windows.
    let s1 = pool(1, 1, 5, 5, 3, 1);
    assert_close("k3/s1 centre", &avg_bwd(&s1, &[9.0; 9])[12..13], &[9.0], 1e-6);
}

/// Stride past the window (k2/s3 on 5x5): row 2 and column 2 are in no window, so they get
/// 0; the others get dy / 4.
#[test]
fn avg_pool2d_backward_zero_outside_every_window() {
    let s = pool(1, 1, 5, 5, 2, 3);
    let dx = avg_bwd(&s, &[4.0, 8.0, 12.0, 16.0]);
    for r in 0..5 {
        for c in 0..5 {
            let want = match (r, c) {
                (0 | 1, 0 | 1) => 1.0,
                (0 | 1, 3 | 4) => 2.0,
                (3 | 4, 0 | 1) => 3.0,
                (3 | 4, 3 | 4) => 4.0,
                _ => 0.0,
            };
            assert_eq!(dx[r * 5 + c], want, "({r}, {c})");
        }
    }
}

/// The backward is the forward's adjoint: `Σ dy·f(x) = Σ f*(dy)·x` (f64 sums of the f32
/// outputs).
#[test]
fn avg_pool2d_backward_is_the_adjoint_of_the_forward() {
    let mut r = rng(7200);
    for s in shapes() {
        let x = rand_vec(&mut r, s.input_len());
        let dy = rand_vec(&mut r, s.output_len());
        let (a, b) = (
            weighted_sum(&dy, &avg_fwd(&s, &x)),
            weighted_sum(&avg_bwd(&s, &dy), &x),
        );
        let scale = x.len().max(dy.len()) as f64;
        assert!(
            (a - b).abs() <= 1e-5 * scale.sqrt(),
            "{s:?}: ⟨dy, f(x)⟩ {a} vs ⟨f*(dy), x⟩ {b}"
        );
    }
}

#[test]
fn avg_pool2d_backward_matches_finite_differences_of_forward() {
    let mut r = rng(7300);
    for s in [
        pool(2, 3, 9, 11, 3, 2),
        pool(1, 2, 8, 8, 2, 2),
        pool(2, 1, 7, 6, 2, 1),
    ] {
        let x = rand_vec(&mut r, s.input_len());
        let dy = rand_vec(&mut r, s.output_len());
        let gx = avg_bwd(&s, &dy);
        let loss = |xx: &[f32]| weighted_sum(&dy, &avg_fwd(&s, xx));
        let fd: Vec<_> = sample_indices(&mut r, x.len(), 30)
            .into_iter()
            .map(|i| (i, central_diff32(loss, &x, i, FD_EPS)))
            .collect();
        let e = fd_err(&gx, &fd);
        assert!(e < FD_TOL, "avg pool {s:?} grad vs finite differences: {e:e}");
    }
}

#[test]
fn reference_avg_pool2d_and_global_backward_match_finite_differences() {
    let mut r = rng(7400);
    let s = pool(2, 2, 7, 9, 3, 2);
    let x = f64s(&rand_vec(&mut r, s.input_len()));
    let dy = f64s(&rand_vec(&mut r, s.output_len()));
    let gx = refk::avg_pool2d_backward(&s, &dy);
    let loss = |xx: &[f64]| weighted_sum64(&dy, &refk::avg_pool2d_forward(&s, xx));
    let fd: Vec<_> = (0..x.len())
        .map(|i| (i, central_diff64(loss, &x, i, 1e-4)))
        .collect();
    assert!(
        fd_rel_err(&gx, &fd) < 1e-8,
        "reference avg pool: {:e}",
        fd_rel_err(&gx, &fd)
    );
    let (batch, c, hw) = (3, 2, 13);
    let x = f64s(&rand_vec(&mut r, batch * c * hw));
    let dy = f64s(&rand_vec(&mut r, batch * c));
    let gx = refk::global_avg_pool_backward(batch, c, hw, &dy);
    let loss = |xx: &[f64]| weighted_sum64(&dy, &refk::global_avg_pool_forward(batch, c, hw, xx));
    let fd: Vec<_> = (0..x.len())
        .map(|i| (i, central_diff64(loss, &x, i, 1e-4)))
        .collect();
    assert!(
        fd_rel_err(&gx, &fd) < 1e-8,
        "reference global pool: {:e}",
        fd_rel_err(&gx, &fd)
    );
}

#[test]
fn global_avg_pool_forward_and_backward_match_reference() {
    let mut r = rng(7500);
    let mut k = 0;
    for c in [1, 3, 16, 33] {
        for hw in [1, 7, 64, 81, 2500] {
            k += 1;
            let batch = 1 + k % 5;
            let x = rand_vec(&mut r, batch * c * hw);
            let dy = rand_vec(&mut r, batch * c);
            let mut y = vec![f32::NAN; batch * c];
            global_avg_pool_forward(batch, c, hw, &x, &mut y);
            let want = refk::global_avg_pool_forward(batch, c, hw, &f64s(&x));
            // Plane means of uniform data are ~1/sqrt(hw): scale the tolerance to the sum.
            let tol = reduction_tol(hw) * (hw as f64).sqrt();
            assert_close(&format!("global forward {batch} {c} {hw}"), &y, &want, tol);
            let mut dx = vec![f32::NAN; batch * c * hw];
            global_avg_pool_backward(batch, c, hw, &dy, &mut dx);
            let want = refk::global_avg_pool_backward(batch, c, hw, &f64s(&dy));
            assert_close(
                &format!("global backward {batch} {c} {hw}"),
                &dx,
                &want,
                ELEMENTWISE_TOL,
            );
        }
    }
    // Exact small case.
    let mut y = [0.0; 2];
    global_avg_pool_forward(1, 2, 4, &[1.0, 2.0, 3.0, 6.0, -1.0, -1.0, -1.0, -1.0], &mut y);
    assert_eq!(y, [3.0, -1.0]);
    let mut dx = [0.0; 8];
    global_avg_pool_backward(1, 2, 4, &[4.0, -2.0], &mut dx);
    assert_eq!(dx, [1.0, 1.0, 1.0, 1.0, -0.5, -0.5, -0.5, -0.5]);
}

#[test]
fn avg_pools_are_bit_identical_across_thread_counts() {
    let mut r = rng(7600);
    let s = pool(5, 16, 33, 31, 3, 2);
    let x = rand_vec(&mut r, s.input_len());
    let dy = rand_vec(&mut r, s.output_len());
    let (b, c, hw) = (5, 33, 81);
    let gx = rand_vec(&mut r, b * c * hw);
    let gdy = rand_vec(&mut r, b * c);
    assert_thread_independent("avg pools", || {
        let mut gy = vec![0.0; b * c];
        global_avg_pool_forward(b, c, hw, &gx, &mut gy);
        let mut gdx = vec![0.0; b * c * hw];
        global_avg_pool_backward(b, c, hw, &gdy, &mut gdx);
        vec![avg_fwd(&s, &x), avg_bwd(&s, &dy), gy, gdx]
    });
}

#[test]
#[should_panic(expected = "avg_pool2d_forward: y has 5 values, expected 4")]
fn avg_pool2d_forward_y_wrong() {
    avg_pool2d_forward(&pool(1, 1, 4, 4, 2, 2), &[0.0; 16], &mut [0.0; 5]);
}

#[test]
#[should_panic(expected = "avg_pool2d_backward: dx has 15 values, expected 16")]
fn avg_pool2d_backward_dx_wrong() {
    avg_pool2d_backward(&pool(1, 1, 4, 4, 2, 2), &[0.0; 4], &mut [0.0; 15]);
}

#[test]
#[should_panic(expected = "avg_pool2d: kernel 5x5 is larger than the input 4x6")]
fn avg_pool2d_kernel_larger_than_input() {
    avg_pool2d_forward(&pool(1, 1, 4, 6, 5, 1), &[0.0; 24], &mut []);
}

#[test]
#[should_panic(expected = "avg_pool2d: stride must be at least 1")]
fn avg_pool2d_zero_stride() {
    avg_pool2d_forward(&pool(1, 1, 4, 4, 2, 0), &[0.0; 16], &mut []);
}

#[test]
#[should_panic(expected = "global_avg_pool_forward: y has 3 values, expected 4")]
fn global_avg_pool_forward_y_wrong() {
    global_avg_pool_forward(2, 2, 3, &[0.0; 12], &mut [0.0; 3]);
}

#[test]
#[should_panic(expected = "global_avg_pool_backward: hw must be at least 1")]
fn global_avg_pool_backward_zero_hw() {
    global_avg_pool_backward(2, 2, 0, &[0.0; 4], &mut []);
}
