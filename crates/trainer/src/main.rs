//! `trainer`: train, evaluate, benchmark and check Petal networks. `trainer --help`.

use clap::Parser;
use petal_trainer::cli::{run, Cli, Exit};
use std::process::ExitCode;

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so printing to a closed pipe (`trainer bench | head -1`) would
    // panic; end the process quietly instead, as other command-line tools do.
    #[cfg(unix)]
    // SAFETY: called first in main, before any thread exists; SIG_DFL is a valid action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    // A build that does not use the CPU's vector units says so, once, before any work.
    if let Some(w) = petal_kernels::simd_warning() {
        eprintln!("warning: {w}");
    }
    match run(cli) {
        Ok(Exit::Ok) => ExitCode::SUCCESS,
        Ok(Exit::Interrupted) => ExitCode::from(130),
        Ok(Exit::Failed) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
