//! Layers: what each holds (shapes, parameters), and the shapes of the values between them.
//! How a layer is built from its spec and input shape is the plan's (`plan.rs`).
//!
//! The seed's three layers map to: "Convolution_layer" = [`Layer::Conv2d`],
//! "Pooling_layer" = [`Layer::MaxPool2d`], and "Softmax_layer" = [`Layer::Dense`] followed
//! by the fused softmax cross-entropy loss (`petal_kernels::softmax_cross_entropy`),
//! which the network applies to its last layer's output (the logits).

use crate::spec::LayerSpec;
use petal_kernels::{Conv2dShape, DenseShape, Pool2dShape};
use std::fmt;

/// The input of a network, one sample: `[c, h, w]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InputShape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl InputShape {
    /// Values per sample, `c · h · w`.
    pub fn len(&self) -> usize {
        self.c * self.h * self.w
    }
    /// Whether any dimension is zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for InputShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.c, self.h, self.w)
    }
}

/// The shape of one sample as it flows between layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shape {
    /// `[c, h, w]` feature maps.
    Spatial { c: usize, h: usize, w: usize },
    /// A flat vector (after `flatten`), in C,H,W order.
    Flat(usize),
}

impl Shape {
    /// Values per sample.
    pub fn len(&self) -> usize {
        match *self {
            Shape::Spatial { c, h, w } => c * h * w,
            Shape::Flat(n) => n,
        }
    }
    /// Whether the shape holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The dimensions, `[c, h, w]` or `[n]`.
    pub fn dims(&self) -> Vec<usize> {
        match *self {
            Shape::Spatial { c, h, w } => vec![c, h, w],
            Shape::Flat(n) => vec![n],
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Shape::Spatial { c, h, w } => write!(f, "{c}x{h}x{w}"),
            Shape::Flat(n) => write!(f, "{n}"),
        }
    }
}

/// A trainable tensor with its gradient and optimizer state: the SGD velocity (the value's
/// length), and AdamW's moments (the value's length once AdamW has stepped, else empty).
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// PyTorch `state_dict` name: `"{layer index}.weight"` or `"{layer index}.bias"`.
    pub name: String,
    /// Dimensions, as PyTorch's (`[out_c, in_c, kh, kw]`, `[out, in]`, `[out]`).
    pub shape: Vec<usize>,
    pub value: Vec<f32>,
    pub grad: Vec<f32>,
    pub velocity: Vec<f32>,
    /// AdamW's first moment `m` (PyTorch's `exp_avg`); empty unless AdamW.
    pub exp_avg: Vec<f32>,
    /// AdamW's second moment `v` (PyTorch's `exp_avg_sq`); empty unless AdamW.
    pub exp_avg_sq: Vec<f32>,
}

impl Param {
    /// Resets the optimizer state: zero velocity, no AdamW moments.
    pub(crate) fn reset_optimizer_state(&mut self) {
        self.velocity.fill(0.0);
        self.exp_avg = Vec::new();
        self.exp_avg_sq = Vec::new();
    }
    /// Allocates AdamW's moments (zero) when they are not.
    pub(crate) fn ensure_moments(&mut self) {
        let n = self.value.len();
        if self.exp_avg.len() != n || self.exp_avg_sq.len() != n {
            self.exp_avg = vec![0.0; n];
            self.exp_avg_sq = vec![0.0; n];
        }
    }
    pub(crate) fn zeros(name: String, shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        Param {
            name,
            shape,
            value: vec![0.0; n],
            grad: vec![0.0; n],
            velocity: vec![0.0; n],
            exp_avg: Vec::new(),
            exp_avg_sq: Vec::new(),
        }
    }
}

/// Batch normalisation over the channels of `[c, h, w]` values (PyTorch's `BatchNorm2d`):
/// `y = γ · (x − μ) / √(σ² + ε) + β` per channel, with the batch's mean μ and biased
/// variance σ² (over the batch and the `h·w` positions) in training, and the running
/// statistics in inference. Training updates the running statistics with momentum
/// [`BN_MOMENTUM`]: `r ← (1 − m)·r + m·v`, the running variance from the unbiased variance
/// (`σ² · n / (n − 1)`, n values per channel), as PyTorch does.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    /// Channels, and values per channel of one sample (`h · w`).
    pub c: usize,
    pub hw: usize,
    /// γ (`{prefix}.weight`, initialised to 1) and β (`{prefix}.bias`, initialised to 0).
    pub weight: Param,
    pub bias: Param,
    /// `{prefix}.running_mean` (starts at 0) and `{prefix}.running_var` (starts at 1).
    pub running_mean: Vec<f32>,
    pub running_var: Vec<f32>,
    /// `{prefix}.num_batches_tracked`: training batches seen.
    pub batches_tracked: u64,
    /// The layer's `state_dict` name prefix (`"1"`, `"3.body.1"`).
    pub prefix: String,
}

/// ε added to the variance of a batch norm (PyTorch's default).
pub const BN_EPS: f64 = 1e-5;
/// Momentum of a batch norm's running statistics (PyTorch's default).
pub const BN_MOMENTUM: f32 = 0.1;

impl BatchNorm {
    pub(crate) fn new(prefix: String, c: usize, hw: usize) -> Self {
        let mut weight = Param::zeros(format!("{prefix}.weight"), vec![c]);
        weight.value.fill(1.0);
        BatchNorm {
            c,
            hw,
            weight,
            bias: Param::zeros(format!("{prefix}.bias"), vec![c]),
            running_mean: vec![0.0; c],
            running_var: vec![1.0; c],
            batches_tracked: 0,
            prefix,
        }
    }
    /// Resets the parameters and running statistics to PyTorch's initial values.
    pub fn reset(&mut self) {
        self.weight.value.fill(1.0);
        self.bias.value.fill(0.0);
        self.running_mean.fill(0.0);
        self.running_var.fill(1.0);
        self.batches_tracked = 0;
    }
}

/// One layer (one operation) of a network. Shape structs are stored for batch 1; the
/// network sets the batch at each call. A residual block is several: its body's layers,
/// its shortcut's, then an [`Layer::Add`]; which values each reads is the network's plan.
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    /// 2-D convolution, `y = W ⋆ x + b` (`petal_kernels::conv`).
    Conv2d {
        shape: Conv2dShape,
        weight: Param,
        bias: Option<Param>,
    },
    /// Max pooling; the gradient flows to each window's maximum (`petal_kernels::pool`).
    MaxPool2d { shape: Pool2dShape },
    /// Average pooling, divisor `k·k` (`petal_kernels::avgpool`).
    AvgPool2d { shape: Pool2dShape },
    /// Global average pooling, `[c, h, w]` to `[c, 1, 1]`.
    GlobalAvgPool { c: usize, hw: usize },
    /// Batch normalisation ([`BatchNorm`]).
    BatchNorm(BatchNorm),
    /// Dropout with probability `p / DROPOUT_SCALE` in training; the identity in inference.
    Dropout { p: u32 },
    /// `max(x, 0)`.
    Relu,
    /// `[c, h, w]` to `[c·h·w]` in C,H,W order: a view, no copy.
    Flatten,
    /// `y = W · x + b`, the seed's eq. (10) (`petal_kernels::dense`).
    Dense {
        shape: DenseShape,
        weight: Param,
        bias: Option<Param>,
    },
    /// The join of a residual block: `y = body(x) + shortcut(x)`.
    Add,
}

impl Layer {
    /// The spec of a layer built from one (`plan.rs` builds it from that spec and its
    /// input shape); `None` for an [`Layer::Add`], which the network's spec writes as the
    /// `res(...)` around it.
    pub fn spec(&self) -> Option<LayerSpec> {
        Some(match self {
            Layer::Conv2d { shape, bias, .. } => LayerSpec::Conv2d {
                out_c: shape.out_c,
                kh: shape.kh,
                kw: shape.kw,
                stride: shape.stride,
                pad: shape.pad,
                bias: bias.is_some(),
            },
            Layer::MaxPool2d { shape } => LayerSpec::MaxPool2d {
                k: shape.k,
                stride: shape.stride,
            },
            Layer::AvgPool2d { shape } => LayerSpec::AvgPool2d {
                k: shape.k,
                stride: shape.stride,
            },
            Layer::GlobalAvgPool { .. } => LayerSpec::GlobalAvgPool,
            Layer::BatchNorm(_) => LayerSpec::BatchNorm,
            Layer::Dropout { p } => LayerSpec::Dropout { p: *p },
            Layer::Relu => LayerSpec::Relu,
            Layer::Flatten => LayerSpec::Flatten,
            Layer::Dense { shape, bias, .. } => LayerSpec::Dense {
                out: shape.outputs,
                bias: bias.is_some(),
            },
            Layer::Add => return None,
        })
    }

    /// The layer's parameters (weight first, then bias).
    pub fn params(&self) -> impl Iterator<Item = &Param> {
        let (w, b) = match self {
            Layer::Conv2d { weight, bias, .. } | Layer::Dense { weight, bias, .. } => {
                (Some(weight), bias.as_ref())
            }
            Layer::BatchNorm(bn) => (Some(&bn.weight), Some(&bn.bias)),
            _ => (None, None),
        };
        w.into_iter().chain(b)
    }

    /// The layer's parameters, mutably (weight first, then bias).
    pub fn params_mut(&mut self) -> impl Iterator<Item = &mut Param> {
        let (w, b) = match self {
            Layer::Conv2d { weight, bias, .. } | Layer::Dense { weight, bias, .. } => {
                (Some(weight), bias.as_mut())
            }
            Layer::BatchNorm(bn) => (Some(&mut bn.weight), Some(&mut bn.bias)),
            _ => (None, None),
        };
        w.into_iter().chain(b)
    }

    /// Whether the layer has trainable parameters.
    pub fn has_params(&self) -> bool {
        matches!(
            self,
            Layer::Conv2d { .. } | Layer::Dense { .. } | Layer::BatchNorm(_)
        )
    }
}
