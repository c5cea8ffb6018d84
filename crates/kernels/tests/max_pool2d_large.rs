//! Argmax offsets of the 2x2 max pool at the edges of their float encoding: the SIMD path
//! carries them as exact floats and stores them through a 2^23 bias, so planes of up to
//! 2^23 values take it and larger ones the scalar path; both must give the reference's
//! indices at both vector widths.

mod common;

use common::reference as refk;
use common::*;
use petal_kernels::pool::max::{max_pool2d_backward_lanes, max_pool2d_forward_lanes};
use petal_kernels::simd::Lanes;

#[test]
fn max_pool2d_argmax_is_exact_on_planes_just_below_and_above_2_pow_23_values() {
    // h = 2: one row of windows; w even; h·w just below 2^23 (SIMD path) and just above
    // (scalar path), the last windows' offsets about 2^23.
    for w in [(1 << 22) - 2, (1 << 22) + 2] {
        let s = pool(1, 1, 2, w, 2, 2);
        let mut r = rng(w as u64);
        let mut x = rand_ties(&mut r, s.input_len());
        // The second row's odd column wins every window: odd offsets w + 1 .. 2w, up to
        // about 2^23 (an odd one past 2^23 is what a 2^23 bias cannot hold).
        for (k, v) in x[w..].iter_mut().enumerate() {
            *v += if k % 2 == 1 { 20.0 } else { 10.0 };
        }
        let (want_y, want_am) = refk::max_pool2d_forward(&s, &f64s(&x));
        for lanes in Lanes::ALL {
            let mut y = vec![f32::NAN; s.output_len()];
            let mut am = vec![u32::MAX; s.output_len()];
            max_pool2d_forward_lanes(lanes, &s, &x, &mut y, &mut am);
            assert!(
                am == want_am,
                "{lanes:?}, w {w}: argmax differs from the reference"
            );
            assert!(
                y.iter()
                    .zip(&want_y)
                    .all(|(&a, &b)| a.to_bits() == (b as f32).to_bits()),
                "{lanes:?}, w {w}: values"
            );
            assert!(
                *am.last().unwrap() as usize >= s.input_len() - 2,
                "the last offsets reach 2w - 2"
            );
            let dy = vec![1.0f32; s.output_len()];
            let mut dx = vec![f32::NAN; s.input_len()];
            max_pool2d_backward_lanes(lanes, &s, &dy, &am, &mut dx);
            let want_dx = refk::max_pool2d_backward(&s, &f64s(&dy), &want_am);
            assert!(
                dx.iter()
                    .zip(&want_dx)
                    .all(|(&a, &b)| a.to_bits() == (b as f32).to_bits()),
                "{lanes:?}, w {w}: dx"
            );
        }
    }
}
