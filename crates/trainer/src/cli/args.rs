//! The options of each command (clap argument structs).

use clap::Args;
use petal_model::InputShape;
use std::path::PathBuf;

/// Network and input shape options shared by several commands.
#[derive(Args, Debug, Clone)]
pub struct ArchArgs {
    /// `seednet`, `flowernet`, `resnet8`, `resnet20` (presets: their last layer,
    /// `dense:N`, is sized to the data's N classes) or a spec such as
    /// `conv3x3:8,maxpool2,dense:5` (README: grammar), which must end in as many outputs as
    /// the data has classes.
    #[arg(long, default_value = "seednet")]
    pub arch: String,
    /// Input side in pixels (default: 50 for seednet, 32 for the ResNets, 64 otherwise).
    #[arg(long)]
    pub size: Option<usize>,
    /// One input channel (default for seednet).
    #[arg(long, conflicts_with = "rgb")]
    pub grayscale: bool,
    /// Three input channels (default for flowernet, the ResNets and specs).
    #[arg(long)]
    pub rgb: bool,
}

impl ArchArgs {
    /// The input shape the options describe.
    pub fn input(&self) -> InputShape {
        // A preset's own input (seednet 1x50x50, the ResNets 3x32x32), else 3x64x64.
        let (channels, side) = petal_model::spec::preset_input(&self.arch).unwrap_or((3, 64));
        let size = self.size.unwrap_or(side);
        let c = if self.grayscale {
            1
        } else if self.rgb {
            3
        } else {
            channels
        };
        InputShape { c, h: size, w: size }
    }
}

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Image folder, one sub-folder per class (default: the built-in synthetic flowers).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Separate validation image folder (instead of --val-split).
    #[arg(long)]
    pub val: Option<PathBuf>,
    #[command(flatten)]
    pub arch: ArchArgs,
    /// Epochs to train (default 5; with --resume: the run's own, or more).
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.02)]
    pub lr: f32,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    /// Fraction of each class held out for validation (without --val).
    #[arg(long, default_value_t = 0.2)]
    pub val_split: f64,
    /// Synthetic flowers per class, training and validation together (without --data).
    #[arg(long, default_value_t = 500)]
    pub synth_per_class: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run folder (default: `runs/<timestamp>-<arch>`); must be new or empty.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this folder from its last checkpoint (its config.json holds
    /// the options; --epochs may raise the total).
    #[arg(long, conflicts_with_all = ["data", "val", "out"])]
    pub resume: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Image files.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Classes shown per image.
    #[arg(long, default_value_t = 3)]
    pub top: usize,
    /// Print JSON (one array of results) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub arch: ArchArgs,
    /// Classes: a preset's last layer is sized to it, a spec must end in it (default: 5
    /// for a preset, any for a spec).
    #[arg(long)]
    pub classes: Option<usize>,
    /// Batch sizes to measure (repeat or comma-separate).
    #[arg(long, value_delimiter = ',', default_values_t = [32])]
    pub batch_size: Vec<usize>,
    /// Thread counts to measure (default: all cores).
    #[arg(long, value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Seconds of measurement per configuration.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// One JSON object per configuration, one per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct GradcheckArgs {
    #[command(flatten)]
    pub arch: ArchArgs,
    /// Classes: a preset's last layer is sized to it, a spec must end in it (default: 5
    /// for a preset, any for a spec).
    #[arg(long)]
    pub classes: Option<usize>,
    #[arg(long, default_value_t = 2)]
    pub batch_size: usize,
    /// Largest accepted relative error.
    #[arg(long, default_value_t = 1e-3)]
    pub tolerance: f64,
    /// Entries probed per tensor.
    #[arg(long, default_value_t = 16)]
    pub samples: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Args, Debug)]
pub struct SynthArgs {
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 100)]
    pub per_class: usize,
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Grayscale images (default: RGB).
    #[arg(long)]
    pub grayscale: bool,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}
