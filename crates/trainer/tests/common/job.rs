//! The reference job of the fault tests (flowernet on the synthetic flowers, long enough
//! to interrupt, short enough to run several times), and what they check a run folder
//! with.

use super::*;
use petal_model::load_checkpoint;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Sends `signal` to a child process.
pub fn signal(child: &Child, signal: i32) {
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(rc, 0, "kill({}, {signal})", child.id());
}

/// Waits until `metrics.jsonl` in `run` has `lines` complete lines (or the child exits, or
/// [`TIMEOUT`]); returns them.
pub fn wait_for_epochs(child: &mut Child, run: &Path, lines: usize) -> Vec<serde_json::Value> {
    let t0 = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(run.join("metrics.jsonl")) {
            let complete: Vec<&str> = text.split_inclusive('\n').filter(|l| l.ends_with('\n')).collect();
            if complete.len() >= lines {
                return complete
                    .iter()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
            }
        }
        if let Some(s) = child.try_wait().unwrap() {
            panic!("the trainer exited ({s}) before epoch {lines} was written");
        }
        if t0.elapsed() > TIMEOUT {
            let _ = child.kill();
            panic!("no epoch {lines} after {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Asserts a run folder holds a consistent checkpoint: it loads, the optimizer file of its
/// step is there and loads onto it, and no temporary file is left.
pub fn assert_consistent(run: &Path) -> (u64, u64) {
    let (mut net, meta) = load_checkpoint(&run.join("model.safetensors")).unwrap();
    let opt = run.join(format!("optimizer-step{}.safetensors", meta.step));
    petal_model::load_optimizer_state(&opt, &mut net).unwrap();
    let names = listing(run);
    assert!(
        !names.iter().any(|n| n.contains(".tmp-")),
        "temporary files left: {names:?}"
    );
    (meta.epoch, meta.step)
}

/// A job long enough to interrupt (flowernet on 1 thread: about 0.15 s an epoch, 13 steps
/// of 16 images) and short enough to run several times.
pub const JOB: [&str; 13] = [
    "train",
    "--arch",
    "flowernet",
    "--synth-per-class",
    "50",
    "--batch-size",
    "16",
    "--seed",
    "3",
    "--threads",
    "1",
    "--lr",
    "0.02",
];
pub const JOB_EPOCHS: usize = 4;
pub const JOB_STEPS_PER_EPOCH: u64 = 13;

pub fn job(out: &Path, epochs: usize) -> Command {
    let mut c = trainer();
    c.args(JOB)
        .arg("--epochs")
        .arg(epochs.to_string())
        .arg("--out")
        .arg(out);
    c
}

pub fn resume(run: &Path) -> Command {
    let mut c = trainer();
    c.args(["train", "--resume"]).arg(run);
    c
}

/// Final weights and metrics of the job run without interruption (computed once).
pub fn reference() -> &'static (Weights, Vec<serde_json::Value>) {
    static REF: OnceLock<(Weights, Vec<serde_json::Value>)> = OnceLock::new();
    REF.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("reference");
        let out = run(job(&run_dir, JOB_EPOCHS));
        assert!(out.status.success(), "{}", stderr(&out));
        (weights(&run_dir.join("model.safetensors")), metrics(&run_dir))
    })
}

/// Asserts a run ended with the reference's weights, bit for bit, and the same metrics.
pub fn assert_matches_reference(run: &Path) {
    let (w, m) = reference();
    assert_same_training(w, m, run);
    let (epoch, step) = assert_consistent(run);
    assert_eq!(
        (epoch, step),
        (JOB_EPOCHS as u64, JOB_EPOCHS as u64 * JOB_STEPS_PER_EPOCH)
    );
    let opt: Vec<String> = listing(run)
        .into_iter()
        .filter(|n| n.starts_with("optimizer"))
        .collect();
    assert_eq!(opt, [format!("optimizer-step{step}.safetensors")]);
}

/// Half of epoch 1's training time (from its metrics line), to land inside epoch 2.
pub fn half_an_epoch(m: &serde_json::Value) -> Duration {
    Duration::from_secs_f64(m["seconds"].as_f64().unwrap() / 2.0)
        .clamp(Duration::from_millis(5), Duration::from_millis(300))
}

/// A quick seednet job on synthetic flowers: 80 training images, in batches of 16 (5
/// steps an epoch) unless `extra` says otherwise.
pub fn quick_job(out: &Path, extra: &[&str]) -> Command {
    let mut c = trainer();
    c.args([
        "train",
        "--synth-per-class",
        "20",
        "--size",
        "20",
        "--threads",
        "1",
    ])
    .args(extra)
    .arg("--out")
    .arg(out);
    if !extra.contains(&"--batch-size") {
        c.args(["--batch-size", "16"]);
    }
    c
}
