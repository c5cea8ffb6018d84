//! The residual join: `y = a + b`, then `max(·, 0)` (NaN kept, as
//! [`relu_forward`](crate::relu_forward)) when `relu`. Element-wise, SIMD, threaded over
//! fixed blocks; one rounding per value, so the result does not depend on the vector
//! width or the number of threads.
//!
//! Backward: `da = db = dy` without the ReLU; with it, `dy` masked where `y <= 0`
//! ([`relu_backward`](crate::relu_backward) on `y`).

use crate::arch::Lanes;
use crate::vector::{relu1, vectors, Vector};
use rayon::prelude::*;
use wide::{f32x16, f32x8};

/// Values per rayon task.
const BLOCK: usize = 1 << 14;

/// `y[i] = a[i] + b[i]`, then `max(·, 0)` when `relu`. All three have the same length.
pub fn add_forward(a: &[f32], b: &[f32], relu: bool, y: &mut [f32]) {
    add_forward_lanes(Lanes::BUILD, a, b, relu, y);
}

/// [`add_forward`] at vector width `lanes`; the result does not depend on it.
#[doc(hidden)]
pub fn add_forward_lanes(lanes: Lanes, a: &[f32], b: &[f32], relu: bool, y: &mut [f32]) {
    assert!(
        a.len() == b.len() && b.len() == y.len(),
        "add_forward: a has {}, b {}, y {} values; they must match",
        a.len(),
        b.len(),
        y.len()
    );
    y.par_chunks_mut(BLOCK)
        .zip(a.par_chunks(BLOCK).zip(b.par_chunks(BLOCK)))
        .for_each(|(y, (a, b))| {
            let mut i = 0;
            if lanes == Lanes::Sixteen {
                i = vectors::<f32x16>(i, y.len(), |i| add_one::<f32x16>(a, b, relu, y, i));
            }
            i = vectors::<f32x8>(i, y.len(), |i| add_one::<f32x8>(a, b, relu, y, i));
            for ((yv, &av), &bv) in y[i..].iter_mut().zip(&a[i..]).zip(&b[i..]) {
                let v = av + bv;
                *yv = if relu { relu1(v) } else { v };
            }
        });
}

#[inline(always)]
fn add_one<V: Vector>(a: &[f32], b: &[f32], relu: bool, y: &mut [f32], i: usize) {
    let v = V::load(&a[i..]) + V::load(&b[i..]);
    (if relu { v.relu() } else { v }).store(&mut y[i..]);
}

/// In place, `a[i] = a[i] + b[i]`, then `max(·, 0)` when `relu`; the same values as
/// [`add_forward`].
pub fn add_forward_inplace(a: &mut [f32], b: &[f32], relu: bool) {
    assert!(
        a.len() == b.len(),
        "add_forward_inplace: a has {} values, b has {}",
        a.len(),
        b.len()
    );
    a.par_chunks_mut(BLOCK)
        .zip(b.par_chunks(BLOCK))
        .for_each(|(a, b)| {
            let i = vectors::<f32x8>(0, a.len(), |i| {
                let v = f32x8::load(&a[i..]) + f32x8::load(&b[i..]);
                (if relu { v.relu() } else { v }).store(&mut a[i..]);
            });
            for (av, &bv) in a[i..].iter_mut().zip(&b[i..]) {
                let v = *av + bv;
                *av = if relu { relu1(v) } else { v };
            }
        });
}
