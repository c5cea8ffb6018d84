//! A training run stopped from outside: SIGKILL at any moment, Ctrl-C, SIGTERM, SIGHUP and
//! SIGUSR1 (a checkpoint after the step, exit 128 + the signal), a crash after a
//! `--checkpoint-every` checkpoint within an epoch. Each resumes to the uninterrupted run's
//! weights, bit for bit (the reference job of `common/job.rs`).

mod common;

use common::job::*;
use common::*;
use petal_model::load_checkpoint;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;

#[test]
fn train_sigkill_in_the_middle_of_an_epoch_then_resume_ends_as_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let mut child = spawn(job(&run_dir, JOB_EPOCHS));
    let m = wait_for_epochs(&mut child, &run_dir, 1);
    std::thread::sleep(half_an_epoch(&m[0]));
    signal(&child, libc::SIGKILL);
    let out = wait_output(child);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "the run ended before the kill"
    );
    // What is on disk is whole: the last checkpoint loads with its optimizer state.
    let (mut net, meta) = load_checkpoint(&run_dir.join("model.safetensors")).unwrap();
    assert!(meta.epoch >= 1 && meta.epoch < JOB_EPOCHS as u64, "{meta:?}");
    let opt = run_dir.join(format!("optimizer-step{}.safetensors", meta.step));
    petal_model::load_optimizer_state(&opt, &mut net).unwrap();
    let out = run(resume(&run_dir));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!(
            "resuming {} at epoch {}",
            run_dir.display(),
            meta.epoch + 1
        )),
        "{}",
        stdout(&out)
    );
    assert_matches_reference(&run_dir);
}

#[test]
fn train_sigkill_before_the_first_checkpoint_then_resume_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let mut child = spawn(job(&run_dir, JOB_EPOCHS));
    // Kill as soon as training starts, long before epoch 1 ends.
    wait_for_line(&mut child, "training ");
    signal(&child, libc::SIGKILL);
    let status = wait_output(child).status;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert_eq!(listing(&run_dir), ["config.json"], "killed before epoch 1 ended");
    let out = run(resume(&run_dir));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("no checkpoint yet"), "{}", stdout(&out));
    assert_matches_reference(&run_dir);
}

#[test]
fn train_ctrl_c_writes_a_checkpoint_exits_130_and_resume_ends_as_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let mut child = spawn(job(&run_dir, JOB_EPOCHS));
    let m = wait_for_epochs(&mut child, &run_dir, 1);
    std::thread::sleep(half_an_epoch(&m[0]));
    signal(&child, libc::SIGINT);
    let out = wait_output(child);
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let text = stdout(&out);
    let step: u64 = text
        .split("interrupted at epoch ")
        .nth(1)
        .and_then(|s| s.split("step ").nth(1))
        .and_then(|s| s.split(':').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no `interrupted at epoch N, step S:` in {text}"));
    assert!(
        stderr(&out).contains("interrupt: finishing the step"),
        "{}",
        stderr(&out)
    );
    let (epoch, saved_step) = assert_consistent(&run_dir);
    assert_eq!(saved_step, step, "the checkpoint is the interrupted step's");
    assert!(
        epoch >= 1 && step < JOB_EPOCHS as u64 * JOB_STEPS_PER_EPOCH,
        "{text}"
    );
    let out = run(resume(&run_dir));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_matches_reference(&run_dir);
}

#[test]
fn train_resume_tolerates_what_a_killed_write_leaves() {
    // A process killed while appending to metrics.jsonl (a torn last line) or while writing
    // a file (its temporary `.NAME.tmp-PID` beside it): the run resumes, the torn line is
    // dropped and the temporary file removed.
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let out = run(quick_job(&run_dir, &["--epochs", "1"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(run_dir.join("metrics.jsonl"))
        .unwrap();
    f.write_all(b"{\"epoch\":2,\"train_lo").unwrap();
    drop(f);
    write(
        &run_dir.join(".model.safetensors.tmp-999999"),
        b"half a checkpoint",
    );
    write(&run_dir.join(".optimizer-step10.safetensors.tmp-999999"), b"half");
    let out = run({
        let mut c = resume(&run_dir);
        c.args(["--epochs", "2"]);
        c
    });
    assert!(out.status.success(), "{}", stderr(&out));
    let m = metrics(&run_dir);
    assert_eq!(
        m.iter().map(|m| m["epoch"].as_u64().unwrap()).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(assert_consistent(&run_dir), (2, 10));
}

/// The step a run says it was interrupted after (`...: interrupted at epoch E, step S:`).
fn interrupted_step(text: &str) -> u64 {
    text.split("interrupted at epoch ")
        .nth(1)
        .and_then(|s| s.split("step ").nth(1))
        .and_then(|s| s.split(':').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no `interrupted at epoch N, step S:` in {text}"))
}

#[test]
fn train_sigterm_sighup_sigusr1_write_a_checkpoint_exit_128_plus_the_signal_and_resume_exactly() {
    for (sig, name) in [
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGUSR1, "SIGUSR1"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("run");
        let mut child = spawn(job(&run_dir, JOB_EPOCHS));
        let m = wait_for_epochs(&mut child, &run_dir, 1);
        std::thread::sleep(half_an_epoch(&m[0]));
        signal(&child, sig);
        let out = wait_output(child);
        assert_eq!(out.status.code(), Some(128 + sig), "{name}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("{name}: finishing the step and writing the checkpoint")),
            "{name}: {}",
            stderr(&out)
        );
        let text = stdout(&out);
        assert!(text.contains(&format!("{name}: interrupted at epoch")), "{text}");
        let (_, saved) = assert_consistent(&run_dir);
        assert_eq!(
            saved,
            interrupted_step(&text),
            "{name}: the checkpoint is the stopped step's"
        );
        let out = run(resume(&run_dir));
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert_matches_reference(&run_dir);
    }
}

#[test]
fn train_a_second_sigterm_exits_at_once_with_the_last_checkpoint_whole() {
    // The first signal asks for a checkpoint after the step; the second ends the process
    // at once (here, both before the step ends: the epoch-1 checkpoint is the last).
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let mut child = spawn(job(&run_dir, JOB_EPOCHS));
    wait_for_epochs(&mut child, &run_dir, 1);
    signal(&child, libc::SIGTERM);
    signal(&child, libc::SIGTERM);
    let out = wait_output(child);
    assert_eq!(out.status.code(), Some(128 + libc::SIGTERM), "{}", stderr(&out));
    assert_consistent(&run_dir);
    let out = run(resume(&run_dir));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_matches_reference(&run_dir);
}

/// A crash (`PETAL_ABORT_AFTER_STEPS`) right after step `crash` of a run checkpointing
/// every `every` steps; returns the step its last checkpoint is of.
fn crash_after(run_dir: &Path, every: u64, crash: u64) -> u64 {
    let mut cmd = job(run_dir, JOB_EPOCHS);
    cmd.args(["--checkpoint-every", &every.to_string()])
        .env("PETAL_ABORT_AFTER_STEPS", crash.to_string());
    let out = run(cmd);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{}", stderr(&out));
    assert_consistent(run_dir).1
}

#[test]
fn train_checkpoint_every_steps_then_a_crash_then_resume_ends_as_an_uninterrupted_run() {
    // 13 steps an epoch: checkpoints at steps 5 and 10 of epoch 1, then the epoch's end (13),
    // then 18, 23 in epoch 2...; a crash during step 7 leaves step 5's, within epoch 1, and
    // one during step 25 leaves step 23's, within epoch 2.
    for (crash, saved) in [(7, 5), (25, 23)] {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("run");
        assert_eq!(crash_after(&run_dir, 5, crash), saved);
        let config = std::fs::read_to_string(run_dir.join("config.json")).unwrap();
        assert!(config.contains("\"checkpoint_every\": \"5\""), "{config}");
        let out = run(resume(&run_dir));
        assert!(out.status.success(), "{}", stderr(&out));
        let epoch = saved / JOB_STEPS_PER_EPOCH + 1;
        assert!(
            stdout(&out).contains(&format!("at epoch {epoch}, step {saved}")),
            "{}",
            stdout(&out)
        );
        assert_matches_reference(&run_dir);
    }
}

#[test]
fn train_checkpoint_every_wall_time_checkpoints_within_an_epoch() {
    // A second into a run whose epochs take longer (resnet8 on 1 thread, 1,200 training
    // images in 150 steps of 8: about 1.4 s an epoch on a 2-core AVX-512 Xeon, 3 epochs):
    // a checkpoint within an epoch, which the run resumes from bit for bit.
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let job = [
        "train",
        "--arch",
        "resnet8",
        "--synth-per-class",
        "300",
        "--batch-size",
        "8",
    ];
    let mut cmd = trainer();
    cmd.args(job)
        .args([
            "--threads",
            "1",
            "--epochs",
            "3",
            "--checkpoint-every",
            "1s",
            "--out",
        ])
        .arg(&run_dir);
    let mut child = spawn(cmd);
    // Wait for a checkpoint that is not at an epoch's end, then kill the run.
    let steps_per_epoch = 150;
    let t0 = std::time::Instant::now();
    let saved = loop {
        if let Ok((_, meta)) = load_checkpoint(&run_dir.join("model.safetensors")) {
            if meta.step % steps_per_epoch != 0 {
                break meta.step;
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended without a checkpoint within an epoch"
        );
        assert!(t0.elapsed() < TIMEOUT, "no checkpoint within an epoch");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    signal(&child, libc::SIGKILL);
    wait_output(child);
    assert!(saved > 0);
    let mut reference = trainer();
    let ref_dir = dir.path().join("reference");
    reference
        .args(job)
        .args(["--threads", "1", "--epochs", "3", "--out"])
        .arg(&ref_dir);
    let out = run(reference);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run({
        let mut c = trainer();
        c.args(["train", "--resume"]).arg(&run_dir);
        c
    });
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_training(
        &weights(&ref_dir.join("model.safetensors")),
        &metrics(&ref_dir),
        &run_dir,
    );
}
