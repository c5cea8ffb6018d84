//! Fully connected layer, the seed's eq. (10)-(12): `T = W · input + b`.
//!
//! Shapes: input `x` `[batch, in]`, weight `W` `[out, in]` (PyTorch's `Linear` layout),
//! bias `b` `[out]`, output `y` `[batch, out]`:
//! `y[n, o] = b[o] + Σ_i W[o, i] · x[n, i]`.
//!
//! Backward, from `dy = dL/dy`, by eq. (11) (`∂T/∂W = input`, `∂T/∂b = 1`,
//! `∂T/∂input = W`) and the chain rule (eq. 12):
//! `dW = dyᵀ · x` (`[out, in]`), `db[o] = Σ_n dy[n, o]`, `dx = dy · W` (`[batch, in]`).
//!
//! Two paths, chosen by shape: with at most [`DIRECT_MAX_OUTPUTS`] outputs (the seed's
//! 5 classes) a direct SIMD path streams `x` once per pass and keeps one accumulator per
//! output in registers (a GEMM would pack the whole `[batch, in]` input on every call);
//! wider layers go through `matrixmultiply`'s GEMM.
//!
//! Threads: rayon over fixed blocks of batch rows (forward, `dx`) and, on the direct path,
//! of input columns (`dW`); every output value is summed in one fixed order, so results do
//! not depend on the thread count.

use crate::gemm::{sgemm, MatRef};
use crate::shape::{check_len, check_sizes, ShapeError};
use crate::shared_mut::SharedMut;
use crate::simd::{fma, LANES};
use crate::vector::Vector;
use rayon::prelude::*;
use wide::f32x8;

/// Layers with at most this many outputs take the direct SIMD path.
pub const DIRECT_MAX_OUTPUTS: usize = 8;
/// Input columns per task of the direct weight gradient.
const COLS_PER_TASK: usize = 512;

/// Batch rows per task in [`dense_forward`] and the input gradient.
const ROWS_PER_TASK: usize = 16;

/// The shape of a batched dense layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DenseShape {
    pub batch: usize,
    pub inputs: usize,
    pub outputs: usize,
}

impl DenseShape {
    /// Checks that no size is zero and no tensor is larger than `shape::MAX_VALUES`.
    pub fn validate(&self) -> Result<(), ShapeError> {
        for (field, v) in [
            ("batch", self.batch),
            ("inputs", self.inputs),
            ("outputs", self.outputs),
        ] {
            if v == 0 {
                return Err(ShapeError::Zero { what: "dense", field });
            }
        }
        check_sizes(
            "dense",
            &[
                ("the input", &[self.batch, self.inputs]),
                ("the weight", &[self.outputs, self.inputs]),
                ("the output", &[self.batch, self.outputs]),
            ],
        )
    }
    fn check(&self) {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
    }
    /// FLOPs of the forward pass (multiply-adds count 2).
    pub fn forward_flops(&self) -> u64 {
        2 * (self.batch * self.inputs * self.outputs) as u64
    }
}

/// Forward: `y = x · Wᵀ + b` (module docs). `y` is overwritten.
pub fn dense_forward(s: &DenseShape, x: &[f32], weight: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    const WHAT: &str = "dense_forward";
    s.check();
    check_len(WHAT, "x", x.len(), s.batch * s.inputs);
    check_len(WHAT, "weight", weight.len(), s.outputs * s.inputs);
    if let Some(b) = bias {
        check_len(WHAT, "bias", b.len(), s.outputs);
    }
    check_len(WHAT, "y", y.len(), s.batch * s.outputs);
    if s.outputs <= DIRECT_MAX_OUTPUTS {
        return with_outputs!(s.outputs, direct_forward, s, x, weight, bias, y);
    }
    y.par_chunks_mut(ROWS_PER_TASK * s.outputs)
        .zip(x.par_chunks(ROWS_PER_TASK * s.inputs))
        .for_each(|(yc, xc)| {
            let rows = xc.len() / s.inputs;
            let beta = match bias {
                Some(b) => {
                    for row in yc.chunks_exact_mut(s.outputs) {
                        row.copy_from_slice(b);
                    }
                    1.0
                }
                None => 0.0,
            };
            sgemm(
                1.0,
                MatRef::row_major(xc, rows, s.inputs),
                MatRef::transposed(weight, s.inputs, s.outputs),
                beta,
                yc,
                s.outputs,
            );
        });
}

/// Backward: `dW = dyᵀ · x` and `db = Σ_n dy[n, ·]` (both overwritten; `db` skipped when
/// `None`), and `dx = dy · W` when `grad_input` is given (overwritten):
/// [`dense_backward_weights`] then [`dense_backward_input`].
#[allow(clippy::too_many_arguments)]
pub fn dense_backward(
    s: &DenseShape,
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    grad_weight: &mut [f32],
    grad_bias: Option<&mut [f32]>,
    grad_input: Option<&mut [f32]>,
) {
    const WHAT: &str = "dense_backward";
    s.check();
    check_len(WHAT, "x", x.len(), s.batch * s.inputs);
    check_len(WHAT, "weight", weight.len(), s.outputs * s.inputs);
    check_len(WHAT, "dy", dy.len(), s.batch * s.outputs);
    check_len(WHAT, "grad_weight", grad_weight.len(), s.outputs * s.inputs);
    // Every length is checked before anything is written.
    if let Some(gb) = &grad_bias {
        check_len(WHAT, "grad_bias", gb.len(), s.outputs);
    }
    if let Some(gx) = &grad_input {
        check_len(WHAT, "grad_input", gx.len(), s.batch * s.inputs);
    }
    dense_backward_weights(s, x, dy, grad_weight, grad_bias);
    if let Some(gx) = grad_input {
        dense_backward_input(s, weight, dy, gx);
    }
}

/// Weight and bias gradients: `dW[o, i] = Σ_n dy[n, o] · x[n, i]` (`[out, in]`) and
/// `db[o] = Σ_n dy[n, o]` (`[out]`, skipped when `None`), both overwritten and summed over
/// `n` in order.
///
/// `x`: the forward input `[batch, in]`; `dy`: `[batch, out]`.
pub fn dense_backward_weights(
    s: &DenseShape,
    x: &[f32],
    dy: &[f32],
    grad_weight: &mut [f32],
    grad_bias: Option<&mut [f32]>,
) {
    const WHAT: &str = "dense_backward_weights";
    s.check();
    check_len(WHAT, "x", x.len(), s.batch * s.inputs);
    check_len(WHAT, "dy", dy.len(), s.batch * s.outputs);
    check_len(WHAT, "grad_weight", grad_weight.len(), s.outputs * s.inputs);
    if let Some(gb) = &grad_bias {
        check_len(WHAT, "grad_bias", gb.len(), s.outputs);
    }
    if s.outputs <= DIRECT_MAX_OUTPUTS {
        with_outputs!(s.outputs, direct_backward_weights, s, x, dy, grad_weight);
    } else {
        // One GEMM over the whole batch: a single fixed summation order over n.
        sgemm(
            1.0,
            MatRef::transposed(dy, s.outputs, s.batch),
            MatRef::row_major(x, s.batch, s.inputs),
            0.0,
            grad_weight,
            s.inputs,
        );
    }
    if let Some(gb) = grad_bias {
        dense_backward_bias(s, dy, gb);
    }
}

/// Bias gradient: `db[o] = Σ_n dy[n, o]` (`[out]`, overwritten), summed over `n` in order
/// from zero. `dy`: `[batch, out]`.
pub fn dense_backward_bias(s: &DenseShape, dy: &[f32], grad_bias: &mut [f32]) {
    check_len("dense_backward_bias", "dy", dy.len(), s.batch * s.outputs);
    check_len("dense_backward_bias", "grad_bias", grad_bias.len(), s.outputs);
    grad_bias.fill(0.0);
    for row in dy.chunks_exact(s.outputs) {
        for (g, &d) in grad_bias.iter_mut().zip(row) {
            *g += d;
        }
    }
}

/// Input gradient: `dx[n, i] = Σ_o dy[n, o] · W[o, i]` (`[batch, in]`, overwritten).
///
/// `weight`: `[out, in]`; `dy`: `[batch, out]`.
pub fn dense_backward_input(s: &DenseShape, weight: &[f32], dy: &[f32], grad_input: &mut [f32]) {
    const WHAT: &str = "dense_backward_input";
    s.check();
    check_len(WHAT, "weight", weight.len(), s.outputs * s.inputs);
    check_len(WHAT, "dy", dy.len(), s.batch * s.outputs);
    check_len(WHAT, "grad_input", grad_input.len(), s.batch * s.inputs);
    if s.outputs <= DIRECT_MAX_OUTPUTS {
        return with_outputs!(s.outputs, direct_backward_input, s, weight, dy, grad_input);
    }
    grad_input
        .par_chunks_mut(ROWS_PER_TASK * s.inputs)
        .zip(dy.par_chunks(ROWS_PER_TASK * s.outputs))
        .for_each(|(gxc, dyc)| {
            let rows = dyc.len() / s.outputs;
            sgemm(
                1.0,
                MatRef::row_major(dyc, rows, s.outputs),
                MatRef::row_major(weight, s.outputs, s.inputs),
                0.0,
                gxc,
                s.inputs,
            );
        });
}

/// Calls `$f::<O>(args)` with the const `O = $outputs` (1 to [`DIRECT_MAX_OUTPUTS`]).
macro_rules! with_outputs {
    ($outputs:expr, $f:ident, $($arg:expr),*) => {
        match $outputs {
            1 => $f::<1>($($arg),*),
            2 => $f::<2>($($arg),*),
            3 => $f::<3>($($arg),*),
            4 => $f::<4>($($arg),*),
            5 => $f::<5>($($arg),*),
            6 => $f::<6>($($arg),*),
            7 => $f::<7>($($arg),*),
            8 => $f::<8>($($arg),*),
            n => unreachable!("direct dense path with {n} outputs"),
        }
    };
}
use with_outputs;

/// `y[n, o] = b[o] + x[n, ·] · W[o, ·]`: per row, `O` vector accumulators over the inputs.
fn direct_forward<const O: usize>(
    s: &DenseShape,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    let k = s.inputs;
    let body = k - k % LANES;
    y.par_chunks_mut(ROWS_PER_TASK * O)
        .zip(x.par_chunks(ROWS_PER_TASK * k))
        .for_each(|(yc, xc)| {
            for (yn, xn) in yc.chunks_exact_mut(O).zip(xc.chunks_exact(k)) {
                let mut acc = [f32x8::ZERO; O];
                for c in (0..body).step_by(LANES) {
                    let xv = f32x8::load(&xn[c..]);
                    for (o, a) in acc.iter_mut().enumerate() {
                        *a = f32x8::load(&weight[o * k + c..]).mul_add(xv, *a);
                    }
                }
                for (o, (yo, a)) in yn.iter_mut().zip(acc).enumerate() {
                    let mut v = a.reduce_add();
                    for c in body..k {
                        v = fma(xn[c], weight[o * k + c], v);
                    }
                    *yo = v + bias.map_or(0.0, |b| b[o]);
                }
            }
        });
}

/// `dW[o, i] = Σ_n dy[n, o] · x[n, i]`, summed over `n` in order, per block of columns.
fn direct_backward_weights<const O: usize>(s: &DenseShape, x: &[f32], dy: &[f32], gw: &mut [f32]) {
    let k = s.inputs;
    assert_eq!(gw.len(), O * k);
    let gw = SharedMut::new(gw);
    (0..k.div_ceil(COLS_PER_TASK)).into_par_iter().for_each(|b| {
        let c0 = b * COLS_PER_TASK;
        let cols = COLS_PER_TASK.min(k - c0);
        // SAFETY: task b takes columns c0 .. c0 + cols of each of the O rows of gw; the
        // tasks' column ranges are disjoint, so these O ranges overlap no other task's,
        // and each other.
        let rows: [&mut [f32]; O] = std::array::from_fn(|o| unsafe { gw.range(o * k + c0, cols) });
        dw_block::<O>(s, x, dy, c0, rows);
    });
}

/// Columns `c0 .. c0 + cols` of the weight gradient into `rows[o][..cols]`.
fn dw_block<const O: usize>(s: &DenseShape, x: &[f32], dy: &[f32], c0: usize, mut rows: [&mut [f32]; O]) {
    let k = s.inputs;
    let cols = rows[0].len();
    // Two vectors of columns at a time: 2·O accumulators stay in registers.
    let mut c = 0;
    while c + 2 * LANES <= cols {
        let mut acc = [[f32x8::ZERO; 2]; O];
        for (xn, dyn_) in x.chunks_exact(k).zip(dy.chunks_exact(O)) {
            let (x0, x1) = (f32x8::load(&xn[c0 + c..]), f32x8::load(&xn[c0 + c + LANES..]));
            for (a, &d) in acc.iter_mut().zip(dyn_) {
                let d = f32x8::splat(d);
                a[0] = x0.mul_add(d, a[0]);
                a[1] = x1.mul_add(d, a[1]);
            }
        }
        for (row, a) in rows.iter_mut().zip(&acc) {
            a[0].store(&mut row[c..]);
            a[1].store(&mut row[c + LANES..]);
        }
        c += 2 * LANES;
    }
    for c in c..cols {
        let mut acc = [0.0f32; O];
        for (xn, dyn_) in x.chunks_exact(k).zip(dy.chunks_exact(O)) {
            for (a, &d) in acc.iter_mut().zip(dyn_) {
                *a = fma(xn[c0 + c], d, *a);
            }
        }
        for (row, a) in rows.iter_mut().zip(acc) {
            row[c] = a;
        }
    }
}

/// `dx[n, i] = Σ_o dy[n, o] · W[o, i]`.
fn direct_backward_input<const O: usize>(s: &DenseShape, weight: &[f32], dy: &[f32], gx: &mut [f32]) {
    let k = s.inputs;
    let body = k - k % LANES;
    gx.par_chunks_mut(ROWS_PER_TASK * k)
        .zip(dy.par_chunks(ROWS_PER_TASK * O))
        .for_each(|(gxc, dyc)| {
            for (gxn, dyn_) in gxc.chunks_exact_mut(k).zip(dyc.chunks_exact(O)) {
                let d: [f32x8; O] = std::array::from_fn(|o| f32x8::splat(dyn_[o]));
                for c in (0..body).step_by(LANES) {
                    let mut acc = f32x8::ZERO;
                    for (o, dv) in d.iter().enumerate() {
                        acc = f32x8::load(&weight[o * k + c..]).mul_add(*dv, acc);
                    }
                    acc.store(&mut gxn[c..]);
                }
                for c in body..k {
                    gxn[c] = (0..O).fold(0.0f32, |a, o| fma(dyn_[o], weight[o * k + c], a));
                }
            }
        });
}
