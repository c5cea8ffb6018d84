//! Typed errors for everything that reaches the model from outside: specs, shapes,
//! batches, labels and checkpoint files.

use std::path::PathBuf;

/// Why a spec string describes no network (position is 1-based, counting spec layers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec layer {position} (`{layer}`): {reason}")]
pub struct SpecError {
    pub position: usize,
    pub layer: String,
    pub reason: String,
}

/// Everything the model can refuse.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("batch norm `{layer}` sees {values} value per channel in this training batch: it needs at least 2 (a batch of 2 or more)")]
    BatchNormBatch { layer: String, values: usize },
    #[error("input shape {c}x{h}x{w}: every dimension must be at least 1")]
    InputShape { c: usize, h: usize, w: usize },
    #[error("batch of {got} values is not a whole number of {per_image}-value images (input {shape})")]
    BatchShape {
        got: usize,
        per_image: usize,
        shape: String,
    },
    #[error("batch has {images} images but {labels} labels")]
    LabelCount { images: usize, labels: usize },
    #[error(transparent)]
    Label(#[from] petal_kernels::LabelError),
    /// The network's output count is not the data's class count.
    #[error(
        "the spec ends in {last}{} but {data} has {classes} classes: end it in dense:{classes}, or use a preset",
        if last.starts_with("dense:") { String::new() } else { format!(" ({outputs} outputs)") }
    )]
    ClassCount {
        /// The network's last layer, as written in a spec (`dense:5`).
        last: String,
        /// Values that layer outputs per sample.
        outputs: usize,
        /// What the classes were counted in (`the data`, a folder's path).
        data: String,
        classes: usize,
    },
    /// A convolution layer whose kernel shape the kernels refuse (`limits::check_buffers` on
    /// hand-built layers; the layers a network builds from a spec are checked as spec
    /// errors).
    #[error("{what}: {source}")]
    LayerShape {
        what: String,
        #[source]
        source: petal_kernels::ShapeError,
    },
    #[error("network too large: {what} needs {values} values, over the limit of {limit}")]
    TooLarge { what: String, values: u128, limit: u128 },
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ModelError {
    pub(crate) fn checkpoint(path: &std::path::Path, reason: impl Into<String>) -> Self {
        ModelError::Checkpoint {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
