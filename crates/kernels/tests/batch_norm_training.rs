//! The batch-norm training step (`src/norm.rs` composed as a layer does it, helpers in
//! `tests/common/norm.rs`): sums over 1-3 chunks of the batch added in chunk order → mean
//! and invstd with eps 1e-5 → apply → backward sums per chunk → backward input, against
//! `reference::batch_norm_train` / `batch_norm_backward`, with and without the fused ReLU,
//! at both vector widths (bit-identical); the chunking changing only the rounding; thread
//! independence; a single value per channel; and the reference backward against central
//! finite differences of the reference forward.

mod common;

use common::norm::*;
use common::reference as refk;
use common::*;
use petal_kernels::simd::Lanes;
use petal_kernels::*;

#[test]
fn batch_norm_training_step_over_chunks_matches_reference() {
    let mut r = rng(9400);
    for (k, s) in shapes().into_iter().enumerate() {
        let p = params(&mut r, s.c);
        let x = activations(&mut r, s.len());
        let dy = rand_vec(&mut r, s.len());
        let relu = k % 2 == 1;
        let sizes = chunk_sizes(s.batch);
        let (g64, b64) = (f64s(&p.gamma), f64s(&p.beta));
        let (want_y, want_mean, want_var) =
            refk::batch_norm_train(&f64s(&x), s.batch, s.c, s.hw, &g64, &b64, EPS);
        let mut first: Option<Step> = None;
        for lanes in Lanes::ALL {
            let what = format!("{s:?} chunks {sizes:?} relu {relu} {lanes:?}");
            let st = train_step(lanes, &s, &sizes, &x, &p.gamma, &p.beta, relu, &dy);
            assert_close(&format!("mean {what}"), &st.mean, &want_mean, 1e-6);
            let want_invstd: Vec<f64> = want_var.iter().map(|v| 1.0 / (v + EPS).sqrt()).collect();
            assert_close(&format!("invstd {what}"), &st.invstd, &want_invstd, 1e-5);
            let want_y = if relu {
                refk::relu_forward(&want_y)
            } else {
                want_y.clone()
            };
            let ch = |i: usize| i / s.hw % s.c;
            let y_terms = |i: usize| (x[i] * st.scale[ch(i)]).abs() as f64 + st.shift[ch(i)].abs() as f64;
            assert_terms_close(&format!("y {what}"), &st.y, &want_y, y_terms, 1e-5);
            // The reference's backward through the kernel's own ReLU mask (its y).
            let dy_ref = if relu {
                refk::relu_backward(&f64s(&st.y), &f64s(&dy))
            } else {
                f64s(&dy)
            };
            assert_eq!(
                st.dy.iter().map(|&v| v as f64).collect::<Vec<_>>(),
                dy_ref,
                "{what}: mask"
            );
            let (want_dx, want_dgamma, want_dbeta) =
                refk::batch_norm_backward(&f64s(&x), s.batch, s.c, s.hw, &g64, EPS, &dy_ref);
            for ch in 0..s.c {
                let abs_dy: f64 = channel(&s, ch).map(|q| dy_ref[q].abs()).sum();
                assert_sum(
                    &format!("dβ {what} ch {ch}"),
                    st.dsums[ch],
                    want_dbeta[ch],
                    abs_dy,
                    1e-6,
                );
                let xhat = |q: usize| (x[q] as f64 - want_mean[ch]) * want_invstd[ch];
                let abs_dyx: f64 = channel(&s, ch).map(|q| (dy_ref[q] * xhat(q)).abs()).sum();
                let got = st.dsums[s.c + ch];
                assert_sum(&format!("dγ {what} ch {ch}"), got, want_dgamma[ch], abs_dyx, 1e-5);
            }
            // dx = a·(dy − mean_dy − x̂·mean_dy_xhat), a = γ·invstd: accurate relative to
            // the three terms.
            let n = s.count() as f64;
            let dx_terms = |i: usize| {
                let c = ch(i);
                let xhat = (x[i] as f64 - want_mean[c]) * want_invstd[c];
                let terms = dy_ref[i].abs() + (want_dbeta[c] / n).abs() + (xhat * want_dgamma[c] / n).abs();
                (g64[c] * want_invstd[c] * terms).max(1e-30)
            };
            assert_terms_close(&format!("dx {what}"), &st.dx, &want_dx, dx_terms, 1e-5);
            match &first {
                None => first = Some(st),
                Some(f) => assert_eq!(&st, f, "{what}: the two widths differ"),
            }
        }
    }
}

/// A chunked step is close to the one-chunk step (the sums are added in a different
/// grouping, nothing else changes).
#[test]
fn batch_norm_training_step_does_not_depend_on_the_chunking_beyond_rounding() {
    let mut r = rng(9450);
    let s = BatchNormShape {
        batch: 5,
        c: 3,
        hw: 81,
    };
    let p = params(&mut r, s.c);
    let x = activations(&mut r, s.len());
    let dy = rand_vec(&mut r, s.len());
    let whole = train_step(Lanes::BUILD, &s, &[5], &x, &p.gamma, &p.beta, true, &dy);
    for sizes in [vec![1, 4], vec![2, 2, 1], vec![1, 1, 1, 1, 1]] {
        let st = train_step(Lanes::BUILD, &s, &sizes, &x, &p.gamma, &p.beta, true, &dy);
        assert_close(&format!("y {sizes:?}"), &st.y, &f64s(&whole.y), 1e-6);
        assert_close(&format!("dx {sizes:?}"), &st.dx, &f64s(&whole.dx), 1e-5);
    }
}

#[test]
fn batch_norm_training_step_is_bit_identical_across_thread_counts() {
    let mut r = rng(9500);
    for s in [
        BatchNormShape {
            batch: 4,
            c: 33,
            hw: 81,
        },
        BatchNormShape {
            batch: 3,
            c: 2,
            hw: 20_000,
        },
        // 12 tasks of 3 channels, the last with 1.
        BatchNormShape {
            batch: 5,
            c: 34,
            hw: 300,
        },
    ] {
        let p = params(&mut r, s.c);
        let x = activations(&mut r, s.len());
        let dy = rand_vec(&mut r, s.len());
        assert_thread_independent(&format!("batch norm {s:?}"), || {
            let st = train_step(
                Lanes::BUILD,
                &s,
                &chunk_sizes(s.batch),
                &x,
                &p.gamma,
                &p.beta,
                true,
                &dy,
            );
            // The f64 sums' bits, as two f32 each.
            let sum_bits: Vec<f32> = st
                .sums
                .iter()
                .chain(&st.dsums)
                .flat_map(|v| [(v.to_bits() >> 32) as u32, v.to_bits() as u32].map(f32::from_bits))
                .collect();
            vec![st.y, st.dy, st.dx, sum_bits]
        });
    }
}

/// Proves the reference training-mode backward is the derivative of the reference forward
/// (the statistics depend on x): dx, dγ and dβ against central differences (ε = 1e-5) of
/// `L = Σ r·y`.
#[test]
fn reference_batch_norm_backward_matches_finite_differences() {
    let mut r = rng(9600);
    for (batch, c, hw) in [(3, 2, 5), (1, 3, 7), (4, 1, 1)] {
        let x = f64s(&activations(&mut r, batch * c * hw));
        let gamma = f64s(&params(&mut r, c).gamma);
        let beta = f64s(&params(&mut r, c).beta);
        let rw = f64s(&rand_vec(&mut r, x.len()));
        let (dx, dgamma, dbeta) = refk::batch_norm_backward(&x, batch, c, hw, &gamma, EPS, &rw);
        let loss = |x: &[f64], g: &[f64], b: &[f64]| {
            weighted_sum64(&rw, &refk::batch_norm_train(x, batch, c, hw, g, b, EPS).0)
        };
        let eps = 1e-5;
        let fd_x: Vec<_> = (0..x.len())
            .map(|i| (i, central_diff64(|v| loss(v, &gamma, &beta), &x, i, eps)))
            .collect();
        let fd_g: Vec<_> = (0..c)
            .map(|i| (i, central_diff64(|v| loss(&x, v, &beta), &gamma, i, eps)))
            .collect();
        let fd_b: Vec<_> = (0..c)
            .map(|i| (i, central_diff64(|v| loss(&x, &gamma, v), &beta, i, eps)))
            .collect();
        let what = format!("batch {batch} c {c} hw {hw}");
        assert!(
            fd_rel_err(&dx, &fd_x) < 1e-6,
            "{what}: dx {:e}",
            fd_rel_err(&dx, &fd_x)
        );
        assert!(
            fd_rel_err(&dgamma, &fd_g) < 1e-6,
            "{what}: dγ {:e}",
            fd_rel_err(&dgamma, &fd_g)
        );
        assert!(
            fd_rel_err(&dbeta, &fd_b) < 1e-6,
            "{what}: dβ {:e}",
            fd_rel_err(&dbeta, &fd_b)
        );
    }
}

/// A batch of one value per channel has var 0: y = β, and dx = 0 (the normalised value
/// does not depend on x), up to the f32 rounding of terms of size γ·|x|/sqrt(eps) ≈ 500.
#[test]
fn batch_norm_single_value_per_channel_gives_beta_and_zero_dx() {
    let s = BatchNormShape {
        batch: 1,
        c: 3,
        hw: 1,
    };
    let x = [0.7f32, -2.0, 5.0];
    let (gamma, beta) = ([1.5f32, 0.5, 2.0], [0.25f32, -1.0, 3.0]);
    let st = train_step(
        Lanes::BUILD,
        &s,
        &[1],
        &x,
        &gamma,
        &beta,
        false,
        &[1.0, -2.0, 0.5],
    );
    assert_eq!(st.sums[3..], [(0.7f32 as f64).powi(2), 4.0, 25.0]);
    // Terms of size |x·scale| ≈ γ·|x|/sqrt(eps) cancel.
    let terms = |i: usize| 2.0 * (gamma[i] * x[i]).abs() as f64 / EPS.sqrt() + beta[i].abs() as f64;
    assert_terms_close("y", &st.y, &f64s(&beta), terms, 1e-6);
    let dx_terms = |i: usize| 2.0 * gamma[i] as f64 / EPS.sqrt() * [1.0, 2.0, 0.5][i];
    assert_terms_close("dx", &st.dx, &[0.0; 3], dx_terms, 1e-6);
    assert_eq!(&st.dsums[..3], &[1.0, -2.0, 0.5]);
}
