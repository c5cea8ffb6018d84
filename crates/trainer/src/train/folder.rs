//! What a run writes in its folder, and when: the optimizer file, then the checkpoint (the
//! commit point), the best epoch's checkpoint, the metrics, the curves and the confusion
//! matrix (module docs of `train`); rank 0 alone writes.

use super::{optimizer_file, RunState, BEST_FILE, METRICS_FILE, MODEL_FILE, RUN_STATE_KEY};
use crate::data::Dataset;
use crate::dist::World;
use crate::error::TrainerError;
use crate::report::{Confusion, EpochMetrics};
use petal_model::{save_checkpoint, save_optimizer_state, CheckpointMeta, Network};
use std::io::Write;
use std::path::Path;

/// Refuses weights or optimizer state that are no longer finite (a step whose loss was
/// still finite can overflow them), before they are checkpointed: the checkpoint already
/// on disk stays the last good one. `epoch` is 1-based.
pub(super) fn check_finite(
    net: &Network,
    epoch: usize,
    step: u64,
    dir: &Path,
    last: Option<(u64, u64)>,
) -> Result<(), TrainerError> {
    match net.params().find(|p| {
        let state = p.state.iter().flatten();
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
pub(super) fn save(
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
pub(super) fn checkpoint_meta(
    train: &Dataset,
    epoch: usize,
    step: u64,
    state: Option<&RunState>,
) -> CheckpointMeta {
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
pub(super) fn best_accuracy(history: &[EpochMetrics]) -> Option<(usize, f64)> {
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
pub(super) fn patience_stop(patience: Option<usize>, history: &[EpochMetrics]) -> Option<String> {
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

pub(super) fn append_metrics(dir: &Path, m: &EpochMetrics) -> Result<(), TrainerError> {
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

/// Writes `confusion.txt` and `confusion.json` of `confusion` on the set named `set`.
pub(super) fn write_confusion(dir: &Path, confusion: &Confusion, set: &str) -> Result<(), TrainerError> {
    let text = format!("{}\n", confusion.table());
    let json = serde_json::to_string_pretty(&serde_json::json!({
        "set": set,
        "classes": confusion.classes,
        "counts": confusion.counts,
        "scores": confusion.scores(),
        "accuracy": confusion.accuracy(),
    }))
    .expect("confusion serializes");
    for (name, bytes) in [
        ("confusion.txt", text.as_bytes()),
        ("confusion.json", json.as_bytes()),
    ] {
        let p = dir.join(name);
        petal_model::atomic::write_atomic(&p, bytes).map_err(|e| TrainerError::io(&p, e))?;
    }
    Ok(())
}

/// `write` on rank 0, which alone writes the run folder; nothing elsewhere.
pub(super) fn root(
    world: &World,
    write: impl FnOnce() -> Result<(), TrainerError>,
) -> Result<(), TrainerError> {
    if world.is_root() {
        write()
    } else {
        Ok(())
    }
}
