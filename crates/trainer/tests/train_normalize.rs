//! `--normalize`: inputs normalised per channel with the training set's mean and
//! deviation, recorded in the checkpoints' `normalization`, applied by `eval` (which then
//! scores the validation folder as training did), and kept by `--resume`.

mod common;

use common::*;
use std::path::Path;

fn synth(dir: &Path, seed: &str) {
    let out = trainer()
        .args([
            "synth",
            "--per-class",
            "8",
            "--size",
            "12",
            "--seed",
            seed,
            "--out",
        ])
        .arg(dir)
        .run();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Per-channel mean and population deviation of every PNG under `dir`, in [0, 1] units.
fn folder_stats(dir: &Path) -> (Vec<f64>, Vec<f64>) {
    let (mut s, mut ss, mut n) = ([0.0f64; 3], [0.0f64; 3], 0.0);
    for class in std::fs::read_dir(dir).unwrap() {
        for f in std::fs::read_dir(class.unwrap().path()).unwrap() {
            let img = image::open(f.unwrap().path()).unwrap().to_rgb8();
            for p in img.pixels() {
                for c in 0..3 {
                    let v = p[c] as f64 / 255.0;
                    s[c] += v;
                    ss[c] += v * v;
                }
                n += 1.0;
            }
        }
    }
    let mean: Vec<f64> = s.iter().map(|v| v / n).collect();
    let std = (0..3).map(|c| (ss[c] / n - mean[c] * mean[c]).sqrt()).collect();
    (mean, std)
}

#[test]
fn train_normalize_records_the_training_statistics_and_eval_applies_them() {
    let dir = tempfile::tempdir().unwrap();
    let (tr, va) = (dir.path().join("train"), dir.path().join("val"));
    synth(&tr, "1");
    synth(&va, "2");
    let train = |out: &Path| {
        let mut c = trainer();
        c.args([
            "train",
            "--arch",
            "flowernet",
            "--size",
            "12",
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--normalize",
        ])
        .arg("--data")
        .arg(&tr)
        .arg("--val")
        .arg(&va)
        .arg("--out")
        .arg(out);
        c
    };
    let full = dir.path().join("full");
    let out = train(&full).run();
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, meta) = petal_model::load_checkpoint(&full.join("model.safetensors")).unwrap();
    let (mean, std) = folder_stats(&tr);
    for c in 0..3 {
        assert!(
            (meta.normalization.mean[c] as f64 - mean[c]).abs() < 1e-5,
            "{:?} vs {mean:?}",
            meta.normalization
        );
        assert!(
            (meta.normalization.std[c] as f64 - std[c]).abs() < 1e-5,
            "{:?} vs {std:?}",
            meta.normalization
        );
    }
    let (_, best) = petal_model::load_checkpoint(&full.join("best.safetensors")).unwrap();
    assert_eq!(best.normalization, meta.normalization);
    // eval normalises as training did: the validation folder scores the last epoch's
    // validation accuracy exactly.
    let out = trainer()
        .args(["eval", "--json", "--checkpoint"])
        .arg(full.join("model.safetensors"))
        .arg("--data")
        .arg(&va)
        .run();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let m = metrics(&full);
    assert_eq!(v["accuracy"], m.last().unwrap()["val_accuracy"], "{v}");
    // Interrupted and resumed: the same statistics, the same weights.
    let part = dir.path().join("part");
    let mut c = train(&part);
    c.env("PETAL_INTERRUPT_AFTER_STEPS", "3");
    assert_eq!(c.run().status.code(), Some(130));
    let out = trainer().args(["train", "--resume"]).arg(&part).run();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_training(&weights(&full.join("model.safetensors")), &m, &part);
}
