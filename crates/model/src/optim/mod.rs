//! Optimizers: the update rule a training step applies to every parameter ([`Rule`]), one
//! file per optimizer, and the state each keeps in the parameters (`Param::state`, laid
//! out by [`OptimizerKind::layout`]), which the optimizer-state file
//! (`checkpoint::optimizer`), a resumed run and its checks walk without knowing the
//! optimizer.
//!
//! - SGD (`sgd.rs`, PyTorch's `SGD`): `d = g + wd·w; v = μ·v + d; w −= lr·v`; with
//!   Nesterov momentum the same velocity, then `w −= lr·(d + μ·v)`. State: the velocity.
//! - AdamW (`adamw.rs`, PyTorch's `AdamW`, amsgrad off): `w ·= 1 − lr·wd;
//!   m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²; w −= lr·m̂/(√v̂ + eps)` with
//!   `m̂ = m/(1−β1ᵗ)`, `v̂ = v/(1−β2ᵗ)`. State: the moments m and v, and the network's
//!   step count `t`.

mod adamw;
mod sgd;

pub use petal_kernels::{AdamWConfig, SgdConfig};
pub use sgd::Sgd;

use crate::param::Param;

/// What one optimizer does with each parameter's gradient.
pub trait Rule {
    /// The state it keeps.
    fn kind(&self) -> OptimizerKind;
    /// Sets its learning rate (a schedule's rate for the coming step).
    fn set_lr(&mut self, lr: f32);
    /// One step of `p`, whose `state` has the slots of [`Rule::kind`]'s layout; `t`
    /// counts the optimizer's steps, this one included.
    fn update(&self, t: u64, p: &mut Param);
}

/// The update rule of a training step, with its hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// PyTorch's `SGD(lr, momentum, weight_decay, nesterov)`.
    Sgd(Sgd),
    /// PyTorch's `AdamW(lr, betas, eps, weight_decay)`, `amsgrad=False`.
    AdamW(AdamWConfig),
}

impl Optimizer {
    /// The rule.
    pub fn rule(&self) -> &dyn Rule {
        match self {
            Optimizer::Sgd(o) => o,
            Optimizer::AdamW(o) => o,
        }
    }
    /// The rule, mutably.
    pub fn rule_mut(&mut self) -> &mut dyn Rule {
        match self {
            Optimizer::Sgd(o) => o,
            Optimizer::AdamW(o) => o,
        }
    }
}

impl From<SgdConfig> for Optimizer {
    /// Plain SGD (no Nesterov momentum).
    fn from(cfg: SgdConfig) -> Self {
        Optimizer::Sgd(Sgd { cfg, nesterov: false })
    }
}

/// Which optimizer's state a network holds (what its optimizer-state file stores).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OptimizerKind {
    /// Velocities (plain or Nesterov SGD).
    #[default]
    Sgd,
    /// First and second moments and the step count.
    AdamW,
}

/// How an optimizer's state is laid out in the parameters and stored in its file.
#[derive(Debug)]
pub struct StateLayout {
    /// The kind's name in messages (`"SGD"`).
    pub name: &'static str,
    /// The file's `format` metadata.
    pub format: &'static str,
    /// The slots of `Param::state`, in order.
    pub slots: &'static [Slot],
    /// Whether the file records the step count (metadata `step`): the rule needs it.
    pub counts_steps: bool,
}

/// One vector of an optimizer's state per parameter.
#[derive(Debug)]
pub struct Slot {
    /// Its tensor in the file is named `{parameter}{suffix}`.
    pub suffix: &'static str,
    /// Its values are never negative (a second moment): a file holding one is corrupt.
    pub nonneg: bool,
}

impl OptimizerKind {
    /// Every kind.
    pub const ALL: [OptimizerKind; 2] = [OptimizerKind::Sgd, OptimizerKind::AdamW];

    /// Its state's layout.
    pub fn layout(self) -> &'static StateLayout {
        match self {
            OptimizerKind::Sgd => &sgd::STATE,
            OptimizerKind::AdamW => &adamw::STATE,
        }
    }

    /// `"SGD"` or `"AdamW"`.
    pub fn name(self) -> &'static str {
        self.layout().name
    }
}

/// What one training step does besides forward and backward: its optimizer, and the
/// label smoothing ε of its loss (PyTorch's `CrossEntropyLoss(label_smoothing = ε)`;
/// 0 is the one-hot loss). Built once per run; a schedule sets the rate of each step
/// ([`TrainConfig::set_lr`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainConfig {
    pub optimizer: Optimizer,
    pub label_smoothing: f32,
}

impl TrainConfig {
    /// Sets the optimizer's learning rate for the coming steps.
    pub fn set_lr(&mut self, lr: f32) {
        self.optimizer.rule_mut().set_lr(lr);
    }
}

impl From<SgdConfig> for TrainConfig {
    fn from(cfg: SgdConfig) -> Self {
        Optimizer::from(cfg).into()
    }
}

impl From<Optimizer> for TrainConfig {
    fn from(optimizer: Optimizer) -> Self {
        TrainConfig {
            optimizer,
            label_smoothing: 0.0,
        }
    }
}
