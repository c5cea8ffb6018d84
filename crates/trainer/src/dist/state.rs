//! A resumed run's state as bytes, so rank 0 (which alone reads the run folder) can hand
//! it to the other ranks: where training stands (JSON) and every tensor the checkpoint
//! and the optimizer file hold (little-endian f32), in the network's order.

use crate::error::TrainerError;
use crate::report::EpochMetrics;
use crate::train::{RunState, Start};
use petal_model::{Layer, Network, OptimizerKind};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Header {
    epoch: usize,
    step: u64,
    state: RunState,
    history: Vec<EpochMetrics>,
    checkpoint: Option<(u64, u64)>,
    adamw: bool,
    optimizer_steps: u64,
    dropout: (u64, u64),
    batches_tracked: Vec<u64>,
    /// Values of each tensor below, in order.
    lens: Vec<usize>,
}

/// Every tensor of `net` that training changes, in a fixed order: per parameter its
/// value, velocity and AdamW moments; per batch norm its running mean and variance. With
/// each, the length it must have: `Some(n)` exactly, `None` for optimizer state (empty,
/// or as long as its parameter).
fn tensors(net: &mut Network) -> Vec<(&mut Vec<f32>, Option<usize>)> {
    let mut out = Vec::new();
    for layer in net.layers_mut() {
        let params: Vec<&mut petal_model::Param> = match layer {
            Layer::BatchNorm(bn) => {
                let c = bn.c;
                out.push((&mut bn.running_mean, Some(c)));
                out.push((&mut bn.running_var, Some(c)));
                vec![&mut bn.weight, &mut bn.bias]
            }
            other => other.params_mut().collect(),
        };
        for p in params {
            let n = p.value.len();
            out.push((&mut p.value, Some(n)));
            for state in [&mut p.velocity, &mut p.exp_avg, &mut p.exp_avg_sq] {
                out.push((state, None));
            }
        }
    }
    out
}

fn batches_tracked(net: &Network) -> Vec<u64> {
    net.layers()
        .iter()
        .filter_map(|l| match l {
            Layer::BatchNorm(bn) => Some(bn.batches_tracked),
            _ => None,
        })
        .collect()
}

/// `start` as bytes for [`decode_start`].
pub fn encode_start(start: &mut Start) -> Vec<u8> {
    let batches = batches_tracked(&start.net);
    let (adamw, optimizer_steps) = (
        start.net.optimizer_kind() == OptimizerKind::AdamW,
        start.net.optimizer_steps(),
    );
    let dropout = start.net.dropout_state();
    let ts = tensors(&mut start.net);
    let header = Header {
        epoch: start.epoch,
        step: start.step,
        state: start.state.clone(),
        history: start.history.clone(),
        checkpoint: start.checkpoint,
        adamw,
        optimizer_steps,
        dropout,
        batches_tracked: batches,
        lens: ts.iter().map(|(t, _)| t.len()).collect(),
    };
    let json = serde_json::to_vec(&header).expect("header serializes");
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend(json);
    for (t, _) in ts {
        bytes.extend(t.iter().flat_map(|v| v.to_le_bytes()));
    }
    bytes
}

/// The start `bytes` ([`encode_start`] on rank 0) describe, on `fresh`: the network this
/// rank built from the same configuration.
pub fn decode_start(bytes: &[u8], mut fresh: Network) -> Result<Start, TrainerError> {
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
    let kind = if h.adamw {
        OptimizerKind::AdamW
    } else {
        OptimizerKind::Sgd
    };
    fresh.set_optimizer_state(kind, h.optimizer_steps);
    fresh.set_dropout_state(h.dropout.0, h.dropout.1);
    let mut at = 8 + n;
    {
        let ts = tensors(&mut fresh);
        if ts.len() != h.lens.len() {
            return Err(bad("another network"));
        }
        let mut value_len = 0;
        for (i, ((t, want), &len)) in ts.into_iter().zip(&h.lens).enumerate() {
            // Values and statistics as long as this rank's network's; optimizer state
            // empty or as long as its parameter's values.
            let ok = match want {
                Some(n) => {
                    value_len = n;
                    len == n
                }
                None => len == 0 || len == value_len,
            };
            if !ok {
                return Err(bad(&format!(
                    "tensor {i} has {len} values, this network wants {want:?}"
                )));
            }
            let raw = bytes.get(at..at + 4 * len).ok_or_else(|| bad("short tensors"))?;
            t.clear();
            t.extend(
                raw.chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))),
            );
            at += 4 * len;
        }
    }
    let mut tracked = h.batches_tracked.iter();
    for layer in fresh.layers_mut() {
        if let Layer::BatchNorm(bn) = layer {
            bn.batches_tracked = *tracked.next().ok_or_else(|| bad("batch norms"))?;
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
