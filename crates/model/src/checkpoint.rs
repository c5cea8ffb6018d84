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
//! The optimizer state goes in its own file (`optim_state.rs`): SGD velocities with the
//! same tensor names and `format = petal-sgd-state`, or AdamW's moments and step count
//! (`format = petal-adamw-state`). Every file is written atomically.

use crate::atomic::write_atomic;
use crate::error::ModelError;
use crate::layer::{BatchNorm, Layer, Param};
use crate::network::{InputShape, Network};
use crate::spec::parse_spec;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// `format` of a model checkpoint.
pub const CHECKPOINT_FORMAT: &str = "petal-checkpoint";
/// `format` of an SGD optimizer-state file (velocities).
pub const OPTIMIZER_FORMAT: &str = "petal-sgd-state";
/// `format` of an AdamW optimizer-state file (moments and step count).
pub const ADAMW_FORMAT: &str = "petal-adamw-state";
/// The one version this build writes and reads.
pub const FORMAT_VERSION: &str = "1";
/// Largest file the loaders read (a network is at most 2^28 f32 values, 1 GiB).
pub const MAX_FILE_BYTES: u64 = (1 << 30) + (1 << 24);

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

pub(crate) fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A tensor to write: name, shape, dtype, little-endian bytes.
pub(crate) type Tensor = (String, Vec<usize>, Dtype, Vec<u8>);

/// The tensors of a network's `state_dict`, as PyTorch names them: every parameter, and
/// each batch norm's `running_mean`, `running_var` (f32) and `num_batches_tracked` (i64,
/// a scalar).
fn state_tensors(net: &Network) -> Vec<Tensor> {
    let mut out = Vec::new();
    for layer in net.layers() {
        for p in layer.params() {
            out.push((p.name.clone(), p.shape.clone(), Dtype::F32, f32_bytes(&p.value)));
        }
        if let Layer::BatchNorm(bn) = layer {
            let (pre, c) = (&bn.prefix, bn.c);
            out.push((
                format!("{pre}.running_mean"),
                vec![c],
                Dtype::F32,
                f32_bytes(&bn.running_mean),
            ));
            out.push((
                format!("{pre}.running_var"),
                vec![c],
                Dtype::F32,
                f32_bytes(&bn.running_var),
            ));
            let tracked = (bn.batches_tracked as i64).to_le_bytes().to_vec();
            out.push((format!("{pre}.num_batches_tracked"), vec![], Dtype::I64, tracked));
        }
    }
    out
}

pub(crate) fn serialize(tensors: Vec<Tensor>, metadata: HashMap<String, String>) -> Result<Vec<u8>, String> {
    let views = tensors
        .iter()
        .map(|(name, shape, dtype, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, Some(metadata)).map_err(|e| e.to_string())
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
    for layer in net.layers() {
        if let Layer::BatchNorm(bn) = layer {
            let stats = bn.running_mean.iter().chain(&bn.running_var);
            if stats.into_iter().any(|v| !v.is_finite()) || bn.running_var.iter().any(|&v| v < 0.0) {
                return Err(ModelError::checkpoint(
                    path,
                    format!(
                        "batch norm `{}` has a NaN, infinite or negative running statistic",
                        bn.prefix
                    ),
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

/// Reads a checkpoint or optimizer file: a regular file (a FIFO or device is refused
/// before it is opened, so it can neither block nor stream forever) of at most
/// [`MAX_FILE_BYTES`], checked again while reading.
pub(crate) fn read_bounded(path: &Path) -> Result<Vec<u8>, ModelError> {
    use std::io::Read;
    let cannot = |e: std::io::Error| ModelError::checkpoint(path, format!("cannot read: {e}"));
    let meta = std::fs::metadata(path).map_err(cannot)?;
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            "a folder"
        } else {
            "a FIFO, socket or device"
        };
        return Err(ModelError::checkpoint(
            path,
            format!("not a regular file ({kind})"),
        ));
    }
    let too_large =
        |len: u64| ModelError::checkpoint(path, format!("{len} bytes, larger than any Petal network"));
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large(meta.len()));
    }
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

pub(crate) fn parse_file<'a>(
    path: &Path,
    bytes: &'a [u8],
    format: &str,
) -> Result<(SafeTensors<'a>, HashMap<String, String>), ModelError> {
    let err = |r: String| ModelError::checkpoint(path, r);
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| {
        err(format!(
            "not a safetensors file (truncated or corrupt header): {e}"
        ))
    })?;
    let st =
        SafeTensors::deserialize(bytes).map_err(|e| err(format!("not a valid safetensors file: {e}")))?;
    let meta = header.metadata().clone().ok_or_else(|| {
        err(format!(
            "no metadata: not a {format} file (written by another program?)"
        ))
    })?;
    match meta.get("format").map(String::as_str) {
        Some(f) if f == format => {}
        Some(other) => return Err(err(format!("metadata format is `{other}`, expected `{format}`"))),
        None => return Err(err(format!("metadata has no `format`: not a {format} file"))),
    }
    match meta.get("format_version").map(String::as_str) {
        Some(FORMAT_VERSION) => {}
        Some(v) => {
            return Err(err(format!(
                "format_version `{v}` is not supported (this build reads {FORMAT_VERSION})"
            )))
        }
        None => return Err(err("metadata has no `format_version`".into())),
    }
    Ok((st, meta))
}

pub(crate) fn meta_field<T: serde::de::DeserializeOwned>(
    path: &Path,
    meta: &HashMap<String, String>,
    key: &str,
) -> Result<T, ModelError> {
    let text = meta
        .get(key)
        .ok_or_else(|| ModelError::checkpoint(path, format!("metadata has no `{key}`")))?;
    serde_json::from_str(text)
        .map_err(|e| ModelError::checkpoint(path, format!("metadata `{key}` = `{text}`: {e}")))
}

/// Copies the tensors of `st` into `params`, checking that the names match one to one and
/// that every tensor is f32 with the parameter's shape.
fn le_f32(b: &[u8]) -> f32 {
    f32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_i64(b: &[u8]) -> i64 {
    i64::from_le_bytes(b[..8].try_into().expect("8 bytes, checked"))
}

/// Where a tensor of the file goes.
pub(crate) enum Dst<'p> {
    /// f32 values; `nonneg`: negative values are refused (a running variance).
    F32(&'p mut [f32], bool),
    /// An i64 scalar (a batch norm's `num_batches_tracked`), refused when negative.
    Count(&'p mut u64),
}

/// A network's parameters (or with `velocity`, their velocities) as [`fill`] destinations;
/// with `buffers`, each batch norm's running statistics too.
fn destinations(net: &mut Network, velocity: bool, buffers: bool) -> Vec<(String, Vec<usize>, Dst<'_>)> {
    let mut out = Vec::new();
    for layer in net.layers_mut() {
        let (params, bn): (Vec<&mut Param>, _) = match (buffers, layer) {
            (
                true,
                Layer::BatchNorm(BatchNorm {
                    weight,
                    bias,
                    running_mean,
                    running_var,
                    batches_tracked,
                    prefix,
                    c,
                    ..
                }),
            ) => {
                let c = *c;
                let extra = [
                    (
                        format!("{prefix}.running_mean"),
                        vec![c],
                        Dst::F32(running_mean, false),
                    ),
                    (
                        format!("{prefix}.running_var"),
                        vec![c],
                        Dst::F32(running_var, true),
                    ),
                    (
                        format!("{prefix}.num_batches_tracked"),
                        vec![],
                        Dst::Count(batches_tracked),
                    ),
                ];
                (vec![weight, bias], Some(extra))
            }
            (_, layer) => (layer.params_mut().collect(), None),
        };
        for p in params {
            let dst = if velocity { &mut p.velocity } else { &mut p.value };
            out.push((p.name.clone(), p.shape.clone(), Dst::F32(dst, false)));
        }
        out.extend(bn.into_iter().flatten());
    }
    out
}

pub(crate) fn fill_params(
    path: &Path,
    st: &SafeTensors<'_>,
    params: Vec<(String, Vec<usize>, Dst<'_>)>,
) -> Result<(), ModelError> {
    let err = |r: String| ModelError::checkpoint(path, r);
    let mut expected = BTreeSet::new();
    let mut pending = Vec::new();
    for (name, shape, dst) in params {
        expected.insert(name.to_string());
        let t = st
            .tensor(&name)
            .map_err(|_| err(format!("tensor `{name}` is missing")))?;
        let want = match dst {
            Dst::F32(..) => Dtype::F32,
            Dst::Count(_) => Dtype::I64,
        };
        if t.dtype() != want {
            return Err(err(format!(
                "tensor `{name}` is {:?}, expected {want:?}",
                t.dtype()
            )));
        }
        if t.shape() != shape {
            return Err(err(format!(
                "tensor `{name}` has shape {:?}, expected {shape:?}",
                t.shape()
            )));
        }
        pending.push(((name, t), dst));
    }
    let extra: Vec<_> = st
        .names()
        .into_iter()
        .filter(|n| !expected.contains(*n))
        .collect();
    if !extra.is_empty() {
        return Err(err(format!(
            "unexpected tensors {extra:?} (another architecture?)"
        )));
    }
    // Check every value of every tensor before writing any: on error the caller's
    // network is left exactly as it was.
    for ((name, t), dst) in &pending {
        let data = t.data();
        let bytes = match dst {
            Dst::F32(d, _) => d.len() * 4,
            Dst::Count(_) => 8,
        };
        if data.len() != bytes {
            return Err(err(format!(
                "tensor `{name}` holds {} bytes, expected {bytes}",
                data.len(),
            )));
        }
        match dst {
            Dst::F32(_, nonneg) => {
                let bad = |v: &f32| !v.is_finite() || (*nonneg && *v < 0.0);
                if let Some((i, v)) = data.chunks_exact(4).map(le_f32).enumerate().find(|(_, v)| bad(v)) {
                    return Err(err(format!(
                        "tensor `{name}` holds {v} at index {i}: a diverged or corrupt network"
                    )));
                }
            }
            Dst::Count(_) => {
                if le_i64(data) < 0 {
                    return Err(err(format!(
                        "tensor `{name}` holds {}: a count cannot be negative",
                        le_i64(data)
                    )));
                }
            }
        }
    }
    for ((_, t), dst) in pending {
        match dst {
            Dst::F32(d, _) => {
                for (d, b) in d.iter_mut().zip(t.data().chunks_exact(4)) {
                    *d = le_f32(b);
                }
            }
            Dst::Count(d) => *d = le_i64(t.data()) as u64,
        }
    }
    Ok(())
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
    fill_params(path, &st, destinations(&mut net, false, true))?;
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
