//! The chunk step: one chunk's forward and backward pass over a range of the layer plan,
//! and its loss. Each layer's work is its kind's (`layers`); this module hands it its
//! buffers and settings.
//!
//! - `batch_norm.rs`: a batch norm's per-chunk sums and input gradient, between the
//!   regions of a step, and their totals over the batch;
//! - `fold.rs`: inference's convolutions with the batch norm after them folded in;
//! - `reduce.rs`: the batch's gradient, the chunks' gradients summed over the fixed tree;
//! - `exchange.rs`: every exchange with the other processes of a data-parallel step.
//!
//! A network without batch norms runs a training step as one parallel region: each chunk
//! goes forward through every layer, computes its loss and goes back. A batch norm needs
//! the statistics of the whole batch, so with batch norms `b₁ < … < bₘ` (layer indices) a
//! step is `2m + 1` regions, each a range of layers per chunk with a barrier between:
//! forward `[0, b₁)` then the chunk's sums for `b₁`; for each `j`, forward `[bⱼ, bⱼ₊₁)`
//! (the batch norm applied with the batch's statistics) then the sums for `bⱼ₊₁`; the last
//! region goes forward from `bₘ`, computes the loss and goes back to `bₘ`'s backward sums;
//! then, for `j = m … 1`, `bⱼ`'s input gradient and back to `bⱼ₋₁`'s backward sums
//! (`network/training.rs` runs them). The sums are added over the chunks in chunk order,
//! so results do not depend on threads.

mod batch_norm;
pub(crate) mod exchange;
mod fold;
mod reduce;

pub(crate) use batch_norm::finish_batch_norm;
pub(crate) use fold::fold_batch_norms;
pub(crate) use reduce::reduce_gradients;

use crate::buffers::Chunk;
use crate::layers::{add_gradient, dropout_seed, Backward, BnWork, Ctx, Forward, Layer};
use crate::plan::{Dx, LayerPlan, Plan};
use petal_kernels as k;
use std::ops::Range;

/// What every chunk task of a step reads: the layers (their weights), their plan, and the
/// step's settings.
pub(crate) struct ChunkStep<'a> {
    pub layers: &'a [Layer],
    pub plan: &'a Plan,
    /// Per batch norm, its statistics and coefficients.
    pub bn: &'a [BnWork],
    /// Whether backward computes the gradient with respect to the network input.
    pub input_grad: bool,
    /// Scale of the loss gradient: `1 / batch`, the loss being the batch mean.
    pub grad_scale: f32,
    /// A training pass (dropout on) or inference (dropout is the identity).
    pub train: bool,
    /// The step's dropout seed ([`dropout_seed`] of it and the layer index keys a mask).
    pub seed: u64,
    /// Label smoothing ε of the loss (0: one-hot targets).
    pub label_smoothing: f32,
    /// Index in the global batch of this process's first sample (a shard's; keys the
    /// dropout masks by global sample index).
    pub sample_offset: usize,
    /// In inference, per layer, a convolution's weights and bias with the batch norm after
    /// it folded in (`LayerPlan::fold_into`); empty in training.
    pub folded: &'a [Option<(Vec<f32>, Vec<f32>)>],
    /// Per layer, a convolution's prepared filters (`Conv2d::prepare`) of the weights this
    /// pass uses: the folded ones where a batch norm is folded in.
    pub prepared: &'a [Vec<f32>],
}

impl ChunkStep<'_> {
    /// Layer `i`'s settings in chunk `c`.
    fn ctx(&self, c: &Chunk<'_>, i: usize) -> Ctx<'_> {
        let p = &self.plan.layers[i];
        Ctx {
            train: self.train,
            relu_before: p.fused_relu,
            relu_after: p.relu_after,
            seed: dropout_seed(self.seed, i),
            first_value: ((self.sample_offset + c.first) * p.in_len) as u64,
            stats: p.bn.map(|j| &self.bn[j]),
            prepared: self.prepared.get(i).map_or(&[], |v| &v[..]),
        }
    }

    /// Forward pass of the chunk's images through layers `ops`.
    pub fn forward(&self, c: &mut Chunk<'_>, ops: Range<usize>) {
        let images = c.bufs.images();
        for i in ops {
            let p = &self.plan.layers[i];
            if !p.runs {
                continue;
            }
            if !self.train && (p.folded || p.fold_into.is_some()) {
                self.forward_folded(c, i);
                continue;
            }
            let slot = p.slot.expect("a layer that runs has a buffer");
            let ctx = self.ctx(c, i);
            let (x, x2, y, argmax) = match p.input2 {
                Some(b) => {
                    let (a, b, y) = c.bufs.add_io(p.input, b, slot, p.out_len);
                    (a, b, y, Default::default())
                }
                None => {
                    let (x, y, argmax) = c.bufs.forward_io(p.input, p.in_len, slot, p.out_len);
                    (x, Default::default(), y, argmax)
                }
            };
            self.layers[i].kind().forward(Forward {
                images,
                x,
                x2,
                y,
                argmax,
                scratch: c.scratch,
                ctx,
            });
        }
    }

    /// How to write the gradient of an input (buffer `input`) planned as `planned`:
    /// skipped unless a trainable layer comes before it or the input gradient is on.
    fn dx_mode(&self, needs: bool, input: Option<usize>, planned: Dx) -> Dx {
        if self.input_grad || (needs && input.is_some()) {
            planned
        } else {
            Dx::Skip
        }
    }

    /// The chunk's probabilities, losses and the gradient of its logits (the fused softmax
    /// cross-entropy, label-smoothed by `label_smoothing`, scaled by `grad_scale`).
    pub fn loss(&self, c: &mut Chunk<'_>) {
        let last = self.plan.last();
        let last_slot = last.slot.expect("the last layer has a buffer");
        let classes = last.out_len;
        let (logits, dlogits) = c.bufs.out_and_grad(last_slot, classes);
        k::smoothed_cross_entropy_rows(
            logits,
            c.labels,
            classes,
            self.label_smoothing,
            self.grad_scale,
            c.probs,
            c.losses,
            dlogits,
        )
        .expect("labels are checked before the step");
    }

    /// Backward pass of the chunk through layers `ops`, last to first (no batch norm among
    /// them: those run between the regions, `batch_norm.rs`): every layer's output
    /// gradient, the parameter gradients of these images into `c.part` (a deferred dense
    /// layer's are computed after the chunk tasks: `reduce.rs`) and, when on, the input
    /// gradient.
    pub fn backward(&self, c: &mut Chunk<'_>, ops: Range<usize>) {
        let images = c.bufs.images();
        for i in ops.rev() {
            let p = &self.plan.layers[i];
            if !p.runs {
                continue;
            }
            if p.input2.is_some() {
                self.join_backward(c, i);
                continue;
            }
            let slot = p.slot.expect("a layer that runs has a buffer");
            let ctx = self.ctx(c, i);
            let mode = self.dx_mode(p.needs_dx, p.input, p.dx);
            let layer = &self.layers[i];
            let grads = if layer.kind().traits().chunk_grads && !p.deferred {
                let len = layer.params().map(|q| q.value.len()).sum::<usize>();
                &mut c.part[p.part_offset..p.part_offset + len]
            } else {
                Default::default()
            };
            let g = c.bufs.backward_io(p.input, p.in_len, slot, p.out_len, mode);
            layer.kind().backward(Backward {
                images,
                x: g.input,
                y: g.y,
                dy: g.dy,
                argmax: g.argmax,
                dx: g.dx,
                grads,
                scratch: c.scratch,
                ctx,
            });
            if mode == Dx::Add {
                c.bufs.add_tmp_into(p.input, p.in_len);
            }
        }
    }

    /// The backward pass of a residual block's join (layer `i`): its fused ReLU on its
    /// output gradient, in place, then that gradient to both inputs' gradients, written or
    /// added as planned.
    fn join_backward(&self, c: &mut Chunk<'_>, i: usize) {
        let p: &LayerPlan = &self.plan.layers[i];
        let slot = p.slot.expect("a layer that runs has a buffer");
        if p.relu_after {
            let (y, g) = c.bufs.out_and_grad(slot, p.out_len);
            k::relu_backward_inplace(y, g);
        }
        let b = p.input2.expect("a join has two inputs");
        let edges = [
            (p.input, self.dx_mode(p.needs_dx, p.input, p.dx)),
            (b, self.dx_mode(p.needs_dx2, b, p.dx2)),
        ];
        for (from, mode) in edges {
            // The gradient buffer itself (never the tmp): a copy or a sum.
            let write = if mode == Dx::Skip { Dx::Skip } else { Dx::Write };
            let g = c.bufs.backward_io(from, p.in_len, slot, p.out_len, write);
            if let Some(dx) = g.dx {
                add_gradient(mode == Dx::Add, dx, g.dy);
            }
        }
    }
}
