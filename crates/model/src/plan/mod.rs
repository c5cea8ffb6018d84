//! The layer plan: layers built from their specs with every shape inferred from the input
//! (`build.rs`), and, per layer, one [`LayerPlan`] saying where its values live and what
//! its step does.

mod build;

use crate::error::{ModelError, SpecError};
use crate::layers::{Layer, LayerSpec, Traits};
use crate::limits::{check_buffers, check_input};
use crate::shape::{InputShape, Shape};
use build::{At, Ops, Value};

/// Images per task. A training step (or a forward pass) runs each chunk of this many
/// images through the layers, forward and back, as one rayon task: one parallel region
/// per step (per batch-norm layer and per direction with batch norms, which need the
/// whole batch's statistics) instead of one per kernel call, and a chunk's activations stay
/// in cache from layer to layer. Each chunk writes its own convolution and dense weight
/// gradients (except a deferred dense layer's: [`LayerPlan::deferred`]) and batch-norm
/// sums; the batch's are summed over a fixed tree over the chunks (`shard`) and the
/// batch-norm sums in chunk order, so results do not depend on the thread count.
pub const CHUNK: usize = petal_kernels::conv::BATCH_CHUNK;

/// Weights (and biases) of a dense layer up to which its weight gradient is kept per chunk
/// like a convolution's (`⌈batch / CHUNK⌉` copies, summed after the chunk tasks in
/// parallel); a larger one is `deferred` ([`LayerPlan::deferred`]): at batch 128 a
/// `4096 -> 256` layer would keep 32 copies of 1M values. Seednet's and flowernet's
/// (23k and 20k) stay below, where the per-chunk copies are faster.
pub const DENSE_PART_MAX: usize = 1 << 16;

/// Where a layer's own output (and its gradient and argmax) lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Storage {
    /// No buffer of its own: a flatten, or a ReLU fused into the layer before it (a batch
    /// norm, an add) or into the max pool after it, whose output is a buffer of another
    /// layer ([`LayerPlan::slot`]).
    None,
    /// In each chunk task's arena, `CHUNK` images: values used only within the task.
    Arena,
    /// In batch buffers that outlive the tasks: the logits, a deferred dense layer's input
    /// and output (its weight gradient is computed after the tasks), and every value of a
    /// network with batch norms (whose steps are several parallel regions).
    Batch,
}

/// How a layer writes the gradient with respect to one of its inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dx {
    /// It is not needed (no trainable layer before, input gradient off).
    Skip,
    /// The layer is the first (in backward order) of the input's readers: it writes it.
    Write,
    /// Another reader wrote it already (a residual block's input): it adds to it.
    Add,
}

/// What the network knows about one layer beyond the [`Layer`] itself.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LayerPlan {
    /// Index of the buffer holding the layer's output: its own index, its input's buffer
    /// when it has none ([`Storage::None`]), `None` for the network input.
    pub slot: Option<usize>,
    /// Index of the buffer holding the layer's input (`None`: the network input).
    pub input: Option<usize>,
    /// An [`Layer::Add`]'s second input (the shortcut's output, or the block's input).
    pub input2: Option<Option<usize>>,
    /// Values per sample of the layer's input and output.
    pub in_len: usize,
    pub out_len: usize,
    pub storage: Storage,
    /// Whether the layer computes anything in a chunk step (not a flatten, not a fused
    /// ReLU).
    pub runs: bool,
    /// Whether the layer is a max pool that applies the ReLU before it. Max and ReLU
    /// commute (`max(relu(x)) = relu(max(x))`, the same window position winning wherever
    /// the maximum is positive, and the gradient 0 elsewhere either way), so such a ReLU
    /// runs on the pool's output and gradient, a quarter of the values for 2x2 windows, in
    /// place.
    pub fused_relu: bool,
    /// Whether the layer (a batch norm or an add) applies the ReLU after it to its output,
    /// and masks its output gradient with it in backward.
    pub relu_after: bool,
    /// Whether the layer keeps argmax indices (a max pool).
    pub argmax: bool,
    /// Whether a trainable layer comes before the layer's input, so training needs its
    /// gradient (the input gradient, when on, needs it regardless).
    pub needs_dx: bool,
    /// The same for an add's second input.
    pub needs_dx2: bool,
    /// How backward writes the gradient of the input (and of `input2`) when it is computed.
    pub dx: Dx,
    pub dx2: Dx,
    /// Offset of the weight (then bias) gradient of a layer whose kind writes it per chunk
    /// (`Traits::chunk_grads`: convolutions, dense layers) in a chunk's partial gradients
    /// (below `Plan::part_len`), or for a `deferred` dense layer in the rest of the batch's
    /// gradient (`Plan::part_len ..`).
    pub part_offset: usize,
    /// A layer with [`Traits::deferrable`] (dense) and more than [`DENSE_PART_MAX`] weights:
    /// its weight gradient is not kept per chunk (`⌈batch / CHUNK⌉` copies), but computed
    /// chunk by chunk after the chunk tasks, depth-first down the same summation tree
    /// (`step::reduce`), from its input and output gradient kept in batch buffers. The
    /// same bits either way.
    pub deferred: bool,
    /// A batch norm's index among the network's batch norms.
    pub bn: Option<usize>,
    /// For a layer stored in batch buffers, the shared gradient buffer its output's
    /// gradient lives in (`Plan::grad_bufs`).
    pub grad_buf: Option<usize>,
    /// Inference folds a batch norm into the convolution before it (whose output only
    /// it reads): the convolution, with weights `W·scale` and bias `b·scale + shift` per
    /// output channel, writes the norm's output (`Some(norm's layer index)`), and the norm
    /// does not run (`folded`).
    pub fold_into: Option<usize>,
    pub folded: bool,
}

/// The plan of a whole network: one [`LayerPlan`] per layer and the sizes of the buffers.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub layers: Vec<LayerPlan>,
    /// Values per sample of the network input.
    pub input_len: usize,
    /// Convolution scratch per arena (the largest layer's, for `CHUNK` images).
    pub scratch_len: usize,
    /// Values of the batch's gradient: `part_len`, then the deferred dense layers'.
    pub grad_len: usize,
    /// Values of one chunk's partial convolution and dense gradients (at least 1, so the per-chunk
    /// splits are never empty).
    pub part_len: usize,
    /// The batch norms' layer indices, in order.
    pub bns: Vec<usize>,
    /// Per batch norm, the offset of its `2c` partial sums in a chunk's statistics, and
    /// their total (at least 1).
    pub stats_offsets: Vec<usize>,
    pub stats_len: usize,
    /// Values per sample of the largest input gradient added to another ([`Dx::Add`]).
    pub dx_tmp_len: usize,
    /// Values per sample of each shared gradient buffer of the batch buffers.
    pub grad_bufs: Vec<usize>,
}

impl Plan {
    /// The plan of the last layer (the logits).
    pub fn last(&self) -> &LayerPlan {
        self.layers.last().expect("a network has layers")
    }
    /// Values per sample of the logits.
    pub fn classes(&self) -> usize {
        self.layers.last().map_or(0, |l| l.out_len)
    }
}

/// A network's parts, as [`build`] makes them.
pub(crate) struct Built {
    pub layers: Vec<Layer>,
    /// The top-level specs (implied flattens and projection shortcuts written out).
    pub specs: Vec<LayerSpec>,
    /// Each layer's output shape, per sample.
    pub shapes: Vec<Shape>,
    /// Each layer's input (a layer index, `None`: the network input), and an add's second.
    pub inputs: Vec<(Option<usize>, Option<Option<usize>>)>,
    pub plan: Plan,
}

/// Builds the layers (zero weights) of `specs` on `input`, inferring every shape and
/// inserting a `flatten` before a `dense` that follows spatial layers, then plans them.
/// Sizes past the [`crate::limits`] are refused before they are allocated.
pub(crate) fn build(specs: &[LayerSpec], input: InputShape) -> Result<Built, ModelError> {
    // Zero sizes and inputs too large for memory, refused before anything is built.
    check_input(input)?;
    let mut ops = Ops::default();
    let at = At {
        value: None,
        shape: Shape::Spatial {
            c: input.c,
            h: input.h,
            w: input.w,
        },
        prefix: String::new(),
        position: None,
    };
    let (expanded, out, shape) = ops.add_list(specs, at)?;
    let last_spec = || specs.last().map(|s| s.to_string()).unwrap_or_default();
    if let Shape::Spatial { .. } = shape {
        return Err(SpecError {
            position: specs.len(),
            layer: last_spec(),
            reason: format!(
                "the network must end in logits (a dense layer), but outputs {shape} feature maps"
            ),
        }
        .into());
    }
    let plan = plan(&ops, input);
    if out.and_then(|v| plan.layers[v].slot).is_none() {
        // Only flattens: nothing computes, so there is no output to train.
        return Err(SpecError {
            position: specs.len().max(1),
            layer: last_spec(),
            reason: "the network needs at least one layer that computes (conv, pool, relu, bn, dense...)"
                .into(),
        }
        .into());
    }
    // Convolution scratch too large for memory is refused here, not when the first batch
    // allocates it.
    check_buffers(&ops.layers)?;
    Ok(Built {
        layers: ops.layers,
        specs: expanded,
        shapes: ops.shapes,
        inputs: ops.inputs,
        plan,
    })
}

/// Plans built layers: buffers, fused ReLUs, input gradients, partial-gradient offsets.
fn plan(ops: &Ops, input: InputShape) -> Plan {
    let Ops {
        layers,
        shapes,
        inputs,
        ..
    } = ops;
    let n = layers.len();
    // How many layers read each value (index n: the network input).
    let mut readers = vec![0usize; n + 1];
    for &(a, b) in inputs {
        for v in std::iter::once(a).chain(b) {
            readers[v.unwrap_or(n)] += 1;
        }
    }
    let only_reader = |v: usize, r: usize| readers[v] == 1 && inputs[r].0 == Some(v);
    let traits: Vec<Traits> = layers.iter().map(|l| l.kind().traits()).collect();
    let is_relu = |i: usize| matches!(layers[i], Layer::Relu(_));
    // A ReLU right after a layer that takes it (a batch norm, an add) and that only it
    // reads runs inside that layer.
    let relu_fused_back = |i: usize| is_relu(i) && i > 0 && traits[i - 1].relu_after && only_reader(i - 1, i);
    // Otherwise, a ReLU whose only reader is the layer right after it, one that takes the
    // ReLU before it (a max pool), runs in that layer.
    let relu_before_pool = |i: usize| {
        is_relu(i)
            && !relu_fused_back(i)
            && traits.get(i + 1).is_some_and(|t| t.relu_before)
            && only_reader(i, i + 1)
    };
    // Whether a trainable layer comes before each value (including the layer itself).
    let mut trained = vec![false; n];
    for i in 0..n {
        let (a, b) = inputs[i];
        let before = |v: Value| v.is_some_and(|j| trained[j]);
        trained[i] = layers[i].has_params() || before(a) || b.is_some_and(before);
    }
    let has_bn = traits.iter().any(|t| t.batch_stats > 0);
    let mut plans: Vec<LayerPlan> = Vec::with_capacity(n);
    let (mut part_offset, mut bns, mut stats_offsets, mut stats_len) = (0, Vec::new(), Vec::new(), 0);
    let mut deferred_len = 0;
    for (i, layer) in layers.iter().enumerate() {
        let slot_of = |v: Value, plans: &[LayerPlan]| v.and_then(|j| plans[j].slot);
        let (a, b) = inputs[i];
        let input_slot = slot_of(a, &plans);
        let t = traits[i];
        let runs = !(t.view || relu_fused_back(i) || relu_before_pool(i));
        let bn = (t.batch_stats > 0).then(|| {
            bns.push(i);
            stats_offsets.push(stats_len);
            stats_len += t.batch_stats;
            bns.len() - 1
        });
        let params = layer.params().map(|p| p.value.len()).sum::<usize>();
        let deferred = t.deferrable && params > DENSE_PART_MAX;
        plans.push(LayerPlan {
            // A layer that runs has a buffer of its own; the others are views of their
            // input's buffer (or of the network input).
            slot: if runs { Some(i) } else { input_slot },
            input: input_slot,
            input2: b.map(|v| slot_of(v, &plans)),
            in_len: a.map_or(input.len(), |j| shapes[j].len()),
            out_len: shapes[i].len(),
            storage: match (runs, has_bn) {
                (false, _) => Storage::None,
                (true, false) => Storage::Arena,
                (true, true) => Storage::Batch,
            },
            runs,
            fused_relu: i > 0 && relu_before_pool(i - 1),
            relu_after: i + 1 < n && relu_fused_back(i + 1),
            argmax: t.argmax,
            needs_dx: a.is_some_and(|j| trained[j]),
            needs_dx2: b.flatten().is_some_and(|j| trained[j]),
            dx: Dx::Skip,
            dx2: Dx::Skip,
            // A deferred layer's offset counts from `part_len`, added below.
            part_offset: if deferred { deferred_len } else { part_offset },
            deferred,
            bn,
            grad_buf: None,
            fold_into: None,
            folded: false,
        });
        if deferred {
            deferred_len += params;
        } else if t.chunk_grads {
            part_offset += params;
        }
    }
    // Gradient writers: the first reader of a buffer in backward order (the last in
    // forward order) writes its gradient, the others add to it. A value's readers all
    // compute its gradient or none do (it depends only on the value), so this holds
    // with the input gradient on or off.
    let mut written = vec![false; n + 1];
    let mut dx_tmp_len = 0;
    for i in (0..n).rev() {
        if !plans[i].runs {
            continue;
        }
        let mut mode = |slot: Option<usize>| {
            let w = &mut written[slot.unwrap_or(n)];
            let m = if *w { Dx::Add } else { Dx::Write };
            *w = true;
            m
        };
        plans[i].dx = mode(plans[i].input);
        if let Some(s2) = plans[i].input2 {
            plans[i].dx2 = mode(s2);
        }
        if plans[i].dx == Dx::Add {
            dx_tmp_len = dx_tmp_len.max(plans[i].in_len);
        }
    }
    // Batch buffers for what outlives a chunk's task: a deferred dense layer's input and
    // output (and output gradient), and the logits.
    for i in 0..n {
        if plans[i].deferred {
            plans[i].storage = Storage::Batch;
            if let Some(j) = plans[i].input {
                plans[j].storage = Storage::Batch;
            }
        }
    }
    let part_len = part_offset.max(1);
    for p in plans.iter_mut().filter(|p| p.deferred) {
        p.part_offset += part_len;
    }
    if let Some(j) = plans.last().and_then(|l| l.slot) {
        plans[j].storage = Storage::Batch;
    }
    let grad_bufs = share_gradients(&mut plans);
    debug_assert!(plans.iter().filter(|p| p.deferred).all(|p| p.grad_buf.is_some()));
    for j in 1..n {
        let conv = j - 1;
        let only = readers[conv] == 1 && inputs[j].0 == Some(conv);
        if matches!(layers[j], Layer::BatchNorm(_)) && matches!(layers[conv], Layer::Conv2d(_)) && only {
            plans[conv].fold_into = Some(j);
            plans[j].folded = true;
        }
    }
    let scratch_len = scratch_len(layers);
    Plan {
        layers: plans,
        input_len: input.len(),
        scratch_len,
        part_len,
        grad_len: part_len + deferred_len,
        bns,
        stats_offsets,
        stats_len: stats_len.max(1),
        dx_tmp_len,
        grad_bufs,
    }
}

/// Assigns the gradients of the layers stored in batch buffers to shared buffers; returns
/// each buffer's values per sample. Layer `i`'s gradient is live from the backward of its
/// last reader `L` (which writes it first, backward running last to first) to its own: the
/// interval `[i, L]` of layer indices; a deferred dense layer's stays live to the end (its
/// weight gradient is computed after the chunk tasks). Two gradients share a buffer when their intervals
/// are disjoint; buffers are handed out greedily in backward order, the smallest free one
/// large enough first.
fn share_gradients(plans: &mut [LayerPlan]) -> Vec<usize> {
    let n = plans.len();
    let mut last = (0..n).collect::<Vec<_>>();
    for (j, p) in plans.iter().enumerate().filter(|(_, p)| p.runs) {
        for s in std::iter::once(p.input).chain(p.input2).flatten() {
            last[s] = last[s].max(j);
        }
    }
    // The logits' gradient is written by the loss, after the last layer.
    if let Some(j) = plans.last().and_then(|l| l.slot) {
        last[j] = last[j].max(n);
    }
    // A deferred dense layer's output gradient is read after the step: never freed.
    for (i, p) in plans.iter().enumerate() {
        if p.deferred {
            last[i] = usize::MAX;
        }
    }
    let mut order: Vec<usize> = (0..n).filter(|&i| plans[i].storage == Storage::Batch).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(last[i]));
    // Per buffer: values per sample, and while in use, the layer after whose backward it
    // is free (None: free; a deferred dense layer's: never).
    let mut bufs: Vec<(usize, Option<usize>)> = Vec::new();
    for i in order {
        for b in bufs.iter_mut() {
            // Free once its layer's backward ran: before layer i's first writer's.
            if b.1.is_some_and(|t| t > last[i]) {
                b.1 = None;
            }
        }
        let need = plans[i].out_len;
        let free = |b: &&mut (usize, Option<usize>)| b.1.is_none();
        let pick = bufs
            .iter_mut()
            .enumerate()
            .filter(|(_, b)| free(b) && b.0 >= need)
            .min_by_key(|(_, b)| b.0)
            .map(|(k, _)| k)
            .or_else(|| {
                let largest = bufs.iter_mut().enumerate().filter(|(_, b)| free(b));
                largest.max_by_key(|(_, b)| b.0).map(|(k, _)| k)
            });
        let k = pick.unwrap_or_else(|| {
            bufs.push((0, None));
            bufs.len() - 1
        });
        let until = if last[i] == usize::MAX { 0 } else { i };
        bufs[k] = (bufs[k].0.max(need), Some(until));
        plans[i].grad_buf = Some(k);
    }
    bufs.into_iter().map(|(len, _)| len).collect()
}

#[cfg(test)]
mod tests;

/// Kernel scratch values of a chunk task: the most any layer needs for [`CHUNK`] images.
pub(crate) fn scratch_len(layers: &[Layer]) -> usize {
    layers
        .iter()
        .map(|l| l.kind().scratch_len(CHUNK))
        .max()
        .unwrap_or(0)
}
