//! `trainer`: train, evaluate, benchmark and check Petal networks. `trainer --help`.

use clap::Parser;
use petal_trainer::cli::{run, Cli, Exit};
use std::process::ExitCode;

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(Exit::Ok) => ExitCode::SUCCESS,
        Ok(Exit::Interrupted) => ExitCode::from(130),
        Ok(Exit::Failed) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
