//! The memory a run needs, known before work is spent: `train` prints its estimate and, at
//! the end, its measured peak (within 15 % of each other on the presets); a run over
//! `--max-memory` is refused before anything is decoded or allocated, naming the largest
//! batch that fits; `bench` prints each configuration's estimate.

mod common;

use common::*;

/// A training run's estimate and measured peak, in MiB (`peak memory X MiB (estimated Y
/// MiB)` at the end of its output).
fn peak_and_estimate(text: &str) -> (f64, f64) {
    let mib = |s: &str| -> f64 {
        let (v, unit) = s
            .trim()
            .split_once(' ')
            .unwrap_or_else(|| panic!("`{s}` in {text}"));
        let v: f64 = v.parse().unwrap();
        match unit.trim_end_matches(')') {
            "KiB" => v / 1024.0,
            "MiB" => v,
            "GiB" => v * 1024.0,
            u => panic!("unit `{u}` in {text}"),
        }
    };
    let tail = text
        .split("peak memory ")
        .nth(1)
        .unwrap_or_else(|| panic!("no peak in {text}"));
    let (peak, rest) = tail.split_once(" (estimated ").unwrap();
    let estimate = rest.split(')').next().unwrap();
    (mib(peak), mib(&format!("{estimate})")))
}

#[test]
fn train_the_estimate_is_within_15_percent_of_the_peak() {
    let dir = tempfile::tempdir().unwrap();
    for (arch, batch, threads) in [
        ("seednet", "32", "2"),
        ("flowernet", "128", "2"),
        ("resnet8", "32", "1"),
    ] {
        let mut cmd = trainer();
        cmd.args([
            "train",
            "--arch",
            arch,
            "--batch-size",
            batch,
            "--threads",
            threads,
        ])
        .args(["--epochs", "1", "--synth-per-class", "200", "--out"])
        .arg(dir.path().join(arch));
        let out = run(cmd);
        assert!(out.status.success(), "{arch}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains("memory: about "), "{arch}: {text}");
        let (peak, estimate) = peak_and_estimate(&text);
        let error = (estimate - peak).abs() / peak;
        assert!(
            error <= 0.15,
            "{arch} batch {batch}: estimated {estimate} MiB, peak {peak} MiB"
        );
    }
}

#[test]
fn train_a_run_over_max_memory_is_refused_with_the_largest_batch_that_fits() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let job = |batch: &str| {
        let mut cmd = trainer();
        cmd.args([
            "train",
            "--arch",
            "resnet8",
            "--synth-per-class",
            "20",
            "--epochs",
            "1",
        ])
        .args([
            "--threads",
            "1",
            "--max-memory",
            "40M",
            "--batch-size",
            batch,
            "--out",
        ])
        .arg(&out_dir);
        cmd
    };
    let out = run(job("128"));
    let line = error_line(&out);
    assert!(line.contains("this run needs about "), "{line}");
    assert!(
        line.contains("at batch 128, more than the 40.0 MiB --max-memory"),
        "{line}"
    );
    let batch: usize = line
        .split("the largest batch that fits is ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no largest batch in {line}"));
    assert!(batch > 1 && batch < 128, "{line}");
    assert!(!out_dir.exists(), "nothing is written before the refusal");
    // That batch fits, and the run trains.
    let out = run(job(&batch.to_string()));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("of 40.0 MiB --max-memory"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn train_data_too_large_for_the_memory_is_refused_before_it_is_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = trainer();
    cmd.args([
        "train",
        "--arch",
        "seednet",
        "--synth-per-class",
        "100000",
        "--out",
    ])
    .arg(dir.path().join("run"))
    .args(["--max-memory", "1G"]);
    let line = error_line(&run(cmd));
    assert!(
        line.contains("not even a batch of one fits: the data alone needs"),
        "{line}"
    );
    let mut cmd = trainer();
    cmd.args(["train", "--max-memory", "lots", "--out"])
        .arg(dir.path().join("r2"));
    let line = error_line(&run(cmd));
    assert!(line.contains("--max-memory `lots` is not a size"), "{line}");
}

#[test]
fn bench_prints_each_configurations_memory() {
    let out = run({
        let mut c = trainer();
        c.args([
            "bench",
            "--arch",
            "seednet",
            "--batch-size",
            "4,64",
            "--seconds",
            "0.2",
            "--json",
        ]);
        c
    });
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mem: Vec<u64> = rows.iter().map(|r| r["memory_bytes"].as_u64().unwrap()).collect();
    assert_eq!(mem.len(), 2);
    assert!(mem[0] > 1 << 20 && mem[1] > mem[0], "{mem:?}");
}
