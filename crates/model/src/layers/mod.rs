//! Layer kinds, one module per kind. Each holds everything particular to its kind: its
//! spec token (parse and canonical format), shape inference and parameters with their
//! PyTorch names (building the layer from its spec and input shape), initialisation, the
//! kernel calls of its forward and backward pass on one chunk of images, its scratch
//! needs, its state beyond parameters, and its float64 reference pass for the gradient
//! check.
//!
//! The central code (`spec`, `limits`, `plan`, `step`, `network`, `checkpoint`,
//! `gradcheck`) reaches a kind only through [`LayerSpec::kind`] and [`Layer::kind`] (one
//! exhaustive match each, below) and the [`SpecKind`] and [`Kind`] traits. A new kind is a
//! new module here, its variants in [`LayerSpec`] and [`Layer`] with their lines in those
//! two matches, and its token parser in [`TOKENS`].
//!
//! The seed's three layers map to: "Convolution_layer" = [`Layer::Conv2d`],
//! "Pooling_layer" = [`Layer::MaxPool2d`], and "Softmax_layer" = [`Layer::Dense`] followed
//! by the fused softmax cross-entropy loss (`petal_kernels::softmax_cross_entropy`), which
//! the network applies to its last layer's output (the logits).

mod avg_pool;
mod batch_norm;
mod conv;
mod dense;
mod dropout;
mod flatten;
mod global_avg_pool;
mod max_pool;
mod relu;
mod residual;
mod token;

pub use avg_pool::{AvgPool2d, AvgPoolSpec};
pub use batch_norm::{BatchNorm, BatchNormSpec, BN_EPS, BN_MOMENTUM};
pub use conv::{Conv2d, ConvSpec};
pub use dense::{Dense, DenseSpec};
pub use dropout::{Dropout, DropoutSpec, DROPOUT_SCALE};
pub use flatten::Flatten;
pub use global_avg_pool::{GlobalAvgPool, GlobalAvgPoolSpec};
pub use max_pool::{MaxPool2d, MaxPoolSpec};
pub use relu::Relu;
pub use residual::{Add, ResidualSpec};
pub use token::MAX_SPEC_NUMBER;

pub(crate) use batch_norm::{BnSums, BnWork};
pub(crate) use dropout::dropout_seed;
pub(crate) use residual::{add_gradient, projection};

use crate::error::ModelError;
use crate::param::Param;
use crate::shape::Shape;
use petal_kernels::ShapeError;
use rand_chacha::ChaCha8Rng;
use std::fmt;

/// One layer as the spec describes it (shapes are inferred later from the input).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerSpec {
    Conv2d(ConvSpec),
    MaxPool2d(MaxPoolSpec),
    AvgPool2d(AvgPoolSpec),
    Relu,
    BatchNorm,
    GlobalAvgPool,
    Dropout(DropoutSpec),
    Flatten,
    Dense(DenseSpec),
    /// `body(x) + shortcut(x)`: several layers, built by the plan.
    Residual(ResidualSpec),
}

impl LayerSpec {
    /// The kind's spec: how it is written, built and counted.
    pub(crate) fn kind(&self) -> &dyn SpecKind {
        match self {
            LayerSpec::Conv2d(s) => s,
            LayerSpec::MaxPool2d(s) => s,
            LayerSpec::AvgPool2d(s) => s,
            LayerSpec::Relu => &Relu,
            LayerSpec::BatchNorm => &BatchNormSpec,
            LayerSpec::GlobalAvgPool => &GlobalAvgPoolSpec,
            LayerSpec::Dropout(s) => s,
            LayerSpec::Flatten => &Flatten,
            LayerSpec::Dense(s) => s,
            LayerSpec::Residual(s) => s,
        }
    }
}

impl fmt::Display for LayerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind().fmt(f)
    }
}

/// Writes layers back as a spec string that `parse_spec` reads to the same layers.
pub fn format_spec(layers: &[LayerSpec]) -> String {
    layers.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(",")
}

/// A spec token's parser: `None` when the token (its head and its `/` options) is not of
/// the kind, else the spec or why the token is wrong.
pub(crate) type TokenParser = fn(head: &str, opts: &[&str]) -> Option<Result<LayerSpec, String>>;

/// Every kind's token parser (a residual block's `res(...)` is the grammar's, in `spec`).
pub(crate) const TOKENS: [TokenParser; 9] = [
    conv::parse,
    max_pool::parse,
    avg_pool::parse,
    dense::parse,
    dropout::parse,
    relu::parse,
    batch_norm::parse,
    global_avg_pool::parse,
    flatten::parse,
];

/// The tokens the grammar knows, for the error on an unknown one.
pub(crate) const TOKEN_FORMS: &str =
    "convKxK:N, maxpoolK, avgpoolK, relu, bn, gap, dropout:P, flatten, dense:N or res(...)";

/// What the spec side of a kind does.
pub(crate) trait SpecKind: fmt::Display {
    /// The layer this spec makes on `input` (per sample), its parameters named
    /// `{name}.weight`, `{name}.bias`, ..., and its output shape; or why it does not fit.
    fn build(&self, name: &str, input: Shape) -> Result<(Layer, Shape), String>;
    /// Parameters (and batch-norm statistics) the layer will hold on `input`, computed
    /// without overflow before anything is allocated.
    fn param_count(&self, _input: Shape) -> u128 {
        0
    }
}

/// The error of a layer that needs feature maps but follows a flatten or dense layer.
pub(crate) fn needs_spatial(input: Shape) -> Result<(usize, usize, usize), String> {
    input.spatial().ok_or_else(|| {
        format!(
            "needs [c, h, w] feature maps but follows a flatten or dense layer (a flat vector of {})",
            input.len()
        )
    })
}

/// One layer (one operation) of a network. Shape structs are stored for batch 1; the
/// network sets the batch at each call. A residual block is several: its body's layers,
/// its shortcut's, then an [`Layer::Add`]; which values each reads is the network's plan.
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    /// 2-D convolution, `y = W ⋆ x + b` ([`Conv2d`]).
    Conv2d(Conv2d),
    /// Max pooling; the gradient flows to each window's maximum ([`MaxPool2d`]).
    MaxPool2d(MaxPool2d),
    /// Average pooling, divisor `k·k` ([`AvgPool2d`]).
    AvgPool2d(AvgPool2d),
    /// Global average pooling, `[c, h, w]` to `[c, 1, 1]` ([`GlobalAvgPool`]).
    GlobalAvgPool(GlobalAvgPool),
    /// Batch normalisation ([`BatchNorm`]).
    BatchNorm(BatchNorm),
    /// Dropout in training, the identity in inference ([`Dropout`]).
    Dropout(Dropout),
    /// `max(x, 0)`.
    Relu(Relu),
    /// `[c, h, w]` to `[c·h·w]` in C,H,W order: a view, no copy.
    Flatten(Flatten),
    /// `y = W · x + b`, the seed's eq. (10) ([`Dense`]).
    Dense(Dense),
    /// The join of a residual block: `y = body(x) + shortcut(x)`.
    Add(Add),
}

impl Layer {
    /// What the kind does, for the central code.
    pub(crate) fn kind(&self) -> &dyn Kind {
        match self {
            Layer::Conv2d(l) => l,
            Layer::MaxPool2d(l) => l,
            Layer::AvgPool2d(l) => l,
            Layer::GlobalAvgPool(l) => l,
            Layer::BatchNorm(l) => l,
            Layer::Dropout(l) => l,
            Layer::Relu(l) => l,
            Layer::Flatten(l) => l,
            Layer::Dense(l) => l,
            Layer::Add(l) => l,
        }
    }

    /// [`Layer::kind`], mutably.
    pub(crate) fn kind_mut(&mut self) -> &mut dyn Kind {
        match self {
            Layer::Conv2d(l) => l,
            Layer::MaxPool2d(l) => l,
            Layer::AvgPool2d(l) => l,
            Layer::GlobalAvgPool(l) => l,
            Layer::BatchNorm(l) => l,
            Layer::Dropout(l) => l,
            Layer::Relu(l) => l,
            Layer::Flatten(l) => l,
            Layer::Dense(l) => l,
            Layer::Add(l) => l,
        }
    }

    /// The spec of a layer built from one; `None` for an [`Layer::Add`], which the
    /// network's spec writes as the `res(...)` around it.
    pub fn spec(&self) -> Option<LayerSpec> {
        self.kind().spec()
    }

    /// The layer's parameters (weight first, then bias).
    pub fn params(&self) -> impl Iterator<Item = &Param> {
        self.kind().params().into_iter().flatten()
    }

    /// The layer's parameters, mutably (weight first, then bias).
    pub fn params_mut(&mut self) -> impl Iterator<Item = &mut Param> {
        self.kind_mut().params_mut().into_iter().flatten()
    }

    /// Whether the layer has trainable parameters.
    pub fn has_params(&self) -> bool {
        self.params().next().is_some()
    }

    /// The layer's state besides its parameters that a checkpoint holds (a batch norm's
    /// running statistics), in `state_dict` order.
    pub fn buffers(&self) -> Vec<Buffer<'_>> {
        self.kind().buffers()
    }

    /// [`Layer::buffers`], mutably.
    pub fn buffers_mut(&mut self) -> Vec<BufferMut<'_>> {
        self.kind_mut().buffers_mut()
    }

    /// The layer's parameters and buffers at once, mutably (to load both).
    pub fn state_mut(&mut self) -> (impl Iterator<Item = &mut Param>, Vec<BufferMut<'_>>) {
        let (params, buffers) = self.kind_mut().state_mut();
        (params.into_iter().flatten(), buffers)
    }
}

/// A layer's state besides its parameters, as its `state_dict` names it.
#[derive(Debug)]
pub enum Buffer<'a> {
    /// f32 values (`nonneg`: they are never negative, as a variance).
    Values {
        name: String,
        values: &'a [f32],
        nonneg: bool,
    },
    /// A count, stored as an int64 scalar.
    Count { name: String, value: u64 },
}

/// A [`Buffer`] to load into.
#[derive(Debug)]
pub enum BufferMut<'a> {
    Values {
        name: String,
        values: &'a mut [f32],
        nonneg: bool,
    },
    Count {
        name: String,
        value: &'a mut u64,
    },
}

/// What the plan must know of a kind to lay out its buffers and gradients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Traits {
    /// The chunk tasks write its parameter gradients per chunk (summed over the chunks'
    /// tree after them), rather than the layer setting them itself.
    pub chunk_grads: bool,
    /// Its weight gradient may instead be summed after the chunk tasks from its input and
    /// output gradient kept for the batch, when it has more than `DENSE_PART_MAX` values
    /// (`plan::LayerPlan::deferred`).
    pub deferrable: bool,
    /// It keeps argmax indices for its backward pass.
    pub argmax: bool,
    /// A ReLU before it, read only by it, runs on its output instead (max and ReLU
    /// commute).
    pub relu_before: bool,
    /// A ReLU after it, reading only it, runs inside it, on its output.
    pub relu_after: bool,
    /// Values of its per-chunk sums when it normalises with the whole batch's statistics
    /// (a batch norm: Σx and Σx² per channel), so that a training step stops at it
    /// (`step`: the batch-norm regions); 0 for the others.
    pub batch_stats: usize,
    /// It computes nothing: its output is its input's buffer.
    pub view: bool,
}

/// A layer's kernel scratch, for the limits.
pub(crate) struct Scratch {
    /// What the scratch is (`"convolution scratch"`) and the input it is for (`1x4x4`).
    pub what: &'static str,
    pub input: String,
    /// Values for one sample, or why the kernels refuse the layer's shape.
    pub per_sample: Result<usize, ShapeError>,
}

/// What every layer kind does for the central code.
pub(crate) trait Kind {
    /// The spec it was built from (`None` for the residual join).
    fn spec(&self) -> Option<LayerSpec>;
    /// Its parameters: weight, then bias.
    fn params(&self) -> [Option<&Param>; 2] {
        [None, None]
    }
    /// [`Kind::params`], mutably.
    fn params_mut(&mut self) -> [Option<&mut Param>; 2] {
        [None, None]
    }
    /// Its state besides parameters ([`Layer::buffers`]).
    fn buffers(&self) -> Vec<Buffer<'_>> {
        Vec::new()
    }
    /// [`Kind::buffers`], mutably.
    fn buffers_mut(&mut self) -> Vec<BufferMut<'_>> {
        Vec::new()
    }
    /// [`Kind::params_mut`] and [`Kind::buffers_mut`] at once (a kind with buffers
    /// overrides it).
    fn state_mut(&mut self) -> ([Option<&mut Param>; 2], Vec<BufferMut<'_>>) {
        (self.params_mut(), Vec::new())
    }
    /// Sets its parameters and state to PyTorch's initial values, drawing what is random
    /// from `rng` (weight, then bias).
    fn init(&mut self, _rng: &mut ChaCha8Rng) {}
    /// Forward FLOPs per sample (multiply-adds counted as 2) of a kind whose backward
    /// costs two such passes (one without the input gradient); 0 for the others, whose
    /// cost is memory traffic.
    fn forward_flops(&self) -> u64 {
        0
    }
    /// Kernel scratch values for a chunk of `images` samples.
    fn scratch_len(&self, _images: usize) -> usize {
        0
    }
    /// Its kernel scratch, when it has any ([`crate::limits::check_buffers`]).
    fn scratch(&self) -> Option<Scratch> {
        None
    }
    /// The smallest training batch it accepts.
    fn min_train_batch(&self) -> usize {
        1
    }
    /// Refuses a training batch of `batch` samples it cannot train on.
    fn check_train_batch(&self, _batch: usize) -> Result<(), ModelError> {
        Ok(())
    }
    /// What the plan must know of it.
    fn traits(&self) -> Traits {
        Traits::default()
    }
    /// One chunk's forward pass.
    fn forward(&self, f: Forward<'_>);
    /// One chunk's backward pass: the parameter gradients of these images (into
    /// `b.grads`, unless the layer sets them itself) and, when `b.dx` is given, the
    /// gradient with respect to its input.
    fn backward(&self, b: Backward<'_>);
    /// The float64 reference forward pass of a batch (sharing no code with the kernels),
    /// and the positions of its kinks (a max pool's argmax, a ReLU's signs: where the loss
    /// is not smooth), for the gradient check.
    fn reference(&self, r: Reference<'_>) -> (Vec<f64>, Vec<u64>);
}

/// What a layer's chunk step knows besides its buffers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ctx<'a> {
    /// A training pass (batch statistics, dropout on) or inference.
    pub train: bool,
    /// The plan's fused ReLUs: the ReLU before the layer runs on its output (a max pool),
    /// and the ReLU after it runs inside it (a batch norm or an add).
    pub relu_before: bool,
    pub relu_after: bool,
    /// The dropout mask's key: the seed of this layer in this step
    /// ([`dropout_seed`]) and the index of the chunk's first input value among the
    /// global batch's.
    pub seed: u64,
    pub first_value: u64,
    /// A batch norm's coefficients (its batch's statistics in training, the running ones
    /// in inference).
    pub stats: Option<&'a BnWork>,
    /// A convolution's filters prepared for its algorithm from the weights the pass uses
    /// (`Conv2d::prepare`; empty for the other kinds and where nothing is prepared).
    pub prepared: &'a [f32],
}

/// One chunk's buffers for a layer's forward pass.
pub(crate) struct Forward<'a> {
    /// Samples in the chunk.
    pub images: usize,
    /// The input, `[images, in_len]`, and an add's second input (empty for the others).
    pub x: &'a [f32],
    pub x2: &'a [f32],
    /// The output, `[images, out_len]`, and the argmax of a layer that keeps one (empty
    /// for the others).
    pub y: &'a mut [f32],
    pub argmax: &'a mut [u32],
    /// Kernel scratch ([`Kind::scratch_len`] of a chunk).
    pub scratch: &'a mut [f32],
    pub ctx: Ctx<'a>,
}

/// One chunk's buffers for a layer's backward pass.
pub(crate) struct Backward<'a> {
    pub images: usize,
    /// The layer's input and output.
    pub x: &'a [f32],
    pub y: &'a [f32],
    /// The gradient with respect to the output (writable: a fused ReLU masks it in place).
    pub dy: &'a mut [f32],
    pub argmax: &'a [u32],
    /// The gradient with respect to the input, when it is needed.
    pub dx: Option<&'a mut [f32]>,
    /// The layer's share of the chunk's partial parameter gradients (weight, then bias),
    /// for a kind with [`Traits::chunk_grads`] whose gradient is not deferred; else empty.
    pub grads: &'a mut [f32],
    pub scratch: &'a mut [f32],
    pub ctx: Ctx<'a>,
}

/// The inputs of a layer's reference pass over a batch of `batch` samples.
pub(crate) struct Reference<'a> {
    pub batch: usize,
    pub x: &'a [f64],
    /// An add's second input (empty for the others).
    pub x2: &'a [f64],
    /// The layer's parameters in float64: weight, then bias.
    pub weight: Option<&'a [f64]>,
    pub bias: Option<&'a [f64]>,
    /// The dropout seed of this layer in the step checked.
    pub seed: u64,
}

/// Weight and bias of a layer as [`Kind::params`] returns them.
pub(crate) fn weight_and_bias<'a>(weight: &'a Param, bias: &'a Option<Param>) -> [Option<&'a Param>; 2] {
    [Some(weight), bias.as_ref()]
}

/// [`weight_and_bias`], mutably.
pub(crate) fn weight_and_bias_mut<'a>(
    weight: &'a mut Param,
    bias: &'a mut Option<Param>,
) -> [Option<&'a mut Param>; 2] {
    [Some(weight), bias.as_mut()]
}

/// PyTorch's default initialisation of `Conv2d` and `Linear` (Kaiming-uniform with
/// `a = √5`): every value of the weight, then of the bias, `(2u − 1)/√fan_in` with `u`
/// uniform in `[0, 1)` from `rng`.
pub(crate) fn init_uniform(rng: &mut ChaCha8Rng, fan_in: usize, params: [Option<&mut Param>; 2]) {
    use rand::Rng;
    let bound = 1.0 / (fan_in as f32).sqrt();
    for p in params.into_iter().flatten() {
        for v in &mut p.value {
            *v = (2.0 * rng.random::<f32>() - 1.0) * bound;
        }
    }
}

/// The gradient of a weight (and bias) in the layer's share of a chunk's partial
/// gradients: `(weight, Some(bias))` when the layer has a bias.
pub(crate) fn split_grads<'a>(
    grads: &'a mut [f32],
    weight: &Param,
    bias: &Option<Param>,
) -> (&'a mut [f32], Option<&'a mut [f32]>) {
    let wl = weight.value.len();
    let bl = bias.as_ref().map_or(0, |b| b.value.len());
    let (gw, gb) = grads[..wl + bl].split_at_mut(wl);
    (gw, bias.as_ref().map(|_| gb))
}

/// Each kind's gradient check ([`crate::gradcheck()`] on a small network around it, at odd
/// sizes, against finite differences of the float64 reference passes).
#[cfg(test)]
pub(crate) mod gradcheck_case {
    use crate::gradcheck::{gradcheck, GradCheckOptions};
    use crate::network::Network;
    use crate::shape::InputShape;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Checks every gradient of `spec` on `[c, h, w]` inputs at batch `batch`, with
    /// `relative_floor` (`GradCheckOptions`; 1e-4 where a batch norm's backward
    /// subtracts the batch means, 0 otherwise).
    pub(crate) fn check(spec: &str, [c, h, w]: [usize; 3], batch: usize, relative_floor: f64) {
        let mut net = Network::from_spec(spec, InputShape { c, h, w }, 5).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let x: Vec<f32> = (0..batch * c * h * w).map(|_| rng.random()).collect();
        let y: Vec<usize> = (0..batch).map(|_| rng.random_range(0..net.classes())).collect();
        let opts = GradCheckOptions {
            relative_floor,
            ..GradCheckOptions::default()
        };
        let report = gradcheck(&mut net, &x, &y, &opts).unwrap();
        assert!(report.passed(), "{spec}: {report:?}");
        assert!(
            report.tensors.iter().all(|t| t.checked >= t.skipped),
            "{spec}: {report:?}"
        );
    }
}
