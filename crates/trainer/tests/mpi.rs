//! Training over MPI, end to end on this machine (loopback): the `trainer` binary built
//! with the `mpi` feature, started by `mpiexec` (MPICH's or Open MPI's, on PATH). Only
//! built with `--features mpi`; `.ci/run` installs MPICH and runs it.
//!
//! What it holds the trainer to: K ranks train the weights one process trains, bit for bit
//! (K = 2, 3, 4; batch norms, dropout, augmentation, AdamW, a last partial batch); an
//! interrupted multi-rank run resumes (on another number of ranks) to the same weights;
//! a rank that cannot read its data, or reads other data, stops every rank with an error
//! before anything is written; a killed rank ends the job within a bounded time with the
//! last checkpoint intact; Ctrl-C on the launcher stops every rank with a checkpoint.
#![cfg(feature = "mpi")]

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// `mpiexec` with no program yet: Open MPI refuses root and more ranks than cores unless
/// told (MPICH ignores these variables); no test hook, no standard input.
fn launcher() -> Command {
    let mut c = Command::new("mpiexec");
    c.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .env_remove("PETAL_INTERRUPT_AFTER_STEPS")
        .stdin(std::process::Stdio::null());
    c
}

/// `mpiexec -n ranks trainer ...`, one thread per rank (ranks share this machine's cores).
fn mpiexec(ranks: usize) -> Command {
    let mut c = launcher();
    c.arg("-n").arg(ranks.to_string()).arg(TRAINER);
    c
}

/// `mpiexec` running rank 0 in folder `a` with `rank0` and rank 1 in folder `b` with
/// `rank1` (the trainer's arguments): relative paths resolve in each rank's own folder,
/// as on two machines.
fn two_folders(a: &Path, rank0: &[&str], b: &Path, rank1: &[&str]) -> std::process::Output {
    let mut c = launcher();
    c.args(["-n", "1", "-wdir"]).arg(a).arg(TRAINER).args(rank0);
    c.args([":", "-n", "1", "-wdir"]).arg(b).arg(TRAINER).args(rank1);
    c.run()
}

const TRAINER: &str = env!("CARGO_BIN_EXE_trainer");

/// A run that exercises everything a rank shares: batch norms (statistics over the whole
/// batch), a residual block, dropout (masks by global sample index), augmentation
/// (draws by image), normalisation, AdamW with a schedule; 240 training images in batches
/// of 36 (a last batch of 24: 6 chunks over 4 ranks is uneven).
const RUN: &[&str] = &[
    "train",
    "--arch",
    "conv3x3:8/p1/nobias,bn,relu,res(conv3x3:8/s2/p1/nobias,bn,relu,conv3x3:8/p1/nobias,bn),relu,dropout:0.2,gap,dense:5",
    "--size",
    "20",
    "--rgb",
    "--synth-per-class",
    "60",
    "--epochs",
    "2",
    "--batch-size",
    "36",
    "--augment",
    "flip,crop:2",
    "--normalize",
    "--optimizer",
    "adamw",
    "--lr-schedule",
    "onecycle",
    "--threads",
    "1",
];

fn one_process(out: &Path) -> (Weights, Vec<serde_json::Value>) {
    let o = trainer().args(RUN).arg("--out").arg(out).run();
    assert!(o.status.success(), "{}", stderr(&o));
    (weights(&out.join("model.safetensors")), metrics(out))
}

#[test]
fn two_three_and_four_ranks_train_the_weights_of_one_process_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let (w, m) = one_process(&tmp.path().join("one"));
    for ranks in [2, 3, 4] {
        let out = tmp.path().join(format!("ranks{ranks}"));
        let o = mpiexec(ranks).args(RUN).arg("--out").arg(&out).run();
        assert!(o.status.success(), "{ranks} ranks: {}", stderr(&o));
        // Rank 0 alone prints: one summary, one line per epoch.
        let text = stdout(&o);
        assert_eq!(text.matches("epoch 1/2").count(), 1, "{text}");
        assert!(
            text.contains(&format!("on {ranks} processes x 1 threads")),
            "{text}"
        );
        assert!(stderr_lines(&o).is_empty(), "{}", stderr(&o));
        assert_same_training(&w, &m, &out);
        // The optimizer state too (AdamW's moments and step count), bit for bit, as loaded
        // and as bytes.
        let opt = |d: &Path| {
            let (mut net, meta) = petal_model::load_checkpoint(&d.join("model.safetensors")).unwrap();
            net.set_optimizer_state(petal_model::OptimizerKind::AdamW, 0);
            let file = d.join(format!("optimizer-step{}.safetensors", meta.step));
            petal_model::load_optimizer_state(&file, &mut net).unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let moments: Vec<_> = net
                .params()
                .map(|p| (bits(&p.state[0]), bits(&p.state[1])))
                .collect();
            (net.optimizer_steps(), moments, std::fs::read(&file).unwrap())
        };
        let (steps, moments, bytes) = opt(&out);
        assert!(steps > 0 && moments.iter().all(|(m, _)| !m.is_empty()));
        assert!(
            (steps, moments, bytes) == opt(&tmp.path().join("one")),
            "{ranks} ranks: optimizer state differs"
        );
        let one = std::fs::read(tmp.path().join("one").join("confusion.json")).unwrap();
        assert_eq!(std::fs::read(out.join("confusion.json")).unwrap(), one);
    }
}

#[test]
fn an_interrupted_run_on_two_ranks_resumes_on_three_to_the_same_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let (w, m) = one_process(&tmp.path().join("one"));
    let out = tmp.path().join("run");
    let o = mpiexec(2)
        .env("PETAL_INTERRUPT_AFTER_STEPS", "3")
        .args(RUN)
        .arg("--out")
        .arg(&out)
        .run();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("interrupted at epoch 1, step 3"),
        "{}",
        stdout(&o)
    );
    let o = mpiexec(3).args(["train", "--resume"]).arg(&out).run();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("resuming"), "{}", stdout(&o));
    assert_same_training(&w, &m, &out);
}

#[test]
fn a_run_resumes_over_ranks_when_only_rank_0_has_the_run_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let (w, m) = one_process(&tmp.path().join("one"));
    // Rank 0 works in the test's folder, which holds the interrupted run `a`; rank 1 in
    // `b`, which does not.
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&b).unwrap();
    let o = trainer()
        .env("PETAL_INTERRUPT_AFTER_STEPS", "4")
        .args(RUN)
        .arg("--out")
        .arg(&a)
        .run();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let resume = ["train", "--resume", "a"];
    let o = two_folders(tmp.path(), &resume, &b, &resume);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("resuming a at epoch 1, step 4"),
        "{}",
        stdout(&o)
    );
    assert!(!b.join("a").exists(), "rank 1 wrote nothing");
    assert_same_training(&w, &m, &a);
}

/// A data folder of 20 synthetic flowers per class in `dir/data`.
fn data_in(dir: &Path) {
    let o = trainer()
        .args(["synth", "--per-class", "20", "--size", "24", "--out"])
        .arg(dir.join("data"))
        .run();
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Two ranks in folders `a` and `b`, both given `--data data` (rank 0 writes `out`).
fn two_machines(a: &Path, b: &Path, out: &Path) -> std::process::Output {
    let out = out.to_str().expect("a UTF-8 temporary path");
    let rank0 = [
        "train",
        "--data",
        "data",
        "--epochs",
        "1",
        "--threads",
        "1",
        "--out",
        out,
    ];
    two_folders(a, &rank0, b, &["train", "--data", "data", "--threads", "1"])
}

#[test]
fn a_rank_without_the_data_stops_every_rank_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    data_in(&a);
    std::fs::create_dir_all(&b).unwrap();
    let out = tmp.path().join("run");
    let o = two_machines(&a, &b, &out);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("error: rank 1 of 2: data folder data: does not exist"),
        "{err}"
    );
    assert!(err.contains("error: rank 0 of 2: rank 1 failed"), "{err}");
    assert!(!out.exists(), "nothing is written when a rank cannot start");
}

#[test]
fn a_rank_that_cannot_decode_an_image_the_others_use_stops_every_rank() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    data_in(&a);
    data_in(&b);
    // One image that decodes on rank 0 is cut short on rank 1.
    let rose = b.join("data/rose");
    let name = listing(&rose).remove(0);
    let bytes = std::fs::read(rose.join(&name)).unwrap();
    std::fs::write(rose.join(&name), &bytes[..bytes.len() / 2]).unwrap();
    let out = tmp.path().join("run");
    let o = two_machines(&a, &b, &out);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    for rank in 0..2 {
        assert!(
            err.contains(&format!(
                "error: rank {rank} of 2: rank 1's training set differs from rank 0's"
            )),
            "{err}"
        );
    }
    assert!(
        err.contains(&format!("rank 1: skipped data/rose/{name}")),
        "{err}"
    );
    assert!(!out.exists(), "nothing is written when the ranks' data differ");
}

/// The trainer processes of this test's job: the pids whose environment holds `marker`.
fn ranks_of(marker: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        let vars: Vec<String> = env
            .split(|&b| b == 0)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        if vars.iter().any(|v| v == marker) {
            let rank = vars
                .iter()
                .find_map(|v| {
                    v.strip_prefix("PMI_RANK=")
                        .or_else(|| v.strip_prefix("OMPI_COMM_WORLD_RANK="))
                })
                .unwrap_or("?")
                .to_string();
            let exe = std::fs::read_link(e.path().join("exe")).unwrap_or_default();
            if exe.ends_with("trainer") {
                found.push((pid, rank));
            }
        }
    }
    found
}

/// A long flowernet run on 2 ranks, with this test's marker in its environment and its
/// standard output in `log`, in a process group of its own (as a terminal's foreground
/// job); returns once rank 0 printed its first epoch.
fn long_run(out: &Path, marker: &str, log: &Path) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let (k, v) = marker.split_once('=').unwrap();
    let mut c = mpiexec(2);
    c.process_group(0);
    c.env(k, v)
        .args([
            "train",
            "--arch",
            "flowernet",
            "--epochs",
            "50",
            "--threads",
            "1",
            "--out",
        ])
        .arg(out)
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().expect("mpiexec starts");
    let t0 = Instant::now();
    while !std::fs::read_to_string(log).unwrap().contains("epoch  1/50") {
        if t0.elapsed() > TIMEOUT {
            let _ = child.kill();
            panic!("no epoch after {TIMEOUT:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

#[test]
fn a_killed_rank_ends_the_job_within_seconds_and_leaves_the_last_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let marker = format!("PETAL_TEST_JOB={}", std::process::id());
    let job = long_run(&out, &marker, &tmp.path().join("log"));
    let ranks = ranks_of(&marker);
    let (pid, _) = ranks.iter().find(|(_, r)| r == "1").expect("rank 1 is running");
    // SAFETY: kill(2) on a pid this test found; no memory is involved.
    unsafe {
        libc::kill(*pid as i32, libc::SIGKILL);
    }
    let t0 = Instant::now();
    let o = wait_output(job);
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "the job took {:?} to end",
        t0.elapsed()
    );
    assert!(!o.status.success());
    assert!(ranks_of(&marker).is_empty(), "no rank is left running");
    // The checkpoint of epoch 1 (or later) is whole: it loads, with its optimizer file.
    let (_, meta) = petal_model::load_checkpoint(&out.join("model.safetensors")).unwrap();
    assert!(meta.epoch >= 1);
    assert!(out
        .join(format!("optimizer-step{}.safetensors", meta.step))
        .exists());
}

#[test]
fn ctrl_c_on_the_launcher_stops_every_rank_with_a_checkpoint() {
    ctrl_c(false);
}

#[test]
fn ctrl_c_in_a_terminal_reaching_launcher_and_ranks_stops_every_rank_with_a_checkpoint() {
    // A terminal's Ctrl-C goes to the whole foreground process group: each rank gets it
    // from the terminal and again from the launcher, and must still checkpoint.
    ctrl_c(true);
}

/// SIGINT to the launcher alone, or (`group`) to its whole process group.
fn ctrl_c(group: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let marker = format!("PETAL_TEST_JOB={}-{group}", std::process::id());
    let log = tmp.path().join("log");
    let job = long_run(&out, &marker, &log);
    let pid = if group {
        -(job.id() as i32)
    } else {
        job.id() as i32
    };
    // SAFETY: kill(2) on the launcher (or its process group) this test started.
    unsafe {
        libc::kill(pid, libc::SIGINT);
    }
    let o = wait_output(job);
    assert!(ranks_of(&marker).is_empty(), "no rank is left running");
    let err = stderr(&o);
    assert_eq!(
        err.matches("interrupt: finishing the step").count(),
        1,
        "rank 0 alone says it: {err}"
    );
    // (The launcher's own exit code after a Ctrl-C varies: MPICH's is 130 or 0.)
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("interrupted at epoch"), "{text}");
    let (_, meta) = petal_model::load_checkpoint(&out.join("model.safetensors")).unwrap();
    assert!(meta.step > 0);
    assert!(out
        .join(format!("optimizer-step{}.safetensors", meta.step))
        .exists());
}

/// SIGTERM as Slurm sends it at a time limit or on preemption: to the launcher alone
/// (`ranks: false`, which forwards it) or to every rank (`ranks: true`); either way the
/// ranks stop after the same step with one consistent checkpoint, exit with 128 + 15, and
/// a resume (on 3 ranks here) ends with the weights of one uninterrupted process.
fn sigterm(ranks_too: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let job = [
        "train",
        "--arch",
        "flowernet",
        "--synth-per-class",
        "60",
        "--batch-size",
        "16",
        "--epochs",
        "6",
        "--threads",
        "1",
    ];
    let (w, m) = {
        let out = tmp.path().join("one");
        let o = trainer().args(job).arg("--out").arg(&out).run();
        assert!(o.status.success(), "{}", stderr(&o));
        (weights(&out.join("model.safetensors")), metrics(&out))
    };
    let out = tmp.path().join("run");
    let log = tmp.path().join("log");
    let marker = format!("PETAL_TEST_JOB={}-term-{ranks_too}", std::process::id());
    let (k, v) = marker.split_once('=').unwrap();
    let mut child = mpiexec(2)
        .env(k, v)
        .args(job)
        .arg("--out")
        .arg(&out)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("mpiexec starts");
    let t0 = Instant::now();
    while !std::fs::read_to_string(&log).unwrap().contains("epoch 1/6") {
        assert!(t0.elapsed() < TIMEOUT, "no epoch after {TIMEOUT:?}");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job ended before epoch 1"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let pids: Vec<i32> = if ranks_too {
        ranks_of(&marker).iter().map(|(p, _)| *p as i32).collect()
    } else {
        vec![child.id() as i32]
    };
    for pid in pids {
        // SAFETY: kill(2) on a process this test started (or one of its ranks).
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let o = wait_output(child);
    assert!(ranks_of(&marker).is_empty(), "no rank is left running");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("SIGTERM: interrupted at epoch"),
        "{text}\n{}",
        stderr(&o)
    );
    // The ranks exit with 128 + 15; the launcher passes that on, or after forwarding a
    // signal of its own exits with 0 (MPICH's varies, as after a Ctrl-C).
    assert!(
        matches!(o.status.code(), Some(0 | 143)),
        "{:?}: {}",
        o.status,
        stderr(&o)
    );
    assert_eq!(
        stderr(&o).matches("SIGTERM: finishing the step").count(),
        1,
        "rank 0 alone says it: {}",
        stderr(&o)
    );
    let resumed = mpiexec(3).args(["train", "--resume"]).arg(&out).run();
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_same_training(&w, &m, &out);
}

#[test]
fn sigterm_on_the_launcher_stops_every_rank_with_a_checkpoint_and_resumes_exactly() {
    sigterm(false);
}

#[test]
fn sigterm_on_every_rank_stops_them_with_a_checkpoint_and_resumes_exactly() {
    sigterm(true);
}
