//! The trainer's errors: one variant per thing that can go wrong outside the program.

use std::path::PathBuf;

/// Everything the trainer can refuse or fail at. The binary prints the message and its
/// causes, one line each, and exits non-zero.
#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    #[error("data folder {}: {reason}", path.display())]
    Data { path: PathBuf, reason: String },
    #[error(transparent)]
    Model(#[from] petal_model::ModelError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("run folder {} already holds a run: continue it with --resume, or choose another --out", .0.display())]
    RunExists(PathBuf),
    /// A non-finite loss or weights. `last` is the (epoch, step) of the checkpoint left in
    /// `dir`, untouched, or `None` when none was written yet.
    #[error("training diverged at epoch {epoch}, step {step}: {what} (lower --lr?); {}", last_checkpoint(dir, *last))]
    Diverged {
        epoch: usize,
        step: u64,
        what: String,
        dir: PathBuf,
        last: Option<(u64, u64)>,
    },
    #[error("{0}")]
    Usage(String),
    /// In a run over several processes, another rank failed (it printed why).
    #[error("rank {rank} failed (its own error line says why); every rank stops")]
    OtherRank { rank: usize },
}

fn last_checkpoint(dir: &std::path::Path, last: Option<(u64, u64)>) -> String {
    match last {
        Some((epoch, step)) => format!(
            "the last good checkpoint (epoch {epoch}, step {step}) is in {}, unchanged",
            dir.display()
        ),
        None => format!("no checkpoint was written to {}", dir.display()),
    }
}

impl TrainerError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainerError::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn data(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        TrainerError::Data {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
