//! `train`'s run configuration: made from the options of a new run or read from the
//! `config.json` of a run to resume, then checked in one place, [`validate`], before any
//! image is decoded or drawn.

use super::args::{ArchArgs, TrainArgs};
use super::network::{check_size, network};
use super::resume;
use super::MAX_SYNTH_SIDE;
use crate::augment::Augment;
use crate::data::{class_folders, training_class_folders};
use crate::error::TrainerError;
use crate::recipe::{OptimizerName, Recipe};
use crate::schedule::ScheduleKind;
use crate::synth::CLASSES;
use crate::train::{self, Checked, CheckpointEvery, Request, RunConfig};
use petal_model::InputShape;
use std::path::PathBuf;

/// The options of a new run, or with `--resume` the run folder's `config.json` with the
/// options given applied or refused (`resume.rs`; each change printed).
pub(super) fn request(a: &TrainArgs) -> Result<Request, TrainerError> {
    if let Some(dir) = &a.resume {
        let run = train::read_config(dir)?;
        // What the options given make, on the run's own network unless --arch is given.
        let mut arch = a.arch.clone();
        if !a.given.iter().any(|g| g == "arch") {
            arch.arch = run.arch.clone();
        }
        let (cfg, notices) = resume::apply(a, &config(a, &arch)?, &run)?;
        for n in notices {
            println!("resuming with {n}");
        }
        return Ok(Request {
            cfg,
            dir: dir.clone(),
            resuming: true,
        });
    }
    let cfg = config(a, &a.arch)?;
    let dir = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("{}-{}", timestamp(), arch_slug(&cfg.arch))));
    Ok(Request {
        cfg,
        dir,
        resuming: false,
    })
}

/// The configuration the options `a` make, with the network and input of `arch`.
fn config(a: &TrainArgs, arch: &ArchArgs) -> Result<RunConfig, TrainerError> {
    let input = arch.input();
    let optimizer = OptimizerName::parse(&a.optimizer).ok_or_else(|| {
        TrainerError::Usage(format!(
            "--optimizer `{}` is not one of {}",
            a.optimizer,
            OptimizerName::NAMES.join(", ")
        ))
    })?;
    let lr_schedule = ScheduleKind::parse(&a.lr_schedule).ok_or_else(|| {
        TrainerError::Usage(format!(
            "--lr-schedule `{}` is not one of {}",
            a.lr_schedule,
            ScheduleKind::NAMES.join(", ")
        ))
    })?;
    let augment = match &a.augment {
        Some(list) => Augment::parse(list)?,
        None => Augment::default(),
    };
    Ok(RunConfig {
        arch: arch.arch.clone(),
        spec: None,
        input: [input.c, input.h, input.w],
        epochs: a.epochs.unwrap_or(5),
        batch_size: a.batch_size,
        seed: a.seed,
        data: a.data.clone(),
        val: a.val.clone(),
        val_split: a.val_split,
        synth_per_class: a.synth_per_class,
        patience: a.patience,
        normalize: a.normalize,
        synth_difficulty: crate::synth::Difficulty::parse(&a.synth_difficulty).ok_or_else(|| {
            TrainerError::Usage(format!(
                "--synth-difficulty `{}` is not one of {}",
                a.synth_difficulty,
                crate::synth::Difficulty::NAMES.join(", ")
            ))
        })?,
        recipe: Recipe {
            lr: a.lr.unwrap_or(optimizer.default_lr()),
            momentum: a.momentum,
            weight_decay: a.weight_decay.unwrap_or(optimizer.default_weight_decay()),
            optimizer,
            nesterov: a.nesterov,
            beta1: a.beta1,
            beta2: a.beta2,
            eps: a.eps,
            lr_schedule,
            warmup_epochs: a.warmup_epochs,
            lr_milestones: a.lr_milestones.clone(),
            lr_gamma: a.lr_gamma,
            label_smoothing: a.label_smoothing,
        },
        augment,
        checkpoint_every: a
            .checkpoint_every
            .as_deref()
            .map(CheckpointEvery::parse)
            .transpose()
            .map_err(TrainerError::Usage)?,
        conv_algo: a.conv_algo,
    })
}

/// Every check of a run configuration, new or resumed, in this order (the first failure
/// is the error): the options (`--batch-size`, `--epochs`, `--val-split`, `--patience`,
/// then the recipe's: `--lr`, `--momentum`, `--weight-decay`, betas, ε, schedule, warmup,
/// milestones, label smoothing, `--nesterov`; the `--augment` crop padding; and `--size`); the spec's grammar; the class folders' names
/// (nothing decoded yet); the network sized to those classes, and for a resumed run its
/// agreement with the `spec` that `config.json` records; last, for the synthetic flowers,
/// their size and whether the set fits in memory. (That comes after the network: a
/// network that cannot be built is the error a user must fix first, e.g. a 3x4096x4096
/// input to `conv63x63` is refused for its convolution scratch, not for a synthetic set
/// too large for memory.)
pub(super) fn validate(req: &Request) -> Result<Checked, TrainerError> {
    let cfg = &req.cfg;
    check_options(cfg)?;
    let input = cfg.input_shape();
    check_size(input)?;
    // A spec that does not parse fails at once; then, from the class folders' names alone
    // (nothing decoded yet), the network is sized to the data or a spec that does not end
    // in its class count is refused.
    petal_model::parse_spec(&petal_model::spec::resolve_arch(&cfg.arch, CLASSES.len()))
        .map_err(petal_model::ModelError::from)?;
    let (classes, data_name) = data_classes(cfg)?;
    let net = network(
        &cfg.arch,
        input,
        Some(classes.len()),
        &data_name,
        cfg.seed,
        cfg.conv_algo,
    )?;
    if cfg.batch_size < net.min_train_batch() {
        return Err(TrainerError::Usage(format!(
            "--batch-size {}: a batch norm of this network sees one value per channel and image, it needs a batch of at least {}",
            cfg.batch_size,
            net.min_train_batch()
        )));
    }
    // A resumed run's config.json records the network its arch resolved to: the two agree
    // unless the file was edited.
    if let Some(spec) = cfg.spec.as_deref().filter(|s| *s != net.spec()) {
        return Err(TrainerError::data(
            req.dir.join(train::CONFIG_FILE),
            format!(
                "`arch` {:?} gives `{}` for {} classes, but `spec` is `{spec}`",
                cfg.arch,
                net.spec(),
                classes.len()
            ),
        ));
    }
    if cfg.data.is_none() {
        check_synthetic_set(cfg, input)?;
    }
    Ok(Checked {
        cfg: RunConfig {
            spec: Some(net.spec()),
            ..cfg.clone()
        },
        classes,
        net,
    })
}

/// The training options' ranges.
fn check_options(cfg: &RunConfig) -> Result<(), TrainerError> {
    if cfg.batch_size == 0 || cfg.epochs == 0 {
        return Err(TrainerError::Usage(
            "--batch-size and --epochs must be at least 1".into(),
        ));
    }
    if !(0.0..1.0).contains(&cfg.val_split) {
        return Err(TrainerError::Usage(format!(
            "--val-split {} is not in [0, 1)",
            cfg.val_split
        )));
    }
    match cfg.patience {
        Some(0) => return Err(TrainerError::Usage("--patience must be at least 1 epoch".into())),
        Some(_) if cfg.val.is_none() && cfg.val_split == 0.0 => {
            return Err(TrainerError::Usage(
                "--patience watches the validation accuracy: it needs --val DIR or a --val-split above 0"
                    .into(),
            ))
        }
        _ => {}
    }
    cfg.recipe.check(cfg.epochs)?;
    cfg.augment.check(cfg.input)
}

/// The synthetic flowers are square, 8 to [`MAX_SYNTH_SIDE`] pixels a side, and the whole
/// set must be allocatable before it is drawn.
fn check_synthetic_set(cfg: &RunConfig, shape: InputShape) -> Result<(), TrainerError> {
    if shape.h != shape.w {
        return Err(TrainerError::Usage("synthetic flowers are square".into()));
    }
    if !(8..=MAX_SYNTH_SIDE).contains(&shape.h) {
        return Err(TrainerError::Usage(format!(
            "synthetic flowers are drawn at --size 8 to {MAX_SYNTH_SIDE}, not {} (or give --data)",
            shape.h
        )));
    }
    let values = (cfg.synth_per_class as u128) * CLASSES.len() as u128 * shape.len() as u128;
    if usize::try_from(values)
        .ok()
        .and_then(|v| Vec::<f32>::new().try_reserve_exact(v).ok())
        .is_none()
    {
        return Err(TrainerError::Usage(format!(
            "{} synthetic flowers of {shape} ({values} values) do not fit in memory: lower --synth-per-class or --size",
            cfg.synth_per_class as u128 * CLASSES.len() as u128
        )));
    }
    Ok(())
}

/// The classes of a run's data, in label order, and what they were counted in (for
/// messages), found before any image is decoded: the synthetic flowers' five, or the class
/// folders of `--data`. A `--val` folder must hold the same classes or some of them (its
/// images take the label of the training class of the same name); one with a class the
/// training folder lacks is refused here.
fn data_classes(cfg: &RunConfig) -> Result<(Vec<String>, String), TrainerError> {
    let Some(dir) = &cfg.data else {
        let names = CLASSES.iter().map(|s| s.to_string()).collect();
        return Ok((names, "the synthetic flower set".into()));
    };
    let names: Vec<String> = training_class_folders(dir)?.into_iter().map(|(n, _)| n).collect();
    if let Some(vdir) = &cfg.val {
        let val: Vec<String> = class_folders(vdir)?.into_iter().map(|(n, _)| n).collect();
        let extra: Vec<&String> = val.iter().filter(|n| !names.contains(n)).collect();
        if !extra.is_empty() {
            return Err(TrainerError::data(
                vdir,
                format!(
                    "has class folders that the training folder {} lacks: {extra:?} (training classes: {names:?})",
                    dir.display()
                ),
            ));
        }
        let missing: Vec<&String> = names.iter().filter(|n| !val.contains(n)).collect();
        if !missing.is_empty() && !super::console::quiet() {
            eprintln!(
                "note: validation folder {} has no images of {missing:?}; its {} classes keep the training folder's labels",
                vdir.display(),
                val.len()
            );
        }
    }
    Ok((names, dir.display().to_string()))
}

/// `YYYYMMDD-HHMMSS` in UTC.
fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn arch_slug(arch: &str) -> String {
    match arch.trim() {
        a if petal_model::spec::preset_names().any(|p| p == a) => a.to_string(),
        _ => "custom".to_string(),
    }
}
