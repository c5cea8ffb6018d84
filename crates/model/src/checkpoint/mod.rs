//! Checkpoints: `safetensors` files that PyTorch's `nn.Sequential.load_state_dict` reads.
//!
//! Tensors are named as the equivalent `nn.Sequential`'s `state_dict`: `"{layer index}.weight"`
//! and `"{layer index}.bias"` (implied flattens count as layers, as `nn.Flatten` does), f32,
//! with PyTorch's shapes. `__metadata__` holds:
//!
//! | key | value |
//! | --- | --- |
//! | `format` | `petal-checkpoint` |
//! | `format_version` | `1` |
//! | `spec` | the canonical network spec (`conv3x3:8,maxpool2,flatten,dense:5`) |
//! | `input_shape` | JSON `[c, h, w]` |
//! | `classes` | JSON list of class names, in label order |
//! | `normalization` | JSON `{"scale": 1/255, "mean": [..], "std": [..]}`: `x = (pixel · scale - mean[c]) / std[c]` |
//! | `epoch`, `step` | completed epochs and optimizer steps |
//!
//! The optimizer state goes in its own file (`optimizer.rs`), laid out by the optimizer
//! (`crate::optim`): SGD's velocities with the same tensor names and
//! `format = petal-sgd-state`, or AdamW's moments and step count
//! (`format = petal-adamw-state`). `file.rs` reads and writes both kinds of file; every
//! file is written atomically.

mod file;
mod optimizer;

pub use file::{FORMAT_VERSION, MAX_FILE_BYTES};
pub use optimizer::{load_optimizer_state, save_optimizer_state};

use crate::atomic::write_atomic;
use crate::error::ModelError;
use crate::layers::{Buffer, BufferMut};
use crate::network::{InputShape, Network};
use crate::spec::parse_spec;
use file::{f32_bytes, fill_params, meta_field, parse_file, read_bounded, serialize, Dst, Tensor};
use safetensors::tensor::Dtype;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// `format` of a model checkpoint.
pub const CHECKPOINT_FORMAT: &str = "petal-checkpoint";

/// How pixels become network inputs: `x = (pixel · scale - mean[c]) / std[c]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub scale: f32,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalization {
    /// Pixels scaled to `[0, 1]`, no mean or std for `channels` channels.
    pub fn unit(channels: usize) -> Self {
        Normalization {
            scale: 1.0 / 255.0,
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }
}

/// What a checkpoint records besides the weights.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointMeta {
    /// Class names in label order (as many as the network's outputs).
    pub classes: Vec<String>,
    pub normalization: Normalization,
    /// Completed epochs.
    pub epoch: u64,
    /// Completed optimizer steps.
    pub step: u64,
    /// Further metadata entries of the caller's own (the trainer keeps its run state here),
    /// written and read back as they are. Keys must not be one of [`RESERVED_KEYS`].
    pub extra: BTreeMap<String, String>,
}

/// The metadata keys Petal itself writes.
pub const RESERVED_KEYS: [&str; 8] = [
    "format",
    "format_version",
    "spec",
    "input_shape",
    "classes",
    "normalization",
    "epoch",
    "step",
];

/// The tensors of a network's `state_dict`, as PyTorch names them: per layer its
/// parameters (f32), then its buffers (a batch norm's `running_mean`, `running_var` as
/// f32 and `num_batches_tracked` as an i64 scalar).
fn state_tensors(net: &Network) -> Vec<Tensor> {
    let mut out = Vec::new();
    for layer in net.layers() {
        for p in layer.params() {
            out.push((p.name.clone(), p.shape.clone(), Dtype::F32, f32_bytes(&p.value)));
        }
        for b in layer.buffers() {
            out.push(match b {
                Buffer::Values { name, values, .. } => {
                    (name, vec![values.len()], Dtype::F32, f32_bytes(values))
                }
                Buffer::Count { name, value } => {
                    (name, vec![], Dtype::I64, (value as i64).to_le_bytes().to_vec())
                }
            });
        }
    }
    out
}

/// Writes `net`'s weights and `meta` to `path` atomically (module docs give the format).
pub fn save_checkpoint(path: &Path, net: &Network, meta: &CheckpointMeta) -> Result<(), ModelError> {
    if meta.classes.len() != net.classes() {
        return Err(ModelError::checkpoint(
            path,
            format!(
                "{} class names for a network with {} outputs",
                meta.classes.len(),
                net.classes()
            ),
        ));
    }
    if let Some(k) = meta.extra.keys().find(|k| RESERVED_KEYS.contains(&k.as_str())) {
        return Err(ModelError::checkpoint(
            path,
            format!("extra metadata key `{k}` is reserved"),
        ));
    }
    // Refuse what the loader would refuse, before touching the file: a diverged network
    // must never replace the last good checkpoint with one that cannot be loaded.
    if let Some(p) = net.params().find(|p| p.value.iter().any(|v| !v.is_finite())) {
        return Err(ModelError::checkpoint(
            path,
            format!("tensor `{}` holds a NaN or infinite value", p.name),
        ));
    }
    for b in net.buffers() {
        if let Buffer::Values { name, values, nonneg } = b {
            if values.iter().any(|v| !v.is_finite() || (nonneg && *v < 0.0)) {
                let what = if nonneg {
                    "a NaN, infinite or negative"
                } else {
                    "a NaN or infinite"
                };
                return Err(ModelError::checkpoint(
                    path,
                    format!("tensor `{name}` holds {what} value"),
                ));
            }
        }
    }
    let n = &meta.normalization;
    let c = net.input_shape().c;
    if n.mean.len() != c || n.std.len() != c {
        return Err(ModelError::checkpoint(
            path,
            format!(
                "normalization has {} means and {} stds for {c} channels",
                n.mean.len(),
                n.std.len()
            ),
        ));
    }
    if !(n.scale.is_finite() && n.scale > 0.0)
        || n.mean.iter().any(|m| !m.is_finite())
        || n.std.iter().any(|s| !(s.is_finite() && *s > 0.0))
    {
        return Err(ModelError::checkpoint(
            path,
            "normalization needs a finite positive scale and std, finite means",
        ));
    }
    let tensors = state_tensors(net);
    let i = net.input_shape();

    let mut metadata = HashMap::from([
        ("format".to_string(), CHECKPOINT_FORMAT.to_string()),
        ("format_version".to_string(), FORMAT_VERSION.to_string()),
        ("spec".to_string(), net.spec()),
        ("input_shape".to_string(), json(&[i.c, i.h, i.w])),
        ("classes".to_string(), json(&meta.classes)),
        ("normalization".to_string(), json(&meta.normalization)),
        ("epoch".to_string(), meta.epoch.to_string()),
        ("step".to_string(), meta.step.to_string()),
    ]);
    metadata.extend(meta.extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    let bytes = serialize(tensors, metadata).map_err(|e| ModelError::checkpoint(path, e))?;
    write_atomic(path, &bytes).map_err(|e| ModelError::io(path, e))
}

fn json<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).expect("metadata serializes")
}

/// Reads a checkpoint written by [`save_checkpoint`]: rebuilds the network from its spec
/// and input shape, checks every tensor, and returns it with its metadata. Velocities are
/// zero (see [`crate::load_optimizer_state`]). Every error names `path` and what is wrong.
pub fn load_checkpoint(path: &Path) -> Result<(Network, CheckpointMeta), ModelError> {
    let bytes = read_bounded(path)?;
    checkpoint_from_bytes(path, &bytes)
}

/// [`load_checkpoint`] on a checkpoint held in memory (errors name it `<memory>`).
pub fn load_checkpoint_bytes(bytes: &[u8]) -> Result<(Network, CheckpointMeta), ModelError> {
    checkpoint_from_bytes(Path::new("<memory>"), bytes)
}

fn checkpoint_from_bytes(path: &Path, bytes: &[u8]) -> Result<(Network, CheckpointMeta), ModelError> {
    let (st, meta) = parse_file(path, bytes, CHECKPOINT_FORMAT)?;
    let err = |r: String| ModelError::checkpoint(path, r);
    let spec: String = meta
        .get("spec")
        .cloned()
        .ok_or_else(|| err("metadata has no `spec`".into()))?;
    let [c, h, w]: [usize; 3] = meta_field(path, &meta, "input_shape")?;
    let input = InputShape { c, h, w };
    // Zero weights, not `from_spec`'s initialisation: the allocation is not touched
    // until every tensor's name and shape has been checked against the file, so a small
    // file that claims a large network costs no memory.
    let mut net = crate::limits::check_input(input)
        .and_then(|()| Network::from_layers(&parse_spec(&spec)?, input))
        .and_then(|net| crate::limits::check_buffers(&net).map(|()| net))
        .map_err(|e| err(format!("metadata `spec` = `{spec}` on input {c}x{h}x{w}: {e}")))?;
    let classes: Vec<String> = meta_field(path, &meta, "classes")?;
    if classes.len() != net.classes() {
        return Err(err(format!(
            "{} class names for a network with {} outputs",
            classes.len(),
            net.classes()
        )));
    }
    let normalization: Normalization = meta_field(path, &meta, "normalization")?;
    if normalization.mean.len() != c || normalization.std.len() != c {
        return Err(err(format!(
            "normalization has {} means and {} stds for {c} channels",
            normalization.mean.len(),
            normalization.std.len()
        )));
    }
    let n = &normalization;
    let finite = n.scale.is_finite() && n.mean.iter().chain(&n.std).all(|v| v.is_finite());
    if !finite || n.scale == 0.0 || n.std.contains(&0.0) {
        return Err(err(format!(
            "metadata `normalization` = {}: scale and std must be finite and non-zero, mean finite",
            json(n)
        )));
    }
    let epoch: u64 = meta_field(path, &meta, "epoch")?;
    let step: u64 = meta_field(path, &meta, "step")?;
    fill_params(path, &st, destinations(&mut net))?;
    let extra = meta
        .into_iter()
        .filter(|(k, _)| !RESERVED_KEYS.contains(&k.as_str()))
        .collect();
    Ok((
        net,
        CheckpointMeta {
            classes,
            normalization,
            epoch,
            step,
            extra,
        },
    ))
}

/// Where each tensor of a checkpoint goes in `net`: per layer its parameters' values, then
/// its buffers (the order of [`state_tensors`]).
fn destinations(net: &mut Network) -> Vec<(String, Vec<usize>, Dst<'_>)> {
    let mut out = Vec::new();
    for layer in net.layers_mut() {
        let (params, buffers) = layer.state_mut();
        for p in params {
            out.push((p.name.clone(), p.shape.clone(), Dst::F32(&mut p.value, false)));
        }
        for b in buffers {
            out.push(match b {
                BufferMut::Values { name, values, nonneg } => {
                    (name, vec![values.len()], Dst::F32(values, nonneg))
                }
                BufferMut::Count { name, value } => (name, vec![], Dst::Count(value)),
            });
        }
    }
    out
}
