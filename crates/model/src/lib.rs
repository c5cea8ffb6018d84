//! # petal-model
//!
//! Layers composed into networks on top of `petal-kernels`:
//!
//! - [`Layer`]s ([`layers`], one module per kind): `Conv2d`, `MaxPool2d`, `AvgPool2d`,
//!   `GlobalAvgPool`, `BatchNorm` ([`BatchNorm`]: PyTorch's `BatchNorm2d`, batch statistics
//!   in training, running ones in inference), `Dropout`, `Relu`, `Flatten`, `Dense`, and
//!   `Add`, the join of a residual block (whose body and shortcut are layers of their own,
//!   in execution order: [`Network::layer_inputs`]). The loss is the fused softmax
//!   cross-entropy applied to the last layer's output (the logits), so the seed's
//!   "Softmax_layer" is a `Dense` layer followed by that loss.
//! - [`Network`]: built from code ([`Network::from_layers`]), from the presets
//!   ([`Network::seednet`], [`Network::flowernet`]; [`Network::for_classes`] sizes any
//!   preset, `resnet8` and `resnet20` included, to any class count) or from a one-line spec
//!   ([`Network::from_spec`], grammar in [`spec`]), with every shape inferred from the input,
//!   typed errors naming the layer that does not fit, and sizes past the [`limits`] refused
//!   before they are allocated. Training ([`Network::train_step`] =
//!   [`Network::forward_backward`] + [`Network::optimizer_step`];
//!   [`Network::train_step_with`] takes any [`Optimizer`] (SGD, Nesterov, AdamW: [`optim`],
//!   whose state the parameters hold) and label smoothing) and inference
//!   ([`Network::predict`]) reuse buffers sized once per batch size: a steady-state step
//!   allocates nothing but `matrixmultiply`'s packing buffers.
//! - [`shard`]: data-parallel steps ([`Network::train_step_shard`]): a process's
//!   [`Shard`] of a global batch and a [`Collective`] to reach the others; the gradient
//!   is summed over a fixed tree over 4-image chunks, so any split gives one process's
//!   weights bit for bit.
//! - [`checkpoint`]: safetensors files PyTorch's `nn.Sequential` loads, with metadata, and
//!   the optimizer's state beside them; atomic writes.
//! - [`gradcheck()`]: analytic gradients against central finite differences.
//!
//! ```
//! use petal_model::{Network, InputShape};
//! use petal_kernels::SgdConfig;
//!
//! let mut net = Network::from_spec("conv3x3:4/p1,relu,maxpool2,dense:3", InputShape { c: 1, h: 8, w: 8 }, 42)?;
//! assert_eq!(net.spec(), "conv3x3:4/p1,relu,maxpool2,flatten,dense:3");
//! let x = vec![0.5f32; 2 * 64]; // two 1x8x8 images
//! let stats = net.train_step(&x, &[0, 2], &SgdConfig { lr: 0.1, momentum: 0.9, weight_decay: 0.0 })?;
//! assert_eq!(stats.batch, 2);
//! let probs = net.predict(&x)?; // [2, 3]
//! assert!((probs[..3].iter().sum::<f32>() - 1.0).abs() < 1e-5);
//! # Ok::<(), petal_model::ModelError>(())
//! ```

// The modules in dependency order, each using only those before it (in code that is not a
// test): error, atomic, shape, param, layers, spec, limits, plan, buffers, shard, step,
// optim, network, checkpoint, gradcheck (README, "Where things are").
pub mod atomic;
mod buffers;
pub mod checkpoint;
pub mod error;
pub mod gradcheck;
pub mod layers;
pub mod limits;
pub mod network;
pub mod optim;
pub mod param;
mod plan;
pub mod shape;
pub mod shard;
pub mod spec;
mod step;

pub use checkpoint::{
    load_checkpoint, load_optimizer_state, save_checkpoint, save_optimizer_state, CheckpointMeta,
    Normalization,
};
pub use error::{ModelError, SpecError};
pub use gradcheck::{gradcheck, GradCheckOptions, GradCheckReport, TensorCheck};
pub use layers::{BatchNorm, Buffer, BufferMut, Layer, LayerSpec};
pub use network::{Memory, Network, StepStats};
pub use optim::{AdamWConfig, Optimizer, OptimizerKind, Rule, Sgd, SgdConfig, TrainConfig};
pub use param::Param;
pub use shape::{InputShape, Shape};
pub use shard::{Collective, Shard};
pub use spec::{format_spec, parse_spec};
