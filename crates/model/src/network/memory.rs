//! What a network's training holds in memory, computed from its plan before anything of
//! that size is allocated: the same sizes `buffers` allocates.

use super::Network;
use crate::layers::Layer;
use crate::plan::{Storage, CHUNK};

/// Bytes a network holds to train on a batch, by what they are for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// Parameters and their gradients (f32 each), inference's copies of the
    /// convolutions that fold a batch norm in, and the convolutions' prepared filters
    /// (Winograd's transformed weights, `Conv2d::prepare`).
    pub weights: u64,
    /// The optimizer's state in the parameters (its slots: SGD's velocity, AdamW's two
    /// moments).
    pub optimizer: u64,
    /// Values kept for the whole batch: the outputs the backward pass needs and the
    /// logits, argmax indices, shared gradient buffers, per-chunk partial gradients and
    /// batch-norm sums, probabilities and losses, and the batch's gradient sums.
    pub batch: u64,
    /// Each running task's working memory (one per thread): its arena of a chunk's layer
    /// values and gradients, and the kernels' scratch.
    pub tasks: u64,
}

impl Memory {
    /// Every byte.
    pub fn total(&self) -> u64 {
        self.weights + self.optimizer + self.batch + self.tasks
    }
}

const F32: u64 = 4;

impl Network {
    /// The memory of training on batches of `batch` samples with `threads` threads and an
    /// optimizer that keeps `optimizer_slots` values per parameter value (what
    /// `OptimizerKind::layout` lists). Inference needs no more (its buffers are the same,
    /// its optimizer state none).
    pub fn memory(&self, batch: usize, threads: usize, optimizer_slots: usize) -> Memory {
        let plan = &self.plan;
        let b = batch as u64;
        let params = self.param_count() as u64;
        let chunks = batch.div_ceil(CHUNK) as u64;
        let mut batch_values = 0u64;
        let mut arena_values = 0u64;
        for l in &plan.layers {
            let argmax = if l.argmax { 2 } else { 1 };
            match l.storage {
                Storage::Batch => batch_values += b * l.out_len as u64 * argmax,
                // Output (and argmax) and gradient, per image of a chunk.
                Storage::Arena => arena_values += CHUNK as u64 * l.out_len as u64 * (argmax + 1),
                Storage::None => {}
            }
        }
        let shared_grads = plan.grad_bufs.iter().sum::<usize>() as u64 * b;
        let classes = plan.classes() as u64;
        let input_grad = if self.input_grad {
            b * plan.input_len as u64
        } else {
            0
        };
        batch_values += shared_grads
            + chunks * plan.part_len as u64
            + 2 * chunks * plan.stats_len as u64 // f64 sums
            + b * (classes + 1)
            + input_grad
            + plan.grad_len as u64;
        let task = arena_values + plan.scratch_len as u64 + (CHUNK * plan.dx_tmp_len) as u64;
        let folded: u64 = self
            .layers
            .iter()
            .zip(&plan.layers)
            .filter(|(_, p)| p.fold_into.is_some())
            .map(|(l, _)| match l {
                Layer::Conv2d(c) => (c.weight.value.len() + c.shape.out_c) as u64,
                _ => 0,
            })
            .sum();
        let prepared: u64 = self
            .layers
            .iter()
            .map(|l| match l {
                Layer::Conv2d(c) => c.prepared_len() as u64,
                _ => 0,
            })
            .sum();
        Memory {
            weights: (2 * params + folded + prepared) * F32,
            optimizer: optimizer_slots as u64 * params * F32,
            batch: batch_values * F32,
            tasks: threads as u64 * task * F32,
        }
    }
}
