//! Every exchange between the processes of a data-parallel step (`Collective`): the
//! gradient's subtree sums, a batch norm's per-chunk sums, and the losses and correct
//! counts. Each is a gather in rank order, so every process adds the same values in the
//! same order (`shard`).

use crate::plan::CHUNK;
use crate::shard::{subtrees, tree_sum, Collective, LeafNodes, Leaves, Shard, ShardWork};
use petal_kernels as k;
use std::ops::Range;

/// Every chunk's values `range` of a step's per-chunk sums (`stride` values a chunk, this
/// process's chunks of `shard` in `stats`), gathered in chunk order: rank r's chunks are
/// its shard's. Returns them, `range.len()` values per chunk of the batch.
pub(crate) fn gather_chunk_sums<'w>(
    comm: &dyn Collective,
    w: &'w mut ShardWork,
    stats: &[f64],
    stride: usize,
    range: Range<usize>,
    shard: Shard,
) -> &'w [f64] {
    let len = range.len();
    w.stats_send.clear();
    for chunk in stats.chunks_exact(stride).take(shard.count) {
        w.stats_send.extend_from_slice(&chunk[range.clone()]);
    }
    w.counts.clear();
    w.counts
        .extend((0..comm.ranks()).map(|r| Shard::split(shard.batch, comm.ranks(), r).count * len));
    w.stats_all.resize(w.counts.iter().sum(), 0.0);
    comm.all_gather_f64(&w.stats_send, &w.counts, &mut w.stats_all);
    &w.stats_all
}

/// The batch's gradient (`len` values a tree node) into `w.grad_sum`: this process's
/// largest subtrees of the summation tree over the batch's `n` chunks, each summed by
/// `sum(node, out)`, then every process's gathered in rank order and added up the tree.
pub(crate) fn gather_gradient(
    comm: &dyn Collective,
    w: &mut ShardWork,
    shard: Shard,
    len: usize,
    sum: impl Fn(Range<usize>, &mut [f32]),
) {
    let n = shard.batch.div_ceil(CHUNK);
    let ShardWork {
        nodes,
        counts,
        send,
        recv,
        grad_sum,
        ..
    } = w;
    nodes.clear();
    counts.clear();
    for r in 0..comm.ranks() {
        let before = nodes.len();
        subtrees(n, Shard::split(shard.batch, comm.ranks(), r).chunks(), nodes);
        counts.push((nodes.len() - before) * len);
    }
    let mine = counts[..comm.rank()].iter().sum::<usize>() / len;
    let own = counts[comm.rank()] / len;
    send.resize(own * len, 0.0);
    for (node, out) in nodes[mine..mine + own].iter().zip(send.chunks_exact_mut(len)) {
        sum(node.clone(), out);
    }
    recv.resize(nodes.len() * len, 0.0);
    comm.all_gather_f32(send, counts, recv);
    let gathered = Leaves {
        data: recv,
        len,
        nodes: LeafNodes::Nodes(nodes),
    };
    tree_sum(&gathered, 0..n, grad_sum);
}

/// The global batch's mean loss and correct count from this process's per-sample
/// `losses` and `correct` count.
pub(crate) fn gather_loss(
    comm: &dyn Collective,
    w: &mut ShardWork,
    shard: Shard,
    losses: &[f32],
    correct: usize,
) -> (f32, usize) {
    let ranks = comm.ranks();
    w.counts.clear();
    w.counts
        .extend((0..ranks).map(|r| Shard::split(shard.batch, ranks, r).samples().len()));
    w.losses.resize(shard.batch, 0.0);
    comm.all_gather_f32(losses, &w.counts, &mut w.losses);
    w.counts.clear();
    w.counts.resize(ranks, 1);
    w.correct.resize(ranks, 0.0);
    comm.all_gather_f64(&[correct as f64], &w.counts, &mut w.correct);
    let total = w.correct.iter().sum::<f64>() as usize;
    (k::mean_loss(&w.losses), total)
}
