//! `trainer train` (and `trainer` with no command): checks the run, loads its data, opens
//! or resumes its run folder, trains and reports.

use super::args::TrainArgs;
use super::config::{self, input_shape, Request};
use super::console::{interrupt_flag, print_load, print_start, Console};
use super::Exit;
use crate::data::{load_image_folder, Dataset};
use crate::dist::{self, World};
use crate::error::TrainerError;
use crate::synth::{self, SynthConfig, CLASSES};
use crate::train::{self, Control, Outcome, RunConfig, Start};
use petal_model::Network;
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
    let (req, checked) = shared_request(&a, world)?;
    let cfg = checked.cfg;
    let (mut tr, mut va) = world.agree(load_data(&cfg, &checked.classes))?;
    // The same counts with other pixels: a file that decodes differently on one rank.
    let counts = |v: &[u64]| format!("{} images, fingerprint {:016x}", v[1], v[0]);
    let hint = "every rank must read the same files";
    let same = world
        .check_same("training set", dist::fingerprint(&tr), counts, hint)
        .and_then(|_| world.check_same("validation set", dist::fingerprint(&va), counts, hint));
    if same.is_err() && !world.is_root() {
        // The files this rank skipped (rank 0 printed its own).
        super::console::print_held_notes(&format!("rank {}: ", world.rank()));
    }
    same?;
    if cfg.normalize {
        // The training set's statistics, for both sets (and, through the checkpoints,
        // eval and predict); recomputed the same on --resume.
        let (mean, std) = tr.channel_stats();
        tr.normalize(&mean, &std);
        va.normalize(&mean, &std);
    }
    let start = open_run(&req, &cfg, &tr, checked.net, world)?;
    print_start(&start, &cfg, world.ranks());
    // Over several ranks a terminal's Ctrl-C reaches a rank twice (from the terminal and
    // from the launcher): only the first counts.
    let interrupt = interrupt_flag(world.ranks() == 1);
    let mut console = Console::new(&interrupt);
    let t = Instant::now();
    let control = Control {
        interrupt: &interrupt,
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
    Ok(report(outcome, &req.dir, &va, t, world.ranks()))
}

/// The request (options, or a resumed run's `config.json`) and its checks. Over several
/// ranks, rank 0 alone reads the options and the run folder (the others may not have it)
/// and checks them; the others take its request and check it against their own data
/// folders.
fn shared_request(a: &TrainArgs, world: &World) -> Result<(Request, config::Checked), TrainerError> {
    let read = || Request::from_args(a).and_then(|r| config::validate(&r).map(|c| (r, c)));
    if world.ranks() == 1 {
        return read();
    }
    let first = world.agree(if world.is_root() {
        read().map(Some)
    } else {
        Ok(None)
    })?;
    let mut bytes = match &first {
        Some((r, _)) => {
            serde_json::to_vec(&(&r.cfg, r.dir.to_string_lossy(), r.resuming)).expect("request serializes")
        }
        None => Vec::new(),
    };
    world.broadcast(&mut bytes);
    let mine = match first {
        Some(both) => Ok(both),
        None => serde_json::from_slice::<(RunConfig, String, bool)>(&bytes)
            .map_err(|e| TrainerError::Usage(format!("the request rank 0 sent is not valid: {e}")))
            .and_then(|(cfg, dir, resuming)| {
                // Rank 0's run folder (written by rank 0 alone; named in messages).
                let req = Request {
                    cfg,
                    dir: dir.into(),
                    resuming,
                };
                config::validate(&req).map(|c| (req, c))
            }),
    };
    world.agree(mine)
}

/// A rank other than 0 prints nothing but errors: its standard output goes nowhere, and
/// its notes (skipped files, classes missing from the validation folder) are not printed.
fn quiet_rank() {
    super::console::set_quiet();
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

/// Loads the training and validation sets of a checked run configuration: the synthetic
/// flowers, split, or an image folder, split or with its `--val` folder. `classes` are the
/// training folder's, found by [`config::validate`]. Refuses a split that leaves no
/// training image.
fn load_data(cfg: &RunConfig, classes: &[String]) -> Result<(Dataset, Dataset), TrainerError> {
    let shape = input_shape(cfg);
    let t = Instant::now();
    let (tr, va) = match &cfg.data {
        None => {
            let sc = SynthConfig {
                size: shape.h,
                rgb: shape.c == 3,
                seed: cfg.seed,
                difficulty: cfg.synth_difficulty,
            };
            let (images, labels) = synth::dataset(&sc, cfg.synth_per_class, 0);
            let all = Dataset {
                images,
                labels,
                classes: CLASSES.iter().map(|s| s.to_string()).collect(),
                shape,
                paths: Vec::new(),
                mean_std: None,
            };
            let (tr, va) = all.split(cfg.val_split, cfg.seed);
            println!(
                "synthetic flowers: {} training and {} validation images of {}x{}x{} ({:.1} s)",
                tr.len(),
                va.len(),
                shape.c,
                shape.h,
                shape.w,
                t.elapsed().as_secs_f64()
            );
            (tr, va)
        }
        Some(dir) => {
            let (all, report) = load_image_folder(dir, shape, Some(classes))?;
            print_load(dir, &all, &report, t);
            match &cfg.val {
                Some(vdir) => {
                    let t = Instant::now();
                    let (va, r) = load_image_folder(vdir, shape, Some(&all.classes))?;
                    print_load(vdir, &va, &r, t);
                    (all, va)
                }
                None => all.split(cfg.val_split, cfg.seed),
            }
        }
    };
    if tr.is_empty() {
        return Err(TrainerError::Usage(
            "no training images left after the validation split".into(),
        ));
    }
    Ok((tr, va))
}

/// The start of training: for a resumed run its folder's checkpoint (or `net` when it has
/// none yet); for a new one `net`, in a new run folder holding `config.json`.
/// Over several ranks, rank 0 opens the folder and a resumed run's state goes from it to
/// the others.
fn open_run(
    req: &Request,
    cfg: &RunConfig,
    tr: &Dataset,
    mut net: Network,
    world: &World,
) -> Result<Start, TrainerError> {
    // The optimizer whose state the run's optimizer files hold (checked on resume).
    net.set_optimizer_state(cfg.recipe.optimizer_kind(), 0);
    if world.ranks() == 1 {
        return open_folder(req, cfg, tr, net);
    }
    let fresh = net.clone();
    let opened = if world.is_root() {
        open_folder(req, cfg, tr, net).map(Some)
    } else {
        Ok(None)
    };
    let opened = world.agree(opened)?;
    if !req.resuming {
        return Ok(Start::fresh(fresh));
    }
    let mut bytes = match opened {
        Some(mut start) => dist::encode_start(&mut start),
        None => Vec::new(),
    };
    world.broadcast(&mut bytes);
    world.agree(dist::decode_start(&bytes, fresh))
}

fn open_folder(req: &Request, cfg: &RunConfig, tr: &Dataset, net: Network) -> Result<Start, TrainerError> {
    let dir = &req.dir;
    if !req.resuming {
        train::create_run_dir(dir)?;
        train::write_config(dir, cfg)?;
        return Ok(Start::fresh(net));
    }
    let s = train::resume(dir, &tr.classes, net)?;
    match s.checkpoint {
        Some(_) => println!(
            "resuming {} at epoch {}, step {}",
            dir.display(),
            s.epoch + 1,
            s.step
        ),
        None => println!(
            "resuming {}: no checkpoint yet (stopped during epoch 1), starting from the beginning",
            dir.display()
        ),
    }
    Ok(s)
}

/// Prints how training ended (started at `t`, on `ranks` processes) and the exit it makes.
fn report(outcome: Outcome, dir: &Path, va: &Dataset, t: Instant, ranks: usize) -> Exit {
    match outcome {
        Outcome::Interrupted { epoch, step } => {
            println!(
                "interrupted at epoch {}, step {step}: checkpoint written; continue with\n  trainer train --resume {}{}",
                epoch + 1,
                dir.display(),
                if ranks > 1 {
                    " (under mpirun, with any number of processes)"
                } else {
                    ""
                }
            );
            Exit::Interrupted
        }
        Outcome::Finished { confusion, early } => {
            if let Some(why) = early {
                println!("{why}");
            }
            let set = if va.is_empty() { "training" } else { "validation" };
            println!("\n{set} confusion matrix:\n{}", confusion.table());
            println!(
                "\ndone in {:.1} s; run written to {}",
                t.elapsed().as_secs_f64(),
                dir.display()
            );
            Exit::Ok
        }
    }
}
