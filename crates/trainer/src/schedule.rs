//! Learning-rate schedules, per optimizer step, with PyTorch's semantics: the rate of step
//! `i` (0-based over the whole run, `total` steps) is what `optimizer.param_groups[0]["lr"]`
//! holds before the `i`-th `optimizer.step()` when the scheduler is stepped once after
//! each step. Each is a pure function of `(i, total, config)`, so a resumed run needs no
//! scheduler state. Computed in f64, used as f32.
//!
//! | schedule | PyTorch | rate at step `i` |
//! | --- | --- | --- |
//! | `constant` | none | `lr` |
//! | `step` | `MultiStepLR(milestones = [m · steps_per_epoch], gamma)` | `lr · gamma^(number of milestones m with m · steps_per_epoch ≤ i)` |
//! | `cosine` | `CosineAnnealingLR(T_max = total, eta_min = 0)`; with `W` warmup steps `SequentialLR([LinearLR(start_factor = 1e-3, total_iters = W), CosineAnnealingLR(T_max = total − W)], milestones = [W])` | `i < W`: `lr · (1e-3 + (1 − 1e-3) · i / W)`; then `lr · (1 + cos(π (i − W) / (total − W))) / 2` |
//! | `onecycle` | `OneCycleLR(max_lr = lr, total_steps = total)`, defaults: `pct_start` 0.3, cosine annealing, `div_factor` 25, `final_div_factor` 1e4, two phases | from `lr/25` up to `lr` until step `0.3·total − 1`, then down to `lr/25/1e4` at step `total − 1`, each phase `end + (start − end)(1 + cos(π·pct))/2` |
//!
//! `W = round(warmup_epochs · steps_per_epoch)` (half away from zero), at most `total`; the
//! warmup starts at `lr · 1e-3` (LinearLR's `start_factor`). Warmup applies to `cosine`
//! only (`onecycle` has its own). OneCycleLR's momentum cycling (between 0.85 and 0.95) is
//! left out: momentum (SGD) and β1 (AdamW) stay as configured.

use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// Which schedule (`--lr-schedule`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    #[default]
    Constant,
    Step,
    Cosine,
    OneCycle,
}

impl ScheduleKind {
    /// Every name, as `--lr-schedule` takes it.
    pub const NAMES: [&'static str; 4] = ["constant", "step", "cosine", "onecycle"];

    /// The kind named `name` (one of [`ScheduleKind::NAMES`]).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "constant" => ScheduleKind::Constant,
            "step" => ScheduleKind::Step,
            "cosine" => ScheduleKind::Cosine,
            "onecycle" => ScheduleKind::OneCycle,
            _ => return None,
        })
    }

    /// The name `--lr-schedule` takes.
    pub fn name(self) -> &'static str {
        match self {
            ScheduleKind::Constant => "constant",
            ScheduleKind::Step => "step",
            ScheduleKind::Cosine => "cosine",
            ScheduleKind::OneCycle => "onecycle",
        }
    }
}

/// LinearLR's `start_factor` of the cosine schedule's warmup.
pub const WARMUP_START_FACTOR: f64 = 1e-3;
/// OneCycleLR's defaults.
pub const ONECYCLE_PCT_START: f64 = 0.3;
pub const ONECYCLE_DIV_FACTOR: f64 = 25.0;
pub const ONECYCLE_FINAL_DIV_FACTOR: f64 = 1e4;

/// A schedule over a run of `epochs · steps_per_epoch` steps.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub kind: ScheduleKind,
    /// The base rate (`--lr`; onecycle's `max_lr`).
    pub lr: f64,
    pub steps_per_epoch: usize,
    pub total: usize,
    /// Cosine warmup, in steps.
    pub warmup: usize,
    /// Step schedule: epochs at which the rate is multiplied by `gamma`.
    pub milestones: Vec<usize>,
    pub gamma: f64,
}

impl Schedule {
    /// The schedule `kind` at base rate `lr` over `epochs` epochs of `steps_per_epoch` steps,
    /// with `warmup_epochs` of warmup (cosine), `milestones` (in epochs) and `gamma` (step).
    pub fn new(
        kind: ScheduleKind,
        lr: f64,
        epochs: usize,
        steps_per_epoch: usize,
        warmup_epochs: f64,
        milestones: &[usize],
        gamma: f64,
    ) -> Self {
        let total = epochs * steps_per_epoch;
        let warmup = ((warmup_epochs * steps_per_epoch as f64).round() as usize).min(total);
        Schedule {
            kind,
            lr,
            steps_per_epoch,
            total,
            warmup,
            milestones: milestones.to_vec(),
            gamma,
        }
    }

    /// The rate of step `i` (0-based over the run; module docs give each formula).
    pub fn lr_at(&self, i: usize) -> f64 {
        let lr = self.lr;
        match self.kind {
            ScheduleKind::Constant => lr,
            ScheduleKind::Step => {
                let passed = self
                    .milestones
                    .iter()
                    .filter(|&&m| m * self.steps_per_epoch <= i)
                    .count();
                lr * self.gamma.powi(passed as i32)
            }
            ScheduleKind::Cosine => {
                let w = self.warmup;
                if i < w {
                    lr * (WARMUP_START_FACTOR + (1.0 - WARMUP_START_FACTOR) * i as f64 / w as f64)
                } else {
                    let t_max = (self.total - w).max(1) as f64;
                    lr * (1.0 + (PI * (i - w) as f64 / t_max).cos()) / 2.0
                }
            }
            ScheduleKind::OneCycle => {
                let initial = lr / ONECYCLE_DIV_FACTOR;
                let min = initial / ONECYCLE_FINAL_DIV_FACTOR;
                let anneal =
                    |start: f64, end: f64, pct: f64| end + (start - end) / 2.0 * ((PI * pct).cos() + 1.0);
                let end1 = ONECYCLE_PCT_START * self.total as f64 - 1.0;
                let end2 = self.total as f64 - 1.0;
                let s = i as f64;
                if s <= end1 {
                    anneal(initial, lr, s / end1)
                } else {
                    anneal(lr, min, (s - end1) / (end2 - end1))
                }
            }
        }
    }
}
