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
    #[error("training diverged at epoch {epoch}, step {step}: the loss is {loss} (lower --lr?); the last good checkpoint is in {}", dir.display())]
    Diverged {
        epoch: usize,
        step: u64,
        loss: f32,
        dir: PathBuf,
    },
    #[error("{0}")]
    Usage(String),
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
