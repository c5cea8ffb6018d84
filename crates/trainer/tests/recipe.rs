//! The training recipe through the binary: optimizers, schedules and label smoothing are
//! recorded in `config.json` and `metrics.jsonl`, a run interrupted mid-epoch and resumed
//! ends with the uninterrupted run's weights bit for bit (AdamW + onecycle + smoothing,
//! Nesterov SGD + cosine with warmup, step schedule), a configuration written before these
//! options resumes as plain SGD, and bad values are refused with one error line.

mod common;

use common::*;
use std::path::Path;

/// A small synthetic run: 80 training images in batches of 16 (5 steps an epoch), 3
/// epochs, one thread.
fn train_cmd(out: &Path, recipe: &[&str]) -> std::process::Command {
    let mut c = trainer();
    c.args([
        "train",
        "--synth-per-class",
        "20",
        "--batch-size",
        "16",
        "--epochs",
        "3",
    ])
    .args(["--threads", "1", "--seed", "2"])
    .args(recipe)
    .arg("--out")
    .arg(out);
    c
}

/// Trains `recipe` whole, and again interrupted after 7 steps (mid-epoch 2) then resumed:
/// the same weights and metrics (with the same `lr`).
fn resumes_bit_for_bit(dir: &Path, tag: &str, recipe: &[&str]) -> Vec<serde_json::Value> {
    let full = dir.join(format!("full-{tag}"));
    let out = run(train_cmd(&full, recipe));
    assert!(out.status.success(), "{tag}: {}", stderr(&out));
    let part = dir.join(format!("part-{tag}"));
    let mut c = train_cmd(&part, recipe);
    c.env("PETAL_INTERRUPT_AFTER_STEPS", "7");
    let out = run(c);
    assert_eq!(out.status.code(), Some(130), "{tag}: {}", stderr(&out));
    let out = trainer().args(["train", "--resume"]).arg(&part).run();
    assert!(out.status.success(), "{tag}: {}", stderr(&out));
    let m = metrics(&full);
    assert_same_training(&weights(&full.join("model.safetensors")), &m, &part);
    for (a, b) in m.iter().zip(metrics(&part)) {
        assert_eq!(a["lr"], b["lr"], "{tag}: lr of epoch {}", a["epoch"]);
    }
    m
}

#[test]
fn adamw_onecycle_with_label_smoothing_resumes_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = [
        "--optimizer",
        "adamw",
        "--lr-schedule",
        "onecycle",
        "--lr",
        "0.005",
        "--label-smoothing",
        "0.1",
    ];
    let m = resumes_bit_for_bit(dir.path(), "adamw", &recipe);
    let cfg = config(&dir.path().join("full-adamw"));
    assert_eq!(cfg["optimizer"], "adamw");
    assert_eq!(cfg["lr_schedule"], "onecycle");
    assert_eq!(
        cfg["weight_decay"].as_f64().unwrap() as f32,
        0.01,
        "AdamW's default decay"
    );
    assert_eq!(cfg["label_smoothing"].as_f64().unwrap() as f32, 0.1);
    // OneCycleLR ends at max_lr / 25 / 1e4 on its last step.
    let last = m.last().unwrap()["lr"].as_f64().unwrap();
    assert!((last - 0.005f32 as f64 / 25.0 / 1e4).abs() < 1e-15, "{last}");
    let opt = std::fs::read_dir(dir.path().join("full-adamw"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("optimizer-step"))
        .unwrap();
    let bytes = std::fs::read(opt.path()).unwrap();
    assert!(String::from_utf8_lossy(&bytes[..2000.min(bytes.len())]).contains("petal-adamw-state"));
}

#[test]
fn nesterov_cosine_and_step_schedules_resume_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = [
        "--nesterov",
        "--lr-schedule",
        "cosine",
        "--warmup-epochs",
        "0.5",
        "--weight-decay",
        "1e-4",
    ];
    let out = run(train_cmd(&dir.path().join("show"), &recipe));
    assert!(
        stdout(&out).contains("optimizer sgd (nesterov) lr 0.02 momentum 0.9 weight decay 0.0001, schedule cosine (warmup 0.5 epochs)"),
        "{}",
        stdout(&out)
    );
    let m = resumes_bit_for_bit(dir.path(), "nesterov", &recipe);
    assert!(m[2]["lr"].as_f64().unwrap() < m[1]["lr"].as_f64().unwrap());
    let m = resumes_bit_for_bit(
        dir.path(),
        "step",
        &[
            "--lr-schedule",
            "step",
            "--lr-milestones",
            "1,2",
            "--lr-gamma",
            "0.5",
        ],
    );
    let lrs: Vec<f64> = m.iter().map(|l| l["lr"].as_f64().unwrap()).collect();
    assert_eq!(lrs, [0.02f32 as f64, 0.02f32 as f64 * 0.5, 0.02f32 as f64 * 0.25]);
}

#[test]
fn a_configuration_from_before_the_recipe_resumes_as_plain_sgd() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full");
    assert!(run(train_cmd(&full, &[])).status.success());
    let part = dir.path().join("part");
    let mut c = train_cmd(&part, &[]);
    c.env("PETAL_INTERRUPT_AFTER_STEPS", "7");
    assert_eq!(run(c).status.code(), Some(130));
    // Strip the recipe's keys and the metrics' lr, as an older build wrote them.
    let mut cfg = config(&part);
    for k in [
        "optimizer",
        "nesterov",
        "beta1",
        "beta2",
        "eps",
        "lr_schedule",
        "warmup_epochs",
        "lr_milestones",
        "lr_gamma",
        "label_smoothing",
    ] {
        cfg.as_object_mut().unwrap().remove(k).expect(k);
    }
    std::fs::write(
        part.join("config.json"),
        serde_json::to_string_pretty(&cfg).unwrap(),
    )
    .unwrap();
    let old: String = metrics(&part)
        .into_iter()
        .map(|mut l| {
            l.as_object_mut().unwrap().remove("lr");
            l.to_string() + "\n"
        })
        .collect();
    std::fs::write(part.join("metrics.jsonl"), old).unwrap();
    let out = trainer().args(["train", "--resume"]).arg(&part).run();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_training(&weights(&full.join("model.safetensors")), &metrics(&full), &part);
}

#[test]
fn a_run_whose_optimizer_file_is_of_another_optimizer_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("part");
    let mut c = train_cmd(&part, &["--optimizer", "adamw"]);
    c.env("PETAL_INTERRUPT_AFTER_STEPS", "2");
    assert_eq!(run(c).status.code(), Some(130));
    let mut cfg = config(&part);
    cfg["optimizer"] = "sgd".into();
    std::fs::write(part.join("config.json"), cfg.to_string()).unwrap();
    let out = trainer().args(["train", "--resume"]).arg(&part).run();
    let e = error_line(&out);
    assert!(
        e.contains("optimizer-step2.safetensors") && e.contains("holds AdamW optimizer state"),
        "{e}"
    );
}

#[test]
fn bad_recipe_values_are_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--optimizer", "adam"],
            "error: --optimizer `adam` is not one of sgd, adamw",
        ),
        (
            &["--lr-schedule", "linear"],
            "error: --lr-schedule `linear` is not one of constant, step, cosine, onecycle",
        ),
        (&["--beta1", "1"], "error: --beta1 1 is not in [0, 1)"),
        (&["--beta2=-0.5"], "error: --beta2 -0.5 is not in [0, 1)"),
        (
            &["--eps=-1"],
            "error: --eps -1 must be a finite number, at least 0",
        ),
        (
            &["--lr-gamma", "inf"],
            "error: --lr-gamma inf must be a finite number, at least 0",
        ),
        (
            &["--label-smoothing", "1.5"],
            "error: --label-smoothing 1.5 is not in [0, 1]",
        ),
        (
            &["--label-smoothing", "NaN"],
            "error: --label-smoothing NaN must be a finite number, at least 0",
        ),
        (
            &["--lr-schedule", "cosine", "--warmup-epochs=-1"],
            "error: --warmup-epochs -1 must be a finite number, at least 0",
        ),
        (
            &["--lr-schedule", "cosine", "--warmup-epochs", "4"],
            "error: --warmup-epochs 4 is longer than the run's 3 epochs",
        ),
        (
            &["--warmup-epochs", "1"],
            "error: --warmup-epochs applies to --lr-schedule cosine, not constant",
        ),
        (
            &["--optimizer", "adamw", "--nesterov"],
            "error: --nesterov needs --optimizer sgd and a --momentum above 0 (got adamw with momentum 0.9)",
        ),
        (
            &["--nesterov", "--momentum", "0"],
            "error: --nesterov needs --optimizer sgd and a --momentum above 0 (got sgd with momentum 0)",
        ),
        (
            &["--lr-schedule", "step"],
            "error: --lr-schedule step needs --lr-milestones (epochs, e.g. 30,60)",
        ),
        (
            &["--lr-milestones", "1"],
            "error: --lr-milestones applies to --lr-schedule step, not constant",
        ),
        (
            &["--lr-schedule", "step", "--lr-milestones", "2,1"],
            "error: --lr-milestones [2, 1] must be increasing epochs, at least 1",
        ),
        (
            &["--lr=-0.1"],
            "error: --lr -0.1 must be a finite number, at least 0",
        ),
    ];
    for (i, (args, want)) in cases.iter().enumerate() {
        let out_dir = dir.path().join(format!("run{i}"));
        let out = run(train_cmd(&out_dir, args));
        assert_eq!(error_line(&out), *want, "{args:?}");
        assert!(!out_dir.exists(), "{args:?}: no run folder for a refused run");
    }
    let help = stdout(&trainer().args(["train", "--help"]).run());
    for flag in [
        "--optimizer",
        "--nesterov",
        "--beta1",
        "--beta2",
        "--eps",
        "--lr-schedule",
        "--warmup-epochs",
        "--lr-milestones",
        "--lr-gamma",
        "--label-smoothing",
    ] {
        assert!(help.contains(flag), "train --help lacks {flag}");
    }
}
