//! Optimizer-state files: what a bit-exact resume needs besides the checkpoint, beside it,
//! written atomically, read back with every tensor checked before any is written.
//!
//! | optimizer | `format` | tensors | metadata |
//! | --- | --- | --- | --- |
//! | SGD (plain or Nesterov) | `petal-sgd-state` | per parameter its velocity, under the parameter's name | `spec` |
//! | AdamW | `petal-adamw-state` | `{name}.exp_avg` (m) and `{name}.exp_avg_sq` (v, at least 0) per parameter | `spec`, `step` (t, steps taken) |
//!
//! Both carry `format_version` 1. A file of the other optimizer is refused with an error
//! naming the file and both optimizers.

use crate::checkpoint::{
    f32_bytes, fill_params, parse_file, read_bounded, serialize, Dst, Tensor, ADAMW_FORMAT, FORMAT_VERSION,
    OPTIMIZER_FORMAT,
};
use crate::error::ModelError;
use crate::network::Network;
use crate::optim::OptimizerKind;
use safetensors::tensor::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::Path;

fn format_of(kind: OptimizerKind) -> &'static str {
    match kind {
        OptimizerKind::Sgd => OPTIMIZER_FORMAT,
        OptimizerKind::AdamW => ADAMW_FORMAT,
    }
}

/// Writes the optimizer state of `net` (of its [`Network::optimizer_kind`]) to `path`
/// atomically.
pub fn save_optimizer_state(path: &Path, net: &Network) -> Result<(), ModelError> {
    let kind = net.optimizer_kind();
    let tensor = |name: String, shape: &[usize], v: &[f32]| -> Tensor {
        (name, shape.to_vec(), Dtype::F32, f32_bytes(v))
    };
    let mut tensors = Vec::new();
    for p in net.params() {
        match kind {
            OptimizerKind::Sgd => tensors.push(tensor(p.name.clone(), &p.shape, &p.velocity)),
            OptimizerKind::AdamW => {
                let zeros = vec![0.0; p.value.len()];
                let or_zero = |v: &[f32]| {
                    if v.len() == p.value.len() {
                        v.to_vec()
                    } else {
                        zeros.clone()
                    }
                };
                tensors.push(tensor(
                    format!("{}.exp_avg", p.name),
                    &p.shape,
                    &or_zero(&p.exp_avg),
                ));
                tensors.push(tensor(
                    format!("{}.exp_avg_sq", p.name),
                    &p.shape,
                    &or_zero(&p.exp_avg_sq),
                ));
            }
        }
    }
    let mut metadata = HashMap::from([
        ("format".to_string(), format_of(kind).to_string()),
        ("format_version".to_string(), FORMAT_VERSION.to_string()),
        ("spec".to_string(), net.spec()),
    ]);
    if kind == OptimizerKind::AdamW {
        metadata.insert("step".into(), net.optimizer_steps().to_string());
    }
    let bytes = serialize(tensors, metadata).map_err(|e| ModelError::checkpoint(path, e))?;
    crate::atomic::write_atomic(path, &bytes).map_err(|e| ModelError::io(path, e))
}

/// Reads the optimizer state written by [`save_optimizer_state`] into `net`, for the
/// optimizer `net` holds ([`Network::optimizer_kind`]; set it first with
/// [`Network::set_optimizer_state`]), checking that it belongs to the same architecture
/// and optimizer. On error `net` keeps its state.
pub fn load_optimizer_state(path: &Path, net: &mut Network) -> Result<(), ModelError> {
    let bytes = read_bounded(path)?;
    let kind = net.optimizer_kind();
    let want = format_of(kind);
    // A file of the other optimizer: say so, rather than only that the format differs.
    if let Ok((_, header)) = SafeTensors::read_metadata(&bytes) {
        let other = [OptimizerKind::Sgd, OptimizerKind::AdamW].into_iter().find(|k| {
            *k != kind
                && header
                    .metadata()
                    .as_ref()
                    .and_then(|m| m.get("format"))
                    .map(String::as_str)
                    == Some(format_of(*k))
        });
        if let Some(other) = other {
            return Err(ModelError::checkpoint(
                path,
                format!(
                    "holds {} optimizer state (`{}`), but this run's optimizer is {} (expected `{want}`)",
                    other.name(),
                    format_of(other),
                    kind.name()
                ),
            ));
        }
    }
    let (st, meta) = parse_file(path, &bytes, want)?;
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
    match kind {
        OptimizerKind::Sgd => {
            let dst = net
                .params_mut()
                .map(|p| (p.name.clone(), p.shape.clone(), Dst::F32(&mut p.velocity, false)))
                .collect();
            fill_params(path, &st, dst)
        }
        OptimizerKind::AdamW => {
            let step: u64 = crate::checkpoint::meta_field(path, &meta, "step")?;
            // Read into fresh buffers: `net` is only changed once all of them are good.
            let mut moments: Vec<(Vec<f32>, Vec<f32>)> = net
                .params()
                .map(|p| (vec![0.0; p.value.len()], vec![0.0; p.value.len()]))
                .collect();
            let dst = net
                .params()
                .zip(moments.iter_mut())
                .flat_map(|(p, (m, v))| {
                    [
                        (format!("{}.exp_avg", p.name), p.shape.clone(), Dst::F32(m, false)),
                        (
                            format!("{}.exp_avg_sq", p.name),
                            p.shape.clone(),
                            Dst::F32(v, true),
                        ),
                    ]
                })
                .collect();
            fill_params(path, &st, dst)?;
            net.set_optimizer_state(OptimizerKind::AdamW, step);
            for (p, (m, v)) in net.params_mut().zip(moments) {
                p.exp_avg = m;
                p.exp_avg_sq = v;
            }
            Ok(())
        }
    }
}
