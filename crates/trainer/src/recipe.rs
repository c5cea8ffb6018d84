//! The training recipe of a run: every hyper-parameter of its optimizer (learning rate,
//! momentum, weight decay, Nesterov, AdamW's betas and ε), its learning-rate schedule and
//! its label smoothing, in one struct built once per run. Part of `config.json`
//! ([`crate::train::RunConfig`] flattens it); every field added after the first runs has a
//! default, so the configuration of a run made before those options existed resumes as it
//! was trained (plain SGD, constant rate, no smoothing).

use crate::error::TrainerError;
use crate::schedule::{Schedule, ScheduleKind};
use petal_model::{AdamWConfig, Optimizer, OptimizerKind, Sgd, SgdConfig, TrainConfig};
use serde::{Deserialize, Serialize};

/// The optimizer of a run (`--optimizer`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerName {
    /// PyTorch's `SGD` (with `--nesterov`, Nesterov momentum).
    #[default]
    Sgd,
    /// PyTorch's `AdamW`.
    AdamW,
}

impl OptimizerName {
    /// Every name, as `--optimizer` takes it.
    pub const NAMES: [&'static str; 2] = ["sgd", "adamw"];

    /// The optimizer named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "sgd" => Some(OptimizerName::Sgd),
            "adamw" => Some(OptimizerName::AdamW),
            _ => None,
        }
    }

    /// The name `--optimizer` takes.
    pub fn name(self) -> &'static str {
        match self {
            OptimizerName::Sgd => "sgd",
            OptimizerName::AdamW => "adamw",
        }
    }

    /// The default `--lr`: 0.02 for SGD (Petal's), 1e-3 for AdamW (PyTorch's).
    pub fn default_lr(self) -> f32 {
        match self {
            OptimizerName::Sgd => 0.02,
            OptimizerName::AdamW => 1e-3,
        }
    }

    /// The default `--weight-decay`: 0 for SGD, 0.01 for AdamW (PyTorch's defaults).
    pub fn default_weight_decay(self) -> f32 {
        match self {
            OptimizerName::Sgd => 0.0,
            OptimizerName::AdamW => 0.01,
        }
    }
}

fn beta1() -> f32 {
    0.9
}
fn beta2() -> f32 {
    0.999
}
fn eps() -> f32 {
    1e-8
}
fn gamma() -> f64 {
    0.1
}

/// Optimizer, schedule and loss options of a run (flattened into `config.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// The base learning rate (the schedule's; onecycle's maximum).
    pub lr: f32,
    /// SGD's momentum.
    pub momentum: f32,
    /// Weight decay: L2 added to the gradient (SGD), decoupled (AdamW).
    pub weight_decay: f32,
    #[serde(default)]
    pub optimizer: OptimizerName,
    /// Nesterov momentum (SGD only; needs momentum > 0).
    #[serde(default)]
    pub nesterov: bool,
    /// AdamW's β1, β2 (in `[0, 1)`) and ε.
    #[serde(default = "beta1")]
    pub beta1: f32,
    #[serde(default = "beta2")]
    pub beta2: f32,
    #[serde(default = "eps")]
    pub eps: f32,
    #[serde(default)]
    pub lr_schedule: ScheduleKind,
    /// Warmup of the cosine schedule, in epochs (fractions allowed).
    #[serde(default)]
    pub warmup_epochs: f64,
    /// Epochs at which the step schedule multiplies the rate by `lr_gamma`.
    #[serde(default)]
    pub lr_milestones: Vec<usize>,
    #[serde(default = "gamma")]
    pub lr_gamma: f64,
    /// Label smoothing ε of the training loss, in `[0, 1]`.
    #[serde(default)]
    pub label_smoothing: f32,
}

impl Default for Recipe {
    /// Plain SGD at Petal's default rate 0.02 with momentum 0.9, constant, no smoothing.
    fn default() -> Self {
        let optimizer = OptimizerName::Sgd;
        Recipe {
            lr: optimizer.default_lr(),
            momentum: 0.9,
            weight_decay: optimizer.default_weight_decay(),
            optimizer,
            nesterov: false,
            beta1: beta1(),
            beta2: beta2(),
            eps: eps(),
            lr_schedule: ScheduleKind::Constant,
            warmup_epochs: 0.0,
            lr_milestones: Vec::new(),
            lr_gamma: gamma(),
            label_smoothing: 0.0,
        }
    }
}

fn usage(msg: String) -> TrainerError {
    TrainerError::Usage(msg)
}

impl Recipe {
    /// The optimizer's state kind (what its optimizer files hold).
    pub fn optimizer_kind(&self) -> OptimizerKind {
        self.train_config().optimizer.rule().kind()
    }

    /// The training steps' configuration at the base rate (a schedule sets each step's:
    /// `TrainConfig::set_lr`).
    pub fn train_config(&self) -> TrainConfig {
        let (lr, weight_decay) = (self.lr, self.weight_decay);
        let optimizer = match self.optimizer {
            OptimizerName::Sgd => Optimizer::Sgd(Sgd {
                cfg: SgdConfig {
                    lr,
                    momentum: self.momentum,
                    weight_decay,
                },
                nesterov: self.nesterov,
            }),
            OptimizerName::AdamW => Optimizer::AdamW(AdamWConfig {
                lr,
                beta1: self.beta1,
                beta2: self.beta2,
                eps: self.eps,
                weight_decay,
            }),
        };
        TrainConfig {
            optimizer,
            label_smoothing: self.label_smoothing,
        }
    }

    /// The schedule over `epochs` epochs of `steps_per_epoch` steps.
    pub fn schedule(&self, epochs: usize, steps_per_epoch: usize) -> Schedule {
        Schedule::new(
            self.lr_schedule,
            self.lr as f64,
            epochs,
            steps_per_epoch,
            self.warmup_epochs,
            &self.lr_milestones,
            self.lr_gamma,
        )
    }

    /// Refuses values PyTorch would refuse or that make no run, in this order: a negative
    /// or non-finite rate, momentum or weight decay, betas outside `[0, 1)`, a negative or
    /// non-finite ε, γ, warmup or smoothing, smoothing over 1, Nesterov without SGD
    /// momentum, a warmup longer than the run's `epochs` or outside the cosine schedule,
    /// milestones that are not increasing epochs ≥ 1 or without the step schedule.
    pub fn check(&self, epochs: usize) -> Result<(), TrainerError> {
        let momentum = self.momentum;
        for (name, v) in [
            ("--lr", self.lr),
            ("--momentum", momentum),
            ("--weight-decay", self.weight_decay),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(usage(format!("{name} {v} must be a finite number, at least 0")));
            }
        }
        for (name, v) in [("--beta1", self.beta1), ("--beta2", self.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return Err(usage(format!("{name} {v} is not in [0, 1)")));
            }
        }
        for (name, v) in [
            ("--eps", self.eps as f64),
            ("--lr-gamma", self.lr_gamma),
            ("--warmup-epochs", self.warmup_epochs),
            ("--label-smoothing", self.label_smoothing as f64),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(usage(format!("{name} {v} must be a finite number, at least 0")));
            }
        }
        if self.label_smoothing > 1.0 {
            return Err(usage(format!(
                "--label-smoothing {} is not in [0, 1]",
                self.label_smoothing
            )));
        }
        if self.nesterov && (self.optimizer != OptimizerName::Sgd || momentum <= 0.0) {
            return Err(usage(format!(
                "--nesterov needs --optimizer sgd and a --momentum above 0 (got {} with momentum {momentum})",
                self.optimizer.name()
            )));
        }
        if self.warmup_epochs > 0.0 && self.lr_schedule != ScheduleKind::Cosine {
            return Err(usage(format!(
                "--warmup-epochs applies to --lr-schedule cosine, not {}",
                self.lr_schedule.name()
            )));
        }
        if self.warmup_epochs > epochs as f64 {
            return Err(usage(format!(
                "--warmup-epochs {} is longer than the run's {epochs} epochs",
                self.warmup_epochs
            )));
        }
        let step = self.lr_schedule == ScheduleKind::Step;
        if step && self.lr_milestones.is_empty() {
            return Err(usage(
                "--lr-schedule step needs --lr-milestones (epochs, e.g. 30,60)".into(),
            ));
        }
        if !step && !self.lr_milestones.is_empty() {
            return Err(usage(format!(
                "--lr-milestones applies to --lr-schedule step, not {}",
                self.lr_schedule.name()
            )));
        }
        if self.lr_milestones.first() == Some(&0) || self.lr_milestones.windows(2).any(|w| w[0] >= w[1]) {
            return Err(usage(format!(
                "--lr-milestones {:?} must be increasing epochs, at least 1",
                self.lr_milestones
            )));
        }
        Ok(())
    }

    /// One line for the console: `sgd (nesterov) lr 0.02 momentum 0.9, schedule cosine
    /// (warmup 1 epochs)`, with weight decay and label smoothing when set.
    pub fn describe(&self) -> String {
        let (lr, momentum, weight_decay) = (self.lr, self.momentum, self.weight_decay);
        let mut s = match self.optimizer {
            OptimizerName::Sgd => format!(
                "optimizer sgd{} lr {lr} momentum {momentum}",
                if self.nesterov { " (nesterov)" } else { "" }
            ),
            OptimizerName::AdamW => format!(
                "optimizer adamw lr {lr} betas ({}, {}) eps {}",
                self.beta1, self.beta2, self.eps
            ),
        };
        if weight_decay != 0.0 {
            s += &format!(" weight decay {weight_decay}");
        }
        s += &format!(", schedule {}", self.lr_schedule.name());
        match self.lr_schedule {
            ScheduleKind::Cosine if self.warmup_epochs > 0.0 => {
                s += &format!(" (warmup {} epochs)", self.warmup_epochs)
            }
            ScheduleKind::Step => {
                s += &format!(" (milestones {:?}, gamma {})", self.lr_milestones, self.lr_gamma)
            }
            _ => {}
        }
        if self.label_smoothing > 0.0 {
            s += &format!(", label smoothing {}", self.label_smoothing);
        }
        s
    }
}
