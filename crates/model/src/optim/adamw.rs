//! AdamW (PyTorch's `AdamW`, amsgrad off; `petal_kernels::adamw`). Its state is the first
//! and second moments per parameter, stored as `{name}.exp_avg` and `{name}.exp_avg_sq`
//! (`petal-adamw-state`), and the step count `t` (the file's `step`).

use super::{OptimizerKind, Rule, Slot, StateLayout};
use crate::param::Param;
use petal_kernels as k;
use petal_kernels::AdamWConfig;

/// AdamW's state layout: m (PyTorch's `exp_avg`), then v (`exp_avg_sq`, never negative).
pub(super) const STATE: StateLayout = StateLayout {
    name: "AdamW",
    format: "petal-adamw-state",
    slots: &[
        Slot {
            suffix: ".exp_avg",
            nonneg: false,
        },
        Slot {
            suffix: ".exp_avg_sq",
            nonneg: true,
        },
    ],
    counts_steps: true,
};

impl Rule for AdamWConfig {
    fn kind(&self) -> OptimizerKind {
        OptimizerKind::AdamW
    }
    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }
    fn update(&self, t: u64, p: &mut Param) {
        let [m, v] = &mut p.state[..] else {
            unreachable!("AdamW's state has two slots")
        };
        k::adamw_step(self, t, &mut p.value, &p.grad, m, v);
    }
}
