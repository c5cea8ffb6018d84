//! The batch norms of a training step, between its regions: each chunk's sums of a batch
//! norm's input (forward) and output gradient (backward), their totals over the batch
//! (gathered from every process of a data-parallel step), and each chunk's input gradient.

use super::exchange::gather_chunk_sums;
use super::ChunkStep;
use crate::buffers::Chunk;
use crate::layers::{BatchNorm, BnSums, BnWork, Layer};
use crate::plan::{Dx, LayerPlan, Plan, CHUNK};
use crate::shard::{Collective, Shard, ShardWork};

impl ChunkStep<'_> {
    /// The chunk's forward sums (Σx, Σx² per channel) of batch norm `j`'s input.
    pub fn bn_sums(&self, c: &mut Chunk<'_>, j: usize) {
        let (bn, p) = self.bn_layer(j);
        let at = self.plan.stats_offsets[j];
        let x = c.bufs.input(p.input, p.in_len);
        bn.chunk_sums(c.bufs.images(), x, &mut c.stats[at..at + 2 * bn.c]);
    }

    /// The chunk's backward sums (Σdy, Σdy·x̂ per channel) of batch norm `j`, after masking
    /// its output gradient with its fused ReLU.
    pub fn bn_backward_sums(&self, c: &mut Chunk<'_>, j: usize) {
        let (bn, p) = self.bn_layer(j);
        let images = c.bufs.images();
        let (at, w) = (self.plan.stats_offsets[j], &self.bn[j]);
        let slot = p.slot.expect("a batch norm has a buffer");
        let g = c.bufs.backward_io(p.input, p.in_len, slot, p.out_len, Dx::Skip);
        let sums = &mut c.stats[at..at + 2 * bn.c];
        bn.chunk_backward_sums(images, g.input, g.y, g.dy, p.relu_after, w, sums);
    }

    /// The chunk's input gradient of batch norm `j`, after its totals
    /// ([`finish_batch_norm`] backward).
    pub fn bn_backward_input(&self, c: &mut Chunk<'_>, j: usize) {
        let (bn, p) = self.bn_layer(j);
        let mode = self.dx_mode(p.needs_dx, p.input, p.dx);
        if mode == Dx::Skip {
            return;
        }
        let images = c.bufs.images();
        let slot = p.slot.expect("a batch norm has a buffer");
        let g = c.bufs.backward_io(p.input, p.in_len, slot, p.out_len, mode);
        let dx = g.dx.expect("dx asked for");
        bn.chunk_backward_input(images, g.input, g.dy, &self.bn[j], dx);
        if mode == Dx::Add {
            c.bufs.add_tmp_into(p.input, p.in_len);
        }
    }

    fn bn_layer(&self, j: usize) -> (&BatchNorm, &LayerPlan) {
        let i = self.plan.bns[j];
        let Layer::BatchNorm(bn) = &self.layers[i] else {
            unreachable!("plan.bns lists batch norms")
        };
        (bn, &self.plan.layers[i])
    }
}

/// Batch norm `j`'s totals over the batch from its chunks' sums in `stats` (every
/// chunk's, gathered through `comm` when the batch is split): forward (mean, variance,
/// running statistics) or backward (dγ, dβ and the means of the input gradient).
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish_batch_norm(
    layers: &mut [Layer],
    plan: &Plan,
    stats: &[f64],
    work: &mut [BnWork],
    j: usize,
    shard: Shard,
    comm: Option<&dyn Collective>,
    exchange: &mut ShardWork,
    forward: bool,
) {
    let i = plan.bns[j];
    let Layer::BatchNorm(bn) = &mut layers[i] else {
        unreachable!("plan.bns lists batch norms")
    };
    let (stride, at) = (plan.stats_len, plan.stats_offsets[j]);
    let sums = match comm.filter(|c| c.ranks() > 1) {
        None => BnSums {
            data: stats,
            stride,
            at,
            chunk: CHUNK,
        },
        Some(comm) => {
            let all = gather_chunk_sums(comm, exchange, stats, stride, at..at + 2 * bn.c, shard);
            BnSums {
                data: all,
                stride: 2 * bn.c,
                at: 0,
                chunk: CHUNK,
            }
        }
    };
    if forward {
        bn.finish_forward(&mut work[j], &sums, shard.batch);
    } else {
        bn.finish_backward(&mut work[j], &sums, shard.batch);
    }
}
