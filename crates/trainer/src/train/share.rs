//! A resumed run's state as bytes, so rank 0 (which alone reads the run folder) can hand
//! it to the other ranks: where training stands (JSON) and every tensor the checkpoint
//! and the optimizer file hold (little-endian f32), in the network's order.

use super::{RunState, Start};
use crate::error::TrainerError;
use crate::report::EpochMetrics;
use petal_model::{BufferMut, Network, OptimizerKind};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Header {
    epoch: usize,
    step: u64,
    state: RunState,
    history: Vec<EpochMetrics>,
    checkpoint: Option<(u64, u64)>,
    /// The optimizer whose state the tensors hold (its layout's `format`) and its steps.
    optimizer: String,
    optimizer_steps: u64,
    dropout: (u64, u64),
    /// Every layer's counts ([`BufferMut::Count`]), in order.
    counts: Vec<u64>,
    /// Values of each tensor below, in order.
    lens: Vec<usize>,
}

/// Every tensor of `net` that training changes, in a fixed order: per layer, per
/// parameter its value and its optimizer state's slots (allocated: the run sets its
/// optimizer's state before it starts), then the layer's buffers (a batch norm's running
/// statistics); and every count among the buffers.
fn tensors(net: &mut Network) -> (Vec<&mut [f32]>, Vec<&mut u64>) {
    let (mut out, mut counts) = (Vec::new(), Vec::new());
    for layer in net.layers_mut() {
        let (params, buffers) = layer.state_mut();
        for p in params {
            out.push(&mut p.value[..]);
            out.extend(p.state.iter_mut().map(|s| &mut s[..]));
        }
        for b in buffers {
            match b {
                BufferMut::Values { values, .. } => out.push(values),
                BufferMut::Count { value, .. } => counts.push(value),
            }
        }
    }
    (out, counts)
}

/// `start` as bytes for [`decode_start`].
pub(super) fn encode_start(start: &mut Start) -> Vec<u8> {
    let kind = start.net.optimizer_kind();
    let optimizer_steps = start.net.optimizer_steps();
    let dropout = start.net.dropout_state();
    let (ts, counts) = tensors(&mut start.net);
    let header = Header {
        epoch: start.epoch,
        step: start.step,
        state: start.state.clone(),
        history: start.history.clone(),
        checkpoint: start.checkpoint,
        optimizer: kind.layout().format.to_string(),
        optimizer_steps,
        dropout,
        counts: counts.into_iter().map(|c| *c).collect(),
        lens: ts.iter().map(|t| t.len()).collect(),
    };
    let json = serde_json::to_vec(&header).expect("header serializes");
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend(json);
    for t in ts {
        bytes.extend(t.iter().flat_map(|v| v.to_le_bytes()));
    }
    bytes
}

/// The start `bytes` ([`encode_start`] on rank 0) describe, on `fresh`: the network this
/// rank built from the same configuration.
pub(super) fn decode_start(bytes: &[u8], mut fresh: Network) -> Result<Start, TrainerError> {
    let bad = |why: &str| TrainerError::Usage(format!("the run state rank 0 sent is not valid: {why}"));
    let n = u64::from_le_bytes(
        bytes
            .get(..8)
            .ok_or_else(|| bad("short"))?
            .try_into()
            .expect("8 bytes"),
    ) as usize;
    let json = bytes.get(8..8 + n).ok_or_else(|| bad("short header"))?;
    let h: Header = serde_json::from_slice(json).map_err(|e| bad(&e.to_string()))?;
    let kind = OptimizerKind::ALL
        .into_iter()
        .find(|k| k.layout().format == h.optimizer)
        .ok_or_else(|| bad(&format!("unknown optimizer state `{}`", h.optimizer)))?;
    fresh.set_optimizer_state(kind, h.optimizer_steps);
    fresh.set_dropout_state(h.dropout.0, h.dropout.1);
    let mut at = 8 + n;
    {
        let (ts, counts) = tensors(&mut fresh);
        if ts.len() != h.lens.len() || counts.len() != h.counts.len() {
            return Err(bad("another network"));
        }
        for (c, &v) in counts.into_iter().zip(&h.counts) {
            *c = v;
        }
        for (i, (t, &len)) in ts.into_iter().zip(&h.lens).enumerate() {
            if len != t.len() {
                return Err(bad(&format!(
                    "tensor {i} has {len} values, this network wants {}",
                    t.len()
                )));
            }
            let raw = bytes.get(at..at + 4 * len).ok_or_else(|| bad("short tensors"))?;
            for (v, b) in t.iter_mut().zip(raw.chunks_exact(4)) {
                *v = f32::from_le_bytes(b.try_into().expect("4 bytes"));
            }
            at += 4 * len;
        }
    }
    Ok(Start {
        net: fresh,
        epoch: h.epoch,
        step: h.step,
        state: h.state,
        history: h.history,
        checkpoint: h.checkpoint,
    })
}
