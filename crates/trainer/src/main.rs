//! `trainer`: train, evaluate, benchmark and check Petal networks. `trainer --help`.

use petal_trainer::cli::{parse, run, Exit};
use petal_trainer::dist::World;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so printing to a closed pipe (`trainer bench | head -1`) would
    // panic; end the process quietly instead, as other command-line tools do.
    #[cfg(unix)]
    // SAFETY: called first in main, before any thread exists; SIG_DFL is a valid action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = parse();
    // The MPI job this process is a rank of (a build with the `mpi` feature started by
    // mpirun), or this process alone.
    let world = World::from_launcher();
    // A build that does not use the CPU's vector units says so, once, before any work.
    if let Some(w) = petal_kernels::simd_warning().filter(|_| world.is_root()) {
        eprintln!("warning: {w}");
    }
    let code = match run(cli, &world) {
        Ok(Exit::Ok) => ExitCode::SUCCESS,
        Ok(Exit::Interrupted(signal)) => ExitCode::from((128 + signal).clamp(0, 255) as u8),
        Ok(Exit::Failed) => ExitCode::from(1),
        Err(e) if world.ranks() > 1 => {
            // One write, so the ranks' lines (merged by the launcher) stay whole.
            let line = format!("error: rank {} of {}: {e}\n", world.rank(), world.ranks());
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    };
    // Finalises MPI (every rank gets here: errors are agreed on before they end a rank).
    drop(world);
    code
}
