//! ResNets and the layers they bring (batch norm, residual blocks, global average pooling,
//! dropout) through the binary: training, an interrupted and resumed run that ends with
//! the uninterrupted run's weights and running statistics bit for bit, the same bits on 1
//! and 2 threads, and `eval`/`predict` in inference mode.

mod common;

use common::*;
use std::path::Path;

/// Writes 12 synthetic flowers per class at 16x16 to `dir`.
fn flowers(dir: &Path) {
    let out = trainer()
        .args(["synth", "--per-class", "12", "--size", "16", "--out"])
        .arg(dir)
        .run();
    assert!(out.status.success(), "{}", stderr(&out));
}

fn train(data: &Path, out: &Path, arch: &str, algo: &str, threads: &str) -> std::process::Command {
    let mut c = trainer();
    c.args([
        "train",
        "--conv-algo",
        algo,
        "--arch",
        arch,
        "--size",
        "16",
        "--epochs",
        "2",
        "--batch-size",
        "10",
    ])
    .args([
        "--lr",
        "0.05",
        "--weight-decay",
        "1e-4",
        "--threads",
        threads,
        "--data",
    ])
    .arg(data)
    .arg("--out")
    .arg(out);
    c
}

/// The convolution algorithm each network of these tests trains with: resnet8 the default
/// `auto` (Winograd on its wider layers: 16 channels and more with AVX2, 32 with
/// AVX-512), the 8-channel spec `winograd` (every 3x3 layer; `auto` would keep them
/// direct).
fn algo_of(arch: &str) -> &'static str {
    if arch == "resnet8" {
        "auto"
    } else {
        "winograd"
    }
}

#[test]
fn train_resnets_resume_bit_for_bit_and_repeat_on_any_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("flowers");
    flowers(&data);
    // resnet8, and a spec with dropout (masks keyed by the step) and an avgpool; training
    // sets of 40 images in batches of 10 (4 steps an epoch).
    for arch in [
        "resnet8",
        "conv3x3:8/p1/nobias,bn,relu,res(conv3x3:8/p1/nobias,bn,relu,conv3x3:8/p1/nobias,bn),relu,avgpool2,dropout:0.3,dense:5",
    ] {
        let tag = &arch[..7];
        let full = dir.path().join(format!("full-{tag}"));
        let out = train(&data, &full, arch, algo_of(arch), "2").run();
        assert!(out.status.success(), "{tag}: {}", stderr(&out));
        let m = metrics(&full);
        assert_eq!(m.len(), 2, "{tag}");
        let w = weights(&full.join("model.safetensors"));
        assert!(w.iter().any(|(n, _)| n.ends_with(".running")), "{tag}: batch norms saved");
        assert_eq!(config(&full)["conv_algo"], algo_of(arch), "{tag}: recorded in config.json");

        // One thread: the same bits.
        let one = dir.path().join(format!("one-{tag}"));
        assert!(train(&data, &one, arch, algo_of(arch), "1").run().status.success());
        assert_same_training(&w, &m, &one);

        // Interrupted after 3 steps (inside the first epoch), then resumed.
        let part = dir.path().join(format!("part-{tag}"));
        let mut c = train(&data, &part, arch, algo_of(arch), "2");
        c.env("PETAL_INTERRUPT_AFTER_STEPS", "3");
        assert_eq!(c.run().status.code(), Some(130), "{tag}");
        let out = trainer().args(["train", "--resume"]).arg(&part).run();
        assert!(out.status.success(), "{tag}: {}", stderr(&out));
        assert_same_training(&w, &m, &part);

        // Evaluation and prediction use the running statistics: an image's probabilities
        // do not depend on the images predicted with it (batch statistics would).
        let out = trainer()
            .args(["eval", "--json", "--checkpoint"])
            .arg(full.join("model.safetensors"))
            .arg("--data")
            .arg(&data)
            .run();
        assert!(out.status.success(), "{tag}: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(v["images"], 60, "{tag}");
        let predict = |images: &[&str]| -> serde_json::Value {
            let mut c = trainer();
            c.args(["predict", "--json", "--checkpoint"]).arg(full.join("model.safetensors"));
            for i in images {
                c.arg(data.join(i));
            }
            let out = c.run();
            assert!(out.status.success(), "{tag}: {}", stderr(&out));
            serde_json::from_str(&stdout(&out)).unwrap()
        };
        let rose = "rose/rose_00000.png";
        let both = predict(&[rose, "daisy/daisy_00003.png"]);
        let alone = predict(&[rose]);
        assert_eq!(both[0], alone[0], "{tag}: inference does not depend on the batch");
    }
}

/// A run made before `--conv-algo` existed has no `conv_algo` in its `config.json`: it
/// resumes on the direct kernels it began with (not on the new default, `auto`), and ends
/// with the bits of an uninterrupted direct run.
#[test]
fn a_configuration_from_before_winograd_resumes_on_the_direct_kernels() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("flowers");
    flowers(&data);
    let full = dir.path().join("full");
    assert!(train(&data, &full, "resnet8", "direct", "2")
        .run()
        .status
        .success());
    let auto = dir.path().join("auto");
    assert!(train(&data, &auto, "resnet8", "auto", "2").run().status.success());
    let w = weights(&full.join("model.safetensors"));
    assert_ne!(
        w,
        weights(&auto.join("model.safetensors")),
        "auto rounds otherwise"
    );
    let part = dir.path().join("part");
    let mut c = train(&data, &part, "resnet8", "direct", "2");
    c.env("PETAL_INTERRUPT_AFTER_STEPS", "3");
    assert_eq!(c.run().status.code(), Some(130));
    let mut cfg = config(&part);
    assert_eq!(cfg["conv_algo"], "direct");
    cfg.as_object_mut().unwrap().remove("conv_algo");
    std::fs::write(
        part.join("config.json"),
        serde_json::to_string_pretty(&cfg).unwrap(),
    )
    .unwrap();
    let out = trainer().args(["train", "--resume"]).arg(&part).run();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_training(&w, &metrics(&full), &part);
}

#[test]
fn gradcheck_resnet8_passes_and_names_every_tensor() {
    // resnet8 at `size` on `algo`: its report, which must pass.
    let gradcheck = |size: &str, algo: &str| {
        let out = trainer()
            .args([
                "gradcheck",
                "--arch",
                "resnet8",
                "--size",
                size,
                "--batch-size",
                "3",
            ])
            .args(["--conv-algo", algo])
            .run();
        assert!(out.status.success(), "{algo} at {size}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.lines().last().unwrap().starts_with("passed"), "{text}");
        text
    };
    // On Winograd wherever it applies (every stride-1 3x3 layer; 12x12 maps take F(4x4)).
    gradcheck("12", "winograd");
    let text = gradcheck("8", "auto");
    for name in [
        "0.weight",
        "1.weight",
        "3.body.0.weight",
        "5.shortcut.1.bias",
        "11.weight",
        "input",
    ] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(name)),
            "{name} missing:\n{text}"
        );
    }
    // A batch norm after global pooling sees one value per channel and image.
    let out = trainer()
        .args([
            "gradcheck",
            "--arch",
            "conv3x3:4,gap,bn,dense:5",
            "--size",
            "6",
            "--batch-size",
            "1",
        ])
        .run();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        error_line(&out).contains("it needs a batch of at least 2"),
        "{}",
        stderr(&out)
    );
}
