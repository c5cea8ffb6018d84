//! Helpers shared by the `trainer` binary's test files: child processes that always run
//! under a timeout, their output, run folders and image files.
//!
//! Each test file compiles its own copy and uses a part of it.
#![allow(dead_code)]

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
/// [`TIMEOUT`].
pub fn wait_output(mut child: Child) -> Output {
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
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

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a failed command: exit code 1, no panic, and exactly one `error: ` line, the
/// last on stderr (lines before it may only report skipped files). Returns that line.
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
        assert!(l.starts_with("skipped "), "unexpected stderr line `{l}`");
    }
    lines.last().unwrap().to_string()
}

/// Weight bit patterns by tensor name.
pub type Weights = Vec<(String, Vec<u32>)>;

/// Bit patterns of every weight of a checkpoint.
pub fn weights(path: &Path) -> Weights {
    let (net, _) = load_checkpoint(path).unwrap();
    net.params()
        .map(|p| (p.name.clone(), p.value.iter().map(|v| v.to_bits()).collect()))
        .collect()
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
