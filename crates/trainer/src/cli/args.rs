//! The options of each command (clap argument structs).

use clap::Args;
use petal_kernels::ConvAlgo;
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
    /// Learning rate (the base rate of --lr-schedule; onecycle's maximum) [default: 0.02
    /// for sgd, 0.001 for adamw].
    #[arg(long)]
    pub lr: Option<f32>,
    /// `sgd` (PyTorch's SGD) or `adamw` (PyTorch's AdamW, amsgrad off).
    #[arg(long, default_value = "sgd", value_name = "NAME")]
    pub optimizer: String,
    /// SGD momentum (sgd only).
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    /// Nesterov momentum (sgd with --momentum above 0).
    #[arg(long)]
    pub nesterov: bool,
    /// AdamW's β1, in [0, 1).
    #[arg(long, default_value_t = 0.9)]
    pub beta1: f32,
    /// AdamW's β2, in [0, 1).
    #[arg(long, default_value_t = 0.999)]
    pub beta2: f32,
    /// AdamW's ε, added to the square root of the second moment.
    #[arg(long, default_value_t = 1e-8)]
    pub eps: f32,
    /// Weight decay: L2 added to the gradient (sgd), decoupled `w *= 1 - lr·wd` (adamw)
    /// [default: 0 for sgd, 0.01 for adamw].
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// Learning-rate schedule, per step: `constant`; `step` (× --lr-gamma at each of
    /// --lr-milestones); `cosine` (to 0, after --warmup-epochs of linear warmup from
    /// lr·1e-3); `onecycle` (PyTorch's OneCycleLR: up from lr/25 over 30 % of the steps,
    /// then down to lr/25/1e4; momentum not cycled).
    #[arg(long, default_value = "constant", value_name = "NAME")]
    pub lr_schedule: String,
    /// Linear warmup of the cosine schedule, in epochs (fractions allowed: rounded to steps).
    #[arg(long, default_value_t = 0.0, value_name = "EPOCHS")]
    pub warmup_epochs: f64,
    /// Epochs at which the step schedule multiplies the rate by --lr-gamma (e.g. 30,60).
    #[arg(long, value_delimiter = ',', value_name = "EPOCHS")]
    pub lr_milestones: Vec<usize>,
    /// Factor of the step schedule at each milestone.
    #[arg(long, default_value_t = 0.1)]
    pub lr_gamma: f64,
    /// Label smoothing ε of the training loss, in [0, 1] (PyTorch's CrossEntropyLoss
    /// label_smoothing: targets (1 - ε)·onehot + ε/classes).
    #[arg(long, default_value_t = 0.0, value_name = "EPSILON")]
    pub label_smoothing: f32,
    /// Augmentation of the training images (never validation), a comma list: `flip`
    /// (horizontal flip with probability 0.5, PyTorch's RandomHorizontalFlip), `crop` or
    /// `crop:N` (zero-pad N pixels on each side, default 4, then a random window of the
    /// image's size: PyTorch's RandomCrop(size, padding=N)). Draws depend only on the
    /// seed, epoch and image, so runs repeat on any thread count and resume exactly.
    #[arg(long, value_name = "LIST")]
    pub augment: Option<String>,
    /// Fraction of each class held out for validation (without --val).
    #[arg(long, default_value_t = 0.2)]
    pub val_split: f64,
    /// Synthetic flowers per class, training and validation together (without --data).
    #[arg(long, default_value_t = 500)]
    pub synth_per_class: usize,
    /// The synthetic set without --data: `easy` (default) or `hard` (see `trainer synth`).
    #[arg(long, default_value = "easy", value_name = "LEVEL")]
    pub synth_difficulty: String,
    /// Normalise inputs per channel with the training set's mean and standard deviation
    /// (measured before training, stored in the checkpoints; eval and predict apply them).
    #[arg(long)]
    pub normalize: bool,
    /// Stop when the validation accuracy has not improved for N epochs (the run keeps the
    /// best epoch's weights in best.safetensors either way).
    #[arg(long, value_name = "N")]
    pub patience: Option<usize>,
    /// Checkpoint within epochs too: every N steps (`500`), or after so much wall time
    /// since the last checkpoint (`30s`, `10m`, `2h`); each epoch's end checkpoints either
    /// way. A run stopped by SIGKILL or a crash resumes from the latest.
    #[arg(long, value_name = "N|DURATION")]
    pub checkpoint_every: Option<String>,
    #[arg(long, default_value = "auto", value_name = "ALGO", value_parser = conv_algo, help = CONV_ALGO_HELP)]
    pub conv_algo: ConvAlgo,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// The memory the run may use (`8G`, `512M`: GiB, MiB); a run whose estimate is larger
    /// is refused before any work, naming the largest batch that fits (default: the memory
    /// the machine, or its container, has available).
    #[arg(long, value_name = "SIZE")]
    pub max_memory: Option<String>,
    /// Run folder (default: `runs/<timestamp>-<arch>`); must be new or empty.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this folder from its last checkpoint. Its config.json holds the
    /// options: --epochs (raised), --threads, --checkpoint-every and --patience may change;
    /// any other option must have the run's own value (or be left out).
    #[arg(long, conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// The options given on the command line (clap's ids), filled after parsing
    /// ([`super::parse`]): a resumed run applies or refuses each.
    #[arg(skip)]
    pub given: Vec<String>,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[arg(long, default_value = "auto", value_name = "ALGO", value_parser = conv_algo, help = CONV_ALGO_HELP)]
    pub conv_algo: ConvAlgo,
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
    #[arg(long, default_value = "auto", value_name = "ALGO", value_parser = conv_algo, help = CONV_ALGO_HELP)]
    pub conv_algo: ConvAlgo,
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
    /// Algorithms of the stride-1 3x3 convolutions to measure, side by side (`auto`,
    /// `winograd`, `direct`: as `train --conv-algo`; repeat or comma-separate).
    #[arg(long, value_delimiter = ',', default_values = ["auto"], value_name = "ALGO", value_parser = conv_algo)]
    pub conv_algo: Vec<ConvAlgo>,
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
    #[arg(long, default_value = "auto", value_name = "ALGO", value_parser = conv_algo, help = CONV_ALGO_HELP)]
    pub conv_algo: ConvAlgo,
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
    /// `easy` (the default set) or `hard` (smaller flowers anywhere near the middle, a
    /// flower of another class behind, leaves over it, more noise).
    #[arg(long, default_value = "easy", value_name = "LEVEL")]
    pub difficulty: String,
}

/// `--conv-algo`'s help (`train`, `eval`, `predict`, `gradcheck`).
const CONV_ALGO_HELP: &str = "Algorithm of the stride-1 3x3 convolutions: `auto` (Winograd where it was \
measured faster: layers with at least two vectors of input and output channels, 16 on an AVX2 build and 32 \
on an AVX-512 one; the direct kernels elsewhere), `winograd` (wherever it applies) or `direct` (the direct \
kernels everywhere: the bits of Petal before Winograd). Winograd rounds differently (within 2e-5 of float64 \
on ResNet layers); each gives the same bits on any thread count and any split over processes";

/// `--conv-algo`'s values ([`ConvAlgo::NAMES`]).
fn conv_algo(name: &str) -> Result<ConvAlgo, String> {
    ConvAlgo::parse(name).ok_or_else(|| format!("`{name}` is not one of {}", ConvAlgo::NAMES.join(", ")))
}
