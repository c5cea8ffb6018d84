//! `train --resume DIR` with other options: each option given is applied to the run (and
//! recorded in its `config.json`) or refused, never ignored.
//!
//! A resumed run ends, bit for bit, as if it had never stopped; so it keeps every option
//! that decides its steps: the data, network, input, batch size, seed, optimizer and its
//! hyper-parameters, schedule, smoothing, augmentation and convolution algorithm. What may change: `--epochs`
//! (raised: the run is extended, as a longer run's schedule), `--threads` and
//! `--max-memory` (results do not depend on them), `--checkpoint-every` and `--patience`
//! (when it checkpoints and stops, not what its steps compute). An option given with the run's own value is accepted as is.
//! (A new learning rate or schedule would make the resumed run one that no uninterrupted
//! run equals; that is a new run from the checkpoint, not a resume.)

use super::args::TrainArgs;
use crate::error::TrainerError;
use crate::train::RunConfig;
use std::path::{Path, PathBuf};

/// The options a resumed run may change.
pub(super) const CHANGEABLE: [&str; 5] = ["epochs", "threads", "max_memory", "checkpoint_every", "patience"];

/// `run` (a resumed run's configuration) with the options given in `a` applied: `asked`
/// is what those options make on their own (as for a new run of the same arch). Returns
/// the configuration and one notice per change, or the refusal of the first option that
/// cannot change, naming it and the run's value.
pub(super) fn apply(
    a: &TrainArgs,
    asked: &RunConfig,
    run: &RunConfig,
) -> Result<(RunConfig, Vec<String>), TrainerError> {
    let mut cfg = run.clone();
    let mut notices = Vec::new();
    for id in &a.given {
        let flag = format!("--{}", id.replace('_', "-"));
        match id.as_str() {
            "resume" => {}
            // Not recorded: they hold for this process only.
            "threads" | "max_memory" => {
                let v = if id == "threads" {
                    a.threads.map(|t| t.to_string())
                } else {
                    a.max_memory.clone()
                };
                notices.push(format!("{flag} {} (this time)", v.unwrap_or_default()));
                continue;
            }
            "epochs" => {
                if asked.epochs < run.epochs {
                    return Err(TrainerError::Usage(format!(
                        "--epochs {}: this run trains {} epochs; a resumed run's epochs can only grow",
                        asked.epochs, run.epochs
                    )));
                }
                cfg.epochs = asked.epochs;
            }
            "checkpoint_every" => cfg.checkpoint_every = asked.checkpoint_every,
            "patience" => cfg.patience = asked.patience,
            other => {
                let (mine, theirs) = (kept_value(other, asked), kept_value(other, run));
                if !same(other, &mine, &theirs) {
                    // A flag without a value is named alone.
                    let given = if FLAGS.contains(&other) {
                        flag
                    } else {
                        format!("{flag} {mine}")
                    };
                    return Err(TrainerError::Usage(format!(
                        "{given}: this run's is {theirs} (its config.json); a resumed run keeps its options (only {} may change)",
                        CHANGEABLE.map(|c| format!("--{}", c.replace('_', "-"))).join(", ")
                    )));
                }
                continue;
            }
        }
        let (now, was) = (changeable_value(id, &cfg), changeable_value(id, run));
        if now != was {
            notices.push(format!("{flag} {now} (was {was})"));
        }
    }
    Ok((cfg, notices))
}

/// The options that are flags (no value).
const FLAGS: [&str; 4] = ["grayscale", "rgb", "nesterov", "normalize"];

/// The value of a changeable option in `cfg`, as a notice shows it.
fn changeable_value(id: &str, cfg: &RunConfig) -> String {
    match id {
        "epochs" => cfg.epochs.to_string(),
        "checkpoint_every" => cfg.checkpoint_every.map_or("none".into(), |c| c.to_string()),
        "patience" => cfg.patience.map_or("none".into(), |p| p.to_string()),
        _ => String::new(),
    }
}

/// The value of option `id` (clap's id) in `cfg`, as it would be written on the command
/// line. Every option of `train` but the changeable ones and `--resume`/`--out` is here
/// (a unit test holds the list to `TrainArgs`).
fn kept_value(id: &str, cfg: &RunConfig) -> String {
    let r = &cfg.recipe;
    let path = |p: &Option<PathBuf>| p.as_ref().map_or("none".into(), |p| p.display().to_string());
    match id {
        "data" => path(&cfg.data),
        "val" => path(&cfg.val),
        "arch" => cfg.arch.clone(),
        "size" => cfg.input[1].to_string(),
        "grayscale" | "rgb" => match cfg.input[0] {
            1 => "grayscale (1 channel)".into(),
            c => format!("{c} channels"),
        },
        "batch_size" => cfg.batch_size.to_string(),
        "lr" => r.lr.to_string(),
        "optimizer" => r.optimizer.name().to_string(),
        "momentum" => r.momentum.to_string(),
        "nesterov" => if r.nesterov { "on" } else { "off" }.into(),
        "beta1" => r.beta1.to_string(),
        "beta2" => r.beta2.to_string(),
        "eps" => r.eps.to_string(),
        "weight_decay" => r.weight_decay.to_string(),
        "lr_schedule" => r.lr_schedule.name().to_string(),
        "warmup_epochs" => r.warmup_epochs.to_string(),
        "lr_milestones" => format!("{:?}", r.lr_milestones),
        "lr_gamma" => r.lr_gamma.to_string(),
        "label_smoothing" => r.label_smoothing.to_string(),
        "augment" => cfg.augment.describe(),
        "val_split" => cfg.val_split.to_string(),
        "synth_per_class" => cfg.synth_per_class.to_string(),
        "synth_difficulty" => cfg.synth_difficulty.name().to_string(),
        "normalize" => if cfg.normalize { "on" } else { "off" }.into(),
        "seed" => cfg.seed.to_string(),
        "conv_algo" => cfg.conv_algo.name().to_string(),
        other => unreachable!("train option `{other}` has no resume rule (cli/resume.rs)"),
    }
}

/// Whether two values of option `id` are the same: folders that are the same folder, an
/// arch that is the same network (a preset and its spec), or equal text.
fn same(id: &str, mine: &str, theirs: &str) -> bool {
    match id {
        "data" | "val" => {
            let canon = |p: &str| Path::new(p).canonicalize().ok();
            mine == theirs || (canon(mine).is_some() && canon(mine) == canon(theirs))
        }
        "arch" => {
            let canon = |a: &str| {
                petal_model::parse_spec(a)
                    .ok()
                    .map(|l| petal_model::format_spec(&l))
            };
            mine == theirs || (canon(mine).is_some() && canon(mine) == canon(theirs))
        }
        _ => mine == theirs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every option of `train` has its rule: changeable, or kept with a value to compare.
    #[test]
    fn every_train_option_has_a_resume_rule() {
        let cmd = super::super::Cli::command();
        let run = RunConfig {
            arch: "seednet".into(),
            spec: None,
            input: [1, 50, 50],
            epochs: 5,
            batch_size: 32,
            seed: 1,
            data: None,
            val: None,
            val_split: 0.2,
            synth_per_class: 500,
            patience: None,
            normalize: false,
            synth_difficulty: Default::default(),
            recipe: Default::default(),
            augment: Default::default(),
            checkpoint_every: None,
            conv_algo: Default::default(),
        };
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version" | "resume" | "out") || CHANGEABLE.contains(&id) {
                continue;
            }
            assert!(!kept_value(id, &run).is_empty(), "{id}");
        }
    }
}
