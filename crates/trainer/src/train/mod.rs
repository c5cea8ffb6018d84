//! The training loop and its run folder.
//!
//! A run folder holds `config.json` (what was asked for), `model.safetensors` (the
//! checkpoint, rewritten atomically after every epoch and on Ctrl-C), the optimizer state
//! `optimizer-step{N}.safetensors` of that checkpoint's step, `metrics.jsonl` (one line per
//! epoch), `curves.png`, and at the end `confusion.txt` / `confusion.json`.
//!
//! Crash safety: the optimizer file for step N is written first, then the model checkpoint
//! (the commit point, which names its step N and carries the run state), then older
//! optimizer files are removed. A crash at any moment leaves a model checkpoint and the
//! optimizer file of its own step. `metrics.jsonl` lines are appended before the
//! checkpoint; on resume, lines past the checkpoint's epoch are dropped.
//!
//! - `config.rs`: `config.json` and the request to train;
//! - `setup.rs`: from a checked request to a start: the request and a resumed run's state
//!   shared by the ranks (`share.rs`), the data loaded, the run folder opened or resumed
//!   (`resume.rs`);
//! - `run.rs`: the epochs and their steps ([`train`]);
//! - `folder.rs`: what the loop writes, and when;
//! - `evaluate.rs`: loss and confusion on a data set, split over the ranks;
//! - [`memory`]: what a run needs in memory, before work is spent, and what the machine has.

mod config;
mod evaluate;
mod folder;
pub mod memory;
mod resume;
mod run;
mod setup;
mod share;

pub use config::{create_run_dir, read_config, write_config, Checked, CheckpointEvery, Request, RunConfig};
pub use evaluate::{evaluate, evaluate_on};
pub use resume::resume;
pub use run::train;
pub use setup::{open_run, share_request};

use crate::dist::World;
use crate::report::{Confusion, EpochMetrics};
use petal_model::Network;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::sync::atomic::AtomicBool;

/// Where in training a checkpoint was taken (kept in the checkpoint's metadata).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Batches of the current (unfinished) epoch already trained; 0 at an epoch boundary.
    pub batch_in_epoch: usize,
    /// Sums over those batches, so the epoch's metrics come out as without interruption.
    pub loss_sum: f64,
    pub correct: usize,
    pub seen: usize,
    pub seconds: f64,
}

/// How a call to [`train`] ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// All epochs done, or stopped by `--patience` (`early`: why); the validation (or
    /// training) confusion matrix.
    Finished {
        confusion: Confusion,
        early: Option<String>,
    },
    /// Ctrl-C: stopped after a step, checkpoint written at this epoch and step.
    Interrupted { epoch: usize, step: u64 },
}

/// Receives progress while training (a terminal bar, plain lines, or nothing).
pub trait Progress {
    fn epoch_start(&mut self, _epoch: usize, _epochs: usize, _steps: usize) {}
    fn step(&mut self, _batch: usize, _loss: f64, _images_per_sec: f64) {}
    fn epoch_end(&mut self, _metrics: &EpochMetrics, _epochs: usize) {}
}

/// A progress sink that reports nothing.
pub struct Quiet;
impl Progress for Quiet {}

/// Names of the files in a run folder.
pub const MODEL_FILE: &str = "model.safetensors";
/// The checkpoint of the epoch with the best validation accuracy (the first of equals).
pub const BEST_FILE: &str = "best.safetensors";
pub const CONFIG_FILE: &str = "config.json";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const CURVES_FILE: &str = "curves.png";
const RUN_STATE_KEY: &str = "petal.run_state";

/// The optimizer-state file of step `step`.
pub fn optimizer_file(step: u64) -> String {
    format!("optimizer-step{step}.safetensors")
}

/// The order of the training samples in `epoch` (0-based): a shuffle seeded by the run
/// seed and the epoch, so a resumed run sees the same batches.
pub fn epoch_order(seed: u64, epoch: usize, n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ epoch as u64);
    idx.shuffle(&mut rng);
    idx
}

/// A network and where training stands, fresh or from a run folder's checkpoint.
pub struct Start {
    pub net: Network,
    /// Completed epochs.
    pub epoch: usize,
    /// Completed steps.
    pub step: u64,
    pub state: RunState,
    /// Metrics of the completed epochs.
    pub history: Vec<EpochMetrics>,
    /// (epoch, step) of the checkpoint in the run folder this start was read from; `None`
    /// for a fresh start.
    pub checkpoint: Option<(u64, u64)>,
}

impl Start {
    /// A fresh start: `net` as initialised, nothing trained yet.
    pub fn fresh(net: Network) -> Self {
        Start {
            net,
            epoch: 0,
            step: 0,
            state: RunState::default(),
            history: Vec::new(),
            checkpoint: None,
        }
    }
}

/// What steers a run besides its configuration: Ctrl-C, the progress report, and the
/// processes it runs on.
pub struct Control<'a> {
    /// Set by Ctrl-C: training stops after the current step, with a checkpoint.
    pub interrupt: &'a AtomicBool,
    pub progress: &'a mut dyn Progress,
    /// This process alone ([`World::single`]) or the ranks of a multi-process run, which
    /// share every batch and end every step with the same weights (`dist`).
    pub world: &'a World,
}
