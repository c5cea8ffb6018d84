//! Continuing a run from its folder: the checkpoint, its optimizer state and the metrics
//! of the epochs it holds.

use super::{optimizer_file, RunState, Start, METRICS_FILE, MODEL_FILE, RUN_STATE_KEY};
use crate::error::TrainerError;
use crate::report::EpochMetrics;
use petal_model::{load_checkpoint, load_optimizer_state, Network};
use std::path::Path;

/// Loads the checkpoint, its optimizer state (of `fresh`'s [`Network::optimizer_kind`])
/// and the metrics of a run folder, checking
/// that they belong together. A run stopped before its first checkpoint (killed during
/// epoch 1) has none: it starts again from `fresh`, the network its seed gives, which is
/// the network it started from. Temporary files of writes that a killed process left
/// unfinished are removed; so is a last line of `metrics.jsonl` that such a process left
/// half-written (it belongs to an epoch whose checkpoint never landed).
pub fn resume(dir: &Path, classes: &[String], fresh: Network) -> Result<Start, TrainerError> {
    remove_stale_temp_files(dir);
    let model = dir.join(MODEL_FILE);
    let metrics = dir.join(METRICS_FILE);
    if let Err(e) = std::fs::symlink_metadata(&model) {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(TrainerError::io(&model, e));
        }
        // Nothing was checkpointed: every metrics line is of an epoch that never landed.
        if metrics.exists() {
            petal_model::atomic::write_atomic(&metrics, b"").map_err(|e| TrainerError::io(&metrics, e))?;
        }
        return Ok(Start::fresh(fresh));
    }
    let (mut net, meta) = load_checkpoint(&model)?;
    if meta.classes != classes {
        return Err(TrainerError::data(
            dir,
            format!(
                "the checkpoint's classes {:?} differ from the data's {classes:?}",
                meta.classes
            ),
        ));
    }
    if net.spec() != fresh.spec() || net.input_shape() != fresh.input_shape() {
        return Err(TrainerError::data(
            &model,
            format!(
                "holds `{}` on {}, but config.json asks for `{}` on {}",
                net.spec(),
                net.input_shape(),
                fresh.spec(),
                fresh.input_shape()
            ),
        ));
    }
    // The optimizer state of `fresh`'s kind (the run's optimizer): a file of another is
    // refused. Its steps are the checkpoint's, unless its file records its own.
    net.set_optimizer_state(fresh.optimizer_kind(), meta.step);
    load_optimizer_state(&dir.join(optimizer_file(meta.step)), &mut net)?;
    // Dropout masks are keyed by the run's seed and the step: resume where they left off.
    net.set_dropout_state(fresh.dropout_state().0, meta.step);
    // The run's convolution algorithm (a checkpoint does not hold it): the same bits.
    net.set_conv_algo(fresh.conv_algo());
    let state: RunState = match meta.extra.get(RUN_STATE_KEY) {
        Some(s) => serde_json::from_str(s)
            .map_err(|e| TrainerError::data(&model, format!("run state `{s}`: {e}")))?,
        None => RunState::default(),
    };
    let mut history = Vec::new();
    let mut kept = String::new();
    let mut dropped = false;
    match std::fs::read_to_string(&metrics) {
        Ok(text) => {
            let torn = !text.is_empty() && !text.ends_with('\n');
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                if line.trim().is_empty() || (torn && i + 1 == lines.len()) {
                    dropped = true;
                    continue;
                }
                let m: EpochMetrics = serde_json::from_str(line)
                    .map_err(|e| TrainerError::data(&metrics, format!("line {}: {e}", i + 1)))?;
                if m.epoch as u64 <= meta.epoch {
                    history.push(m);
                    kept.push_str(line);
                    kept.push('\n');
                } else {
                    dropped = true;
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(TrainerError::io(&metrics, e)),
    }
    // Drop lines of an epoch whose checkpoint never landed (the file is left as it is
    // when there are none).
    if dropped {
        petal_model::atomic::write_atomic(&metrics, kept.as_bytes())
            .map_err(|e| TrainerError::io(&metrics, e))?;
    }
    Ok(Start {
        net,
        epoch: meta.epoch as usize,
        step: meta.step,
        state,
        history,
        checkpoint: Some((meta.epoch, meta.step)),
    })
}

/// Removes the temporary files (`.NAME.tmp-PID`, see `petal_model::atomic`) that a process
/// killed in the middle of a write left in `dir`. Best effort: a file that cannot be
/// removed is left.
fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(".tmp-") && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
