//! `trainer train` (and `trainer` with no command): the request checked (`config.rs`), the
//! data loaded (`load.rs`), the run opened or resumed and trained (`crate::train`), and
//! how it ended reported.

use super::args::TrainArgs;
use super::config::{request, validate};
use super::console::{print_held_notes, print_start, set_quiet, Console};
use super::load::load_data;
use super::signals::{self, Stop};
use super::Exit;
use crate::data::{count_images, Dataset};
use crate::dist::{self, World};
use crate::error::TrainerError;
use crate::synth::CLASSES;
use crate::train::memory::{self, Estimate};
use crate::train::{self, Control, Outcome, RunConfig};
use petal_model::{Network, Shard};
use std::path::Path;
use std::time::Instant;

/// Trains a new run, or continues one with `--resume`; Ctrl-C stops it with a checkpoint
/// ([`Exit::Interrupted`]).
///
/// Over several processes (`world`), every rank runs this with rank 0's request (a resumed
/// run's `config.json` is on rank 0's disk), loads the data itself, checks that it loaded
/// what rank 0 did, and starts from rank 0's state; only rank 0 prints and writes the run
/// folder (`dist`).
pub(super) fn run(a: TrainArgs, world: &World) -> Result<Exit, TrainerError> {
    set_threads(a.threads)?;
    if !world.is_root() {
        quiet_rank();
    }
    let read = || request(&a).and_then(|r| validate(&r).map(|c| (r, c)));
    let (req, checked) = train::share_request(world, read, validate)?;
    let cfg = checked.cfg;
    let estimate = world.agree(check_memory(&a, &cfg, &checked.net, world))?;
    let (mut tr, mut va) = world.agree(load_data(&cfg, &checked.classes))?;
    memory::release_free();
    // The same counts with other pixels: a file that decodes differently on one rank.
    let counts = |v: &[u64]| format!("{} images, fingerprint {:016x}", v[1], v[0]);
    let hint = "every rank must read the same files";
    let same = world
        .check_same("training set", dist::fingerprint(&tr), counts, hint)
        .and_then(|_| world.check_same("validation set", dist::fingerprint(&va), counts, hint));
    if same.is_err() && !world.is_root() {
        // The files this rank skipped (rank 0 printed its own).
        print_held_notes(&format!("rank {}: ", world.rank()));
    }
    same?;
    if cfg.normalize {
        // The training set's statistics, for both sets (and, through the checkpoints,
        // eval and predict); recomputed the same on --resume.
        let (mean, std) = tr.channel_stats();
        tr.normalize(&mean, &std);
        va.normalize(&mean, &std);
    }
    let start = train::open_run(&req, &cfg, &tr, checked.net, world)?;
    if req.resuming {
        let dir = req.dir.display();
        match start.checkpoint {
            Some(_) => println!("resuming {dir} at epoch {}, step {}", start.epoch + 1, start.step),
            None => println!(
                "resuming {dir}: no checkpoint yet (stopped during epoch 1), starting from the beginning"
            ),
        }
    }
    print_start(&start, &cfg, world.ranks());
    // Over several ranks a terminal's Ctrl-C reaches a rank twice (from the terminal and
    // from the launcher): only the first counts.
    let stop = Stop::install(world.ranks() == 1);
    let mut console = Console::new(&stop.flag);
    let t = Instant::now();
    let control = Control {
        interrupt: &stop.flag,
        progress: &mut console,
        world,
    };
    let (first_step, sent, waited) = (start.step, world.bytes_sent(), world.seconds_in_collectives());
    let (net, _, outcome) = train::train(&cfg, start, &tr, &va, &req.dir, control)?;
    let steps = net.dropout_state().1.saturating_sub(first_step);
    if world.ranks() > 1 && steps > 0 {
        let per_step = (world.bytes_sent() - sent) as f64 / steps as f64;
        let ms = (world.seconds_in_collectives() - waited) * 1e3 / steps as f64;
        println!(
            "{} processes: rank 0 sent {:.2} MB and spent {ms:.2} ms per step in collectives (gradient subtree sums, batch-norm sums, losses, stop votes, validation; waiting for the other ranks included)",
            world.ranks(),
            per_step / 1e6
        );
    }
    Ok(report(outcome, &req.dir, &va, t, world.ranks(), &stop, &estimate))
}

/// The run's memory estimate (`train::memory`), printed, or its refusal when it is more
/// than `--max-memory` or the memory available, naming the largest batch that fits. Before
/// any image is decoded (the images are counted, not read) and before the network's
/// buffers exist. Over several ranks, each holds the data and its share of every batch.
fn check_memory(
    a: &TrainArgs,
    cfg: &RunConfig,
    net: &Network,
    world: &World,
) -> Result<Estimate, TrainerError> {
    let images = match &cfg.data {
        None => cfg.synth_per_class * CLASSES.len(),
        Some(dir) => count_images(dir)? + cfg.val.as_deref().map_or(Ok(0), count_images)?,
    };
    let threads = rayon::current_num_threads();
    let slots = cfg.recipe.optimizer_kind().layout().slots.len();
    let split = if cfg.val.is_none() { cfg.val_split } else { 0.0 };
    // This rank's share of a batch (a batch is at most the whole set).
    let share = |b: usize| {
        Shard::split(b.min(images.max(1)), world.ranks(), 0)
            .samples()
            .len()
            .max(1)
    };
    let at = |b: usize| memory::estimate(net, share(b), threads, slots, images, split);
    let estimate = at(cfg.batch_size);
    let (budget, source) = match &a.max_memory {
        Some(text) => {
            let b =
                memory::parse_bytes(text).map_err(|e| TrainerError::Usage(format!("--max-memory {e}")))?;
            (Some(b), "--max-memory")
        }
        None => (memory::available(), "available"),
    };
    let Some(budget) = budget else {
        println!("memory: about {}", estimate.describe(threads));
        return Ok(estimate);
    };
    if estimate.total() > budget {
        let fit = match memory::largest_batch(budget, cfg.batch_size, at) {
            Some(b) => format!("the largest batch that fits is {b} (--batch-size {b})"),
            None => format!(
                "not even a batch of one fits: the data alone needs {} (lower --size or use fewer images)",
                memory::bytes(estimate.loading.max(estimate.data))
            ),
        };
        return Err(TrainerError::Usage(format!(
            "this run needs about {} at batch {}, more than the {} {source}: {fit}",
            estimate.describe(threads),
            cfg.batch_size,
            memory::bytes(budget)
        )));
    }
    println!(
        "memory: about {} of {} {source}",
        estimate.describe(threads),
        memory::bytes(budget)
    );
    Ok(estimate)
}

/// A rank other than 0 prints nothing but errors: its standard output goes nowhere, and
/// its notes (skipped files, classes missing from the validation folder) are not printed.
fn quiet_rank() {
    set_quiet();
    #[cfg(unix)]
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        // SAFETY: both are open descriptors; dup2 replaces descriptor 1 atomically, and
        // Rust's stdout handle keeps writing to descriptor 1.
        unsafe {
            libc::dup2(null.as_raw_fd(), 1);
        }
    }
}

fn set_threads(threads: Option<usize>) -> Result<(), TrainerError> {
    if let Some(n) = threads {
        if n == 0 {
            return Err(TrainerError::Usage("--threads must be at least 1".into()));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| TrainerError::Usage(format!("cannot start {n} threads: {e}")))?;
    }
    Ok(())
}

/// Prints how training ended (started at `t`, on `ranks` processes, stopped by `stop`'s
/// signal if interrupted; its peak memory against the `estimate`) and the exit it makes.
fn report(
    outcome: Outcome,
    dir: &Path,
    va: &Dataset,
    t: Instant,
    ranks: usize,
    stop: &Stop,
    estimate: &Estimate,
) -> Exit {
    match outcome {
        Outcome::Interrupted { epoch, step } => {
            let signal = stop.signal();
            println!(
                "{}: interrupted at epoch {}, step {step}: checkpoint written; continue with\n  trainer train --resume {}{}",
                signals::name(signal),
                epoch + 1,
                dir.display(),
                if ranks > 1 {
                    " (under mpirun, with any number of processes)"
                } else {
                    ""
                }
            );
            Exit::Interrupted(signal)
        }
        Outcome::Finished { confusion, early } => {
            if let Some(why) = early {
                println!("{why}");
            }
            let set = if va.is_empty() { "training" } else { "validation" };
            println!("\n{set} confusion matrix:\n{}", confusion.table());
            let peak = memory::peak_rss().map_or(String::new(), |p| {
                format!(
                    "; peak memory {} (estimated {})",
                    memory::bytes(p),
                    memory::bytes(estimate.total())
                )
            });
            println!(
                "\ndone in {:.1} s{peak}; run written to {}",
                t.elapsed().as_secs_f64(),
                dir.display()
            );
            Exit::Ok
        }
    }
}
