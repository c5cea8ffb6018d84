//! SGD with momentum, plain or Nesterov (PyTorch's `SGD`; `petal_kernels::sgd`). Its state
//! is one velocity per parameter, stored under the parameter's own name
//! (`petal-sgd-state`); the rule needs no step count.

use super::{OptimizerKind, Rule, Slot, StateLayout};
use crate::param::Param;
use petal_kernels as k;
use petal_kernels::SgdConfig;

/// SGD's state layout.
pub(super) const STATE: StateLayout = StateLayout {
    name: "SGD",
    format: "petal-sgd-state",
    slots: &[Slot {
        suffix: "",
        nonneg: false,
    }],
    counts_steps: false,
};

/// PyTorch's `SGD(lr, momentum, weight_decay, nesterov)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    pub cfg: SgdConfig,
    /// Nesterov momentum (needs a momentum above 0 to differ from plain SGD).
    pub nesterov: bool,
}

impl Rule for Sgd {
    fn kind(&self) -> OptimizerKind {
        OptimizerKind::Sgd
    }
    fn set_lr(&mut self, lr: f32) {
        self.cfg.lr = lr;
    }
    fn update(&self, _t: u64, p: &mut Param) {
        let velocity = &mut p.state[0];
        if self.nesterov {
            k::sgd_nesterov_step(&self.cfg, &mut p.value, &p.grad, velocity);
        } else {
            // Without momentum the kernel keeps no velocity.
            let v: &mut [f32] = if self.cfg.momentum == 0.0 {
                &mut []
            } else {
                velocity
            };
            k::sgd_step(&self.cfg, &mut p.value, &p.grad, v);
        }
    }
}
