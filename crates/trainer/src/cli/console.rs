//! What `train` and `eval` print while they work: the data they loaded, a progress bar on
//! a terminal (one line per epoch otherwise).

use crate::data::{Dataset, LoadReport};
use crate::report::{thousands, EpochMetrics};
use crate::train::{Progress, RunConfig, Start};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Set on the ranks of a multi-process run other than 0, which print nothing but errors.
static QUIET: AtomicBool = AtomicBool::new(false);

/// Makes this process print no notes ([`quiet`]).
pub(super) fn set_quiet() {
    QUIET.store(true, Ordering::Relaxed);
}

/// Whether this process keeps its notes to itself (a rank other than 0).
pub(super) fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// The notes a quiet rank did not print (skipped files), for when its data turns out to
/// differ from rank 0's ([`print_held_notes`]).
static HELD: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Prints the notes this (quiet) rank held back, prefixed with `prefix`.
pub(super) fn print_held_notes(prefix: &str) {
    for note in HELD.lock().map(|h| h.clone()).unwrap_or_default() {
        // One write per line, so lines of several ranks stay whole.
        let line = format!("{prefix}{note}\n");
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    }
}

/// Prints the files of `report` that were skipped (stderr; held back on a quiet rank) and
/// a summary of `data`, loaded from `dir` since `t`.
pub(super) fn print_load(dir: &Path, data: &Dataset, report: &LoadReport, t: Instant) {
    for (p, why) in &report.skipped {
        let note = format!("skipped {}: {why}", p.display());
        match quiet() {
            false => eprintln!("{note}"),
            true => HELD.lock().expect("notes lock").push(note),
        }
    }
    let counts: Vec<String> = data
        .classes
        .iter()
        .zip(data.class_counts())
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    println!(
        "{}: {} images in {} classes ({}), {} skipped, {} ignored ({:.1} s)",
        dir.display(),
        data.len(),
        data.classes.len(),
        counts.join(", "),
        report.skipped.len(),
        report.ignored,
        t.elapsed().as_secs_f64()
    );
}

/// Prints what is about to be trained, and how (on `ranks` processes).
pub(super) fn print_start(start: &Start, cfg: &RunConfig, ranks: usize) {
    println!(
        "training {} ({} parameters) on {}{} threads: {} epochs, batch {}, {}{}",
        start.net.spec(),
        thousands(start.net.param_count() as f64),
        if ranks > 1 {
            format!("{ranks} processes x ")
        } else {
            String::new()
        },
        rayon::current_num_threads(),
        cfg.epochs,
        cfg.batch_size,
        cfg.recipe.describe(),
        if cfg.augment.is_on() {
            format!(", augment {}", cfg.augment.describe())
        } else {
            String::new()
        }
    );
}

/// Terminal bar on a TTY, one line per epoch otherwise.
pub(super) struct Console {
    bar: Option<ProgressBar>,
    tty: bool,
    /// Test hook (`PETAL_INTERRUPT_AFTER_STEPS=N`): acts as a Ctrl-C after N steps of this
    /// process, so tests can interrupt at an exact step.
    interrupt_after: Option<(u64, Arc<AtomicBool>)>,
    /// Test hook (`PETAL_ABORT_AFTER_STEPS=N`): a crash (`abort`, SIGABRT) during step N's
    /// report, so tests can kill a run at an exact step, before any checkpoint of it.
    abort_after: Option<u64>,
    steps: u64,
}

impl Console {
    /// A console for a run that `interrupt` stops (the stop signals' flag, `signals.rs`).
    pub fn new(interrupt: &Arc<AtomicBool>) -> Console {
        let hook = |name: &str| -> Option<u64> { std::env::var(name).ok()?.parse().ok() };
        Console {
            bar: None,
            tty: std::io::stderr().is_terminal(),
            interrupt_after: hook("PETAL_INTERRUPT_AFTER_STEPS").map(|n| (n, interrupt.clone())),
            abort_after: hook("PETAL_ABORT_AFTER_STEPS"),
            steps: 0,
        }
    }
}

impl Progress for Console {
    fn epoch_start(&mut self, epoch: usize, epochs: usize, steps: usize) {
        if self.tty {
            let bar = ProgressBar::new(steps as u64);
            bar.set_style(
                ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg}")
                    .expect("template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(format!("{epoch}/{epochs}"));
            self.bar = Some(bar);
        }
    }
    fn step(&mut self, batch: usize, loss: f64, ips: f64) {
        self.steps += 1;
        if let Some((n, flag)) = &self.interrupt_after {
            if self.steps >= *n {
                flag.store(true, Ordering::SeqCst);
            }
        }
        if self.abort_after == Some(self.steps) {
            std::process::abort();
        }
        if let Some(bar) = &self.bar {
            bar.set_position(batch as u64);
            bar.set_message(format!("loss {loss:.4}  {} img/s", thousands(ips)));
        }
    }
    fn epoch_end(&mut self, m: &EpochMetrics, epochs: usize) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        println!("{}", m.human(epochs));
    }
}
