//! The batch's gradient after the chunk tasks of a training step: the sum of the chunks'
//! gradients over the fixed summation tree (`shard`), gathered from the other processes
//! when there are any (`exchange.rs`), copied into the parameters' `grad`.

use super::exchange::gather_gradient;
use crate::buffers::Buffers;
use crate::layers::{Dense, Layer};
use crate::plan::{LayerPlan, Plan, CHUNK};
use crate::shard::{tree_sum, Collective, LeafNodes, Leaves, Shard, ShardWork};
use petal_kernels as k;
use rayon::prelude::*;
use std::ops::Range;

/// After the chunks of a training step: the batch's gradient of every layer whose chunks
/// write theirs (`Traits::chunk_grads`), the sum of the chunks' gradients over the fixed
/// summation tree, gathered from the other processes through `comm` when there are any;
/// copied into the parameters' `grad`. Per node of the tree the gradient is `grad_len`
/// values: the chunks' partial gradients (`bufs.parts`, this process's chunks of
/// `shard`), then the deferred dense layers' ([`Deferred::sum`]). `x` is this process's
/// input rows.
pub(crate) fn reduce_gradients(
    layers: &mut [Layer],
    plan: &Plan,
    bufs: &Buffers,
    x: &[f32],
    shard: Shard,
    comm: Option<&dyn Collective>,
    work: &mut ShardWork,
) {
    let (pl, gl) = (plan.part_len, plan.grad_len);
    let n = shard.batch.div_ceil(CHUNK);
    let chunks = Leaves {
        data: &bufs.parts[..shard.count * pl],
        len: pl,
        nodes: LeafNodes::Chunks { first: shard.first },
    };
    let deferred = Deferred {
        layers,
        plan,
        bufs,
        x,
        shard,
    };
    // A node's gradient: its chunks' partial gradients, then the deferred layers'.
    let node_sum = |node: Range<usize>, out: &mut [f32]| {
        let (parts, rest) = out.split_at_mut(pl);
        tree_sum(&chunks, node.clone(), parts);
        deferred.sum(node, rest);
    };
    work.grad_sum.resize(gl, 0.0);
    match comm.filter(|c| c.ranks() > 1) {
        None => {
            let mut sum = std::mem::take(&mut work.grad_sum);
            node_sum(0..n, &mut sum);
            work.grad_sum = sum;
        }
        Some(comm) => gather_gradient(comm, work, shard, gl, node_sum),
    }
    for (layer, p) in layers.iter_mut().zip(&plan.layers) {
        if layer.kind().traits().chunk_grads {
            let mut at = p.part_offset;
            for param in layer.params_mut() {
                let len = param.grad.len();
                param.grad.copy_from_slice(&work.grad_sum[at..at + len]);
                at += len;
            }
        }
    }
}

/// The deferred dense layers' weight gradients ([`LayerPlan::deferred`]) of this
/// process's chunks, from their inputs and output gradients kept in batch buffers.
struct Deferred<'a> {
    layers: &'a [Layer],
    plan: &'a Plan,
    bufs: &'a Buffers,
    x: &'a [f32],
    shard: Shard,
}

/// Output rows per block of a deferred layer's weight gradient: the tree of one block's
/// chunk gradients is summed at a time, in cache, on one thread (blocks in parallel)
/// (`Dense::weight_grad_rows`).
const DEFERRED_ROWS: usize = k::dense::DIRECT_MAX_OUTPUTS;

thread_local! {
    /// Per thread, a block's worth of scratch per tree level (sized once, then reused).
    static DEFERRED_SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Deferred<'_> {
    /// `out` (`grad_len - part_len` values) = the sum over tree node `node` (chunks of
    /// this process) of every deferred layer's per-chunk weight and bias gradients,
    /// depth-first: each chunk's from the kernel on its rows, each internal node its two
    /// halves added (as `shard::tree_sum` adds them). Blocks of [`DEFERRED_ROWS`] output
    /// rows go in parallel, each down the whole tree with one block of scratch per level.
    fn sum(&self, node: Range<usize>, out: &mut [f32]) {
        let pl = self.plan.part_len;
        for (layer, p) in self
            .layers
            .iter()
            .zip(&self.plan.layers)
            .filter(|(_, p)| p.deferred)
        {
            let Layer::Dense(dense) = layer else {
                unreachable!("only dense layers are deferred")
            };
            let (o, i) = (dense.shape.outputs, dense.shape.inputs);
            let at = p.part_offset - pl;
            let (gw, rest) = out[at..].split_at_mut(o * i);
            let depth = usize::BITS as usize - node.len().leading_zeros() as usize + 1;
            gw.par_chunks_mut(DEFERRED_ROWS * i)
                .enumerate()
                .for_each(|(b, block)| {
                    DEFERRED_SCRATCH.with_borrow_mut(|scratch| {
                        scratch.resize(depth * block.len(), 0.0);
                        let rows = b * DEFERRED_ROWS..b * DEFERRED_ROWS + block.len() / i;
                        self.block(p, dense, Part::Weights(rows), node.clone(), block, scratch);
                    });
                });
            if dense.bias.is_some() {
                DEFERRED_SCRATCH.with_borrow_mut(|scratch| {
                    scratch.resize(depth * o, 0.0);
                    self.block(p, dense, Part::Bias, node.clone(), &mut rest[..o], scratch);
                });
            }
        }
    }

    /// One part of layer `p`'s gradient summed over `node` into `out`, depth-first.
    fn block(
        &self,
        p: &LayerPlan,
        dense: &Dense,
        part: Part,
        node: Range<usize>,
        out: &mut [f32],
        scratch: &mut [f32],
    ) {
        if node.len() == 1 {
            self.leaf(p, dense, &part, node.start, out);
            return;
        }
        let mid = node.start + node.len() / 2;
        self.block(p, dense, part.clone(), node.start..mid, out, scratch);
        let (right, deeper) = scratch.split_at_mut(out.len());
        self.block(p, dense, part, mid..node.end, right, deeper);
        k::simd::add_assign(out, right);
    }

    /// Chunk `c`'s (global index) gradient of one part of layer `p` into `out`.
    fn leaf(&self, p: &LayerPlan, dense: &Dense, part: &Part, c: usize, out: &mut [f32]) {
        let local = c - self.shard.first;
        let rows = local * CHUNK..((local + 1) * CHUNK).min(self.shard.samples().len());
        let (inputs, outputs) = (dense.shape.inputs, dense.shape.outputs);
        let slot = p.slot.expect("a dense layer has a buffer");
        // A deferred layer's gradient buffer is its own (never shared), so its rows are
        // contiguous `[batch, outputs]`.
        debug_assert_eq!(
            self.plan.layers[slot].grad_buf.map(|g| self.plan.grad_bufs[g]),
            Some(outputs)
        );
        let dy = &self.bufs.layers.grad(slot)[rows.start * outputs..rows.end * outputs];
        match part {
            Part::Bias => dense.bias_grad(rows.len(), dy, out),
            Part::Weights(o) => {
                let input: &[f32] = match p.input {
                    Some(j) => &self.bufs.layers.outs[j][rows.start * inputs..rows.end * inputs],
                    None => &self.x[rows.start * inputs..rows.end * inputs],
                };
                dense.weight_grad_rows(input, dy, o.clone(), out);
            }
        }
    }
}

/// Which part of a deferred layer's gradient a block sums: a block of weight rows, or
/// the bias.
#[derive(Clone)]
enum Part {
    Weights(Range<usize>),
    Bias,
}
