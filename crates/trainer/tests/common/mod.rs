//! Helpers shared by the `trainer` binary's test files: child processes that always run
//! under a timeout, their output, run folders and image files.
//!
//! Each test file compiles its own copy and uses a part of it.
#![allow(dead_code)]

pub mod job;

use image::{DynamicImage, ImageFormat};
use petal_model::load_checkpoint;
use std::borrow::BorrowMut;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Longest any child process may run before the test calls it a hang.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The `trainer` binary with no test hook set and no standard input.
pub fn trainer() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trainer"));
    c.env_remove("PETAL_INTERRUPT_AFTER_STEPS");
    c.stdin(Stdio::null());
    c
}

/// Starts `cmd` with its output piped.
pub fn spawn(mut cmd: impl BorrowMut<Command>) -> Child {
    let cmd = cmd.borrow_mut();
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.spawn().expect("trainer starts")
}

/// Runs `cmd` to the end; a run past [`TIMEOUT`] is killed and fails the test.
pub fn run(cmd: impl BorrowMut<Command>) -> Output {
    wait_output(spawn(cmd))
}

/// [`run`] as a method, for builder chains: `trainer().args([..]).run()`.
pub trait RunBounded {
    fn run(&mut self) -> Output;
}

impl RunBounded for Command {
    fn run(&mut self) -> Output {
        wait_output(spawn(self))
    }
}

/// Waits for `child` to exit, collecting its output; kills it and fails the test after
/// [`TIMEOUT`]. A stream already taken from `child` (as [`wait_for_line`] takes stdout)
/// comes back empty.
pub fn wait_output(mut child: Child) -> Output {
    fn drain(r: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    }
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the trainer ran for more than {TIMEOUT:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Reads the standard output of `child` (started by [`spawn`]) until a line that starts
/// with `prefix`, and returns it; fails the test when stdout ends first or after
/// [`TIMEOUT`]. The rest of stdout is read and dropped in the background.
pub fn wait_for_line(child: &mut Child, prefix: &str) -> String {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let Ok(line) = line else { break };
            // The receiver is gone once the line was found: keep draining.
            let _ = tx.send(line);
        }
    });
    let t0 = Instant::now();
    loop {
        let left = TIMEOUT.saturating_sub(t0.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with(prefix) => return line,
            Ok(_) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!("no line starting with `{prefix}` after {TIMEOUT:?}: a hang");
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                panic!("the trainer's stdout ended without a line starting with `{prefix}`")
            }
        }
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The SIMD warning a build for less than this CPU has prints first on stderr.
pub const SIMD_WARNING: &str = "warning: petal-kernels was compiled for";

/// The lines of stderr but the build's SIMD warning.
pub fn stderr_lines(out: &Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| !l.starts_with(SIMD_WARNING))
        .map(str::to_string)
        .collect()
}

/// Asserts a failed command: exit code 1, no panic, and exactly one `error: ` line, the
/// last on stderr (lines before it may only report skipped files, or be the SIMD warning
/// of a build for less than this CPU has). Returns that line.
pub fn error_line(out: &Output) -> String {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit code 1\nstdout: {}\nstderr: {err}",
        stdout(out)
    );
    assert!(!err.contains("panicked"), "a panic: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    let errors: Vec<&&str> = lines.iter().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "one error line expected: {err}");
    assert!(
        lines.last().unwrap().starts_with("error: "),
        "the error comes last: {err}"
    );
    for l in &lines[..lines.len() - 1] {
        assert!(
            l.starts_with("skipped ") || l.starts_with(SIMD_WARNING),
            "unexpected stderr line `{l}`"
        );
    }
    lines.last().unwrap().to_string()
}

/// Weight bit patterns by tensor name.
pub type Weights = Vec<(String, Vec<u32>)>;

/// Bit patterns of every weight of a checkpoint, and of every batch norm's running
/// statistics and batch count (`{prefix}.running`).
pub fn weights(path: &Path) -> Weights {
    let (net, _) = load_checkpoint(path).unwrap();
    let mut w: Weights = net
        .params()
        .map(|p| (p.name.clone(), p.value.iter().map(|v| v.to_bits()).collect()))
        .collect();
    for l in net.layers() {
        if let petal_model::Layer::BatchNorm(bn) = l {
            let stats = bn.running_mean.iter().chain(&bn.running_var).map(|v| v.to_bits());
            let tracked = [bn.batches_tracked as u32, (bn.batches_tracked >> 32) as u32];
            w.push((format!("{}.running", bn.prefix), stats.chain(tracked).collect()));
        }
    }
    w
}

/// Asserts that the run folder `run` ended with the weights `w` bit for bit and the
/// metrics `m` (all but the timings): a resumed run against an uninterrupted one.
pub fn assert_same_training(w: &Weights, m: &[serde_json::Value], run: &Path) {
    let got = weights(&run.join("model.safetensors"));
    assert_eq!(got.len(), w.len());
    for ((name, a), (_, b)) in w.iter().zip(&got) {
        assert!(a == b, "{name}: weights differ from the uninterrupted run's");
    }
    let got = metrics(run);
    assert_eq!(got.len(), m.len(), "{got:?}");
    for (a, b) in m.iter().zip(&got) {
        for k in [
            "epoch",
            "step",
            "train_loss",
            "train_accuracy",
            "val_loss",
            "val_accuracy",
        ] {
            assert_eq!(a[k], b[k], "{k} of epoch {}", a["epoch"]);
        }
    }
}

/// A run folder's `config.json`.
pub fn config(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

/// The lines of a run folder's `metrics.jsonl`.
pub fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Names in a folder, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

pub fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut c = std::io::Cursor::new(Vec::new());
    img.write_to(&mut c, format).unwrap();
    c.into_inner()
}

/// Writes `bytes` to `path`, creating its folder.
pub fn write(path: &Path, bytes: &[u8]) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, bytes).unwrap();
}
