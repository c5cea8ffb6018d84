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
//! Threads: rayon over fixed blocks of batch rows (forward, `dx`); `dW` is one
//! GEMM over the whole batch. Each output value is computed by one GEMM call in a fixed
//! order, so results do not depend on the thread count.

use crate::gemm::{sgemm, MatRef};
use rayon::prelude::*;

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
    fn check(&self) {
        assert!(
            self.batch > 0 && self.inputs > 0 && self.outputs > 0,
            "dense: batch ({}), inputs ({}) and outputs ({}) must be at least 1",
            self.batch,
            self.inputs,
            self.outputs
        );
    }
    /// FLOPs of the forward pass (multiply-adds count 2).
    pub fn forward_flops(&self) -> u64 {
        2 * (self.batch * self.inputs * self.outputs) as u64
    }
}

fn check_len(what: &str, name: &str, got: usize, want: usize) {
    assert!(got == want, "{what}: {name} has {got} values, expected {want}");
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
/// `None`), and `dx = dy · W` when `grad_input` is given (overwritten).
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
    // One GEMM over the whole batch: a single fixed summation order over n.
    sgemm(
        1.0,
        MatRef::transposed(dy, s.outputs, s.batch),
        MatRef::row_major(x, s.batch, s.inputs),
        0.0,
        grad_weight,
        s.inputs,
    );
    if let Some(gb) = grad_bias {
        gb.fill(0.0);
        for row in dy.chunks_exact(s.outputs) {
            for (g, &d) in gb.iter_mut().zip(row) {
                *g += d;
            }
        }
    }
    if let Some(gx) = grad_input {
        gx.par_chunks_mut(ROWS_PER_TASK * s.inputs)
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
}
