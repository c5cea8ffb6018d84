//! Fully connected layer: `dense:N` with `/nobias` (PyTorch's `Linear(features, N, bias)`):
//! `y = W · x + b`, the seed's eq. (10), weight `{name}.weight` `[N, features]` and bias
//! `{name}.bias` `[N]` (`petal_kernels::dense`). It needs a flat input: a spec implies a
//! `flatten` before a dense layer that follows feature maps.

use super::token::number;
use super::{
    init_uniform, split_grads, weight_and_bias, weight_and_bias_mut, Backward, Forward, Kind, Layer,
    LayerSpec, Reference, SpecKind, Traits,
};
use crate::param::Param;
use crate::shape::Shape;
use petal_kernels as k;
use petal_kernels::{reference, DenseShape};
use rand_chacha::ChaCha8Rng;
use std::fmt;
use std::ops::Range;

/// A dense layer as the spec describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DenseSpec {
    /// Outputs.
    pub out: usize,
    pub bias: bool,
}

/// `dense:N[/nobias]` tokens.
pub(super) fn parse(head: &str, opts: &[&str]) -> Option<Result<LayerSpec, String>> {
    if head == "dense" {
        return Some(Err("a dense layer needs its outputs: `dense:5`".into()));
    }
    let out = head.strip_prefix("dense:")?;
    Some((|| {
        let out = number(out, "outputs")?;
        let mut bias = true;
        for o in opts {
            if *o == "nobias" {
                bias = false;
            } else {
                return Err(format!("unknown dense option `/{o}` (expected /nobias)"));
            }
        }
        Ok(LayerSpec::Dense(DenseSpec { out, bias }))
    })())
}

impl fmt::Display for DenseSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dense:{}", self.out)?;
        if !self.bias {
            write!(f, "/nobias")?;
        }
        Ok(())
    }
}

impl SpecKind for DenseSpec {
    fn build(&self, name: &str, input: Shape) -> Result<(Layer, Shape), String> {
        if let Shape::Spatial { .. } = input {
            return Err(format!(
                "needs a flat input, got {input}: the network inserts a flatten before it"
            ));
        }
        let n = input.len();
        let shape = DenseShape {
            batch: 1,
            inputs: n,
            outputs: self.out,
        };
        let weight = Param::zeros(format!("{name}.weight"), vec![self.out, n]);
        let bias = self
            .bias
            .then(|| Param::zeros(format!("{name}.bias"), vec![self.out]));
        Ok((Layer::Dense(Dense { shape, weight, bias }), Shape::Flat(self.out)))
    }
    fn param_count(&self, input: Shape) -> u128 {
        self.out as u128 * input.len() as u128 + self.out as u128
    }
}

/// A dense layer: its shape (for batch 1), weight and optional bias.
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    pub shape: DenseShape,
    pub weight: Param,
    pub bias: Option<Param>,
}

impl Dense {
    /// The bias gradient of `rows` samples with output gradient `dy` (`[rows, outputs]`)
    /// into `out` (`[outputs]`), as the chunk step computes it.
    pub(crate) fn bias_grad(&self, rows: usize, dy: &[f32], out: &mut [f32]) {
        let s = DenseShape {
            batch: rows,
            ..self.shape
        };
        k::dense_backward_bias(&s, dy, out);
    }

    /// Output rows `o` of the weight gradient of `rows` samples into `out`
    /// (`[o.len(), inputs]`): `input` is `[rows, inputs]`, `dy` `[rows, outputs]`. At most
    /// `petal_kernels::dense::DIRECT_MAX_OUTPUTS` rows, for which the kernel takes its
    /// direct path (per value a fused multiply-add chain over the rows from zero, as its
    /// GEMM path computes the whole gradient too), so any block of rows gives the bits of
    /// the whole layer's gradient.
    pub(crate) fn weight_grad_rows(&self, input: &[f32], dy: &[f32], o: Range<usize>, out: &mut [f32]) {
        const MAX: usize = k::dense::DIRECT_MAX_OUTPUTS;
        let outputs = self.shape.outputs;
        let rows = dy.len() / outputs;
        const CHUNK: usize = k::conv::BATCH_CHUNK;
        assert!(
            o.len() <= MAX && rows <= CHUNK,
            "a block of {} rows of {rows} samples",
            o.len()
        );
        // The block's columns of dy, contiguous: at most a chunk's rows x MAX values.
        let mut sub = [0.0f32; CHUNK * MAX];
        let n = o.len();
        for (r, row) in dy.chunks_exact(outputs).enumerate() {
            sub[r * n..(r + 1) * n].copy_from_slice(&row[o.clone()]);
        }
        let s = DenseShape {
            batch: rows,
            inputs: self.shape.inputs,
            outputs: n,
        };
        k::dense_backward_weights(&s, input, &sub[..rows * n], out, None);
    }
}

impl Kind for Dense {
    fn spec(&self) -> Option<LayerSpec> {
        Some(LayerSpec::Dense(DenseSpec {
            out: self.shape.outputs,
            bias: self.bias.is_some(),
        }))
    }
    fn params(&self) -> [Option<&Param>; 2] {
        weight_and_bias(&self.weight, &self.bias)
    }
    fn params_mut(&mut self) -> [Option<&mut Param>; 2] {
        weight_and_bias_mut(&mut self.weight, &mut self.bias)
    }
    fn init(&mut self, rng: &mut ChaCha8Rng) {
        let fan_in = self.shape.inputs;
        init_uniform(rng, fan_in, self.params_mut());
    }
    fn forward_flops(&self) -> u64 {
        self.shape.forward_flops()
    }
    fn traits(&self) -> Traits {
        Traits {
            chunk_grads: true,
            deferrable: true,
            ..Traits::default()
        }
    }
    fn forward(&self, f: Forward<'_>) {
        let s = DenseShape {
            batch: f.images,
            ..self.shape
        };
        k::dense_forward(
            &s,
            f.x,
            &self.weight.value,
            self.bias.as_ref().map(|b| &b.value[..]),
            f.y,
        );
    }
    fn backward(&self, b: Backward<'_>) {
        let s = DenseShape {
            batch: b.images,
            ..self.shape
        };
        // A deferred layer gets no per-chunk gradients: its weight gradient is summed
        // after the chunk tasks (`step`).
        if !b.grads.is_empty() {
            let (gw, gb) = split_grads(b.grads, &self.weight, &self.bias);
            k::dense_backward_weights(&s, b.x, b.dy, gw, gb);
        }
        if let Some(dx) = b.dx {
            k::dense_backward_input(&s, &self.weight.value, b.dy, dx);
        }
    }
    fn reference(&self, r: Reference<'_>) -> (Vec<f64>, Vec<u64>) {
        let s = DenseShape {
            batch: r.batch,
            ..self.shape
        };
        let w = r.weight.expect("a dense layer has a weight");
        (reference::dense_forward(&s, r.x, w, r.bias), Vec::new())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn gradients_match_finite_differences() {
        super::super::gradcheck_case::check("dense:5,relu,dense:3/nobias,dense:2", [1, 3, 5], 5, 0.0);
    }
}
