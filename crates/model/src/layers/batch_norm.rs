//! Batch normalisation: `bn` (PyTorch's `BatchNorm2d(c)`, eps 1e-5, momentum 0.1,
//! learnable scale and shift): `y = γ · (x − μ) / √(σ² + ε) + β` per channel, with the
//! batch's statistics in training and the running ones in inference
//! (`petal_kernels::norm`). Tensors `{name}.weight` (γ), `{name}.bias` (β),
//! `{name}.running_mean`, `{name}.running_var` and `{name}.num_batches_tracked`.
//!
//! A training step needs the whole batch's statistics, so the step stops at every batch
//! norm (`step`): each chunk's sums ([`BatchNorm::chunk_sums`]) are added in chunk order
//! ([`BatchNorm::finish_forward`]), the chunks apply the result, and backward does the
//! same with the gradient's sums ([`BatchNorm::chunk_backward_sums`],
//! [`BatchNorm::finish_backward`], [`BatchNorm::chunk_backward_input`]). A ReLU after a
//! batch norm runs inside it.

use super::token::bare;
use super::{
    needs_spatial, Backward, Buffer, BufferMut, Forward, Kind, Layer, LayerSpec, Reference, SpecKind, Traits,
};
use crate::error::ModelError;
use crate::param::Param;
use crate::shape::Shape;
use petal_kernels as k;
use petal_kernels::{reference, BatchNormShape};
use rand_chacha::ChaCha8Rng;
use std::fmt;

/// The spec token.
const TOKEN: &str = "bn";

/// ε added to the variance of a batch norm (PyTorch's default).
pub const BN_EPS: f64 = 1e-5;
/// Momentum of a batch norm's running statistics (PyTorch's default).
pub const BN_MOMENTUM: f32 = 0.1;

/// A batch norm as the spec describes it (no arguments).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchNormSpec;

pub(super) fn parse(head: &str, opts: &[&str]) -> Option<Result<LayerSpec, String>> {
    bare(head, opts, TOKEN, LayerSpec::BatchNorm)
}

impl fmt::Display for BatchNormSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(TOKEN)
    }
}

impl SpecKind for BatchNormSpec {
    fn build(&self, name: &str, input: Shape) -> Result<(Layer, Shape), String> {
        let (c, h, w) = needs_spatial(input)?;
        Ok((
            Layer::BatchNorm(BatchNorm::new(name.to_string(), c, h * w)),
            input,
        ))
    }
    fn param_count(&self, input: Shape) -> u128 {
        4 * input.spatial().map_or(0, |(c, _, _)| c) as u128
    }
}

/// Batch normalisation over the channels of `[c, h, w]` values: the batch's mean μ and
/// biased variance σ² (over the batch and the `h·w` positions) in training, and the
/// running statistics in inference. Training updates the running statistics with momentum
/// [`BN_MOMENTUM`]: `r ← (1 − m)·r + m·v`, the running variance from the unbiased variance
/// (`σ² · n / (n − 1)`, n values per channel), as PyTorch does.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    /// Channels, and values per channel of one sample (`h · w`).
    pub c: usize,
    pub hw: usize,
    /// γ (`{prefix}.weight`, initialised to 1) and β (`{prefix}.bias`, initialised to 0).
    pub weight: Param,
    pub bias: Param,
    /// `{prefix}.running_mean` (starts at 0) and `{prefix}.running_var` (starts at 1).
    pub running_mean: Vec<f32>,
    pub running_var: Vec<f32>,
    /// `{prefix}.num_batches_tracked`: training batches seen.
    pub batches_tracked: u64,
    /// The layer's `state_dict` name prefix (`"1"`, `"3.body.1"`).
    pub prefix: String,
}

impl BatchNorm {
    pub(crate) fn new(prefix: String, c: usize, hw: usize) -> Self {
        let mut weight = Param::zeros(format!("{prefix}.weight"), vec![c]);
        weight.value.fill(1.0);
        BatchNorm {
            c,
            hw,
            weight,
            bias: Param::zeros(format!("{prefix}.bias"), vec![c]),
            running_mean: vec![0.0; c],
            running_var: vec![1.0; c],
            batches_tracked: 0,
            prefix,
        }
    }

    /// Resets the parameters and running statistics to PyTorch's initial values.
    pub fn reset(&mut self) {
        self.weight.value.fill(1.0);
        self.bias.value.fill(0.0);
        self.running_mean.fill(0.0);
        self.running_var.fill(1.0);
        self.batches_tracked = 0;
    }

    fn at(&self, batch: usize) -> BatchNormShape {
        BatchNormShape {
            batch,
            c: self.c,
            hw: self.hw,
        }
    }

    /// A chunk's forward sums (Σx, Σx² per channel, into `sums`, `2c` values) of its
    /// input `x` of `images` samples.
    pub(crate) fn chunk_sums(&self, images: usize, x: &[f32], sums: &mut [f64]) {
        k::batch_norm_sums(&self.at(images), x, sums);
    }

    /// A chunk's backward sums (Σdy, Σdy·x̂ per channel, into `sums`), after masking its
    /// output gradient `dy` with the fused ReLU when `relu_after`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn chunk_backward_sums(
        &self,
        images: usize,
        x: &[f32],
        y: &[f32],
        dy: &mut [f32],
        relu_after: bool,
        work: &BnWork,
        sums: &mut [f64],
    ) {
        let s = self.at(images);
        k::batch_norm_backward_sums(&s, x, y, relu_after, &work.mean, &work.invstd, dy, sums);
    }

    /// A chunk's input gradient `dx`, after [`BatchNorm::finish_backward`].
    pub(crate) fn chunk_backward_input(
        &self,
        images: usize,
        x: &[f32],
        dy: &[f32],
        work: &BnWork,
        dx: &mut [f32],
    ) {
        k::batch_norm_backward_input(
            &self.at(images),
            x,
            dy,
            &work.mean,
            &work.invstd,
            &self.weight.value,
            &work.mean_dy,
            &work.mean_dy_xhat,
            dx,
        );
    }

    /// After the forward sums of a batch of `batch` samples: the batch's mean and biased
    /// variance into `work`, and the running statistics updated with the unbiased variance
    /// (PyTorch's rule).
    pub(crate) fn finish_forward(&mut self, work: &mut BnWork, stats: &BnSums<'_>, batch: usize) {
        let c = self.c;
        let n = (batch * self.hw) as f64;
        let m = BN_MOMENTUM;
        for ch in 0..c {
            let (s0, s1) = stats.total(batch, c, ch);
            let mean = s0 / n;
            let var = (s1 / n - mean * mean).max(0.0);
            work.set(self, ch, mean, 1.0 / (var + BN_EPS).sqrt());
            let unbiased = var * n / (n - 1.0);
            self.running_mean[ch] = (1.0 - m) * self.running_mean[ch] + m * mean as f32;
            self.running_var[ch] = (1.0 - m) * self.running_var[ch] + m * unbiased as f32;
        }
        self.batches_tracked += 1;
    }

    /// After the backward sums: `dβ = Σdy`, `dγ = Σdy·x̂` and their means over the batch's
    /// `n` values per channel into `work`.
    pub(crate) fn finish_backward(&mut self, work: &mut BnWork, stats: &BnSums<'_>, batch: usize) {
        let c = self.c;
        let n = (batch * self.hw) as f64;
        for ch in 0..c {
            let (sdy, sdyx) = stats.total(batch, c, ch);
            self.bias.grad[ch] = sdy as f32;
            self.weight.grad[ch] = sdyx as f32;
            work.mean_dy[ch] = (sdy / n) as f32;
            work.mean_dy_xhat[ch] = (sdyx / n) as f32;
        }
    }

    /// The weights `w'` and bias `b'` of a convolution (`weight` `[c, ...]`, `bias`)
    /// followed by this norm in inference: per output channel `o`, `W'[o] = W[o] · scale[o]`
    /// and `b'[o] = b[o] · scale[o] + shift[o]` (`work` from the running statistics).
    pub(crate) fn fold(
        &self,
        work: &BnWork,
        weight: &[f32],
        bias: Option<&[f32]>,
        w: &mut [f32],
        b: &mut [f32],
    ) {
        let (scale, shift) = (&work.scale, &work.shift);
        let per = weight.len() / self.c;
        for (o, (wo, src)) in w.chunks_exact_mut(per).zip(weight.chunks_exact(per)).enumerate() {
            for (d, s) in wo.iter_mut().zip(src) {
                *d = s * scale[o];
            }
            let b0 = bias.map_or(0.0, |b| b[o]);
            b[o] = b0 * scale[o] + shift[o];
        }
    }
}

impl Kind for BatchNorm {
    fn spec(&self) -> Option<LayerSpec> {
        Some(LayerSpec::BatchNorm)
    }
    fn params(&self) -> [Option<&Param>; 2] {
        [Some(&self.weight), Some(&self.bias)]
    }
    fn params_mut(&mut self) -> [Option<&mut Param>; 2] {
        [Some(&mut self.weight), Some(&mut self.bias)]
    }
    fn buffers(&self) -> Vec<Buffer<'_>> {
        let p = &self.prefix;
        vec![
            Buffer::Values {
                name: format!("{p}.running_mean"),
                values: &self.running_mean,
                nonneg: false,
            },
            Buffer::Values {
                name: format!("{p}.running_var"),
                values: &self.running_var,
                nonneg: true,
            },
            Buffer::Count {
                name: format!("{p}.num_batches_tracked"),
                value: self.batches_tracked,
            },
        ]
    }
    fn buffers_mut(&mut self) -> Vec<BufferMut<'_>> {
        self.state_mut().1
    }
    fn state_mut(&mut self) -> ([Option<&mut Param>; 2], Vec<BufferMut<'_>>) {
        let p = &self.prefix;
        let buffers = vec![
            BufferMut::Values {
                name: format!("{p}.running_mean"),
                values: &mut self.running_mean,
                nonneg: false,
            },
            BufferMut::Values {
                name: format!("{p}.running_var"),
                values: &mut self.running_var,
                nonneg: true,
            },
            BufferMut::Count {
                name: format!("{p}.num_batches_tracked"),
                value: &mut self.batches_tracked,
            },
        ];
        ([Some(&mut self.weight), Some(&mut self.bias)], buffers)
    }
    fn init(&mut self, _rng: &mut ChaCha8Rng) {
        self.reset();
    }
    /// A training batch must give it two values per channel or more: its unbiased variance
    /// divides by `n − 1` (PyTorch refuses the same).
    fn min_train_batch(&self) -> usize {
        if self.hw == 1 {
            2
        } else {
            1
        }
    }
    fn check_train_batch(&self, batch: usize) -> Result<(), ModelError> {
        if batch * self.hw < 2 {
            return Err(ModelError::BatchNormBatch {
                layer: self.prefix.clone(),
                values: batch * self.hw,
            });
        }
        Ok(())
    }
    fn traits(&self) -> Traits {
        Traits {
            relu_after: true,
            batch_stats: 2 * self.c,
            ..Traits::default()
        }
    }
    fn forward(&self, f: Forward<'_>) {
        let w = f.ctx.stats.expect("a batch norm's statistics");
        k::batch_norm_apply(&self.at(f.images), f.x, &w.scale, &w.shift, f.ctx.relu_after, f.y);
    }
    fn backward(&self, _b: Backward<'_>) {
        unreachable!("a batch norm's backward runs between the step's regions (chunk_backward_sums, chunk_backward_input)")
    }
    fn reference(&self, r: Reference<'_>) -> (Vec<f64>, Vec<u64>) {
        let gamma = r.weight.expect("a batch norm has a weight");
        let beta = r.bias.expect("a batch norm has a bias");
        let y = reference::batch_norm_train(r.x, r.batch, self.c, self.hw, gamma, beta, BN_EPS).0;
        (y, Vec::new())
    }
}

/// Per batch norm, the statistics of the current batch (training) or the running ones
/// (inference) as the chunk tasks use them, `c` values each.
#[derive(Clone, Debug, Default)]
pub(crate) struct BnWork {
    /// Batch mean and `1/√(σ² + ε)`.
    pub mean: Vec<f32>,
    pub invstd: Vec<f32>,
    /// `y = x · scale + shift`: `scale = γ · invstd`, `shift = β − mean · scale`.
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
    /// `Σ dy / n` and `Σ dy · x̂ / n` over the batch (n values per channel).
    pub mean_dy: Vec<f32>,
    pub mean_dy_xhat: Vec<f32>,
}

impl BnWork {
    pub fn new(c: usize) -> Self {
        let v = vec![0.0; c];
        BnWork {
            mean: v.clone(),
            invstd: v.clone(),
            scale: v.clone(),
            shift: v.clone(),
            mean_dy: v.clone(),
            mean_dy_xhat: v,
        }
    }

    /// Inference: the running statistics' `scale` and `shift`.
    pub fn use_running(&mut self, bn: &BatchNorm) {
        for ch in 0..bn.c {
            let invstd = 1.0 / (bn.running_var[ch] as f64 + BN_EPS).sqrt();
            self.set(bn, ch, bn.running_mean[ch] as f64, invstd);
        }
    }

    fn set(&mut self, bn: &BatchNorm, ch: usize, mean: f64, invstd: f64) {
        let scale = bn.weight.value[ch] as f64 * invstd;
        self.mean[ch] = mean as f32;
        self.invstd[ch] = invstd as f32;
        self.scale[ch] = scale as f32;
        self.shift[ch] = (bn.bias.value[ch] as f64 - mean * scale) as f32;
    }
}

/// A batch norm's per-chunk partial sums: chunk `i`'s `2c` values at
/// `data[i·stride + at..]`, for every chunk of the batch in order.
pub(crate) struct BnSums<'a> {
    pub data: &'a [f64],
    pub stride: usize,
    pub at: usize,
    /// Images per chunk.
    pub chunk: usize,
}

impl BnSums<'_> {
    /// The sums of values `ch` and `c + ch` over the batch's chunks, in chunk order.
    fn total(&self, batch: usize, c: usize, ch: usize) -> (f64, f64) {
        let mut sums = (0.0f64, 0.0f64);
        for chunk in self
            .data
            .chunks_exact(self.stride)
            .take(batch.div_ceil(self.chunk))
        {
            sums.0 += chunk[self.at + ch];
            sums.1 += chunk[self.at + c + ch];
        }
        sums
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn gradients_match_finite_differences() {
        super::super::gradcheck_case::check("bn,conv3x3:3/nobias,bn,relu,dense:2", [2, 5, 7], 5, 1e-4);
    }
}
