//! Any number of classes: the presets size their last layer to the data's classes, a spec
//! whose output count differs is refused before any image is decoded, validation and
//! evaluation folders must hold the training classes (or some of them). End to end through
//! the binary, with 2, 3, 10 and 100 classes.

mod common;

use common::*;
use image::{DynamicImage, ImageFormat};
use petal_model::load_checkpoint;
use std::path::Path;

/// A deterministic value in `[0, 1)` from three integers (for pixel noise).
fn hash01(a: u32, b: u32, c: u32) -> f32 {
    let mut h = a.wrapping_mul(0x9E37_79B9) ^ b.wrapping_mul(0x85EB_CA6B) ^ c.wrapping_mul(0xC2B2_AE35);
    h ^= h >> 15;
    h = h.wrapping_mul(0x2C1B_3C6D);
    h ^= h >> 12;
    (h >> 8) as f32 / (1 << 24) as f32
}

/// Image `i` of class `k` of `n`: a colour of hue `k / n` and a brightness that grows with
/// `k` (so grayscale inputs tell classes apart too), with pixel noise; 20x20 RGB PNG.
fn class_image(k: usize, n: usize, i: usize) -> Vec<u8> {
    let hue = k as f32 / n as f32 * 6.0;
    let level = 0.25 + 0.6 * k as f32 / n as f32;
    let rgb = [0.0f32, 2.0, 4.0].map(|o| {
        let d = ((hue - o).rem_euclid(6.0) - 3.0).abs();
        (d - 1.0).clamp(0.0, 1.0) * 0.5 + level * 0.5
    });
    let img = image::RgbImage::from_fn(20, 20, |x, y| {
        let noise = (hash01(i as u32 * 7919 + k as u32, x, y) - 0.5) * 0.15;
        image::Rgb(rgb.map(|v| ((v + noise).clamp(0.0, 1.0) * 255.0) as u8))
    });
    encode(&DynamicImage::ImageRgb8(img), ImageFormat::Png)
}

/// Class names that sort in label order: `c000`, `c001`, ...
fn class_names(n: usize) -> Vec<String> {
    (0..n).map(|k| format!("c{k:03}")).collect()
}

/// A folder of `n` classes (named by [`class_names`] unless `names` is given) with
/// `per_class` images each.
fn image_folder(dir: &Path, n: usize, per_class: usize) -> Vec<String> {
    let names = class_names(n);
    for (k, name) in names.iter().enumerate() {
        for i in 0..per_class {
            write(&dir.join(name).join(format!("{i}.png")), &class_image(k, n, i));
        }
    }
    names
}

/// A file named like an image that does not decode: loading it prints a `skipped` line, so
/// a command that fails without printing one failed before decoding.
fn plant_undecodable(dir: &Path, class: &str) {
    write(
        &dir.join(class).join("zz-broken.png"),
        b"\x89PNG\r\n\x1a\nnot an image",
    );
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

/// The options of the runs below for `arch` (inputs 16x16, gray for seednet, as its
/// default; RGB otherwise).
fn arch_args(arch: &str) -> Vec<String> {
    let mut a = vec![
        "--arch".to_string(),
        arch.to_string(),
        "--size".into(),
        "16".into(),
    ];
    a.push(if arch == "seednet" { "--grayscale" } else { "--rgb" }.into());
    a
}

fn train_cmd(data: &Path, out: &Path, arch: &str, epochs: usize) -> std::process::Command {
    let mut c = trainer();
    c.arg("train")
        .args(arch_args(arch))
        .args([
            "--batch-size",
            "8",
            "--threads",
            "1",
            "--seed",
            "4",
            "--lr",
            "0.01",
        ])
        .args(["--val-split", "0.25", "--epochs", &epochs.to_string()])
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out);
    c
}

#[test]
fn train_resume_eval_predict_folders_of_2_3_10_and_100_classes() {
    let dir = tempfile::tempdir().unwrap();
    for n in [2usize, 3, 10, 100] {
        let data = dir.path().join(format!("data{n}"));
        let names = image_folder(&data, n, 4);
        let spec = format!("conv3x3:4/p1,relu,maxpool2,dense:{n}");
        for arch in ["seednet", "flowernet", spec.as_str()] {
            let tag = format!("{n} classes, --arch {arch}");
            let full = dir.path().join(format!("full-{n}-{}", arch.len()));
            let out = run(train_cmd(&data, &full, arch, 2));
            assert!(out.status.success(), "{tag}: {}", stderr(&out));
            // The network ends in one output per class, and the run records it.
            let (net, meta) = load_checkpoint(&full.join("model.safetensors")).unwrap();
            assert!(
                net.spec().ends_with(&format!(",dense:{n}")),
                "{tag}: {}",
                net.spec()
            );
            assert_eq!(net.classes(), n, "{tag}");
            assert_eq!(meta.classes, names, "{tag}");
            let cfg: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(full.join("config.json")).unwrap()).unwrap();
            assert_eq!(cfg["arch"], arch, "{tag}");
            assert_eq!(cfg["spec"], net.spec(), "{tag}");
            assert!(
                stdout(&out).contains(&format!("training {}", net.spec())),
                "{tag}"
            );
            assert_eq!(metrics(&full).len(), 2, "{tag}");

            // Interrupted after its first step, then resumed: the same weights, bit for bit.
            let part = dir.path().join(format!("part-{n}-{}", arch.len()));
            let mut c = train_cmd(&data, &part, arch, 2);
            c.env("PETAL_INTERRUPT_AFTER_STEPS", "1");
            let out = run(c);
            assert_eq!(out.status.code(), Some(130), "{tag}: {}", stderr(&out));
            let out = trainer().args(["train", "--resume"]).arg(&part).run();
            assert!(out.status.success(), "{tag}: {}", stderr(&out));
            assert!(
                weights(&part.join("model.safetensors")) == weights(&full.join("model.safetensors")),
                "{tag}: the resumed run's weights differ from the uninterrupted run's"
            );

            // Evaluation on the whole folder, and a prediction, name the data's classes.
            let v = json(
                &trainer()
                    .args(["eval", "--json", "--checkpoint"])
                    .arg(full.join("model.safetensors"))
                    .arg("--data")
                    .arg(&data)
                    .run(),
            );
            assert_eq!(v["classes"], serde_json::json!(names), "{tag}");
            assert_eq!(v["images"], 4 * n, "{tag}");
            let counts = v["counts"].as_array().unwrap();
            assert_eq!(counts.len(), n, "{tag}");
            assert!(counts.iter().all(|r| r.as_array().unwrap().len() == n), "{tag}");
            let v = json(
                &trainer()
                    .args(["predict", "--json", "--top", "3", "--checkpoint"])
                    .arg(full.join("model.safetensors"))
                    .arg(data.join(&names[n - 1]).join("0.png"))
                    .run(),
            );
            let preds = v[0]["predictions"].as_array().unwrap();
            assert_eq!(preds.len(), 3.min(n), "{tag}");
            for p in preds {
                assert!(
                    names.contains(&p["class"].as_str().unwrap().to_string()),
                    "{tag}: {p}"
                );
            }
        }
    }
}

#[test]
fn train_a_preset_learns_ten_classes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    image_folder(&data, 10, 16);
    let run_dir = dir.path().join("run");
    let mut c = trainer();
    c.args([
        "train", "--arch", "seednet", "--rgb", "--size", "16", "--epochs", "8",
    ])
    .args([
        "--batch-size",
        "8",
        "--lr",
        "0.01",
        "--val-split",
        "0.25",
        "--data",
    ])
    .arg(&data)
    .arg("--out")
    .arg(&run_dir);
    let out = c.run();
    assert!(out.status.success(), "{}", stderr(&out));
    let m = metrics(&run_dir);
    let acc = m.last().unwrap()["val_accuracy"].as_f64().unwrap();
    // Chance is 10 %.
    assert!(
        acc >= 0.6,
        "seednet on 10 classes: {acc} validation accuracy\n{}",
        stdout(&out)
    );
}

#[test]
fn train_refuses_a_spec_whose_outputs_differ_from_the_classes_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ten");
    image_folder(&data, 10, 2);
    plant_undecodable(&data, "c003");
    let cases = [
        (
            "conv3x3:8,maxpool2,dense:5",
            format!(
                "error: the spec ends in dense:5 but {} has 10 classes: end it in dense:10, or use a preset",
                data.display()
            ),
        ),
        (
            "conv3x3:2,maxpool2,flatten",
            format!(
                "error: the spec ends in flatten (98 outputs) but {} has 10 classes: end it in dense:10, or use a preset",
                data.display()
            ),
        ),
    ];
    for (spec, want) in cases {
        let out_dir = dir.path().join("run");
        let mut c = trainer();
        c.args(["train", "--arch", spec, "--size", "16", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(&out_dir);
        let out = c.run();
        assert_eq!(error_line(&out), want);
        assert!(
            !stderr(&out).contains("skipped"),
            "images were decoded: {}",
            stderr(&out)
        );
        assert!(!out_dir.exists(), "a run folder was created");
    }
    // The synthetic flowers have five classes.
    let out = trainer()
        .args([
            "train",
            "--arch",
            "conv3x3:4,maxpool2,dense:3",
            "--size",
            "16",
            "--out",
        ])
        .arg(dir.path().join("synth-run"))
        .run();
    assert_eq!(
        error_line(&out),
        "error: the spec ends in dense:3 but the synthetic flower set has 5 classes: end it in dense:5, or use a preset"
    );
}

#[test]
fn train_default_job_is_the_five_class_seednet_bit_for_bit() {
    // The preset resolved for the synthetic flowers' five classes is the network the
    // default job always trained: the same weights as the spec written out.
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("default");
    let b = dir.path().join("spec");
    let out = trainer().args(["--epochs", "1", "--out"]).arg(&a).run();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = trainer()
        .args([
            "train",
            "--arch",
            "conv3x3:8,maxpool2,dense:5",
            "--grayscale",
            "--size",
            "50",
        ])
        .args(["--epochs", "1", "--out"])
        .arg(&b)
        .run();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(weights(&a.join("model.safetensors")) == weights(&b.join("model.safetensors")));
    assert_eq!(metrics(&a)[0]["train_loss"], metrics(&b)[0]["train_loss"]);
}

#[test]
fn train_validation_folder_must_hold_the_training_classes() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train");
    image_folder(&train, 3, 4);
    plant_undecodable(&train, "c000");
    let base = |val: &Path, out: &Path| {
        let mut c = trainer();
        c.args(["train", "--size", "16", "--epochs", "1", "--data"])
            .arg(&train)
            .arg("--val")
            .arg(val)
            .arg("--out")
            .arg(out);
        c
    };
    // A class the training folder lacks: refused before anything is decoded.
    let extra = dir.path().join("extra");
    image_folder(&extra, 4, 1);
    let out = run(base(&extra, &dir.path().join("r1")));
    let line = error_line(&out);
    assert_eq!(
        line,
        format!(
            "error: data folder {}: has class folders that the training folder {} lacks: [\"c003\"] (training classes: [\"c000\", \"c001\", \"c002\"])",
            extra.display(),
            train.display()
        )
    );
    assert!(!stderr(&out).contains("skipped"), "{}", stderr(&out));
    // Other names altogether.
    let other = dir.path().join("other");
    write(&other.join("cat/0.png"), &class_image(0, 2, 0));
    write(&other.join("dog/0.png"), &class_image(1, 2, 0));
    let line = error_line(&run(base(&other, &dir.path().join("r2"))));
    assert!(line.contains("lacks: [\"cat\", \"dog\"]"), "{line}");
    assert!(!dir.path().join("r1").exists() && !dir.path().join("r2").exists());
    // Some of the classes: accepted with a note; labels follow the training names.
    let some = dir.path().join("some");
    write(&some.join("c002/0.png"), &class_image(2, 3, 9));
    write(&some.join("c002/1.png"), &class_image(2, 3, 8));
    let run_dir = dir.path().join("r3");
    let out = run(base(&some, &run_dir));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "note: validation folder {} has no images of [\"c000\", \"c001\"]",
            some.display()
        )),
        "{}",
        stderr(&out)
    );
    let confusion: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("confusion.json")).unwrap()).unwrap();
    assert_eq!(confusion["classes"], serde_json::json!(["c000", "c001", "c002"]));
    let counts = &confusion["counts"];
    let row_sums: Vec<u64> = (0..3)
        .map(|r| {
            counts[r]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .sum()
        })
        .collect();
    assert_eq!(row_sums, [0, 0, 2], "the two validation images are of class c002");
}

#[test]
fn eval_refuses_a_folder_with_classes_the_checkpoint_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("three");
    image_folder(&data, 3, 4);
    let run_dir = dir.path().join("run");
    let out = trainer()
        .args(["train", "--size", "16", "--epochs", "1", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&run_dir)
        .run();
    assert!(out.status.success(), "{}", stderr(&out));
    let ckpt = run_dir.join("model.safetensors");
    let eval = |folder: &Path| {
        trainer()
            .args(["eval", "--json", "--checkpoint"])
            .arg(&ckpt)
            .arg("--data")
            .arg(folder)
            .run()
    };
    let zoo = dir.path().join("zoo");
    write(&zoo.join("c001/0.png"), &class_image(1, 3, 0));
    write(&zoo.join("zebra/0.png"), &class_image(2, 3, 0));
    plant_undecodable(&zoo, "c001");
    let out = eval(&zoo);
    let line = error_line(&out);
    assert!(
        line.contains(&zoo.display().to_string())
            && line.contains(
                "class folder `zebra` is not one of the checkpoint's classes [\"c000\", \"c001\", \"c002\"]"
            ),
        "{line}"
    );
    assert!(!stderr(&out).contains("skipped"), "{}", stderr(&out));
    // A folder with some of the classes evaluates on the checkpoint's labels.
    let some = dir.path().join("some");
    write(&some.join("c001/0.png"), &class_image(1, 3, 0));
    write(&some.join("c002/0.png"), &class_image(2, 3, 0));
    let v = json(&eval(&some));
    assert_eq!(v["classes"], serde_json::json!(["c000", "c001", "c002"]));
    assert_eq!(v["images"], 2);
}

#[test]
fn bench_and_gradcheck_size_presets_with_classes() {
    let out = trainer()
        .args(["bench", "--arch", "flowernet", "--size", "16", "--classes", "100"])
        .args([
            "--batch-size",
            "4",
            "--threads",
            "1",
            "--seconds",
            "0.05",
            "--json",
        ])
        .run();
    let v = json(&out);
    assert_eq!(v["arch"], "flowernet");
    assert!(v["spec"].as_str().unwrap().ends_with(",dense:100"), "{v}");
    let out = trainer()
        .args(["gradcheck", "--arch", "seednet", "--size", "10", "--classes", "3"])
        .run();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("conv3x3:8,maxpool2,flatten,dense:3"),
        "{}",
        stdout(&out)
    );
    // A spec that does not end in --classes outputs is refused.
    let line = error_line(
        &trainer()
            .args([
                "bench",
                "--arch",
                "conv3x3:4,dense:7",
                "--size",
                "8",
                "--classes",
                "3",
            ])
            .run(),
    );
    assert!(
        line.contains("ends in dense:7 but --classes has 3 classes"),
        "{line}"
    );
}
