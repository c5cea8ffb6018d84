//! Optimizer-state files: what a bit-exact resume needs besides the checkpoint, beside it,
//! written atomically, read back with every tensor checked before any is written. The
//! optimizer lays its state out (`OptimizerKind::layout`); this file only walks it:
//!
//! | optimizer | `format` | tensors | metadata |
//! | --- | --- | --- | --- |
//! | SGD (plain or Nesterov) | `petal-sgd-state` | per parameter its velocity, under the parameter's name | `spec` |
//! | AdamW | `petal-adamw-state` | `{name}.exp_avg` (m) and `{name}.exp_avg_sq` (v, at least 0) per parameter | `spec`, `step` (t, steps taken) |
//!
//! Both carry `format_version` 1. A file of another optimizer is refused with an error
//! naming the file and both optimizers.

use super::file::{
    f32_bytes, fill_params, meta_field, parse_file, read_bounded, serialize, Dst, Tensor, FORMAT_VERSION,
};
use crate::error::ModelError;
use crate::network::Network;
use crate::optim::OptimizerKind;
use safetensors::tensor::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::Path;

/// Writes the optimizer state of `net` (of its [`Network::optimizer_kind`]; zero where a
/// parameter has none yet) to `path` atomically.
pub fn save_optimizer_state(path: &Path, net: &Network) -> Result<(), ModelError> {
    let kind = net.optimizer_kind();
    let layout = kind.layout();
    let mut tensors: Vec<Tensor> = Vec::new();
    for p in net.params() {
        let own = p.state.len() == layout.slots.len();
        for (k, slot) in layout.slots.iter().enumerate() {
            let bytes = match p.state.get(k).filter(|v| own && v.len() == p.value.len()) {
                Some(v) => f32_bytes(v),
                None => vec![0; 4 * p.value.len()],
            };
            tensors.push((
                format!("{}{}", p.name, slot.suffix),
                p.shape.clone(),
                Dtype::F32,
                bytes,
            ));
        }
    }
    let mut metadata = HashMap::from([
        ("format".to_string(), layout.format.to_string()),
        ("format_version".to_string(), FORMAT_VERSION.to_string()),
        ("spec".to_string(), net.spec()),
    ]);
    if layout.counts_steps {
        metadata.insert("step".into(), net.optimizer_steps().to_string());
    }
    let bytes = serialize(tensors, metadata).map_err(|e| ModelError::checkpoint(path, e))?;
    crate::atomic::write_atomic(path, &bytes).map_err(|e| ModelError::io(path, e))
}

/// Reads the optimizer state written by [`save_optimizer_state`] into `net`, for the
/// optimizer `net` holds ([`Network::optimizer_kind`]; set it first with
/// [`Network::set_optimizer_state`]), checking that it belongs to the same architecture
/// and optimizer. A kind that does not record its step count keeps `net`'s. On error
/// `net` keeps its state.
pub fn load_optimizer_state(path: &Path, net: &mut Network) -> Result<(), ModelError> {
    let bytes = read_bounded(path)?;
    let kind = net.optimizer_kind();
    let layout = kind.layout();
    // A file of another optimizer: say so, rather than only that the format differs.
    if let Ok((_, header)) = SafeTensors::read_metadata(&bytes) {
        let format = header.metadata().as_ref().and_then(|m| m.get("format")).cloned();
        let other = OptimizerKind::ALL
            .into_iter()
            .find(|k| *k != kind && format.as_deref() == Some(k.layout().format));
        if let Some(other) = other {
            return Err(ModelError::checkpoint(
                path,
                format!(
                    "holds {} optimizer state (`{}`), but this run's optimizer is {} (expected `{}`)",
                    other.name(),
                    other.layout().format,
                    kind.name(),
                    layout.format
                ),
            ));
        }
    }
    let (st, meta) = parse_file(path, &bytes, layout.format)?;
    let spec = net.spec();
    match meta.get("spec") {
        Some(s) if *s == spec => {}
        Some(s) => {
            return Err(ModelError::checkpoint(
                path,
                format!("optimizer state is for `{s}`, the network is `{spec}`"),
            ))
        }
        None => return Err(ModelError::checkpoint(path, "metadata has no `spec`")),
    }
    let steps = if layout.counts_steps {
        meta_field(path, &meta, "step")?
    } else {
        net.optimizer_steps()
    };
    // Read into fresh buffers: `net` is only changed once all of them are good.
    let mut state: Vec<Vec<Vec<f32>>> = net
        .params()
        .map(|p| vec![vec![0.0; p.value.len()]; layout.slots.len()])
        .collect();
    let dst = net
        .params()
        .zip(state.iter_mut())
        .flat_map(|(p, slots)| {
            slots.iter_mut().zip(layout.slots).map(|(v, slot)| {
                let name = format!("{}{}", p.name, slot.suffix);
                (name, p.shape.clone(), Dst::F32(v, slot.nonneg))
            })
        })
        .collect();
    fill_params(path, &st, dst)?;
    net.set_optimizer_state(kind, steps);
    for (p, s) in net.params_mut().zip(state) {
        p.state = s;
    }
    Ok(())
}
