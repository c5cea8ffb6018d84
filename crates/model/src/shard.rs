//! Data-parallel steps: a process's share of a global batch ([`Shard`]), what it needs
//! from the other processes ([`Collective`]), and the fixed summation tree that makes
//! the gradient the same bits however the batch is split.
//!
//! A batch of `B` samples is `n = ⌈B / CHUNK⌉` chunks. Each chunk's task writes its
//! partial parameter gradients; the batch's gradient is their sum over a fixed pairwise
//! tree over chunk indices: the sum over `[lo, hi)` is the sum over `[lo, mid)` plus the
//! sum over `[mid, hi)`, `mid = lo + (hi − lo) / 2`, down to single chunks. One process
//! runs the whole tree. `K` processes each own a contiguous range of chunks
//! ([`Shard::split`]); each sums the largest subtrees that lie within its range
//! ([`subtrees`]: one when `K` is a power of two dividing `n`, at most about `2 log₂ n`
//! otherwise), every process gathers every process's subtree sums in rank order, and
//! every process adds them up the same tree. Floating-point addition is commutative, so
//! every node is the same two operands added in any process: the same bits on `K`
//! processes as on one, for any split into contiguous ranges.

use crate::plan::CHUNK;
use rayon::prelude::*;
use std::ops::Range;

/// What the processes of a data-parallel step exchange: gathers in rank order. A
/// single process needs none ([`Network::train_step_with`](crate::Network::train_step_with)).
///
/// `counts[r]` is the number of values rank `r` contributes (every rank passes the same
/// `counts`); `all` receives rank 0's values, then rank 1's, ….
pub trait Collective: Sync {
    /// Number of processes.
    fn ranks(&self) -> usize;
    /// This process's rank, `0..ranks()`.
    fn rank(&self) -> usize;
    /// Every rank's `local` f32 values concatenated in rank order into `all`.
    fn all_gather_f32(&self, local: &[f32], counts: &[usize], all: &mut [f32]);
    /// Every rank's `local` f64 values concatenated in rank order into `all`.
    fn all_gather_f64(&self, local: &[f64], counts: &[usize], all: &mut [f64]);
}

/// One process's share of a global batch: chunks `first..first + count` of the batch's
/// `⌈batch / CHUNK⌉`, i.e. samples [`Shard::samples`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Samples in the global batch.
    pub batch: usize,
    /// This process's first chunk and its number of chunks (0 when the batch has fewer
    /// chunks than processes).
    pub first: usize,
    pub count: usize,
}

impl Shard {
    /// The whole batch, in one process.
    pub fn whole(batch: usize) -> Self {
        Shard {
            batch,
            first: 0,
            count: batch.div_ceil(CHUNK),
        }
    }

    /// Rank `rank`'s share of a batch of `batch` samples split over `ranks` processes:
    /// chunks `⌊r·n/K⌋ .. ⌊(r+1)·n/K⌋` of `n = ⌈batch / CHUNK⌉`.
    pub fn split(batch: usize, ranks: usize, rank: usize) -> Self {
        assert!(ranks > 0 && rank < ranks, "rank {rank} of {ranks}");
        let n = batch.div_ceil(CHUNK);
        let (first, end) = (rank * n / ranks, (rank + 1) * n / ranks);
        Shard {
            batch,
            first,
            count: end - first,
        }
    }

    /// The chunks of the global batch this shard holds.
    pub fn chunks(&self) -> Range<usize> {
        self.first..self.first + self.count
    }

    /// The samples of the global batch this shard holds.
    pub fn samples(&self) -> Range<usize> {
        let start = (self.first * CHUNK).min(self.batch);
        start..((self.first + self.count) * CHUNK).min(self.batch)
    }
}

/// A network's working memory for reducing across processes (sized once, then reused).
#[derive(Clone, Debug, Default)]
pub(crate) struct ShardWork {
    /// The batch's gradient, `Plan::grad_len` values.
    pub grad_sum: Vec<f32>,
    /// Every rank's largest subtrees, in rank order, and each rank's count of values.
    pub nodes: Vec<Range<usize>>,
    pub counts: Vec<usize>,
    /// This process's subtree sums, and every process's gathered.
    pub send: Vec<f32>,
    pub recv: Vec<f32>,
    /// A batch norm's per-chunk sums: this process's chunks, and every chunk's gathered.
    pub stats_send: Vec<f64>,
    pub stats_all: Vec<f64>,
    /// Per-sample losses of the global batch, and per rank its correct predictions.
    pub losses: Vec<f32>,
    pub correct: Vec<f64>,
}

/// The split point of tree node `[lo, hi)` (`hi − lo ≥ 2`).
fn mid(lo: usize, hi: usize) -> usize {
    lo + (hi - lo) / 2
}

/// The largest nodes of the summation tree over `[0, n)` that lie within `range`, in
/// order (they tile `range`), appended to `out`.
pub fn subtrees(n: usize, range: Range<usize>, out: &mut Vec<Range<usize>>) {
    fn walk(lo: usize, hi: usize, r: &Range<usize>, out: &mut Vec<Range<usize>>) {
        if hi <= r.start || lo >= r.end {
            return;
        }
        if r.start <= lo && hi <= r.end {
            out.push(lo..hi);
            return;
        }
        let m = mid(lo, hi);
        walk(lo, m, r, out);
        walk(m, hi, r, out);
    }
    if n > 0 && !range.is_empty() {
        walk(0, n, &range, out);
    }
}

/// Leaves of a partial summation tree: `len` values each, leaf `i` at `data[i·len..]`,
/// covering tree nodes `nodes[i]` (in order, tiling the range summed).
pub(crate) struct Leaves<'a> {
    pub data: &'a [f32],
    pub len: usize,
    pub nodes: LeafNodes<'a>,
}

/// Which tree nodes the leaves are.
pub(crate) enum LeafNodes<'a> {
    /// Single chunks, leaf `i` being chunk `first + i`.
    Chunks { first: usize },
    /// Any nodes (gathered subtree sums).
    Nodes(&'a [Range<usize>]),
}

impl Leaves<'_> {
    fn find(&self, lo: usize, hi: usize) -> Option<usize> {
        match self.nodes {
            LeafNodes::Chunks { first } => (hi == lo + 1 && lo >= first).then(|| lo - first),
            LeafNodes::Nodes(nodes) => nodes
                .binary_search_by_key(&lo, |r| r.start)
                .ok()
                .filter(|&i| nodes[i].end == hi),
        }
    }

    fn block(&self, leaf: usize, at: usize, len: usize) -> &[f32] {
        let s = leaf * self.len + at;
        &self.data[s..s + len]
    }
}

/// Values per block of the parallel tree sums: each task sums one block of every leaf,
/// keeping one block per tree level on its stack.
const BLOCK: usize = 1024;

/// `out` (`leaves.len` values) = the sum of tree node `node` from `leaves`, in parallel
/// over blocks of values. Every internal node is its two children added, so the bits
/// depend only on the tree, not on the blocks or threads.
pub(crate) fn tree_sum(leaves: &Leaves<'_>, node: Range<usize>, out: &mut [f32]) {
    assert_eq!(out.len(), leaves.len, "tree_sum: output length");
    out.par_chunks_mut(BLOCK).enumerate().for_each(|(b, o)| {
        sum_block(leaves, node.start, node.end, b * BLOCK, o);
    });
}

/// One block (`out.len()` values at offset `at`) of node `[lo, hi)`'s sum.
fn sum_block(leaves: &Leaves<'_>, lo: usize, hi: usize, at: usize, out: &mut [f32]) {
    let len = out.len();
    if let Some(i) = leaves.find(lo, hi) {
        out.copy_from_slice(leaves.block(i, at, len));
        return;
    }
    assert!(hi - lo >= 2, "tree node {lo}..{hi} is not covered by the leaves");
    let m = mid(lo, hi);
    let mut tmp = [0.0f32; BLOCK];
    let right: &[f32] = match leaves.find(m, hi) {
        Some(j) => leaves.block(j, at, len),
        None => {
            sum_block(leaves, m, hi, at, &mut tmp[..len]);
            &tmp[..len]
        }
    };
    match leaves.find(lo, m) {
        Some(i) => petal_kernels::add_forward(leaves.block(i, at, len), right, false, out),
        None => {
            sum_block(leaves, lo, m, at, out);
            petal_kernels::simd::add_assign(out, right);
        }
    }
}

#[cfg(test)]
mod tests;
