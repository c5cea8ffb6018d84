//! Command-line interface: the commands, one file each, and what they share.
//!
//! `args` holds every command's options; `config` turns `train`'s options (or a run
//! folder's `config.json`) into a checked run; `load` loads a run's data; `network`
//! builds a network from an `--arch` for any command; `console` reports progress and data
//! loading.

mod args;
mod bench;
mod config;
mod console;
mod eval;
mod gradcheck;
mod load;
mod network;
mod predict;
mod resume;
mod signals;
mod synth;
mod train;

pub use args::{ArchArgs, BenchArgs, EvalArgs, GradcheckArgs, PredictArgs, SynthArgs, TrainArgs};

use crate::dist::World;
use crate::error::TrainerError;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

/// Train convolutional networks on the CPU, fast. With no command, trains the design note's
/// network (seednet) on the built-in synthetic flowers.
#[derive(Parser, Debug)]
#[command(name = "trainer", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub train: TrainArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a network on an image folder or the synthetic flowers (the default command).
    Train(Box<TrainArgs>),
    /// Accuracy, per-class precision/recall and confusion matrix of a checkpoint on a folder.
    Eval(EvalArgs),
    /// Top classes with probabilities for each image.
    Predict(PredictArgs),
    /// Training and inference images/s on random data.
    Bench(BenchArgs),
    /// Finite-difference check of every layer's gradients.
    Gradcheck(GradcheckArgs),
    /// Write the synthetic flowers as PNG class folders.
    Synth(SynthArgs),
}

/// Parses the command line (exiting with clap's message and code 2 on bad arguments), and
/// records which of `train`'s options were given ([`TrainArgs::given`]).
pub fn parse() -> Cli {
    let command = Cli::command();
    // The options' ids (clap also lists the groups of flattened structs among the ids).
    let options: Vec<String> = command.get_arguments().map(|a| a.get_id().to_string()).collect();
    let matches = command.get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let given = |m: &ArgMatches| -> Vec<String> {
        m.ids()
            .filter(|id| m.value_source(id.as_str()) == Some(ValueSource::CommandLine))
            .map(|id| id.to_string())
            .filter(|id| options.contains(id))
            .collect()
    };
    match (&mut cli.command, matches.subcommand()) {
        (Some(Command::Train(a)), Some((_, m))) => a.given = given(m),
        (None, _) => cli.train.given = given(&matches),
        _ => {}
    }
    cli
}

/// Largest side of a synthetic flower (`trainer synth --size`).
pub const MAX_SYNTH_SIDE: usize = 4096;

/// Largest batch `trainer bench` and `trainer gradcheck` build (their inputs are random,
/// so nothing bounds them but this).
pub const MAX_BENCH_BATCH: usize = 1 << 16;

/// How a command ended, for the exit code.
pub enum Exit {
    Ok,
    /// Stopped by a signal (Ctrl-C, SIGTERM, SIGHUP, SIGUSR1) after a step whose checkpoint
    /// was written: exit code 128 + the signal's number, as for any program a signal ends.
    Interrupted(i32),
    /// The command ran but its check failed (gradcheck over tolerance, an image that did
    /// not decode in predict).
    Failed,
}

/// Runs a command. Over several processes (`world`, an MPI job), `train` runs on every
/// rank; the other commands run on rank 0 while the others end at once.
pub fn run(cli: Cli, world: &World) -> Result<Exit, TrainerError> {
    let train = matches!(cli.command, None | Some(Command::Train(_)));
    if !train && !world.is_root() {
        return Ok(Exit::Ok);
    }
    match cli.command {
        None => train::run(cli.train, world),
        Some(Command::Train(a)) => train::run(*a, world),
        Some(Command::Eval(a)) => eval::run(a),
        Some(Command::Predict(a)) => predict::run(a),
        Some(Command::Bench(a)) => bench::run(a),
        Some(Command::Gradcheck(a)) => gradcheck::run(a),
        Some(Command::Synth(a)) => synth::run(a),
    }
}
