//! Stopping a run from outside: Ctrl-C (SIGINT), SIGTERM (Slurm at a job's time limit or on
//! preemption, `docker stop`, Kubernetes, systemd), SIGHUP (a closed terminal) and SIGUSR1
//! (Slurm's `--signal=USR1@…`) all finish the current step, write the checkpoint and end
//! the process with exit code 128 + the signal's number. A second signal ends it at once:
//! the last checkpoint on disk is whole either way (every file is written atomically).

use super::console::quiet;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

/// The signals that stop a run.
pub(super) const STOP_SIGNALS: [i32; 4] = [SIGINT, SIGTERM, SIGHUP, SIGUSR1];

/// What the stop signals set: the flag the training loop reads after every step, and the
/// first signal that came.
#[derive(Clone)]
pub(super) struct Stop {
    pub flag: Arc<AtomicBool>,
    signal: Arc<AtomicI32>,
}

impl Stop {
    /// A stop no signal sets (the tests' step hook sets `flag` as a Ctrl-C would).
    fn new() -> Stop {
        Stop {
            flag: Arc::new(AtomicBool::new(false)),
            signal: Arc::new(AtomicI32::new(0)),
        }
    }

    /// Handles [`STOP_SIGNALS`]: the first sets the flag (and says so on this process's
    /// stderr unless it is quiet); with `second_quits`, another exits at once with 128 +
    /// its number. (A rank of a multi-process run gets a terminal's Ctrl-C twice, from the
    /// terminal and from the launcher: there the launcher's own second Ctrl-C ends the
    /// job.) When the handlers cannot be installed the run goes on without them.
    pub fn install(second_quits: bool) -> Stop {
        let stop = Stop::new();
        let Ok(mut signals) = Signals::new(STOP_SIGNALS) else {
            return stop;
        };
        let (flag, first) = (stop.flag.clone(), stop.signal.clone());
        std::thread::spawn(move || {
            for sig in signals.forever() {
                if flag.swap(true, Ordering::SeqCst) {
                    if second_quits {
                        std::process::exit(128 + sig);
                    }
                    continue;
                }
                first.store(sig, Ordering::SeqCst);
                if !quiet() {
                    eprintln!("\n{}", notice(sig));
                }
            }
        });
        stop
    }

    /// The signal that stopped the run: the first that came, or SIGINT for the tests' step
    /// hook (which acts as a Ctrl-C).
    pub fn signal(&self) -> i32 {
        match self.signal.load(Ordering::SeqCst) {
            0 => SIGINT,
            s => s,
        }
    }
}

/// A signal's name: `SIGTERM`.
pub(super) fn name(sig: i32) -> String {
    signal_hook::low_level::signal_name(sig).map_or_else(|| format!("signal {sig}"), str::to_string)
}

/// What the first stop signal prints.
fn notice(sig: i32) -> String {
    if sig == SIGINT {
        "interrupt: finishing the step and writing the checkpoint (Ctrl-C again to quit now)".into()
    } else {
        format!(
            "{}: finishing the step and writing the checkpoint (send it again to quit now)",
            name(sig)
        )
    }
}
