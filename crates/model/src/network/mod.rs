//! A sequential network: the public [`Network`] API over its layers (`layers`), their
//! plan (`plan`), its buffers (`buffers`) and the chunk step (`step`): building,
//! inference and what it holds here; training in `training.rs`, the optimizer's side in
//! `optimizer.rs`.

use crate::buffers::Buffers;
use crate::error::ModelError;
use crate::layers::{dropout_seed, BnWork, Buffer, BufferMut, Layer, LayerSpec};
use crate::optim::OptimizerKind;
use crate::param::Param;
use crate::plan::Plan;
use crate::shape::Shape;
use crate::shard::{Shard, ShardWork};
use crate::spec::{format_spec, parse_spec};
use petal_kernels as k;
use petal_kernels::ConvAlgo;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

pub use crate::limits::{MAX_ACTIVATIONS_PER_SAMPLE, MAX_PARAMS};
pub use crate::plan::CHUNK;
pub use crate::shape::InputShape;

mod memory;
mod optimizer;
mod training;

pub use memory::Memory;

/// Loss and correct predictions of one training batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// Mean softmax cross-entropy over the batch.
    pub loss: f32,
    /// Samples whose most probable class is their label.
    pub correct: usize,
    /// Samples in the batch.
    pub batch: usize,
}

/// A sequential network of [`Layer`]s ending in logits, trained with the fused softmax
/// cross-entropy loss.
#[derive(Clone, Debug)]
pub struct Network {
    layers: Vec<Layer>,
    /// Each layer's spec (implied flattens written out).
    specs: Vec<LayerSpec>,
    /// Each layer's output shape, per sample.
    shapes: Vec<Shape>,
    /// Each layer's input (and an add's second): layer indices, `None` the network input.
    inputs: Vec<(Option<usize>, Option<Option<usize>>)>,
    input: InputShape,
    /// Per layer, where its values live and what its step does.
    plan: Plan,
    bufs: Buffers,
    input_grad: bool,
    /// Per batch norm, the statistics its chunk tasks use.
    bn_work: Vec<BnWork>,
    /// Buffers of the gradient's reduction (and the exchange between processes).
    shard_work: ShardWork,
    /// Per layer, inference's convolution weights and bias with a batch norm folded in.
    folded: Vec<Option<(Vec<f32>, Vec<f32>)>>,
    /// Per layer, a convolution's filters prepared for its algorithm from the weights of
    /// the current pass (`Conv2d::prepare`; empty for the others).
    prepared: Vec<Vec<f32>>,
    /// The stride-1 3x3 algorithm of every convolution ([`Network::set_conv_algo`]).
    conv_algo: ConvAlgo,
    /// Dropout masks: the seed of the run and the training steps taken, which key each
    /// step's masks; and the seed of the last step's.
    seed: u64,
    steps: u64,
    last_step_seed: u64,
    /// Samples in the last forward pass.
    last_batch: usize,
    /// Samples in the last [`Network::forward_backward`].
    last_train_batch: usize,
    /// Label smoothing ε of the training loss of the current step.
    label_smoothing: f32,
    /// The optimizer whose state the parameters hold, and its steps taken (AdamW's `t`).
    optimizer: OptimizerKind,
    optimizer_steps: u64,
}

/// A network's layers in order, for [`crate::limits::check_buffers`].
impl AsRef<[Layer]> for Network {
    fn as_ref(&self) -> &[Layer] {
        &self.layers
    }
}

impl Network {
    /// Builds a network from a spec string or preset name for inputs of shape `input`,
    /// with weights initialised from `seed` (see [`Network::init`]).
    pub fn from_spec(spec: &str, input: InputShape, seed: u64) -> Result<Self, ModelError> {
        let mut net = Self::from_layers(&parse_spec(spec)?, input)?;
        net.init(seed);
        Ok(net)
    }

    /// Builds `arch`, a preset name or a spec, as a classifier of `classes` classes with
    /// weights from `seed`: a preset ends in `dense:classes` ([`crate::spec::preset_spec`]),
    /// a spec must end in `classes` outputs ([`Network::check_classes`]).
    pub fn for_classes(arch: &str, input: InputShape, classes: usize, seed: u64) -> Result<Self, ModelError> {
        let net = Self::from_spec(&crate::spec::resolve_arch(arch, classes), input, seed)?;
        net.check_classes(classes)?;
        Ok(net)
    }

    /// Refuses a network whose output count (the logits) is not `classes`, with
    /// [`ModelError::ClassCount`] naming both and the fix.
    pub fn check_classes(&self, classes: usize) -> Result<(), ModelError> {
        if self.classes() == classes {
            return Ok(());
        }
        Err(ModelError::ClassCount {
            last: self.specs.last().map_or_else(String::new, |l| l.to_string()),
            outputs: self.classes(),
            data: "the data".into(),
            classes,
        })
    }

    /// The seed's network (`conv3x3:8,maxpool2,dense:5`) on 1x50x50 inputs.
    pub fn seednet(seed: u64) -> Self {
        Self::from_spec("seednet", InputShape { c: 1, h: 50, w: 50 }, seed).expect("seednet preset is valid")
    }

    /// The RGB flower network on 3x64x64 inputs.
    pub fn flowernet(seed: u64) -> Self {
        Self::from_spec("flowernet", InputShape { c: 3, h: 64, w: 64 }, seed)
            .expect("flowernet preset is valid")
    }

    /// Builds a network with zero weights (batch norms at γ = 1, β = 0, running mean 0 and
    /// variance 1) from parsed layer specs, inferring every shape from `input`, inserting a
    /// `flatten` before a `dense` that follows spatial layers and a projection shortcut in
    /// a residual block whose body changes the shape.
    pub fn from_layers(specs: &[LayerSpec], input: InputShape) -> Result<Self, ModelError> {
        let built = crate::plan::build(specs, input)?;
        let bn_work = built
            .plan
            .bns
            .iter()
            .map(|&i| match &built.layers[i] {
                Layer::BatchNorm(bn) => BnWork::new(bn.c),
                _ => unreachable!("plan.bns lists batch norms"),
            })
            .collect();
        Ok(Network {
            bn_work,
            shard_work: ShardWork::default(),
            folded: Vec::new(),
            prepared: Vec::new(),
            conv_algo: ConvAlgo::Direct,
            seed: 0,
            steps: 0,
            last_step_seed: 0,
            layers: built.layers,
            specs: built.specs,
            shapes: built.shapes,
            inputs: built.inputs,
            input,
            plan: built.plan,
            bufs: Buffers::default(),
            input_grad: false,
            last_batch: 0,
            last_train_batch: 0,
            label_smoothing: 0.0,
            optimizer: OptimizerKind::Sgd,
            optimizer_steps: 0,
        })
    }

    /// Initialises every parameter like PyTorch's defaults for `Conv2d` and `Linear`
    /// (Kaiming-uniform with `a = √5`): weights and biases uniform in `[-1/√fan_in, 1/√fan_in]`,
    /// `fan_in = in_c · kh · kw` or `in`. Values come from `ChaCha8Rng::seed_from_u64(seed)`
    /// as `(2u - 1) · bound` with `u` uniform in `[0, 1)`, layer by layer, weight then bias:
    /// the same seed gives the same network on any machine and thread count. Batch norms
    /// start at γ = 1, β = 0 with running mean 0 and variance 1 (PyTorch's), drawing
    /// nothing. Optimizer state is dropped (the step count 0, the kind kept). `seed` also
    /// keys the dropout masks ([`Network::set_dropout_state`]).
    pub fn init(&mut self, seed: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        self.set_dropout_state(seed, 0);
        self.optimizer_steps = 0;
        for layer in &mut self.layers {
            layer.kind_mut().init(&mut rng);
            for p in layer.params_mut() {
                p.state.clear();
            }
        }
    }

    /// Sets what keys the dropout masks: `seed` and the number of training steps taken
    /// (step `t`'s masks come from both, so a run resumed at step `t` with its seed draws
    /// what the uninterrupted run drew).
    pub fn set_dropout_state(&mut self, seed: u64, steps: u64) {
        self.seed = seed;
        self.steps = steps;
    }
    /// The dropout seed and the training steps taken ([`Network::set_dropout_state`]).
    pub fn dropout_state(&self) -> (u64, u64) {
        (self.seed, self.steps)
    }
    /// The layers in execution order (including implied `flatten`s; a residual block as
    /// its body's layers, its shortcut's and an [`Layer::Add`]).
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }
    /// The layers mutably (a batch norm's running statistics, for loading).
    pub fn layers_mut(&mut self) -> &mut [Layer] {
        &mut self.layers
    }
    /// The spec of each top-level layer, in order (implied flattens and projection
    /// shortcuts written out; a residual block is one).
    pub fn layer_specs(&self) -> &[LayerSpec] {
        &self.specs
    }
    /// Where each layer reads its input: `(input, second input)`, a layer index or `None`
    /// for the network input; the second only for an [`Layer::Add`].
    pub fn layer_inputs(&self) -> Vec<(Option<usize>, Option<Option<usize>>)> {
        self.inputs.clone()
    }
    /// Output shape of each layer (as [`Network::layers`]), per sample.
    pub fn shapes(&self) -> &[Shape] {
        &self.shapes
    }
    /// The input shape, per sample.
    pub fn input_shape(&self) -> InputShape {
        self.input
    }
    /// Number of classes (length of the logits).
    pub fn classes(&self) -> usize {
        self.shapes.last().map_or(0, Shape::len)
    }
    /// The canonical spec string (implied flattens written out), which rebuilds this network.
    pub fn spec(&self) -> String {
        format_spec(&self.specs)
    }
    /// Every parameter, in layer order (weight, then bias).
    pub fn params(&self) -> impl Iterator<Item = &Param> {
        self.layers.iter().flat_map(Layer::params)
    }
    /// Every parameter, mutably.
    pub fn params_mut(&mut self) -> impl Iterator<Item = &mut Param> {
        self.layers.iter_mut().flat_map(Layer::params_mut)
    }
    /// Every layer's state besides its parameters (batch norms' running statistics), in
    /// layer order.
    pub fn buffers(&self) -> impl Iterator<Item = Buffer<'_>> {
        self.layers.iter().flat_map(Layer::buffers)
    }
    /// [`Network::buffers`], mutably.
    pub fn buffers_mut(&mut self) -> impl Iterator<Item = BufferMut<'_>> {
        self.layers.iter_mut().flat_map(Layer::buffers_mut)
    }
    /// Total trainable values.
    pub fn param_count(&self) -> usize {
        self.params().map(|p| p.value.len()).sum()
    }
    /// Training FLOPs per sample of the conv and dense layers (forward + backward, multiply-adds
    /// counted as 2; the first trainable layer computes no input gradient).
    pub fn train_flops_per_sample(&self) -> u64 {
        let mut total = 0;
        for (l, p) in self.layers.iter().zip(&self.plan.layers) {
            let f = l.kind().forward_flops();
            total += if p.needs_dx { 3 * f } else { 2 * f };
        }
        total
    }

    /// Makes backward also compute the gradient with respect to the network input (off by
    /// default: training never needs it). Read it with [`Network::input_grad`].
    pub fn set_input_grad(&mut self, on: bool) {
        self.input_grad = on;
        self.bufs.capacity = 0; // re-size buffers on the next call
    }

    /// Sets the algorithm of every stride-1 3x3 convolution ([`ConvAlgo`]):
    /// [`ConvAlgo::Direct`] (the default) keeps the direct kernels' bits;
    /// [`ConvAlgo::Winograd`] and [`ConvAlgo::Auto`] do fewer multiplies and round
    /// differently (`petal_kernels::conv::winograd` states their error). Either way the
    /// results are the same on any thread count and any split over processes.
    pub fn set_conv_algo(&mut self, algo: ConvAlgo) {
        self.conv_algo = algo;
        for layer in &mut self.layers {
            if let Layer::Conv2d(conv) = layer {
                conv.algo = algo;
            }
        }
        self.plan.scratch_len = crate::plan::scratch_len(&self.layers);
        self.prepared.clear();
        self.bufs = Buffers::default(); // arenas with the new scratch on the next call
    }

    /// The stride-1 3x3 convolutions' algorithm ([`Network::set_conv_algo`]).
    pub fn conv_algo(&self) -> ConvAlgo {
        self.conv_algo
    }

    /// Prepares every convolution's filters for its algorithm (`Conv2d::prepare`): for
    /// inference (`inference`: the forward pass's alone, from its folded weights where
    /// `folded` has them) or training (both passes', from its own); layers in parallel.
    fn prepare_convs(&mut self, inference: bool) {
        let Network {
            layers,
            folded,
            prepared,
            ..
        } = self;
        prepared.resize_with(layers.len(), Vec::new);
        let folded = &folded[..];
        layers
            .par_iter()
            .zip(prepared.par_iter_mut())
            .enumerate()
            .for_each(|(i, (layer, out))| match layer {
                Layer::Conv2d(conv) => {
                    let w = match folded.get(i) {
                        Some(Some((w, _))) if inference => w,
                        _ => &conv.weight.value,
                    };
                    conv.prepare(w, out, !inference);
                }
                _ => out.clear(),
            });
    }

    /// Whether backward computes the input gradient ([`Network::set_input_grad`]).
    pub fn input_grad_enabled(&self) -> bool {
        self.input_grad
    }

    /// Gradient of the loss with respect to the input of the last
    /// [`Network::forward_backward`] batch, when [`Network::set_input_grad`] is on.
    pub fn input_grad(&self) -> &[f32] {
        let n = self.last_train_batch * self.input.len();
        &self.bufs.input_grad[..n.min(self.bufs.input_grad.len())]
    }

    fn batch_of(&self, x: &[f32]) -> Result<usize, ModelError> {
        let per = self.input.len();
        if x.is_empty() || x.len() % per != 0 {
            return Err(ModelError::BatchShape {
                got: x.len(),
                per_image: per,
                shape: self.input.to_string(),
            });
        }
        Ok(x.len() / per)
    }

    /// Inference over a batch `x` (`[batch, c, h, w]`): batch norms with their running
    /// statistics, dropout off.
    fn forward(&mut self, x: &[f32], batch: usize) {
        self.bufs.ensure(&self.plan, batch, self.input_grad);
        self.last_batch = batch;
        for (w, &i) in self.bn_work.iter_mut().zip(&self.plan.bns) {
            if let Layer::BatchNorm(bn) = &self.layers[i] {
                w.use_running(bn);
            }
        }
        crate::step::fold_batch_norms(&self.layers, &self.plan, &self.bn_work, &mut self.folded);
        self.prepare_convs(true);
        let n = self.layers.len();
        self.region(x, Shard::whole(batch), None, |step, c| step.forward(c, 0..n));
    }

    /// The logits of the last forward pass (training or inference), `[batch, classes]`.
    pub fn logits(&self) -> &[f32] {
        match self.plan.last().slot {
            Some(j) if self.last_batch > 0 => &self.bufs.layers.outs[j][..self.last_batch * self.classes()],
            _ => &[],
        }
    }

    /// The class probabilities of the last forward pass, `[batch, classes]`.
    pub fn probs(&self) -> &[f32] {
        &self.bufs.probs[..self.last_batch * self.classes()]
    }

    /// Class probabilities `[batch, classes]` of the samples in `x` (`[batch, c, h, w]`).
    pub fn predict(&mut self, x: &[f32]) -> Result<&[f32], ModelError> {
        let batch = self.batch_of(x)?;
        on_pool(|| self.forward(x, batch));
        let classes = self.classes();
        let last_slot = self.plan.last().slot.expect("last layer has a buffer");
        let Buffers { layers, probs, .. } = &mut self.bufs;
        k::softmax_forward(
            &layers.outs[last_slot][..batch * classes],
            classes,
            &mut probs[..batch * classes],
        );
        Ok(&self.bufs.probs[..batch * classes])
    }

    /// Mean loss and correct count of a batch, forward only (for validation); leaves the
    /// gradients as they were.
    pub fn evaluate(&mut self, x: &[f32], labels: &[usize]) -> Result<StepStats, ModelError> {
        let batch = self.batch_of(x)?;
        self.check_labels(batch, labels)?;
        on_pool(|| self.forward(x, batch));
        let classes = self.classes();
        let last_slot = self.plan.last().slot.expect("last layer has a buffer");
        let Buffers { layers, probs, .. } = &mut self.bufs;
        let probs = &mut probs[..batch * classes];
        let loss = k::softmax_cross_entropy_loss(
            &layers.outs[last_slot][..batch * classes],
            labels,
            classes,
            probs,
        )?;
        Ok(StepStats {
            loss,
            correct: count_correct(probs, labels, classes),
            batch,
        })
    }

    /// The smallest training batch the network accepts: 2 when a batch norm normalises
    /// `1x1` feature maps (one value per channel and sample), else 1.
    pub fn min_train_batch(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.kind().min_train_batch())
            .max()
            .unwrap_or(1)
    }

    /// The dropout seed of layer `layer` in the last training step (for a reference pass
    /// that draws the same masks).
    pub fn last_dropout_seed(&self, layer: usize) -> u64 {
        dropout_seed(self.last_step_seed, layer)
    }

    fn check_labels(&self, batch: usize, labels: &[usize]) -> Result<(), ModelError> {
        if labels.len() != batch {
            return Err(ModelError::LabelCount {
                images: batch,
                labels: labels.len(),
            });
        }
        let classes = self.classes();
        if let Some((sample, &label)) = labels.iter().enumerate().find(|(_, &l)| l >= classes) {
            return Err(k::LabelError {
                sample,
                label,
                classes,
            }
            .into());
        }
        Ok(())
    }
}

/// Runs `f` on a thread of rayon's current pool. Called from outside the pool (a plain
/// `main`), every parallel loop of a step would otherwise be handed to the pool and waited
/// for separately (a thread wake-up per kernel call); this hands over the whole step once.
/// On a pool thread it runs `f` inline.
fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

/// Samples of `probs` (`[batch, classes]`) whose most probable class (the first of
/// equals) is their label; a row with a NaN (a diverged network) counts as wrong.
fn count_correct(probs: &[f32], labels: &[usize], classes: usize) -> usize {
    probs
        .chunks_exact(classes)
        .zip(labels)
        .filter(|(p, &c)| {
            let best = p
                .iter()
                .enumerate()
                .fold(0, |b, (i, &v)| if v > p[b] { i } else { b });
            best == c && !p.iter().any(|v| v.is_nan())
        })
        .count()
}
