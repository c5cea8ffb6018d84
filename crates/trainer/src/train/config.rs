//! A run's configuration, `config.json`: what was asked for, so `--resume` needs only the
//! folder; and the request to train (a configuration and its run folder).

use crate::augment::Augment;
use crate::error::TrainerError;
use crate::recipe::Recipe;
use petal_kernels::ConvAlgo;
use petal_model::InputShape;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::CONFIG_FILE;

/// What a run was asked to do; saved as `config.json` so `--resume` needs only the folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Preset name or spec, as given.
    pub arch: String,
    /// The network `arch` resolved to for the data's classes (canonical spec: a preset's
    /// last layer sized to the class count), which `--resume` rebuilds. Absent in the
    /// configurations of runs made before presets followed the data (they had 5 classes).
    #[serde(default)]
    pub spec: Option<String>,
    /// `[c, h, w]`.
    pub input: [usize; 3],
    pub epochs: usize,
    pub batch_size: usize,
    pub seed: u64,
    /// Image folder, or `None` for the synthetic flowers.
    #[serde(with = "os_path", default)]
    pub data: Option<PathBuf>,
    /// Separate validation folder.
    #[serde(with = "os_path", default)]
    pub val: Option<PathBuf>,
    pub val_split: f64,
    /// Synthetic flowers per class (training + validation) when `data` is `None`.
    pub synth_per_class: usize,
    /// Stop when the validation accuracy has not improved for this many epochs.
    #[serde(default)]
    pub patience: Option<usize>,
    /// Normalise inputs with the training set's per-channel mean and deviation.
    #[serde(default)]
    pub normalize: bool,
    /// The synthetic set's difficulty when `data` is `None`.
    #[serde(default)]
    pub synth_difficulty: crate::synth::Difficulty,
    /// Every hyper-parameter of the optimizer, the schedule and the loss (flattened: `lr`,
    /// `momentum`, `weight_decay`, `optimizer`, `nesterov`, `beta1`, `beta2`, `eps`,
    /// `lr_schedule`, `warmup_epochs`, `lr_milestones`, `lr_gamma`, `label_smoothing`;
    /// those added after the first runs default to the plain recipe when absent).
    #[serde(flatten)]
    pub recipe: Recipe,
    /// Augmentation of the training images (`--augment`); absent in configurations from
    /// before it existed, which resume without.
    #[serde(default)]
    pub augment: Augment,
    /// Checkpoints within an epoch (`--checkpoint-every`); none: at epoch ends only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_every: Option<CheckpointEvery>,
    /// The stride-1 3x3 convolutions' algorithm (`--conv-algo`): `direct` in the
    /// configurations of runs made before Winograd, which resume with the bits they began
    /// with.
    #[serde(default, with = "conv_algo_name")]
    pub conv_algo: ConvAlgo,
}

/// How often a run checkpoints within an epoch (`--checkpoint-every`): every N steps, or
/// after so much wall time since the last checkpoint (`30s`, `10m`, `2h`). Every epoch's
/// end checkpoints too. Written in `config.json` as given (`"500"`, `"10m"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum CheckpointEvery {
    Steps(u64),
    Seconds(u64),
}

impl CheckpointEvery {
    /// `N` steps, or `Ns`, `Nm`, `Nh` of wall time; N at least 1.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let (digits, unit) = match t.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], Some(c)),
            _ => (t, None),
        };
        let bad = || {
            format!("--checkpoint-every `{text}`: expected a step count (500) or a duration (30s, 10m, 2h)")
        };
        let n: u64 = digits.parse().ok().filter(|&n| n > 0).ok_or_else(bad)?;
        match unit {
            None => Ok(CheckpointEvery::Steps(n)),
            Some('s') => Ok(CheckpointEvery::Seconds(n)),
            Some('m') => n.checked_mul(60).map(CheckpointEvery::Seconds).ok_or_else(bad),
            Some('h') => n.checked_mul(3600).map(CheckpointEvery::Seconds).ok_or_else(bad),
            Some(_) => Err(bad()),
        }
    }
}

impl std::fmt::Display for CheckpointEvery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            CheckpointEvery::Steps(n) => write!(f, "{n}"),
            CheckpointEvery::Seconds(s) if s % 3600 == 0 => write!(f, "{}h", s / 3600),
            CheckpointEvery::Seconds(s) if s % 60 == 0 => write!(f, "{}m", s / 60),
            CheckpointEvery::Seconds(s) => write!(f, "{s}s"),
        }
    }
}

impl From<CheckpointEvery> for String {
    fn from(c: CheckpointEvery) -> String {
        c.to_string()
    }
}

impl TryFrom<String> for CheckpointEvery {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        CheckpointEvery::parse(&s)
    }
}

/// [`ConvAlgo`] in `config.json`: its name (`"auto"`, `"winograd"`, `"direct"`).
mod conv_algo_name {
    use petal_kernels::ConvAlgo;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(a: &ConvAlgo, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(a.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ConvAlgo, D::Error> {
        let name = String::deserialize(d)?;
        ConvAlgo::parse(&name)
            .ok_or_else(|| D::Error::custom(format!("`{name}` is not one of {}", ConvAlgo::NAMES.join(", "))))
    }
}

/// Paths in `config.json`: a JSON string when the path is UTF-8, else (Unix) the array of
/// its bytes, so a folder whose name is not UTF-8 can still be resumed.
mod os_path {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::path::PathBuf;

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Bytes(Vec<u8>),
    }

    pub fn serialize<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        let repr = p.as_ref().map(|p| match p.to_str() {
            Some(t) => Repr::Text(t.to_string()),
            None => Repr::Bytes(bytes(p)),
        });
        repr.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        Ok(match Option::<Repr>::deserialize(d)? {
            None => None,
            Some(Repr::Text(t)) => Some(PathBuf::from(t)),
            Some(Repr::Bytes(b)) => Some(from_bytes(b).map_err(serde::de::Error::custom)?),
        })
    }

    #[cfg(unix)]
    fn bytes(p: &std::path::Path) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        p.as_os_str().as_bytes().to_vec()
    }
    #[cfg(not(unix))]
    fn bytes(p: &std::path::Path) -> Vec<u8> {
        p.to_string_lossy().into_owned().into_bytes()
    }
    #[cfg(unix)]
    fn from_bytes(b: Vec<u8>) -> Result<PathBuf, String> {
        use std::os::unix::ffi::OsStringExt;
        Ok(PathBuf::from(std::ffi::OsString::from_vec(b)))
    }
    #[cfg(not(unix))]
    fn from_bytes(b: Vec<u8>) -> Result<PathBuf, String> {
        String::from_utf8(b)
            .map(PathBuf::from)
            .map_err(|_| "a path of bytes that are not UTF-8".to_string())
    }
}

impl RunConfig {
    /// The `[c, h, w]` of the input as an [`InputShape`].
    pub fn input_shape(&self) -> InputShape {
        InputShape {
            c: self.input[0],
            h: self.input[1],
            w: self.input[2],
        }
    }
}

/// What `train` was asked for: a configuration, its run folder, and whether the folder
/// holds a run to continue.
#[derive(Clone, Debug)]
pub struct Request {
    pub cfg: RunConfig,
    pub dir: PathBuf,
    pub resuming: bool,
}

/// Creates a fresh run folder, refusing one that already holds files.
pub fn create_run_dir(out: &Path) -> Result<(), TrainerError> {
    if out.exists() {
        let mut entries = std::fs::read_dir(out).map_err(|e| TrainerError::io(out, e))?;
        if entries.next().is_some() {
            return Err(TrainerError::RunExists(out.to_path_buf()));
        }
    }
    std::fs::create_dir_all(out).map_err(|e| TrainerError::io(out, e))
}

/// Writes `config.json` atomically.
pub fn write_config(out: &Path, cfg: &RunConfig) -> Result<(), TrainerError> {
    let path = out.join(CONFIG_FILE);
    let text = serde_json::to_string_pretty(cfg).expect("config serializes");
    petal_model::atomic::write_atomic(&path, text.as_bytes()).map_err(|e| TrainerError::io(&path, e))
}

/// Reads `config.json` of a run folder.
pub fn read_config(dir: &Path) -> Result<RunConfig, TrainerError> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainerError::io(&path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| TrainerError::data(&path, format!("not a run configuration: {e}")))
}

/// A checked request: its configuration (with `spec` the network it resolved to), the
/// data's classes in label order and the freshly initialised network.
pub struct Checked {
    pub cfg: RunConfig,
    pub classes: Vec<String>,
    pub net: petal_model::Network,
}
