//! Batch norm (`src/norm.rs`): `batch_norm_sums`, `batch_norm_apply` (and `_inplace`),
//! `batch_norm_backward_sums`, `batch_norm_backward_input`:
//!
//! - each sum kernel against exact `f64` sums, to `1e-6 · Σ|terms|`, on channels 1, 3, 16,
//!   33, planes of 1, 7, 64, 81, 300 and 2500 values (tails of every length, several
//!   `SUM_BLOCK`s), batches 1..5, bit-identical at both vector widths (`Lanes::ALL`);
//! - the apply against the reference's inference mode (running statistics), with and
//!   without the fused ReLU, at both widths and in place;
//! - the whole training step composed over 1-3 chunks of the batch (sums added in chunk
//!   order → mean/invstd with eps 1e-5 → apply → backward sums per chunk → backward input)
//!   against `reference::batch_norm_train` / `batch_norm_backward`, with and without ReLU;
//! - the reference backward against central finite differences of the reference forward;
//! - bit-identical results on any number of threads; empty shapes; length contracts.

mod common;

use common::reference as refk;
use common::*;
use petal_kernels::norm::{
    batch_norm_apply_lanes, batch_norm_backward_input_lanes, batch_norm_backward_sums_lanes,
    batch_norm_sums_lanes,
};
use petal_kernels::simd::Lanes;
use petal_kernels::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

const EPS: f64 = 1e-5;

/// Channels 1, 3, 16, 33 times planes 1, 7, 64, 81, 300, 2500, batches cycling 1..=5.
fn shapes() -> Vec<BatchNormShape> {
    let mut out = Vec::new();
    for (i, (c, hw)) in [1, 3, 16, 33]
        .into_iter()
        .flat_map(|c| [1, 7, 64, 81, 300, 2500].map(|hw| (c, hw)))
        .enumerate()
    {
        let batch = if c * hw > 40_000 { 1 + i % 2 } else { 1 + i % 5 };
        out.push(BatchNormShape { batch, c, hw });
    }
    out
}

/// Activations with a nonzero mean per channel: `U(-1, 1) · 1.5 + 0.4`.
fn activations(r: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    rand_vec(r, n).into_iter().map(|v| v * 1.5 + 0.4).collect()
}

/// Index of every value of channel `ch`.
fn channel(s: &BatchNormShape, ch: usize) -> impl Iterator<Item = usize> + '_ {
    (0..s.batch).flat_map(move |n| (0..s.hw).map(move |i| (n * s.c + ch) * s.hw + i))
}

/// Asserts `|got − want| <= tol · scale` for one sum.
#[track_caller]
fn assert_sum(what: &str, got: f64, want: f64, scale: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol * scale.max(1e-30),
        "{what}: got {got:e}, want {want:e} (error {:e} of Σ|terms| {scale:e}, tol {tol:e})",
        (got - want).abs() / scale.max(1e-30)
    );
}

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
        let y = rand_vec(&mut r, s.len());
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

/// Asserts `|got[i] − want[i]| <= tol · bound(i)` for every `i`, `bound(i)` the size of
/// the terms that make up value `i` (an f32 sum of terms is only accurate relative to
/// them: `x·scale + shift` cancels where `x` is near the mean).
#[track_caller]
fn assert_terms_close(what: &str, got: &[f32], want: &[f64], bound: impl Fn(usize) -> f64, tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for i in 0..got.len() {
        let err = (got[i] as f64 - want[i]).abs();
        assert!(
            err <= tol * bound(i),
            "{what}: at {i} got {}, want {} (error {err:e} > {tol:e} · terms {:e})",
            got[i],
            want[i],
            bound(i)
        );
    }
}

/// Per-channel running statistics, gamma and beta.
struct Params {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    mean: Vec<f32>,
    var: Vec<f32>,
}

fn params(r: &mut ChaCha8Rng, c: usize) -> Params {
    let mut v = |lo: f32, hi: f32| (0..c).map(|_| r.random_range(lo..hi)).collect::<Vec<f32>>();
    Params {
        gamma: v(0.5, 1.5),
        beta: v(-0.5, 0.5),
        mean: v(-0.5, 0.5),
        var: v(0.2, 2.0),
    }
}

/// `scale = γ / sqrt(var + eps)`, `shift = β − mean · scale`, in f64 then rounded.
fn scale_shift(gamma: &[f32], beta: &[f32], mean: &[f64], var: &[f64]) -> (Vec<f32>, Vec<f32>) {
    let scale: Vec<f64> = (0..gamma.len())
        .map(|ch| gamma[ch] as f64 / (var[ch] + EPS).sqrt())
        .collect();
    let shift = (0..gamma.len()).map(|ch| (beta[ch] as f64 - mean[ch] * scale[ch]) as f32);
    (scale.iter().map(|&v| v as f32).collect(), shift.collect())
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

/// Everything one training step produces.
#[derive(Debug, PartialEq)]
struct Step {
    scale: Vec<f32>,
    shift: Vec<f32>,
    y: Vec<f32>,
    sums: Vec<f64>,
    mean: Vec<f32>,
    invstd: Vec<f32>,
    dy: Vec<f32>,
    dsums: Vec<f64>,
    dx: Vec<f32>,
}

/// The training step as a layer composes it, over chunks of `sizes` images (module docs of
/// `norm.rs`).
#[allow(clippy::too_many_arguments)]
fn train_step(
    lanes: Lanes,
    s: &BatchNormShape,
    sizes: &[usize],
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    relu: bool,
    dy: &[f32],
) -> Step {
    assert_eq!(sizes.iter().sum::<usize>(), s.batch);
    let (c, img) = (s.c, s.c * s.hw);
    let chunks: Vec<(BatchNormShape, std::ops::Range<usize>)> = sizes
        .iter()
        .scan(0, |start, &b| {
            let range = *start * img..(*start + b) * img;
            *start += b;
            Some((BatchNormShape { batch: b, ..*s }, range))
        })
        .collect();
    let mut sums = vec![0.0; 2 * c];
    for (cs, range) in &chunks {
        let mut part = vec![f64::NAN; 2 * c];
        batch_norm_sums_lanes(lanes, cs, &x[range.clone()], &mut part);
        sums.iter_mut().zip(&part).for_each(|(t, p)| *t += p);
    }
    let n = s.count() as f64;
    let mean64: Vec<f64> = (0..c).map(|ch| sums[ch] / n).collect();
    let var64: Vec<f64> = (0..c)
        .map(|ch| sums[c + ch] / n - mean64[ch] * mean64[ch])
        .collect();
    let (scale, shift) = scale_shift(gamma, beta, &mean64, &var64);
    let mean: Vec<f32> = mean64.iter().map(|&v| v as f32).collect();
    let invstd: Vec<f32> = var64.iter().map(|&v| (1.0 / (v + EPS).sqrt()) as f32).collect();
    let mut y = vec![f32::NAN; s.len()];
    let mut g = dy.to_vec();
    let mut dsums = vec![0.0; 2 * c];
    for (cs, range) in &chunks {
        batch_norm_apply_lanes(
            lanes,
            cs,
            &x[range.clone()],
            &scale,
            &shift,
            relu,
            &mut y[range.clone()],
        );
        let mut part = vec![f64::NAN; 2 * c];
        let (xc, yc) = (&x[range.clone()], &y[range.clone()]);
        batch_norm_backward_sums_lanes(
            lanes,
            cs,
            xc,
            yc,
            relu,
            &mean,
            &invstd,
            &mut g[range.clone()],
            &mut part,
        );
        dsums.iter_mut().zip(&part).for_each(|(t, p)| *t += p);
    }
    let mean_dy: Vec<f32> = (0..c).map(|ch| (dsums[ch] / n) as f32).collect();
    let mean_dy_xhat: Vec<f32> = (0..c).map(|ch| (dsums[c + ch] / n) as f32).collect();
    let mut dx = vec![f32::NAN; s.len()];
    for (cs, range) in &chunks {
        let (xc, gc) = (&x[range.clone()], &g[range.clone()]);
        let dxc = &mut dx[range.clone()];
        batch_norm_backward_input_lanes(
            lanes,
            cs,
            xc,
            gc,
            &mean,
            &invstd,
            gamma,
            &mean_dy,
            &mean_dy_xhat,
            dxc,
        );
    }
    Step {
        scale,
        shift,
        y,
        sums,
        mean,
        invstd,
        dy: g,
        dsums,
        dx,
    }
}

/// Splits `batch` images into up to 3 chunks.
fn chunk_sizes(batch: usize) -> Vec<usize> {
    match batch {
        1 => vec![1],
        2 => vec![1, 1],
        b => vec![b / 3, b / 3, b - 2 * (b / 3)]
            .into_iter()
            .filter(|&v| v > 0)
            .collect(),
    }
}

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
        assert!(s.is_empty() && s.len() == 0);
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
