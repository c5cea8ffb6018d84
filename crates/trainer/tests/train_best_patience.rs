//! The run keeps the best epoch's checkpoint (`best.safetensors`, by validation accuracy,
//! the first of equals) and `--patience N` stops training when the validation accuracy has
//! not improved for N epochs, saying so; a resumed run that had stopped stays stopped.

mod common;

use common::*;

#[test]
fn train_keeps_the_best_epoch_and_stops_on_patience() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let args = [
        "--synth-per-class",
        "10",
        "--size",
        "16",
        "--epochs",
        "20",
        "--patience",
        "2",
    ];
    let out = trainer().arg("train").args(args).arg("--out").arg(&run).run();
    assert!(out.status.success(), "{}", stderr(&out));
    let m = metrics(&run);
    let acc: Vec<f64> = m.iter().map(|e| e["val_accuracy"].as_f64().unwrap()).collect();
    let best = acc
        .iter()
        .enumerate()
        .fold(0, |b, (i, &a)| if a > acc[b] { i } else { b });
    assert!(m.len() < 20, "20 epochs ran: {acc:?}");
    assert_eq!(m.len() - 1 - best, 2, "stopped 2 epochs after the best: {acc:?}");
    assert!(acc[best + 1..].iter().all(|&a| a <= acc[best]));
    let line = format!(
        "stopped after epoch {}: the validation accuracy has not improved for 2 epochs (best {:.1} % at epoch {}, in best.safetensors)",
        m.len(),
        acc[best] * 100.0,
        best + 1
    );
    assert!(stdout(&out).contains(&line), "{}", stdout(&out));
    // best.safetensors holds the best epoch's weights: its metadata names that epoch.
    let (net, meta) = petal_model::load_checkpoint(&run.join("best.safetensors")).unwrap();
    assert_eq!(meta.epoch as usize, best + 1);
    assert_eq!(
        net.spec(),
        petal_model::load_checkpoint(&run.join("model.safetensors"))
            .unwrap()
            .0
            .spec()
    );
    // Resumed (even with more epochs), the run stops again before training.
    let out = trainer()
        .args(["train", "--resume"])
        .arg(&run)
        .args(["--epochs", "30"])
        .run();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&line), "{}", stdout(&out));
    assert_eq!(metrics(&run).len(), m.len());
    // Patience needs a validation set and at least one epoch.
    for (extra, needle) in [
        (vec!["--patience", "0"], "--patience must be at least 1"),
        (
            vec!["--patience", "3", "--val-split", "0"],
            "needs --val DIR or a --val-split above 0",
        ),
    ] {
        let out = trainer()
            .args(["train", "--synth-per-class", "10", "--size", "16"])
            .args(extra)
            .arg("--out")
            .arg(dir.path().join("refused"))
            .run();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(error_line(&out).contains(needle), "{}", stderr(&out));
        assert!(!dir.path().join("refused").exists());
    }
}
