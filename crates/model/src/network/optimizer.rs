//! The optimizer's side of a [`Network`]: its steps and the state they keep in the
//! parameters (`crate::optim`).

use super::Network;
use crate::optim::{Optimizer, OptimizerKind};

impl Network {
    /// The optimizer whose state the parameters hold (SGD until another's step or
    /// [`Network::set_optimizer_state`]).
    pub fn optimizer_kind(&self) -> OptimizerKind {
        self.optimizer
    }
    /// Optimizer steps taken since [`Network::init`] (AdamW's `t` of the last step).
    pub fn optimizer_steps(&self) -> u64 {
        self.optimizer_steps
    }
    /// Sets which optimizer's state the parameters hold and its steps taken (for loading a
    /// run's optimizer state): every parameter gets that optimizer's state slots, zero
    /// where it has none of its own.
    pub fn set_optimizer_state(&mut self, kind: OptimizerKind, steps: u64) {
        self.optimizer = kind;
        self.optimizer_steps = steps;
        let slots = kind.layout().slots.len();
        self.params_mut().for_each(|p| p.ensure_state(slots));
    }
    /// One step of `opt` on every parameter from the gradients of the last
    /// [`Network::forward_backward`] (`crate::optim` gives the rules). The optimizer's
    /// state is allocated (zero) on its first step; counts the step (AdamW's `t`).
    pub fn optimizer_step(&mut self, opt: &Optimizer) {
        let rule = opt.rule();
        self.optimizer = rule.kind();
        self.optimizer_steps += 1;
        let (t, slots) = (self.optimizer_steps, rule.kind().layout().slots.len());
        for p in self.params_mut() {
            p.ensure_state(slots);
            rule.update(t, p);
        }
    }
}
