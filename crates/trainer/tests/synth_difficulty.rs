//! The hard synthetic set through the binary: `trainer synth --difficulty hard` writes it,
//! `trainer train --synth-difficulty hard` trains on it (recorded in config.json, so
//! `--resume` draws the same images), unknown levels are refused.

mod common;

use common::*;

#[test]
fn synth_and_train_take_the_hard_set() {
    let dir = tempfile::tempdir().unwrap();
    let (easy, hard) = (dir.path().join("easy"), dir.path().join("hard"));
    for (out, level) in [(&easy, "easy"), (&hard, "hard")] {
        let o = trainer()
            .args([
                "synth",
                "--per-class",
                "2",
                "--size",
                "24",
                "--difficulty",
                level,
                "--out",
            ])
            .arg(out)
            .run();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let a = std::fs::read(easy.join("rose/rose_00000.png")).unwrap();
    assert_ne!(a, std::fs::read(hard.join("rose/rose_00000.png")).unwrap());
    let o = trainer()
        .args(["synth", "--difficulty", "medium", "--out"])
        .arg(dir.path().join("x"))
        .run();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        error_line(&o).contains("--difficulty `medium` is not one of easy, hard"),
        "{}",
        stderr(&o)
    );

    let train = |out: &std::path::Path| {
        let mut c = trainer();
        c.args([
            "train",
            "--synth-difficulty",
            "hard",
            "--synth-per-class",
            "12",
            "--size",
            "16",
        ])
        .args(["--epochs", "2", "--out"])
        .arg(out);
        c
    };
    let full = dir.path().join("full");
    let o = train(&full).run();
    assert!(o.status.success(), "{}", stderr(&o));
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(full.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["synth_difficulty"], "hard");
    let part = dir.path().join("part");
    let mut c = train(&part);
    c.env("PETAL_INTERRUPT_AFTER_STEPS", "1");
    assert_eq!(c.run().status.code(), Some(130));
    let o = trainer().args(["train", "--resume"]).arg(&part).run();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_training(&weights(&full.join("model.safetensors")), &metrics(&full), &part);
    // The easy set trains to other weights from the same seed.
    let plain = dir.path().join("plain");
    let mut c = trainer();
    c.args([
        "train",
        "--synth-per-class",
        "12",
        "--size",
        "16",
        "--epochs",
        "2",
        "--out",
    ])
    .arg(&plain);
    assert!(c.run().status.success());
    assert!(weights(&plain.join("model.safetensors")) != weights(&full.join("model.safetensors")));
    let o = trainer()
        .args(["train", "--synth-difficulty", "medium", "--out"])
        .arg(dir.path().join("y"))
        .run();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        error_line(&o).contains("--synth-difficulty `medium` is not one of easy, hard"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.path().join("y").exists());
}
