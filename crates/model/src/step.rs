//! One chunk's forward and backward pass over a range of the layer plan, the batch-norm
//! statistics between the ranges, and the reduction of the chunks' gradients after them.
//!
//! A network without batch norms runs a training step as one parallel region: each chunk
//! goes forward through every layer, computes its loss and goes back. A batch norm needs
//! the statistics of the whole batch, so with batch norms `b₁ < … < bₘ` (layer indices) a
//! step is `2m + 1` regions, each a range of layers per chunk with a barrier between:
//! forward `[0, b₁)` then the chunk's sums for `b₁`; for each `j`, forward `[bⱼ, bⱼ₊₁)`
//! (the batch norm applied with the batch's statistics) then the sums for `bⱼ₊₁`; the last
//! region goes forward from `bₘ`, computes the loss and goes back to `bₘ`'s backward sums;
//! then, for `j = m … 1`, `bⱼ`'s input gradient and back to `bⱼ₋₁`'s backward sums. The
//! sums are added over the chunks in chunk order, so results do not depend on threads.

use crate::buffers::{Buffers, Chunk, LayerGrads};
use crate::layer::{BatchNorm, Layer, BN_EPS, BN_MOMENTUM};
use crate::plan::{Dx, LayerPlan, Plan, CHUNK};
use crate::shard::{subtrees, tree_sum, Collective, LeafNodes, Leaves, Shard, ShardWork};
use petal_kernels as k;
use rayon::prelude::*;
use std::ops::Range;

/// Per batch norm, the statistics of the current batch (training) or the running ones
/// (inference) as the chunk tasks use them, `c` values each.
#[derive(Clone, Debug, Default)]
pub(crate) struct BnWork {
    /// Batch mean and `1/√(σ² + ε)`.
    pub mean: Vec<f32>,
    pub invstd: Vec<f32>,
    /// `y = x · scale + shift`: `scale = γ · invstd`, `shift = β − mean · scale`.
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
    /// `Σ dy / n` and `Σ dy · x̂ / n` over the batch (n values per channel).
    pub mean_dy: Vec<f32>,
    pub mean_dy_xhat: Vec<f32>,
}

impl BnWork {
    pub fn new(c: usize) -> Self {
        let v = vec![0.0; c];
        BnWork {
            mean: v.clone(),
            invstd: v.clone(),
            scale: v.clone(),
            shift: v.clone(),
            mean_dy: v.clone(),
            mean_dy_xhat: v,
        }
    }

    /// Inference: the running statistics' `scale` and `shift`.
    pub fn use_running(&mut self, bn: &BatchNorm) {
        for ch in 0..bn.c {
            let invstd = 1.0 / (bn.running_var[ch] as f64 + BN_EPS).sqrt();
            self.set(bn, ch, bn.running_mean[ch] as f64, invstd);
        }
    }

    fn set(&mut self, bn: &BatchNorm, ch: usize, mean: f64, invstd: f64) {
        let scale = bn.weight.value[ch] as f64 * invstd;
        self.mean[ch] = mean as f32;
        self.invstd[ch] = invstd as f32;
        self.scale[ch] = scale as f32;
        self.shift[ch] = (bn.bias.value[ch] as f64 - mean * scale) as f32;
    }
}

/// A batch norm's per-chunk partial sums: chunk `i`'s `2c` values at
/// `data[i·stride + at..]`, for every chunk of the batch in order.
pub(crate) struct BnSums<'a> {
    pub data: &'a [f64],
    pub stride: usize,
    pub at: usize,
}

impl BnSums<'_> {
    /// The sums of values `ch` and `c + ch` over the batch's chunks, in chunk order.
    fn total(&self, batch: usize, c: usize, ch: usize) -> (f64, f64) {
        let mut sums = (0.0f64, 0.0f64);
        for chunk in self.data.chunks_exact(self.stride).take(batch.div_ceil(CHUNK)) {
            sums.0 += chunk[self.at + ch];
            sums.1 += chunk[self.at + c + ch];
        }
        sums
    }
}

/// After the forward sums of batch norm `bn` (its chunks' Σx, Σx² in `stats`): the batch's
/// mean and biased variance into `work`, and the running statistics updated with the
/// unbiased variance (PyTorch's rule). `batch` samples.
pub(crate) fn finish_bn_forward(bn: &mut BatchNorm, work: &mut BnWork, stats: &BnSums<'_>, batch: usize) {
    let c = bn.c;
    let n = (batch * bn.hw) as f64;
    let m = BN_MOMENTUM;
    for ch in 0..c {
        let (s0, s1) = stats.total(batch, c, ch);
        let sums = [s0, s1];
        let mean = sums[0] / n;
        let var = (sums[1] / n - mean * mean).max(0.0);
        work.set(bn, ch, mean, 1.0 / (var + BN_EPS).sqrt());
        let unbiased = var * n / (n - 1.0);
        bn.running_mean[ch] = (1.0 - m) * bn.running_mean[ch] + m * mean as f32;
        bn.running_var[ch] = (1.0 - m) * bn.running_var[ch] + m * unbiased as f32;
    }
    bn.batches_tracked += 1;
}

/// After the backward sums of batch norm `bn` (its chunks' Σdy, Σdy·x̂): `dβ = Σdy`,
/// `dγ = Σdy·x̂` and their means over the batch's `n` values per channel into `work`.
pub(crate) fn finish_bn_backward(bn: &mut BatchNorm, work: &mut BnWork, stats: &BnSums<'_>, batch: usize) {
    let c = bn.c;
    let n = (batch * bn.hw) as f64;
    for ch in 0..c {
        let (sdy, sdyx) = stats.total(batch, c, ch);
        bn.bias.grad[ch] = sdy as f32;
        bn.weight.grad[ch] = sdyx as f32;
        work.mean_dy[ch] = (sdy / n) as f32;
        work.mean_dy_xhat[ch] = (sdyx / n) as f32;
    }
}

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
}

/// Folds each batch norm into the convolution before it where the plan says so: per
/// output channel `o`, `W'[o] = W[o] · scale[o]` and `b'[o] = b[o] · scale[o] + shift[o]`
/// with the norm's inference coefficients (`work`, from the running statistics), into
/// `out` (indexed by layer; sized once, then only refilled).
pub(crate) fn fold_batch_norms(
    layers: &[Layer],
    plan: &Plan,
    work: &[BnWork],
    out: &mut Vec<Option<(Vec<f32>, Vec<f32>)>>,
) {
    out.resize(layers.len(), None);
    for (i, p) in plan.layers.iter().enumerate() {
        let (Some(j), Layer::Conv2d { shape, weight, bias }) = (p.fold_into, &layers[i]) else {
            continue;
        };
        let k = plan.layers[j].bn.expect("folds into a batch norm");
        let (scale, shift) = (&work[k].scale, &work[k].shift);
        let (w, b) = out[i].get_or_insert_with(|| (vec![0.0; weight.value.len()], vec![0.0; shape.out_c]));
        let per = weight.value.len() / shape.out_c;
        for (o, (wo, src)) in w
            .chunks_exact_mut(per)
            .zip(weight.value.chunks_exact(per))
            .enumerate()
        {
            for (d, s) in wo.iter_mut().zip(src) {
                *d = s * scale[o];
            }
            let b0 = bias.as_ref().map_or(0.0, |b| b.value[o]);
            b[o] = b0 * scale[o] + shift[o];
        }
    }
}

/// The dropout seed of layer `layer` in a step whose seed is `step_seed` (a splitmix64
/// finaliser of both).
pub(crate) fn dropout_seed(step_seed: u64, layer: usize) -> u64 {
    let mut z = step_seed ^ (layer as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl ChunkStep<'_> {
    /// Forward pass of the chunk's images through layers `ops`.
    pub fn forward(&self, c: &mut Chunk<'_>, ops: Range<usize>) {
        let n = c.bufs.images();
        for i in ops {
            let (layer, p) = (&self.layers[i], &self.plan.layers[i]);
            if !p.runs {
                continue;
            }
            let slot = p.slot.expect("a layer that runs has a buffer");
            if !self.train && (p.folded || p.fold_into.is_some()) {
                self.forward_folded(c, i);
                continue;
            }
            if let Layer::Add = layer {
                let b = p.input2.expect("an add has two inputs");
                let (a, b, out) = c.bufs.add_io(p.input, b, slot, p.out_len);
                k::add_forward(a, b, p.relu_after, out);
                continue;
            }
            let (input, out, argmax) = c.bufs.forward_io(p.input, p.in_len, slot, p.out_len);
            match layer {
                Layer::Conv2d { shape, weight, bias } => {
                    let s = k::Conv2dShape { batch: n, ..*shape };
                    let bias = bias.as_ref().map(|b| &b.value[..]);
                    k::conv2d_forward(&s, input, &weight.value, bias, out, c.scratch);
                }
                Layer::MaxPool2d { shape } => {
                    let s = k::Pool2dShape { batch: n, ..*shape };
                    k::max_pool2d_forward(&s, input, out, argmax);
                    if p.fused_relu {
                        k::relu_forward_inplace(out);
                    }
                }
                Layer::AvgPool2d { shape } => {
                    k::avg_pool2d_forward(&k::Pool2dShape { batch: n, ..*shape }, input, out);
                }
                Layer::GlobalAvgPool { c: ch, hw } => k::global_avg_pool_forward(n, *ch, *hw, input, out),
                Layer::BatchNorm(bn) => {
                    let w = &self.bn[p.bn.expect("a batch norm has an index")];
                    let s = k::BatchNormShape {
                        batch: n,
                        c: bn.c,
                        hw: bn.hw,
                    };
                    k::batch_norm_apply(&s, input, &w.scale, &w.shift, p.relu_after, out);
                }
                Layer::Dropout { p: prob } if self.train => {
                    let first = ((self.sample_offset + c.first) * p.in_len) as u64;
                    k::dropout_forward(dropout_seed(self.seed, i), dropout_p(*prob), first, input, out);
                }
                Layer::Dropout { .. } => out.copy_from_slice(input),
                Layer::Relu => k::relu_forward(input, out),
                Layer::Dense { shape, weight, bias } => {
                    let s = k::DenseShape { batch: n, ..*shape };
                    k::dense_forward(&s, input, &weight.value, bias.as_ref().map(|b| &b.value[..]), out);
                }
                Layer::Flatten | Layer::Add => unreachable!("handled above"),
            }
        }
    }

    /// Inference of layer `i`, a convolution with the batch norm after it folded in (which
    /// writes the norm's output, with the norm's fused ReLU), or that norm (nothing to do).
    fn forward_folded(&self, c: &mut Chunk<'_>, i: usize) {
        let p = &self.plan.layers[i];
        let (Some(j), Layer::Conv2d { shape, .. }) = (p.fold_into, &self.layers[i]) else {
            return;
        };
        let (w, b) = self.folded[i].as_ref().expect("folded weights are prepared");
        let norm = &self.plan.layers[j];
        let slot = norm.slot.expect("a batch norm has a buffer");
        let s = k::Conv2dShape {
            batch: c.bufs.images(),
            ..*shape
        };
        let (input, out, _) = c.bufs.forward_io(p.input, p.in_len, slot, norm.out_len);
        k::conv2d_forward(&s, input, w, Some(b), out, c.scratch);
        if norm.relu_after {
            k::relu_forward_inplace(out);
        }
    }

    /// The chunk's forward sums (Σx, Σx² per channel) of batch norm `j`'s input.
    pub fn bn_sums(&self, c: &mut Chunk<'_>, j: usize) {
        let (bn, p) = self.bn_layer(j);
        let s = k::BatchNormShape {
            batch: c.bufs.images(),
            c: bn.c,
            hw: bn.hw,
        };
        let at = self.plan.stats_offsets[j];
        let x = c.bufs.input(p.input, p.in_len);
        k::batch_norm_sums(&s, x, &mut c.stats[at..at + 2 * bn.c]);
    }

    /// The chunk's backward sums (Σdy, Σdy·x̂ per channel) of batch norm `j`, after masking
    /// its output gradient with its fused ReLU.
    pub fn bn_backward_sums(&self, c: &mut Chunk<'_>, j: usize) {
        let (bn, p) = self.bn_layer(j);
        let s = k::BatchNormShape {
            batch: c.bufs.images(),
            c: bn.c,
            hw: bn.hw,
        };
        let (at, w) = (self.plan.stats_offsets[j], &self.bn[j]);
        let slot = p.slot.expect("a batch norm has a buffer");
        let g = c.bufs.backward_io(p.input, p.in_len, slot, p.out_len, Dx::Skip);
        let sums = &mut c.stats[at..at + 2 * bn.c];
        k::batch_norm_backward_sums(&s, g.input, g.y, p.relu_after, &w.mean, &w.invstd, g.dy, sums);
    }

    /// The chunk's input gradient of batch norm `j`, after [`finish_bn_backward`].
    pub fn bn_backward_input(&self, c: &mut Chunk<'_>, j: usize) {
        let (bn, p) = self.bn_layer(j);
        let mode = self.dx_mode(p.needs_dx, p.input, p.dx);
        if mode == Dx::Skip {
            return;
        }
        let s = k::BatchNormShape {
            batch: c.bufs.images(),
            c: bn.c,
            hw: bn.hw,
        };
        let w = &self.bn[j];
        let slot = p.slot.expect("a batch norm has a buffer");
        let g = c.bufs.backward_io(p.input, p.in_len, slot, p.out_len, mode);
        let dx = g.dx.expect("dx asked for");
        let gamma = &bn.weight.value;
        k::batch_norm_backward_input(
            &s,
            g.input,
            g.dy,
            &w.mean,
            &w.invstd,
            gamma,
            &w.mean_dy,
            &w.mean_dy_xhat,
            dx,
        );
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
    /// them: those run as [`ChunkStep::bn_backward_sums`] and
    /// [`ChunkStep::bn_backward_input`]): every layer's output gradient, the convolutions'
    /// weight gradients of these images into `c.part` (the dense layers' are computed over
    /// the whole batch afterwards: [`reduce_gradients`]) and, when on, the input gradient.
    pub fn backward(&self, c: &mut Chunk<'_>, ops: Range<usize>) {
        let n = c.bufs.images();
        for i in ops.rev() {
            let (layer, p) = (&self.layers[i], &self.plan.layers[i]);
            if !p.runs {
                continue;
            }
            let slot = p.slot.expect("a layer that runs has a buffer");
            if p.fused_relu || (p.relu_after && matches!(layer, Layer::Add)) {
                // The fused ReLU (before this pool, or after this add) on the layer's
                // output gradient, in place.
                let (y, g) = c.bufs.out_and_grad(slot, p.out_len);
                k::relu_backward_inplace(y, g);
            }
            if let Layer::Add = layer {
                self.add_backward(c, p, slot);
                continue;
            }
            let mode = self.dx_mode(p.needs_dx, p.input, p.dx);
            let LayerGrads {
                input,
                y,
                dy,
                argmax,
                dx,
            } = c.bufs.backward_io(p.input, p.in_len, slot, p.out_len, mode);
            match layer {
                Layer::Conv2d { shape, weight, bias } => {
                    let s = k::Conv2dShape { batch: n, ..*shape };
                    let (wl, at) = (weight.value.len(), p.part_offset);
                    let bl = bias.as_ref().map_or(0, |b| b.value.len());
                    let (gw, gb) = c.part[at..at + wl + bl].split_at_mut(wl);
                    let gb = bias.as_ref().map(|_| gb);
                    k::conv2d_backward_weights(&s, input, dy, gw, gb, c.scratch);
                    if let Some(dx) = dx {
                        k::conv2d_backward_input(&s, &weight.value, dy, dx, c.scratch);
                    }
                }
                Layer::MaxPool2d { shape } => {
                    if let Some(dx) = dx {
                        k::max_pool2d_backward(&k::Pool2dShape { batch: n, ..*shape }, dy, argmax, dx);
                    }
                }
                Layer::AvgPool2d { shape } => {
                    if let Some(dx) = dx {
                        k::avg_pool2d_backward(&k::Pool2dShape { batch: n, ..*shape }, dy, dx);
                    }
                }
                Layer::GlobalAvgPool { c: ch, hw } => {
                    if let Some(dx) = dx {
                        k::global_avg_pool_backward(n, *ch, *hw, dy, dx);
                    }
                }
                Layer::Dropout { p: prob } => {
                    if let Some(dx) = dx {
                        let first = ((self.sample_offset + c.first) * p.in_len) as u64;
                        k::dropout_backward(dropout_seed(self.seed, i), dropout_p(*prob), first, dy, dx);
                    }
                }
                Layer::Relu => {
                    if let Some(dx) = dx {
                        k::relu_backward(y, dy, dx);
                    }
                }
                Layer::Dense { shape, weight, bias } => {
                    let s = k::DenseShape { batch: n, ..*shape };
                    if !p.deferred {
                        let (wl, at) = (weight.value.len(), p.part_offset);
                        let bl = bias.as_ref().map_or(0, |b| b.value.len());
                        let (gw, gb) = c.part[at..at + wl + bl].split_at_mut(wl);
                        k::dense_backward_weights(&s, input, dy, gw, bias.as_ref().map(|_| gb));
                    }
                    if let Some(dx) = dx {
                        k::dense_backward_input(&s, &weight.value, dy, dx);
                    }
                }
                Layer::BatchNorm(_) => unreachable!("batch norms run between the ranges"),
                Layer::Flatten | Layer::Add => {}
            }
            if mode == Dx::Add {
                c.bufs.add_tmp_into(p.input, p.in_len);
            }
        }
    }

    /// An add's backward: its output gradient (masked already) to both inputs' gradients,
    /// written or added as planned.
    fn add_backward(&self, c: &mut Chunk<'_>, p: &LayerPlan, slot: usize) {
        let b = p.input2.expect("an add has two inputs");
        let edges = [
            (p.input, self.dx_mode(p.needs_dx, p.input, p.dx)),
            (b, self.dx_mode(p.needs_dx2, b, p.dx2)),
        ];
        for (from, mode) in edges {
            // The gradient buffer itself (never the tmp): a copy or a sum.
            let write = if mode == Dx::Skip { Dx::Skip } else { Dx::Write };
            let g = c.bufs.backward_io(from, p.in_len, slot, p.out_len, write);
            match (mode, g.dx) {
                (Dx::Write, Some(dx)) => dx.copy_from_slice(g.dy),
                (Dx::Add, Some(dx)) => k::simd::add_assign(dx, g.dy),
                _ => {}
            }
        }
    }
}

/// The probability of a dropout layer (`p` in millionths).
fn dropout_p(p: u32) -> f32 {
    crate::spec::LayerSpec::dropout_p(p)
}

/// After the chunks of a training step: the batch's gradient of every convolution and
/// dense layer, the sum of the chunks' gradients over the fixed summation tree
/// (`shard.rs`), gathered from the other processes through `comm` when there are any;
/// copied into the parameters' `grad`. Per node of the tree the gradient is `grad_len`
/// values: the chunks' partial gradients (`bufs.parts`, this process's chunks of
/// `shard`), then the deferred dense layers' ([`deferred_sum`]). `x` is this process's
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
    work.grad_sum.resize(gl, 0.0);
    match comm.filter(|c| c.ranks() > 1) {
        None => {
            let (parts, rest) = work.grad_sum.split_at_mut(pl);
            tree_sum(&chunks, 0..n, parts);
            deferred.sum(0..n, rest);
        }
        Some(comm) => {
            // This process's largest subtrees, summed; then every process's, gathered.
            let ShardWork {
                nodes,
                counts,
                send,
                recv,
                grad_sum,
                ..
            } = work;
            nodes.clear();
            counts.clear();
            for r in 0..comm.ranks() {
                let before = nodes.len();
                subtrees(n, Shard::split(shard.batch, comm.ranks(), r).chunks(), nodes);
                counts.push((nodes.len() - before) * gl);
            }
            let mine = counts[..comm.rank()].iter().sum::<usize>() / gl;
            let own = counts[comm.rank()] / gl;
            send.resize(own * gl, 0.0);
            for (node, out) in nodes[mine..mine + own].iter().zip(send.chunks_exact_mut(gl)) {
                let (parts, rest) = out.split_at_mut(pl);
                tree_sum(&chunks, node.clone(), parts);
                deferred.sum(node.clone(), rest);
            }
            recv.resize(nodes.len() * gl, 0.0);
            comm.all_gather_f32(send, counts, recv);
            let gathered = Leaves {
                data: recv,
                len: gl,
                nodes: LeafNodes::Nodes(nodes),
            };
            tree_sum(&gathered, 0..n, grad_sum);
        }
    }
    for (layer, p) in layers.iter_mut().zip(&plan.layers) {
        if let Layer::Conv2d { weight, bias, .. } | Layer::Dense { weight, bias, .. } = layer {
            let mut at = p.part_offset;
            for param in std::iter::once(weight).chain(bias.as_mut()) {
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
/// chunk gradients is summed at a time, in cache, on one thread (blocks in parallel), and
/// its chunk gradients come from the dense kernel's direct path (at most
/// `DIRECT_MAX_OUTPUTS` outputs: per value a fused multiply-add chain over the chunk's
/// rows from zero, as its GEMM path computes it too).
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
            let Layer::Dense { shape, bias, .. } = layer else {
                unreachable!("only dense layers are deferred")
            };
            let (o, i) = (shape.outputs, shape.inputs);
            let at = p.part_offset - pl;
            let (gw, rest) = out[at..].split_at_mut(o * i);
            let depth = usize::BITS as usize - node.len().leading_zeros() as usize + 1;
            gw.par_chunks_mut(DEFERRED_ROWS * i)
                .enumerate()
                .for_each(|(b, block)| {
                    DEFERRED_SCRATCH.with_borrow_mut(|scratch| {
                        scratch.resize(depth * block.len(), 0.0);
                        let rows = b * DEFERRED_ROWS..b * DEFERRED_ROWS + block.len() / i;
                        self.block(p, shape, Part::Weights(rows), node.clone(), block, scratch);
                    });
                });
            if bias.is_some() {
                DEFERRED_SCRATCH.with_borrow_mut(|scratch| {
                    scratch.resize(depth * o, 0.0);
                    self.block(p, shape, Part::Bias, node.clone(), &mut rest[..o], scratch);
                });
            }
        }
    }

    /// One part of layer `p`'s gradient summed over `node` into `out`, depth-first.
    fn block(
        &self,
        p: &LayerPlan,
        shape: &k::DenseShape,
        part: Part,
        node: Range<usize>,
        out: &mut [f32],
        scratch: &mut [f32],
    ) {
        if node.len() == 1 {
            self.leaf(p, shape, &part, node.start, out);
            return;
        }
        let mid = node.start + node.len() / 2;
        self.block(p, shape, part.clone(), node.start..mid, out, scratch);
        let (right, deeper) = scratch.split_at_mut(out.len());
        self.block(p, shape, part, mid..node.end, right, deeper);
        k::simd::add_assign(out, right);
    }

    /// Chunk `c`'s (global index) gradient of one part of layer `p` into `out`.
    fn leaf(&self, p: &LayerPlan, shape: &k::DenseShape, part: &Part, c: usize, out: &mut [f32]) {
        let local = c - self.shard.first;
        let rows = local * CHUNK..((local + 1) * CHUNK).min(self.shard.samples().len());
        let (inputs, outputs) = (shape.inputs, shape.outputs);
        let slot = p.slot.expect("a dense layer has a buffer");
        // A deferred layer's gradient buffer is its own (never shared), so its rows are
        // contiguous `[batch, outputs]`.
        debug_assert_eq!(
            self.plan.layers[slot].grad_buf.map(|g| self.plan.grad_bufs[g]),
            Some(outputs)
        );
        let dy = &self.bufs.layers.grad(slot)[rows.start * outputs..rows.end * outputs];
        match part {
            Part::Bias => {
                let s = k::DenseShape {
                    batch: rows.len(),
                    ..*shape
                };
                k::dense_backward_bias(&s, dy, out);
            }
            Part::Weights(o) => {
                let input: &[f32] = match p.input {
                    Some(j) => &self.bufs.layers.outs[j][rows.start * inputs..rows.end * inputs],
                    None => &self.x[rows.start * inputs..rows.end * inputs],
                };
                // The block's columns of dy, contiguous: at most CHUNK x DEFERRED_ROWS.
                let mut sub = [0.0f32; CHUNK * DEFERRED_ROWS];
                let n = o.len();
                for (r, row) in dy.chunks_exact(outputs).enumerate() {
                    sub[r * n..(r + 1) * n].copy_from_slice(&row[o.clone()]);
                }
                let s = k::DenseShape {
                    batch: rows.len(),
                    inputs,
                    outputs: n,
                };
                k::dense_backward_weights(&s, input, &sub[..rows.len() * n], out, None);
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
