//! `max_pool2d_forward` and `max_pool2d_backward` (`src/pool/max.rs`): shape contracts (wrong
//! buffer lengths, bad shapes through `validate()`), and argmax values the forward could
//! not have produced (outside the plane, outside their 2x2 window), caught on the scalar
//! path and inside the SIMD blocks at both vector widths with the output they belong to.
//! The numerical tests are in `max_pool2d.rs`.

mod common;

use common::*;
use petal_kernels::pool::max::max_pool2d_backward_lanes;
use petal_kernels::simd::Lanes;
use petal_kernels::*;

#[test]
#[should_panic(expected = "max_pool2d_forward: x has 15 values, expected 16")]
fn max_pool2d_forward_x_wrong() {
    max_pool2d_forward(&pool(1, 1, 4, 4, 2, 2), &[0.0; 15], &mut [0.0; 4], &mut [0; 4]);
}

#[test]
#[should_panic(expected = "max_pool2d_forward: y has 5 values, expected 4")]
fn max_pool2d_forward_y_wrong() {
    max_pool2d_forward(&pool(1, 1, 4, 4, 2, 2), &[0.0; 16], &mut [0.0; 5], &mut [0; 4]);
}

#[test]
#[should_panic(expected = "max_pool2d_forward: argmax has 3 values, expected 4")]
fn max_pool2d_forward_argmax_wrong() {
    max_pool2d_forward(&pool(1, 1, 4, 4, 2, 2), &[0.0; 16], &mut [0.0; 4], &mut [0; 3]);
}

#[test]
#[should_panic(expected = "max_pool2d_backward: argmax 16 outside the 4x4 plane")]
fn max_pool2d_backward_argmax_outside_plane() {
    // The second plane's index must be in-plane (0..16), not a flat index.
    max_pool2d_backward(
        &pool(1, 2, 4, 4, 2, 2),
        &[1.0; 8],
        &[0, 2, 8, 10, 16, 2, 8, 10],
        &mut [0.0; 32],
    );
}

#[test]
#[should_panic(
    expected = "max_pool2d_backward: argmax 6 of output (0, 0) outside its 2x2 window in the 4x4 plane"
)]
fn max_pool2d_backward_argmax_outside_its_window() {
    // In the plane, but in the window of output (0, 1), not (0, 0): not from this forward.
    max_pool2d_backward(&pool(1, 1, 4, 4, 2, 2), &[1.0; 4], &[6, 2, 8, 10], &mut [0.0; 16]);
}

#[test]
#[should_panic(
    expected = "max_pool2d_backward: argmax 70 of output (0, 1) outside its 2x2 window in the 4x20 plane"
)]
fn max_pool2d_backward_argmax_outside_its_window_simd() {
    // Ten outputs per row: the first eight take the SIMD path.
    let am: Vec<u32> = (0..20).map(|o| ((o / 10) * 40 + (o % 10) * 2) as u32).collect();
    let mut am = am;
    am[1] = 70;
    max_pool2d_backward(&pool(1, 1, 4, 20, 2, 2), &[1.0; 20], &am, &mut [0.0; 80]);
}

#[test]
#[should_panic(
    expected = "max_pool2d_backward: argmax 4 of output (0, 3) outside its 2x2 window in the 2x40 plane"
)]
fn max_pool2d_backward_argmax_outside_its_window_wide_simd() {
    // Twenty outputs: the first sixteen take the 16-lane path where the build targets
    // AVX-512.
    // Output 3's window starts at column 6; 4 is output 2's.
    let mut am: Vec<u32> = (0..20).map(|o| 2 * o as u32).collect();
    am[3] = 4;
    max_pool2d_backward(&pool(1, 1, 2, 40, 2, 2), &[1.0; 20], &am, &mut [0.0; 80]);
}

#[test]
#[should_panic(expected = "max_pool2d_backward: dx has 31 values, expected 32")]
fn max_pool2d_backward_dx_wrong() {
    max_pool2d_backward(&pool(1, 2, 4, 4, 2, 2), &[1.0; 8], &[0; 8], &mut [0.0; 31]);
}

#[test]
#[should_panic(expected = "max_pool2d_backward: dy has 7 values, expected 8")]
fn max_pool2d_backward_dy_wrong() {
    max_pool2d_backward(&pool(1, 2, 4, 4, 2, 2), &[1.0; 7], &[0; 8], &mut [0.0; 32]);
}

#[test]
#[should_panic(expected = "max_pool2d_backward: argmax has 9 values, expected 8")]
fn max_pool2d_backward_argmax_len_wrong() {
    max_pool2d_backward(&pool(1, 2, 4, 4, 2, 2), &[1.0; 8], &[0; 9], &mut [0.0; 32]);
}

#[test]
#[should_panic(expected = "max_pool2d: k must be at least 1")]
fn max_pool2d_forward_zero_kernel() {
    max_pool2d_forward(&pool(1, 1, 4, 4, 0, 1), &[0.0; 16], &mut [], &mut []);
}

#[test]
#[should_panic(expected = "max_pool2d: kernel 5x5 is larger than the input 4x6")]
fn max_pool2d_forward_kernel_larger_than_input() {
    max_pool2d_forward(&pool(1, 1, 4, 6, 5, 1), &[0.0; 24], &mut [], &mut []);
}

/// Sets one field of a shape to zero.
type Zeroer<S> = fn(&mut S);

#[test]
fn max_pool2d_shape_validate_reports_bad_shapes() {
    let ok = pool(2, 3, 5, 6, 2, 2);
    assert_eq!(ok.validate(), Ok(()));
    let fields: [(&str, Zeroer<Pool2dShape>); 6] = [
        ("batch", |s| s.batch = 0),
        ("c", |s| s.c = 0),
        ("h", |s| s.h = 0),
        ("w", |s| s.w = 0),
        ("k", |s| s.k = 0),
        ("stride", |s| s.stride = 0),
    ];
    for (field, zero) in fields {
        let mut s = ok;
        zero(&mut s);
        assert_eq!(
            s.validate(),
            Err(ShapeError::Zero {
                what: "max_pool2d",
                field
            }),
            "{s:?}"
        );
    }
    for (h, w) in [(2, 5), (5, 2)] {
        assert_eq!(
            pool(1, 1, h, w, 3, 1).validate(),
            Err(ShapeError::KernelTooLarge {
                what: "max_pool2d",
                kernel: (3, 3),
                input: (h, w)
            })
        );
    }
    // A window exactly the input's size is valid: one output.
    let whole = pool(1, 1, 3, 3, 3, 5);
    assert_eq!(whole.validate(), Ok(()));
    assert_eq!((whole.out_h(), whole.out_w(), whole.output_len()), (1, 1, 1));
}

/// The 2x40 plane's 20 outputs with a valid argmax each (the left column of their
/// window) except output `at`, given `value`, through the backward at `lanes`.
fn backward_with_one_bad_argmax(lanes: Lanes, at: usize, value: u32) {
    let mut am: Vec<u32> = (0..20).map(|o| 2 * o as u32).collect();
    am[at] = value;
    max_pool2d_backward_lanes(lanes, &pool(1, 1, 2, 40, 2, 2), &[1.0; 20], &am, &mut [0.0; 80]);
}

/// An argmax outside its window is caught inside a 16-lane block (outputs 0..16), at
/// either width (8 lanes: the first of two 8-lane blocks).
#[test]
#[should_panic(
    expected = "max_pool2d_backward: argmax 4 of output (0, 3) outside its 2x2 window in the 2x40 plane"
)]
fn max_pool2d_backward_lanes_sixteen_argmax_outside_its_window() {
    backward_with_one_bad_argmax(Lanes::Sixteen, 3, 4);
}

#[test]
#[should_panic(
    expected = "max_pool2d_backward: argmax 4 of output (0, 3) outside its 2x2 window in the 2x40 plane"
)]
fn max_pool2d_backward_lanes_eight_argmax_outside_its_window() {
    backward_with_one_bad_argmax(Lanes::Eight, 3, 4);
}

/// In the second 8-lane block (outputs 8..16), which the 16-lane width covers in its first.
#[test]
#[should_panic(
    expected = "max_pool2d_backward: argmax 0 of output (0, 11) outside its 2x2 window in the 2x40 plane"
)]
fn max_pool2d_backward_lanes_eight_argmax_outside_its_window_second_block() {
    backward_with_one_bad_argmax(Lanes::Eight, 11, 0);
}

/// The panic message of `f`, which must panic.
fn panic_message(f: impl FnOnce()) -> String {
    let e = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).expect_err("a panic");
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .expect("a message")
}

/// A bad argmax in each position of a row of 33 outputs (a 2x66 plane: two 16-lane blocks
/// or four 8-lane blocks, then a scalar one), at both widths: in its neighbour's window,
/// one past it, and outside the plane (its size, 2^24, 2^24 + 1, 2^31, `u32::MAX`), every
/// one reported with its own output; with two bad lanes in one block, the first.
#[test]
fn max_pool2d_backward_names_the_output_of_a_bad_argmax_in_every_lane() {
    let s = pool(1, 1, 2, 66, 2, 2);
    let good: Vec<u32> = (0..33).map(|o| 2 * o as u32).collect();
    let run = |lanes: Lanes, am: &[u32]| {
        panic_message(|| max_pool2d_backward_lanes(lanes, &s, &[1.0; 33], am, &mut [0.0; 132]))
    };
    for lanes in Lanes::ALL {
        for at in 0..33 {
            let neighbour = if at == 0 { 2 } else { 2 * at as u32 - 2 };
            for bad in [
                neighbour,
                neighbour + 1,
                132,
                1 << 24,
                (1 << 24) + 1,
                1 << 31,
                u32::MAX,
            ] {
                let mut am = good.clone();
                am[at] = bad;
                let want = if bad >= 132 {
                    format!("max_pool2d_backward: argmax {bad} outside the 2x66 plane")
                } else {
                    format!("max_pool2d_backward: argmax {bad} of output (0, {at}) outside its 2x2 window in the 2x66 plane")
                };
                assert_eq!(run(lanes, &am), want, "{lanes:?}, output {at}");
            }
        }
        for (first, second) in [(2, 5), (9, 14), (17, 31)] {
            let mut am = good.clone();
            am[second] = 0;
            am[first] = 1;
            let want = format!(
                "max_pool2d_backward: argmax 1 of output (0, {first}) outside its 2x2 window in the 2x66 plane"
            );
            assert_eq!(run(lanes, &am), want, "{lanes:?}, outputs {first} and {second}");
        }
    }
}
