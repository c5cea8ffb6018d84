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

mod evaluate;
mod resume;

pub use evaluate::{evaluate, evaluate_on};
pub use resume::resume;

use crate::augment::Augment;
use crate::data::Dataset;
use crate::dist::World;
use crate::error::TrainerError;
use crate::recipe::Recipe;
use crate::report::{plot_curves, Confusion, EpochMetrics};
use petal_model::{save_checkpoint, save_optimizer_state, CheckpointMeta, Network, Shard};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// What a run was asked to do; saved as `config.json` so `--resume` needs only the folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Preset name or spec, as given.
    pub arch: String,
    /// The network `arch` resolved to for the data's classes (canonical spec: a preset's
    /// last layer sized to the class count), which `--resume` rebuilds. Absent in the
    /// configurations of runs made before presets followed the data (they had 5 classes).
    #[serde(default)]
    pub spec: Option<String>,
    /// `[c, h, w]`.
    pub input: [usize; 3],
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub seed: u64,
    /// Image folder, or `None` for the synthetic flowers.
    #[serde(with = "os_path", default)]
    pub data: Option<PathBuf>,
    /// Separate validation folder.
    #[serde(with = "os_path", default)]
    pub val: Option<PathBuf>,
    pub val_split: f64,
    /// Synthetic flowers per class (training + validation) when `data` is `None`.
    pub synth_per_class: usize,
    /// Stop when the validation accuracy has not improved for this many epochs.
    #[serde(default)]
    pub patience: Option<usize>,
    /// Normalise inputs with the training set's per-channel mean and deviation.
    #[serde(default)]
    pub normalize: bool,
    /// The synthetic set's difficulty when `data` is `None`.
    #[serde(default)]
    pub synth_difficulty: crate::synth::Difficulty,
    /// Optimizer, schedule and label smoothing (flattened: `optimizer`, `nesterov`,
    /// `beta1`, `beta2`, `eps`, `lr_schedule`, `warmup_epochs`, `lr_milestones`,
    /// `lr_gamma`, `label_smoothing`; each defaults to the plain recipe when absent).
    #[serde(flatten)]
    pub recipe: Recipe,
    /// Augmentation of the training images (`--augment`); absent in configurations from
    /// before it existed, which resume without.
    #[serde(default)]
    pub augment: Augment,
}

/// Paths in `config.json`: a JSON string when the path is UTF-8, else (Unix) the array of
/// its bytes, so a folder whose name is not UTF-8 can still be resumed.
mod os_path {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::path::PathBuf;

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Bytes(Vec<u8>),
    }

    pub fn serialize<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        let repr = p.as_ref().map(|p| match p.to_str() {
            Some(t) => Repr::Text(t.to_string()),
            None => Repr::Bytes(bytes(p)),
        });
        repr.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        Ok(match Option::<Repr>::deserialize(d)? {
            None => None,
            Some(Repr::Text(t)) => Some(PathBuf::from(t)),
            Some(Repr::Bytes(b)) => Some(from_bytes(b).map_err(serde::de::Error::custom)?),
        })
    }

    #[cfg(unix)]
    fn bytes(p: &std::path::Path) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        p.as_os_str().as_bytes().to_vec()
    }
    #[cfg(not(unix))]
    fn bytes(p: &std::path::Path) -> Vec<u8> {
        p.to_string_lossy().into_owned().into_bytes()
    }
    #[cfg(unix)]
    fn from_bytes(b: Vec<u8>) -> Result<PathBuf, String> {
        use std::os::unix::ffi::OsStringExt;
        Ok(PathBuf::from(std::ffi::OsString::from_vec(b)))
    }
    #[cfg(not(unix))]
    fn from_bytes(b: Vec<u8>) -> Result<PathBuf, String> {
        String::from_utf8(b)
            .map(PathBuf::from)
            .map_err(|_| "a path of bytes that are not UTF-8".to_string())
    }
}

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

/// Creates a fresh run folder, refusing one that already holds files.
pub fn create_run_dir(out: &Path) -> Result<(), TrainerError> {
    if out.exists() {
        let mut entries = std::fs::read_dir(out).map_err(|e| TrainerError::io(out, e))?;
        if entries.next().is_some() {
            return Err(TrainerError::RunExists(out.to_path_buf()));
        }
    }
    std::fs::create_dir_all(out).map_err(|e| TrainerError::io(out, e))
}

/// Writes `config.json` atomically.
pub fn write_config(out: &Path, cfg: &RunConfig) -> Result<(), TrainerError> {
    let path = out.join(CONFIG_FILE);
    let text = serde_json::to_string_pretty(cfg).expect("config serializes");
    petal_model::atomic::write_atomic(&path, text.as_bytes()).map_err(|e| TrainerError::io(&path, e))
}

/// Reads `config.json` of a run folder.
pub fn read_config(dir: &Path) -> Result<RunConfig, TrainerError> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainerError::io(&path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| TrainerError::data(&path, format!("not a run configuration: {e}")))
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

/// Refuses weights or velocities that are no longer finite (a step whose loss was still
/// finite can overflow them), before they are checkpointed: the checkpoint already on
/// disk stays the last good one. `epoch` is 1-based.
fn check_finite(
    net: &Network,
    epoch: usize,
    step: u64,
    dir: &Path,
    last: Option<(u64, u64)>,
) -> Result<(), TrainerError> {
    match net.params().find(|p| {
        let state = p.velocity.iter().chain(&p.exp_avg).chain(&p.exp_avg_sq);
        !p.value.iter().chain(state).all(|v| v.is_finite())
    }) {
        Some(p) => Err(TrainerError::Diverged {
            epoch,
            step,
            what: format!("tensor `{}` is no longer finite", p.name),
            dir: dir.into(),
            last,
        }),
        None => Ok(()),
    }
}

/// Writes the optimizer state and the checkpoint of (`epoch` completed epochs, `step`),
/// and records it in `last`.
fn save(
    dir: &Path,
    net: &Network,
    train: &Dataset,
    epoch: usize,
    step: u64,
    state: &RunState,
    last: &mut Option<(u64, u64)>,
) -> Result<(), TrainerError> {
    let opt = dir.join(optimizer_file(step));
    save_optimizer_state(&opt, net)?;
    let meta = checkpoint_meta(train, epoch, step, Some(state));
    save_checkpoint(&dir.join(MODEL_FILE), net, &meta)?;
    *last = Some((epoch as u64, step));
    // The checkpoint now names `step`: optimizer files of other steps are stale.
    let keep = optimizer_file(step);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("optimizer-step") && name.ends_with(".safetensors") && name != keep {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

/// A run's checkpoint metadata at `epoch` and `step` (with the run state of an epoch in
/// progress for the last checkpoint; none for the best one).
fn checkpoint_meta(train: &Dataset, epoch: usize, step: u64, state: Option<&RunState>) -> CheckpointMeta {
    CheckpointMeta {
        classes: train.classes.clone(),
        normalization: train.normalization(),
        epoch: epoch as u64,
        step,
        extra: state
            .map(|s| {
                (
                    RUN_STATE_KEY.to_string(),
                    serde_json::to_string(s).expect("state"),
                )
            })
            .into_iter()
            .collect(),
    }
}

/// The epoch (1-based) with the best validation accuracy so far and that accuracy; the
/// first of equals.
fn best_accuracy(history: &[EpochMetrics]) -> Option<(usize, f64)> {
    history
        .iter()
        .filter_map(|m| m.val_accuracy.map(|a| (m.epoch, a)))
        .fold(None, |best, (e, a)| match best {
            Some((_, b)) if b >= a => best,
            _ => Some((e, a)),
        })
}

/// Why training stops under `--patience`: the validation accuracy has not improved for
/// `patience` epochs (counted from the best epoch to the last one).
fn patience_stop(patience: Option<usize>, history: &[EpochMetrics]) -> Option<String> {
    let p = patience?;
    let (best, acc) = best_accuracy(history)?;
    let last = history.last()?.epoch;
    (last - best >= p).then(|| {
        format!(
            "stopped after epoch {last}: the validation accuracy has not improved for {p} epochs (best {:.1} % at epoch {best}, in {BEST_FILE})",
            acc * 100.0
        )
    })
}

fn append_metrics(dir: &Path, m: &EpochMetrics) -> Result<(), TrainerError> {
    let path = dir.join(METRICS_FILE);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| TrainerError::io(&path, e))?;
    let line = serde_json::to_string(m).expect("metrics serialize") + "\n";
    f.write_all(line.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| TrainerError::io(&path, e))
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

/// Trains `start.net` on `train` for the configured epochs, validating on `val` (may be
/// empty) after each, writing the run folder `dir` as the module docs describe. Stops
/// after the current step when `control.interrupt` is set (on any rank), with a checkpoint.
pub fn train(
    cfg: &RunConfig,
    start: Start,
    train: &Dataset,
    val: &Dataset,
    dir: &Path,
    control: Control<'_>,
) -> Result<(Network, Vec<EpochMetrics>, Outcome), TrainerError> {
    let Control {
        interrupt,
        progress,
        world,
    } = control;
    let Start {
        mut net,
        epoch: first_epoch,
        mut step,
        mut state,
        mut history,
        checkpoint: mut last,
    } = start;
    let per = train.shape.len();
    // A batch larger than the training set is the whole set: the same batches, without
    // buffers sized for images that do not exist.
    let b = cfg.batch_size.clamp(1, train.len().max(1));
    let steps = train.len().div_ceil(b);
    // The rate of each step: a pure function of its place in the run.
    let schedule = cfg.recipe.schedule(cfg.lr, cfg.epochs, steps);
    let mut lr = schedule.lr_at(first_epoch * steps + state.batch_in_epoch.saturating_sub(1));
    if world.ranks() > 1 {
        // MPI counts a gather's values in an int: refused before any work.
        let last = train.len() % b;
        let most = [b, last].map(|n| {
            if n > 0 {
                net.shard_exchange_len(n, world.ranks())
            } else {
                0
            }
        });
        if let Some(&v) = most.iter().find(|&&v| v > i32::MAX as usize) {
            return Err(TrainerError::Usage(format!(
                "{} ranks would gather {v} gradient values per step, more than MPI's limit of {}: use fewer ranks or a smaller network",
                world.ranks(),
                i32::MAX
            )));
        }
    }
    let mut x = vec![0.0f32; b * per];
    let mut y = vec![0usize; b];
    let title = format!("{} on {} images", net.spec(), train.len());
    let mut early = None;
    for epoch in first_epoch..cfg.epochs {
        // A resumed run that had stopped early stops again at once.
        if let Some(why) = patience_stop(cfg.patience, &history) {
            early = Some(why);
            break;
        }
        let order = epoch_order(cfg.seed, epoch, train.len());
        progress.epoch_start(epoch + 1, cfg.epochs, steps);
        for (bi, batch) in order.chunks(b).enumerate().skip(state.batch_in_epoch) {
            let t0 = Instant::now();
            let n = batch.len();
            if n < net.min_train_batch() {
                // A last batch of one image where a batch norm sees one value per channel
                // (PyTorch refuses it too): skipped, as `drop_last` would.
                continue;
            }
            // This rank's samples of the batch (all of it in one process).
            let shard = Shard::split(n, world.ranks(), world.rank());
            let idx = &batch[shard.samples()];
            for (k, &i) in idx.iter().enumerate() {
                let slot = &mut x[k * per..(k + 1) * per];
                if cfg.augment.is_on() {
                    // Drawn from (seed, epoch, image index) alone: see `augment`.
                    let draw = cfg.augment.draw(cfg.seed, epoch, i);
                    cfg.augment.apply(draw, train.image(i), slot, cfg.input);
                } else {
                    slot.copy_from_slice(train.image(i));
                }
                y[k] = train.labels[i];
            }
            let m = idx.len();
            lr = schedule.lr_at(epoch * steps + bi);
            let step_cfg = cfg.recipe.train_config(lr as f32, cfg.momentum, cfg.weight_decay);
            let (x, y) = (&x[..m * per], &y[..m]);
            // The loss and correct count are the whole batch's either way.
            let s = match world.collective() {
                Some(comm) => net.train_step_shard(x, y, &step_cfg, shard, comm)?,
                None => net.train_step_with(x, y, &step_cfg)?,
            };
            if !s.loss.is_finite() {
                return Err(TrainerError::Diverged {
                    epoch: epoch + 1,
                    step: step + 1,
                    what: format!("the loss is {}", s.loss),
                    dir: dir.into(),
                    last,
                });
            }
            step += 1;
            state.batch_in_epoch = bi + 1;
            state.loss_sum += s.loss as f64 * n as f64;
            state.correct += s.correct;
            state.seen += n;
            state.seconds += t0.elapsed().as_secs_f64();
            progress.step(
                bi + 1,
                state.loss_sum / state.seen as f64,
                state.seen as f64 / state.seconds.max(1e-9),
            );
            // Every rank stops after the same step when any was interrupted.
            if world.any(interrupt.load(Ordering::SeqCst)) && state.batch_in_epoch < steps {
                check_finite(&net, epoch + 1, step, dir, last)?;
                let saved = root(world, || save(dir, &net, train, epoch, step, &state, &mut last));
                world.agree(saved)?;
                return Ok((net, history, Outcome::Interrupted { epoch, step }));
            }
        }
        check_finite(&net, epoch + 1, step, dir, last)?;
        let (val_loss, val_acc) = if val.is_empty() {
            (None, None)
        } else {
            let (l, c) = evaluate_on(&mut net, val, cfg.batch_size, world)?;
            (Some(l), Some(c.accuracy()))
        };
        let m = EpochMetrics {
            epoch: epoch + 1,
            train_loss: state.loss_sum / state.seen.max(1) as f64,
            train_accuracy: state.correct as f64 / state.seen.max(1) as f64,
            val_loss,
            val_accuracy: val_acc,
            images_per_sec: state.seen as f64 / state.seconds.max(1e-9),
            seconds: state.seconds,
            step,
            lr: Some(lr),
        };
        // Every rank must hold the same weights now (they do unless the ranks run builds
        // whose kernels round differently): refused before rank 0 checkpoints them.
        world.check_same(
            "weights",
            [crate::dist::weights_fingerprint(&net), step, 0],
            |v| format!("fingerprint {:016x} at step {}", v[0], v[1]),
            "every rank must run the same build of the trainer (the same SIMD level)",
        )?;
        state = RunState::default();
        let improved = match (val_acc, best_accuracy(&history)) {
            (Some(a), Some((_, b))) => a > b,
            (Some(_), None) => true,
            (None, _) => false,
        };
        history.push(m.clone());
        let written = root(world, || {
            append_metrics(dir, &m)?;
            save(dir, &net, train, epoch + 1, step, &state, &mut last)?;
            // After the run's own checkpoint: a failure here leaves the run resumable.
            if improved {
                let meta = checkpoint_meta(train, epoch + 1, step, None);
                save_checkpoint(&dir.join(BEST_FILE), &net, &meta)?;
            }
            plot_curves(&dir.join(CURVES_FILE), &history, &title)
        });
        world.agree(written)?;
        // The other ranks track the checkpoint rank 0 wrote.
        last = Some((epoch as u64 + 1, step));
        progress.epoch_end(&m, cfg.epochs);
        if let Some(why) = patience_stop(cfg.patience, &history).filter(|_| epoch + 1 < cfg.epochs) {
            early = Some(why);
            break;
        }
        if world.any(interrupt.load(Ordering::SeqCst)) && epoch + 1 < cfg.epochs {
            return Ok((
                net,
                history,
                Outcome::Interrupted {
                    epoch: epoch + 1,
                    step,
                },
            ));
        }
    }
    let eval_set = if val.is_empty() { train } else { val };
    let (_, confusion) = evaluate_on(&mut net, eval_set, cfg.batch_size, world)?;
    let text = format!("{}\n", confusion.table());
    let json = serde_json::to_string_pretty(&serde_json::json!({
        "set": if val.is_empty() { "train" } else { "validation" },
        "classes": confusion.classes,
        "counts": confusion.counts,
        "scores": confusion.scores(),
        "accuracy": confusion.accuracy(),
    }))
    .expect("confusion serializes");
    let written = root(world, || {
        for (name, bytes) in [
            ("confusion.txt", text.as_bytes()),
            ("confusion.json", json.as_bytes()),
        ] {
            let p = dir.join(name);
            petal_model::atomic::write_atomic(&p, bytes).map_err(|e| TrainerError::io(&p, e))?;
        }
        Ok(())
    });
    world.agree(written)?;
    Ok((net, history, Outcome::Finished { confusion, early }))
}

/// `write` on rank 0, which alone writes the run folder; nothing elsewhere.
fn root(world: &World, write: impl FnOnce() -> Result<(), TrainerError>) -> Result<(), TrainerError> {
    if world.is_root() {
        write()
    } else {
        Ok(())
    }
}
