//! Optimizers at the network level: which rule a step applies ([`Optimizer`]), with the
//! loss settings of a training step ([`TrainConfig`]).
//!
//! - SGD (`petal_kernels::sgd`): `d = g + wd·w; v = μ·v + d; w −= lr·v`, per parameter
//!   with its `velocity`.
//! - SGD with Nesterov momentum (`petal_kernels::sgd_nesterov_step`): the same velocity, then
//!   `w −= lr·(d + μ·v)`.
//! - AdamW (`petal_kernels::adamw`): `w ·= 1 − lr·wd; m = β1·m + (1−β1)·g;
//!   v = β2·v + (1−β2)·g²; w −= lr·m̂/(√v̂ + eps)` with `m̂ = m/(1−β1ᵗ)`, `v̂ = v/(1−β2ᵗ)`,
//!   per parameter with its `exp_avg` (m) and `exp_avg_sq` (v), allocated on AdamW's first
//!   step, and the network's step count `t`.

use crate::layer::Param;
use crate::network::Network;
use petal_kernels as k;
pub use petal_kernels::{AdamWConfig, SgdConfig};

/// The update rule of a training step, with its hyper-parameters (the learning rate is
/// the step's: a schedule sets it with [`Optimizer::with_lr`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// PyTorch's `SGD(lr, momentum, weight_decay, nesterov)`.
    Sgd { cfg: SgdConfig, nesterov: bool },
    /// PyTorch's `AdamW(lr, betas, eps, weight_decay)`, `amsgrad=False`.
    AdamW(AdamWConfig),
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

impl OptimizerKind {
    /// `"SGD"` or `"AdamW"`.
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "SGD",
            OptimizerKind::AdamW => "AdamW",
        }
    }
}

impl Optimizer {
    /// The learning rate.
    pub fn lr(&self) -> f32 {
        match self {
            Optimizer::Sgd { cfg, .. } => cfg.lr,
            Optimizer::AdamW(c) => c.lr,
        }
    }
    /// The same optimizer at learning rate `lr`.
    pub fn with_lr(mut self, lr: f32) -> Self {
        match &mut self {
            Optimizer::Sgd { cfg, .. } => cfg.lr = lr,
            Optimizer::AdamW(c) => c.lr = lr,
        }
        self
    }
    /// The kind of state it keeps.
    pub fn kind(&self) -> OptimizerKind {
        match self {
            Optimizer::Sgd { .. } => OptimizerKind::Sgd,
            Optimizer::AdamW(_) => OptimizerKind::AdamW,
        }
    }
}

impl From<SgdConfig> for Optimizer {
    fn from(cfg: SgdConfig) -> Self {
        Optimizer::Sgd { cfg, nesterov: false }
    }
}

/// What one training step does besides forward and backward: its optimizer, and the
/// label smoothing ε of its loss (PyTorch's `CrossEntropyLoss(label_smoothing = ε)`;
/// 0 is the one-hot loss).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainConfig {
    pub optimizer: Optimizer,
    pub label_smoothing: f32,
}

impl From<SgdConfig> for TrainConfig {
    fn from(cfg: SgdConfig) -> Self {
        TrainConfig {
            optimizer: cfg.into(),
            label_smoothing: 0.0,
        }
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

/// The optimizer side of a [`Network`]: its steps and the state they keep.
impl Network {
    /// The optimizer whose state the parameters hold (SGD until an AdamW step or
    /// [`Network::set_optimizer_state`]).
    pub fn optimizer_kind(&self) -> OptimizerKind {
        self.optimizer
    }
    /// Optimizer steps taken since [`Network::init`] (AdamW's `t` of the last step).
    pub fn optimizer_steps(&self) -> u64 {
        self.optimizer_steps
    }
    /// Sets which optimizer's state the parameters hold and its steps taken (for loading a
    /// run's optimizer state): AdamW allocates its moments (zero) where absent.
    pub fn set_optimizer_state(&mut self, kind: OptimizerKind, steps: u64) {
        self.optimizer = kind;
        self.optimizer_steps = steps;
        if kind == OptimizerKind::AdamW {
            self.params_mut().for_each(Param::ensure_moments);
        }
    }
    /// Sets the label smoothing ε (in `[0, 1]`) of the training loss: targets
    /// `(1 − ε)·onehot + ε/K` (`petal_kernels::softmax`). 0, the default, is the one-hot loss.
    pub fn set_label_smoothing(&mut self, eps: f32) {
        self.label_smoothing = eps;
    }
    /// One SGD step on every parameter from the gradients of the last
    /// [`Network::forward_backward`] (PyTorch's rule: see `petal_kernels::sgd`).
    pub fn sgd_step(&mut self, cfg: &k::SgdConfig) {
        for p in self.params_mut() {
            let v: &mut [f32] = if cfg.momentum == 0.0 {
                &mut []
            } else {
                &mut p.velocity
            };
            k::sgd_step(cfg, &mut p.value, &p.grad, v);
        }
    }

    /// One step of `opt` on every parameter from the gradients of the last
    /// [`Network::forward_backward`] (`crate::optim` gives the rules). Plain SGD is
    /// [`Network::sgd_step`]; AdamW allocates its moments on its first step. Counts the step
    /// (AdamW's `t`).
    pub fn optimizer_step(&mut self, opt: &Optimizer) {
        self.optimizer = opt.kind();
        self.optimizer_steps += 1;
        let t = self.optimizer_steps;
        match opt {
            Optimizer::Sgd { cfg, nesterov: false } => self.sgd_step(cfg),
            Optimizer::Sgd { cfg, nesterov: true } => {
                for p in self.params_mut() {
                    k::sgd_nesterov_step(cfg, &mut p.value, &p.grad, &mut p.velocity);
                }
            }
            Optimizer::AdamW(cfg) => {
                for p in self.params_mut() {
                    p.ensure_moments();
                    k::adamw_step(cfg, t, &mut p.value, &p.grad, &mut p.exp_avg, &mut p.exp_avg_sq);
                }
            }
        }
    }
}
