//! Dropout: `dropout:P`, P in `[0, 1)` (PyTorch's `Dropout(P)`): in training each value is
//! zeroed with probability P and the others scaled by `1/(1 − P)`, the identity in
//! inference. Masks are counter-based (`petal_kernels::dropout`), keyed by the run's seed,
//! the step, the layer and the value's place in the global batch, so they repeat on any
//! number of threads or processes and on resume.

use super::{Backward, Forward, Kind, Layer, LayerSpec, Reference, SpecKind};
use crate::shape::Shape;
use petal_kernels as k;
use petal_kernels::reference;
use std::fmt;

/// A dropout probability is kept in millionths (`dropout:0.5` is 500,000), so that specs
/// compare and hash exactly.
pub const DROPOUT_SCALE: u32 = 1_000_000;

/// A dropout as the spec describes it: the probability in millionths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DropoutSpec {
    pub p: u32,
}

impl DropoutSpec {
    /// The probability, as a fraction.
    pub fn probability(self) -> f32 {
        (self.p as f64 / DROPOUT_SCALE as f64) as f32
    }
}

/// `dropout:P` tokens.
pub(super) fn parse(head: &str, opts: &[&str]) -> Option<Result<LayerSpec, String>> {
    if head == "dropout" {
        return Some(Err("a dropout needs its probability: `dropout:0.5`".into()));
    }
    let text = head.strip_prefix("dropout:")?;
    if let Some(o) = opts.first() {
        return Some(Err(format!("`dropout` takes no options, got `/{o}`")));
    }
    Some((|| {
        let p: f64 = text
            .trim()
            .parse()
            .map_err(|_| format!("dropout probability `{text}` is not a number"))?;
        if !(0.0..1.0).contains(&p) {
            return Err(format!("dropout probability {p} is not in [0, 1)"));
        }
        let p = (p * DROPOUT_SCALE as f64).round() as u32;
        Ok(LayerSpec::Dropout(DropoutSpec {
            p: p.min(DROPOUT_SCALE - 1),
        }))
    })())
}

impl fmt::Display for DropoutSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dropout:{}", self.p as f64 / DROPOUT_SCALE as f64)
    }
}

impl SpecKind for DropoutSpec {
    fn build(&self, _name: &str, input: Shape) -> Result<(Layer, Shape), String> {
        Ok((Layer::Dropout(Dropout { spec: *self }), input))
    }
}

/// A dropout layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dropout {
    pub spec: DropoutSpec,
}

/// The dropout seed of layer `layer` in a step whose seed is `step_seed` (a splitmix64
/// finaliser of both).
pub(crate) fn dropout_seed(step_seed: u64, layer: usize) -> u64 {
    let mut z = step_seed ^ (layer as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Kind for Dropout {
    fn spec(&self) -> Option<LayerSpec> {
        Some(LayerSpec::Dropout(self.spec))
    }
    fn forward(&self, f: Forward<'_>) {
        if f.ctx.train {
            let p = self.spec.probability();
            k::dropout_forward(f.ctx.seed, p, f.ctx.first_value, f.x, f.y);
        } else {
            f.y.copy_from_slice(f.x);
        }
    }
    fn backward(&self, b: Backward<'_>) {
        if let Some(dx) = b.dx {
            let p = self.spec.probability();
            k::dropout_backward(b.ctx.seed, p, b.ctx.first_value, b.dy, dx);
        }
    }
    fn reference(&self, r: Reference<'_>) -> (Vec<f64>, Vec<u64>) {
        let p = self.spec.probability();
        (reference::dropout_forward(r.seed, p, 0, r.x), Vec::new())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn gradients_match_finite_differences() {
        super::super::gradcheck_case::check(
            "conv3x3:3,dropout:0.4,dense:4,dropout:0.25,dense:2",
            [1, 5, 6],
            5,
            0.0,
        );
    }
}
