//! Every code path of the three conv kernels, forced through the `*_with` entry points, at
//! both vector widths (`Lanes::ALL`), against the f64 reference twins on random shapes:
//! widths that are not multiples of 8 or 16, odd heights, batches of 1, 3 and 5 (not a
//! multiple of `BATCH_CHUNK`), `in_c` / `out_c` not multiples of 8, pads 0 to 2. Each
//! result is computed in rayon pools of 1 and 3 threads and must be bit-identical; the
//! direct forward paths must agree bit for bit with each other at both widths. A path
//! forced on a shape it cannot serve panics, naming it. Then the public kernels on
//! every path, bit-identical in pools of 1, 2, 3 and 7 threads.

mod common;
mod conv_checks;

use common::reference as refk;
use common::*;
use conv_checks::*;
use petal_kernels::conv::{ForwardPath, InputGradPath, WeightGradPath};
use petal_kernels::simd::Lanes;
use petal_kernels::*;
use rand::Rng;

/// Random shapes for the path sweep, cycling through families that reach every path:
/// 1, 4 or 9 taps (`Taps`), the same with 8 output channels (`TapPairs`), 3x3 at any
/// channel count (`Direct3x3`, `Transposed`), areas 1, 4, 25 with `in_c <= 3`
/// (`DirectArea`), other kernels (`Grouped`, `DirectRows`, `Col2im`), strides 2 and 3
/// (`Gemm`, `Polyphase`), and ResNet's stride-2 shapes (1x1 pad 0 and 3x3 pad 1, up to 20
/// channels: `Polyphase`). `Polyphase` serves every one of them.
fn path_shapes(seed: u64, count: usize) -> Vec<Conv2dShape> {
    let mut r = rng(seed);
    let mut out = Vec::new();
    while out.len() < count {
        let family = out.len() % 6;
        let (in_c, kh, kw) = match family {
            0 | 1 => TAP_COUNT_CASES[r.random_range(0..3)],
            2 => (r.random_range(1..=11), 3, 3),
            3 => {
                [(1, 1), (2, 2), (5, 5)].map(|(kh, kw)| (r.random_range(1..=3), kh, kw))[r.random_range(0..3)]
            }
            _ => (
                r.random_range(1..=7),
                r.random_range(1..=5),
                r.random_range(1..=5),
            ),
        };
        let (in_c, kh, kw) = if family <= 1 && r.random_bool(0.3) {
            (4, 1, 1)
        } else {
            (in_c, kh, kw)
        };
        let out_c = if family == 1 { 8 } else { r.random_range(1..=11) };
        let stride = if family == 5 { r.random_range(2..=3) } else { 1 };
        let s = conv(
            [1, 3, 5][r.random_range(0..3)],
            in_c,
            r.random_range(1..=19),
            r.random_range(1..=40),
            out_c,
            kh,
            kw,
            stride,
            r.random_range(0..=2),
        );
        if s.validate().is_err() || s.output_len() * s.col_rows() > 150_000 {
            continue;
        }
        out.push(s);
    }
    out
}

/// ResNet's stride-2 shapes for the path sweep, alternating 1x1 pad 0 (the projection
/// shortcut) and 3x3 pad 1: 1 to 20 channels in and out, sides 1 to 19 by 1 to 40, batches 1
/// to 5.
fn resnet_stride2_shapes(seed: u64, count: usize) -> Vec<Conv2dShape> {
    let mut r = rng(seed);
    let mut out = Vec::new();
    while out.len() < count {
        let (k, pad) = if out.len() % 2 == 0 { (1, 0) } else { (3, 1) };
        let s = conv(
            r.random_range(1..=5),
            r.random_range(1..=20),
            r.random_range(1..=19),
            r.random_range(1..=40),
            r.random_range(1..=20),
            k,
            k,
            2,
            pad,
        );
        if s.validate().is_ok() && s.output_len() * s.col_rows() <= 150_000 {
            out.push(s);
        }
    }
    out
}

/// `f` in each of `pools`: the results, asserted bit-identical, from the first pool.
fn in_each_pool(
    what: &str,
    pools: &[rayon::ThreadPool],
    f: impl Fn() -> Vec<Vec<f32>> + Sync,
) -> Vec<Vec<f32>> {
    let mut runs = pools.iter().map(|p| (p.current_num_threads(), p.install(&f)));
    let (_, first) = runs.next().expect("at least one pool");
    for (n, out) in runs {
        assert!(first.iter().all(|t| !t.is_empty()));
        for (k, (got, want)) in out.iter().zip(&first).enumerate() {
            assert_bits_eq(&format!("{what}: output {k} on 1 vs {n} threads"), got, want);
        }
    }
    first
}

/// Rayon pools of each size.
fn pools(threads: &[usize]) -> Vec<rayon::ThreadPool> {
    threads
        .iter()
        .map(|&n| rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap())
        .collect()
}

#[test]
fn conv2d_every_path_at_both_widths_matches_reference_on_random_shapes() {
    let pools = pools(&[1, 3]);
    let mut shapes = path_shapes(31_000, 72);
    shapes.extend(resnet_stride2_shapes(33_000, 24));
    let mut forward_runs = [0usize; ForwardPath::ALL.len()];
    let mut weight_runs = [0usize; WeightGradPath::ALL.len()];
    let mut input_runs = [0usize; InputGradPath::ALL.len()];
    for (k, s) in shapes.iter().enumerate() {
        let mut r = rng(32_000 + k as u64);
        let x = rand_vec(&mut r, s.input_len());
        let w = rand_vec(&mut r, s.weight_len());
        let b = rand_vec(&mut r, s.out_c);
        let dy = rand_vec(&mut r, s.output_len());
        let (x64, w64, dy64) = (f64s(&x), f64s(&w), f64s(&dy));

        let want_y = refk::conv2d_forward(s, &x64, &w64, Some(&f64s(&b)));
        let mut direct_y: Option<Vec<f32>> = None;
        for (p, path) in ForwardPath::ALL.into_iter().enumerate() {
            if !path.supports(s) {
                continue;
            }
            forward_runs[p] += 1;
            for lanes in Lanes::ALL {
                let what = format!("conv2d_forward {s:?} {path:?} {lanes:?}");
                let y = in_each_pool(&what, &pools, || {
                    vec![forward_with(s, path, lanes, &x, &w, Some(&b))]
                });
                assert_close(&what, &y[0], &want_y, forward_tol(s));
                if !matches!(path, ForwardPath::Gemm | ForwardPath::Winograd(_)) {
                    match &direct_y {
                        None => direct_y = Some(y[0].clone()),
                        Some(first) => {
                            assert_bits_eq(&format!("{what} vs the first direct path"), &y[0], first)
                        }
                    }
                }
            }
        }

        let (want_w, want_b) = refk::conv2d_backward_weights(s, &x64, &dy64);
        for (p, path) in WeightGradPath::ALL.into_iter().enumerate() {
            if !path.supports(s) {
                continue;
            }
            weight_runs[p] += 1;
            for lanes in Lanes::ALL {
                let what = format!("conv2d_backward_weights {s:?} {path:?} {lanes:?}");
                let g = in_each_pool(&what, &pools, || {
                    let (gw, gb) = weights_with(s, path, lanes, &x, &dy, true);
                    let (gw_alone, _) = weights_with(s, path, lanes, &x, &dy, false);
                    vec![gw, gb, gw_alone]
                });
                assert_close(&format!("{what} grad_weight"), &g[0], &want_w, weights_tol(s));
                assert_close(&format!("{what} grad_bias"), &g[1], &want_b, weights_tol(s));
                assert_bits_eq(&format!("{what} grad_weight without grad_bias"), &g[2], &g[0]);
            }
        }

        let want_x = refk::conv2d_backward_input(s, &w64, &dy64);
        for (p, path) in InputGradPath::ALL.into_iter().enumerate() {
            if !path.supports(s) {
                continue;
            }
            input_runs[p] += 1;
            for lanes in Lanes::ALL {
                let what = format!("conv2d_backward_input {s:?} {path:?} {lanes:?}");
                let gx = in_each_pool(&what, &pools, || vec![input_with(s, path, lanes, &w, &dy)]);
                assert_close(&what, &gx[0], &want_x, input_tol(s));
            }
        }
    }
    // Every path served enough shapes to mean something.
    for (runs, names) in [
        (&forward_runs[..], format!("{:?}", ForwardPath::ALL)),
        (&weight_runs[..], format!("{:?}", WeightGradPath::ALL)),
        (&input_runs[..], format!("{:?}", InputGradPath::ALL)),
    ] {
        assert!(
            runs.iter().all(|&n| n >= 10),
            "paths {names} ran on {runs:?} shapes"
        );
    }
}

#[test]
#[should_panic(expected = "conv2d_backward_input: path Transposed cannot serve")]
fn conv2d_backward_input_transposed_refuses_a_1x3_kernel() {
    let s = conv(1, 2, 5, 7, 3, 1, 3, 1, 0);
    input_with(
        &s,
        InputGradPath::Transposed,
        Lanes::BUILD,
        &vec![0.0; s.weight_len()],
        &vec![0.0; s.output_len()],
    );
}

#[test]
#[should_panic(expected = "conv2d_backward_input: path Transposed cannot serve")]
fn conv2d_backward_input_transposed_refuses_pad_at_least_k() {
    let s = conv(1, 2, 5, 7, 3, 3, 3, 1, 3);
    input_with(
        &s,
        InputGradPath::Transposed,
        Lanes::BUILD,
        &vec![0.0; s.weight_len()],
        &vec![0.0; s.output_len()],
    );
}

#[test]
#[should_panic(expected = "conv2d_forward: path Taps cannot serve")]
fn conv2d_forward_taps_refuses_18_taps() {
    let s = conv(1, 2, 5, 7, 3, 3, 3, 1, 0);
    forward_with(
        &s,
        ForwardPath::Taps,
        Lanes::BUILD,
        &vec![0.0; s.input_len()],
        &vec![0.0; s.weight_len()],
        None,
    );
}

#[test]
#[should_panic(expected = "conv2d_forward: path TapPairs cannot serve")]
fn conv2d_forward_tap_pairs_refuses_out_c_other_than_8() {
    let s = conv(1, 1, 5, 7, 4, 3, 3, 1, 0);
    forward_with(
        &s,
        ForwardPath::TapPairs,
        Lanes::BUILD,
        &vec![0.0; s.input_len()],
        &vec![0.0; s.weight_len()],
        None,
    );
}

#[test]
#[should_panic(expected = "conv2d_forward: path Grouped cannot serve")]
fn conv2d_forward_grouped_refuses_stride_2() {
    let s = conv(1, 2, 5, 7, 3, 3, 3, 2, 0);
    forward_with(
        &s,
        ForwardPath::Grouped,
        Lanes::BUILD,
        &vec![0.0; s.input_len()],
        &vec![0.0; s.weight_len()],
        None,
    );
}

#[test]
#[should_panic(expected = "conv2d_backward_weights: path Direct3x3 cannot serve")]
fn conv2d_backward_weights_direct_3x3_refuses_a_3x2_kernel() {
    let s = conv(1, 2, 5, 7, 3, 3, 2, 1, 0);
    weights_with(
        &s,
        WeightGradPath::Direct3x3,
        Lanes::BUILD,
        &vec![0.0; s.input_len()],
        &vec![0.0; s.output_len()],
        true,
    );
}

#[test]
#[should_panic(expected = "conv2d_backward_weights: path DirectArea cannot serve")]
fn conv2d_backward_weights_direct_area_refuses_area_6() {
    let s = conv(1, 2, 5, 7, 3, 3, 2, 1, 0);
    weights_with(
        &s,
        WeightGradPath::DirectArea,
        Lanes::BUILD,
        &vec![0.0; s.input_len()],
        &vec![0.0; s.output_len()],
        true,
    );
}

#[test]
#[should_panic(expected = "conv2d_backward_weights: path DirectRows cannot serve")]
fn conv2d_backward_weights_direct_rows_refuses_stride_3() {
    let s = conv(1, 2, 9, 7, 3, 3, 2, 3, 0);
    weights_with(
        &s,
        WeightGradPath::DirectRows,
        Lanes::BUILD,
        &vec![0.0; s.input_len()],
        &vec![0.0; s.output_len()],
        true,
    );
}

// ------------------------------------------------- the public kernels across thread counts

const THREADS: [usize; 4] = [1, 2, 3, 7];

#[test]
fn conv2d_is_bit_identical_across_thread_counts() {
    let pools = pools(&THREADS);
    for batch in [13, 32] {
        for s in [
            conv(batch, 3, 20, 21, 8, 3, 3, 1, 1), // direct (3x3 weight gradient)
            conv(batch, 6, 14, 13, 8, 3, 3, 1, 1), // direct 3x3, in_c 6
            conv(batch, 5, 9, 23, 7, 3, 3, 1, 2),  // direct 3x3, odd out_c, partial strip
            conv(batch, 1, 18, 18, 3, 3, 3, 1, 0), // direct 3x3 reading x unpadded
            conv(batch, 2, 11, 13, 4, 2, 3, 1, 1), // direct (other kernel sizes)
            conv(batch, 6, 14, 13, 8, 3, 2, 1, 1), // GEMM
            conv(batch, 2, 19, 17, 5, 3, 2, 2, 1), // GEMM via stride 2
        ] {
            let mut r = rng(batch as u64 * 100 + s.in_c as u64);
            let x = rand_vec(&mut r, s.input_len());
            let w = rand_vec(&mut r, s.weight_len());
            let b = rand_vec(&mut r, s.out_c);
            let dy = rand_vec(&mut r, s.output_len());
            in_each_pool(&format!("conv {s:?}"), &pools, || {
                let mut scratch = vec![0.0; s.scratch_len()];
                let mut y = vec![0.0; s.output_len()];
                conv2d_forward(&s, &x, &w, Some(&b), &mut y, &mut scratch);
                let mut gw = vec![0.0; s.weight_len()];
                let mut gb = vec![0.0; s.out_c];
                conv2d_backward_weights(&s, &x, &dy, &mut gw, Some(&mut gb), &mut scratch);
                let mut gx = vec![0.0; s.input_len()];
                conv2d_backward_input(&s, &w, &dy, &mut gx, &mut scratch);
                vec![y, gw, gb, gx]
            });
        }
    }
}

/// The CIFAR ResNets' own stride-2 shapes (3x3 pad 1 and 1x1, 16 -> 32 at 32x32, 32 -> 64
/// at 16x16, then 64 -> 64 at 8x8), batch 5, on every polyphase path at both widths
/// against the reference, bit-identical in pools of 1 and 3 threads; the forward also bit
/// for bit equal at both widths.
#[test]
fn conv2d_polyphase_paths_match_reference_on_resnet_shapes() {
    let pools = pools(&[1, 3]);
    for (k, (in_c, side, out_c)) in [(16, 32, 32), (32, 16, 64), (64, 8, 64)].into_iter().enumerate() {
        for (kk, pad) in [(3, 1), (1, 0)] {
            let s = conv(5, in_c, side, side, out_c, kk, kk, 2, pad);
            let mut r = rng(34_000 + k as u64 * 10 + kk as u64);
            let x = rand_vec(&mut r, s.input_len());
            let w = rand_vec(&mut r, s.weight_len());
            let b = rand_vec(&mut r, s.out_c);
            let dy = rand_vec(&mut r, s.output_len());
            let (x64, w64, dy64) = (f64s(&x), f64s(&w), f64s(&dy));
            let want_y = refk::conv2d_forward(&s, &x64, &w64, Some(&f64s(&b)));
            let (want_w, want_b) = refk::conv2d_backward_weights(&s, &x64, &dy64);
            let want_x = refk::conv2d_backward_input(&s, &w64, &dy64);
            let mut first_y: Option<Vec<f32>> = None;
            for lanes in Lanes::ALL {
                let what = format!("{s:?} Polyphase {lanes:?}");
                let out = in_each_pool(&what, &pools, || {
                    let y = forward_with(&s, ForwardPath::Polyphase, lanes, &x, &w, Some(&b));
                    let (gw, gb) = weights_with(&s, WeightGradPath::Polyphase, lanes, &x, &dy, true);
                    let gx = input_with(&s, InputGradPath::Polyphase, lanes, &w, &dy);
                    vec![y, gw, gb, gx]
                });
                assert_close(&format!("forward {what}"), &out[0], &want_y, forward_tol(&s));
                assert_close(&format!("grad_weight {what}"), &out[1], &want_w, weights_tol(&s));
                assert_close(&format!("grad_bias {what}"), &out[2], &want_b, weights_tol(&s));
                assert_close(&format!("grad_input {what}"), &out[3], &want_x, input_tol(&s));
                match &first_y {
                    None => first_y = Some(out[0].clone()),
                    Some(y) => assert_bits_eq(&format!("forward {what} vs 8 lanes"), &out[0], y),
                }
            }
        }
    }
}
