//! End-to-end tests of the `trainer` binary.

mod common;

use common::*;
use petal_model::load_checkpoint;

#[test]
fn train_default_job_reaches_90_percent_and_writes_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = trainer().arg("--out").arg(&run).arg("--threads").arg("2").run();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("epoch 1/5") && text.contains("epoch 5/5"), "{text}");
    assert!(
        text.contains("confusion matrix") && text.contains("run written to"),
        "{text}"
    );
    let m = metrics(&run);
    assert_eq!(m.len(), 5);
    for key in [
        "epoch",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "images_per_sec",
        "seconds",
    ] {
        assert!(m[0].get(key).is_some(), "metrics.jsonl lacks {key}");
    }
    let first = m[0]["val_accuracy"].as_f64().unwrap();
    let last = m[4]["val_accuracy"].as_f64().unwrap();
    assert!(first < 1.0, "not trivial: {first} after one epoch");
    assert!(last >= 0.90, "default job ends at {last} validation accuracy");
    assert!(m[4]["train_loss"].as_f64().unwrap() < m[0]["train_loss"].as_f64().unwrap());
    for f in [
        "config.json",
        "model.safetensors",
        "curves.png",
        "confusion.txt",
        "confusion.json",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    let (net, meta) = load_checkpoint(&run.join("model.safetensors")).unwrap();
    assert_eq!(meta.classes, ["daisy", "dandelion", "rose", "sunflower", "tulip"]);
    assert_eq!(meta.epoch, 5);
    assert_eq!(net.spec(), "conv3x3:8,maxpool2,flatten,dense:5");
    // A second run into the same folder is refused: nothing is overwritten.
    let before = std::fs::read(run.join("model.safetensors")).unwrap();
    let out = trainer().arg("--out").arg(&run).arg("--epochs").arg("1").run();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already holds a run"), "{}", stderr(&out));
    assert_eq!(before, std::fs::read(run.join("model.safetensors")).unwrap());
}

#[test]
fn synth_folder_trains_evaluates_and_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("flowers");
    let out = trainer()
        .args([
            "synth",
            "--per-class",
            "40",
            "--size",
            "32",
            "--grayscale",
            "--out",
        ])
        .arg(&data)
        .run();
    assert!(out.status.success(), "{}", stderr(&out));
    for c in ["daisy", "dandelion", "rose", "sunflower", "tulip"] {
        assert_eq!(std::fs::read_dir(data.join(c)).unwrap().count(), 40, "{c}");
    }
    // A corrupt file and a non-image file in a class folder.
    std::fs::write(data.join("rose/broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    std::fs::write(data.join("rose/notes.txt"), b"hello").unwrap();
    let run = dir.path().join("run");
    let out = trainer()
        .args([
            "train",
            "--arch",
            "conv3x3:8,maxpool2,dense:5",
            "--size",
            "32",
            "--grayscale",
            "--epochs",
            "3",
        ])
        .args(["--lr", "0.02", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&run)
        .run();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("skipped") && err.contains("broken.png"), "{err}");
    assert!(
        stdout(&out).contains("200 images in 5 classes"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("1 skipped, 1 ignored"), "{}", stdout(&out));
    let m = metrics(&run);
    assert_eq!(m.len(), 3);

    let ckpt = run.join("model.safetensors");
    let out = trainer()
        .args(["eval", "--json", "--checkpoint"])
        .arg(&ckpt)
        .arg("--data")
        .arg(&data)
        .run();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["images"], 200);
    assert_eq!(v["skipped"].as_array().unwrap().len(), 1);
    let acc = v["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    let counts: usize = v["counts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|x| x.as_u64().unwrap() as usize)
        .sum();
    assert_eq!(counts, 200);
    let out = trainer()
        .args(["eval", "--checkpoint"])
        .arg(&ckpt)
        .arg("--data")
        .arg(&data)
        .run();
    assert!(
        stdout(&out).contains("precision") && stdout(&out).contains("accuracy"),
        "{}",
        stdout(&out)
    );

    let img = data.join("daisy/daisy_00000.png");
    let out = trainer()
        .args(["predict", "--json", "--top", "2", "--checkpoint"])
        .arg(&ckpt)
        .arg(&img)
        .run();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let preds = v[0]["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 2);
    let p0 = preds[0]["probability"].as_f64().unwrap();
    assert!(p0 >= preds[1]["probability"].as_f64().unwrap() && p0 <= 1.0);
    // A file that does not decode: reported, the others still predicted, exit non-zero.
    let out = trainer()
        .args(["predict", "--checkpoint"])
        .arg(&ckpt)
        .arg(data.join("rose/broken.png"))
        .arg(&img)
        .run();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("broken.png"), "{}", stderr(&out));
    assert!(stdout(&out).contains("daisy_00000.png: "), "{}", stdout(&out));
}

#[test]
fn train_interrupted_and_resumed_run_matches_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "train",
        "--synth-per-class",
        "60",
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--seed",
        "5",
        "--lr",
        "0.02",
    ];
    let full = dir.path().join("full");
    let out = trainer().args(args).arg("--out").arg(&full).run();
    assert!(out.status.success(), "{}", stderr(&out));

    // 240 training images in batches of 16: 15 steps per epoch; stop inside epoch 2.
    let part = dir.path().join("part");
    let out = trainer()
        .args(args)
        .arg("--out")
        .arg(&part)
        .env("PETAL_INTERRUPT_AFTER_STEPS", "22")
        .run();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("interrupted at epoch 2, step 22"),
        "{}",
        stdout(&out)
    );
    assert_eq!(metrics(&part).len(), 1);
    let out = trainer().args(["train", "--resume"]).arg(&part).run();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("resuming"), "{}", stdout(&out));

    let mf = metrics(&full);
    assert_eq!(mf.len(), 3);
    assert_same_training(&weights(&full.join("model.safetensors")), &mf, &part);
    // Exactly one optimizer file, the checkpoint's own.
    let opt: Vec<_> = std::fs::read_dir(&part)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("optimizer"))
        .collect();
    assert_eq!(opt, ["optimizer-step45.safetensors"]);
}

#[test]
fn train_bad_data_folders_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::create_dir_all(root.join("one/daisy")).unwrap();
    std::fs::write(root.join("one/daisy/a.png"), b"x").unwrap();
    std::fs::create_dir_all(root.join("hollow/daisy")).unwrap();
    std::fs::create_dir_all(root.join("hollow/rose")).unwrap();
    std::fs::write(root.join("hollow/daisy/readme.txt"), b"x").unwrap();
    let cases = [
        ("missing", "does not exist"),
        ("empty", "has no class folders"),
        ("one", "has only one class folder (`daisy`)"),
        ("hollow", "class `daisy` has no image files"),
    ];
    for (name, needle) in cases {
        let out = trainer()
            .args(["train", "--epochs", "1", "--data"])
            .arg(root.join(name))
            .arg("--out")
            .arg(root.join(format!("run-{name}")))
            .run();
        let line = error_line(&out);
        assert!(line.contains(needle), "{name}: {line}");
        assert!(
            !root.join(format!("run-{name}")).exists(),
            "{name}: no run folder for a failed start"
        );
    }
    let out = trainer()
        .args(["train", "--arch", "conv3x3:8,maxpol2,dense:5"])
        .run();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("spec layer 2 (`maxpol2`)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn train_divergence_stops_with_the_epoch_and_step() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = trainer()
        .args([
            "train",
            "--synth-per-class",
            "40",
            "--epochs",
            "2",
            "--lr",
            "1e9",
            "--out",
        ])
        .arg(&run)
        .run();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("training diverged at epoch 1, step"), "{err}");
}

#[test]
fn gradcheck_and_bench_commands() {
    let out = trainer()
        .args([
            "gradcheck",
            "--arch",
            "conv3x3:4/s2/p1,relu,maxpool2,dense:3",
            "--size",
            "12",
        ])
        .run();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("passed") && stdout(&out).contains("0.weight"),
        "{}",
        stdout(&out)
    );
    let out = trainer()
        .args([
            "gradcheck",
            "--arch",
            "conv3x3:4,dense:3",
            "--size",
            "8",
            "--tolerance",
            "0",
        ])
        .run();
    assert_eq!(out.status.code(), Some(1), "a zero tolerance cannot pass");

    let out = trainer()
        .args([
            "bench",
            "--json",
            "--seconds",
            "0.2",
            "--batch-size",
            "4,8",
            "--threads",
            "1",
        ])
        .run();
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for (v, b) in lines.iter().zip([4, 8]) {
        assert_eq!(v["arch"], "seednet");
        assert_eq!(v["batch_size"], b);
        assert_eq!(v["threads"], 1);
        assert!(v["train_images_per_sec"].as_f64().unwrap() > 0.0);
        assert!(v["infer_images_per_sec"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn help_lists_every_command() {
    let out = trainer().arg("--help").run();
    let text = stdout(&out);
    for c in ["train", "eval", "predict", "bench", "gradcheck", "synth"] {
        assert!(text.contains(c), "--help lacks {c}");
    }
    for c in ["train", "eval", "predict", "bench", "gradcheck", "synth"] {
        let out = trainer().args([c, "--help"]).run();
        assert!(out.status.success(), "{c} --help");
    }
}

#[test]
fn bench_into_a_closed_pipe_ends_quietly_and_says_its_simd_level() {
    use std::os::unix::process::ExitStatusExt;
    let tiny = [
        "bench",
        "--arch",
        "conv3x3:2,dense:2",
        "--size",
        "8",
        "--seconds",
        "0.05",
    ];
    // `trainer bench | head -1`: the reader goes away before the results are printed.
    let mut cmd = trainer();
    cmd.args(tiny).args(["--batch-size", "1,2,3"]);
    let mut child = spawn(&mut cmd);
    drop(child.stdout.take());
    let out = wait_output(child);
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}", out.status);
    // The JSON names the build's SIMD level and the CPU's; the header says both.
    let out = trainer().args(tiny).arg("--json").run();
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let level = petal_kernels::SimdLevel::COMPILED.name();
    assert_eq!(v["simd"], level);
    assert_eq!(v["cpu_simd"], petal_kernels::SimdLevel::detect().name());
    let out = trainer().args(tiny).run();
    assert!(
        stdout(&out).contains(&format!("kernels built for {level}")),
        "{}",
        stdout(&out)
    );
    // A build for this CPU prints no SIMD warning; one for less than it has prints one.
    let warned = stderr(&out).contains(SIMD_WARNING);
    assert_eq!(
        warned,
        petal_kernels::simd_warning().is_some(),
        "{}",
        stderr(&out)
    );
}
