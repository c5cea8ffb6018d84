//! `--augment` through the binary: recorded in `config.json` and shown on the training
//! line, an augmented run interrupted mid-epoch and resumed ends with the uninterrupted
//! run's weights bit for bit, 1 and 2 threads train the same, a configuration from before
//! augmentation resumes without it, and bad lists are refused with one error line.

mod common;

use common::*;
use std::path::Path;

/// A small synthetic run: 80 training images of 1x50x50 in batches of 16 (5 steps an
/// epoch), 3 epochs.
fn train_cmd(out: &Path, threads: &str, extra: &[&str]) -> std::process::Command {
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
    .args(["--threads", threads, "--seed", "2"])
    .args(extra)
    .arg("--out")
    .arg(out);
    c
}

/// Runs `cmd` interrupted after 7 steps (mid-epoch 2), then resumes it from `dir`.
fn interrupt_and_resume(mut cmd: std::process::Command, dir: &Path, edit: impl FnOnce(&Path)) {
    cmd.env("PETAL_INTERRUPT_AFTER_STEPS", "7");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    edit(dir);
    let out = trainer().args(["train", "--resume"]).arg(dir).run();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn augmented_runs_resume_bit_for_bit_and_repeat_on_any_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let aug = ["--augment", "flip,crop"];
    let full = dir.path().join("full");
    let out = run(train_cmd(&full, "1", &aug));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(", augment flip,crop:4"), "{}", stdout(&out));
    let cfg = config(&full);
    assert_eq!(cfg["augment"], serde_json::json!({"flip": true, "crop": 4}));
    let w = weights(&full.join("model.safetensors"));
    let m = metrics(&full);

    let part = dir.path().join("part");
    interrupt_and_resume(train_cmd(&part, "1", &aug), &part, |_| {});
    assert_same_training(&w, &m, &part);

    let two = dir.path().join("two");
    let out = run(train_cmd(&two, "2", &aug));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_training(&w, &m, &two);

    // The augmentation is applied: without it, other weights.
    let plain = dir.path().join("plain");
    let out = run(train_cmd(&plain, "1", &[]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("augment"), "{}", stdout(&out));
    assert_eq!(
        config(&plain)["augment"],
        serde_json::json!({"flip": false, "crop": null})
    );
    assert_ne!(weights(&plain.join("model.safetensors")), w);
    // And other draws (crop:2 only) are other weights again.
    let crop2 = dir.path().join("crop2");
    assert!(run(train_cmd(&crop2, "1", &["--augment", "crop:2"]))
        .status
        .success());
    assert_eq!(
        config(&crop2)["augment"],
        serde_json::json!({"flip": false, "crop": 2})
    );
    assert_ne!(weights(&crop2.join("model.safetensors")), w);

    // A configuration without `augment` (an older build's) resumes unaugmented.
    let old = dir.path().join("old");
    interrupt_and_resume(train_cmd(&old, "1", &[]), &old, |d| {
        let mut cfg = config(d);
        cfg.as_object_mut().unwrap().remove("augment").expect("augment");
        std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
    });
    assert_same_training(&weights(&plain.join("model.safetensors")), &metrics(&plain), &old);
}

#[test]
fn bad_augment_lists_are_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = |item: &str| {
        format!("error: --augment `{item}` is not one of flip, crop, crop:N (e.g. --augment flip,crop:4)")
    };
    let cases: &[(&str, String)] = &[
        ("rotate", unknown("rotate")),
        ("flip,crop:x", unknown("crop:x")),
        ("flip,", unknown("")),
        ("crop:-1", unknown("crop:-1")),
        (
            "flip,flip",
            "error: --augment `flip,flip` names `flip` twice".into(),
        ),
        (
            "crop:0",
            "error: --augment crop:0: the padding must be 1 to the image side (50)".into(),
        ),
        (
            "flip,crop:51",
            "error: --augment crop:51: the padding must be 1 to the image side (50)".into(),
        ),
    ];
    for (i, (list, want)) in cases.iter().enumerate() {
        let out_dir = dir.path().join(format!("run{i}"));
        let out = run(train_cmd(&out_dir, "1", &["--augment", list]));
        assert_eq!(error_line(&out), *want, "{list}");
        assert!(!out_dir.exists(), "{list}: no run folder for a refused run");
    }
    // A resumed configuration is checked too.
    let part = dir.path().join("edited");
    interrupt_and_resume_refused(&part);
    let help = stdout(&trainer().args(["train", "--help"]).run());
    assert!(help.contains("--augment <LIST>"), "{help}");
    assert!(help.contains("RandomCrop"), "{help}");
}

/// A run interrupted, its `config.json` edited to a crop padding of 0: `--resume` refuses it.
fn interrupt_and_resume_refused(part: &Path) {
    let mut c = train_cmd(part, "1", &["--augment", "crop"]);
    c.env("PETAL_INTERRUPT_AFTER_STEPS", "2");
    assert_eq!(run(c).status.code(), Some(130));
    let mut cfg = config(part);
    cfg["augment"]["crop"] = 0.into();
    std::fs::write(part.join("config.json"), cfg.to_string()).unwrap();
    let out = trainer().args(["train", "--resume"]).arg(part).run();
    assert_eq!(
        error_line(&out),
        "error: --augment crop:0: the padding must be 1 to the image side (50)"
    );
}
