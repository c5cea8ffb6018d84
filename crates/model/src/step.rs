//! One chunk's forward and backward pass over the layer plan, and the reduction of the
//! chunks' gradients after them.

use crate::buffers::{Buffers, Chunk, LayerGrads};
use crate::layer::Layer;
use crate::plan::{Plan, CHUNK};
use petal_kernels as k;
use rayon::prelude::*;

/// What every chunk task of a step reads: the layers (their weights), their plan, and the
/// step's settings.
pub(crate) struct ChunkStep<'a> {
    pub layers: &'a [Layer],
    pub plan: &'a Plan,
    /// Whether backward computes the gradient with respect to the network input.
    pub input_grad: bool,
    /// Scale of the loss gradient: `1 / batch`, the loss being the batch mean.
    pub grad_scale: f32,
}

impl ChunkStep<'_> {
    /// Forward pass of the chunk's images through every layer.
    pub fn forward(&self, c: &mut Chunk<'_>) {
        let n = c.bufs.images();
        for (layer, p) in self.layers.iter().zip(&self.plan.layers) {
            if !p.runs {
                continue;
            }
            let slot = p.slot.expect("a layer that runs has a buffer");
            let (input, out, argmax) = c.bufs.forward_io(p.input, p.in_len, slot, p.out_len);
            match layer {
                Layer::Conv2d { shape, weight, bias } => {
                    let s = k::Conv2dShape { batch: n, ..*shape };
                    let bias = bias.as_ref().map(|b| &b.value[..]);
                    k::conv2d_forward(&s, input, &weight.value, bias, out, c.scratch);
                }
                Layer::MaxPool2d { shape } => {
                    let s = k::Pool2dShape { batch: n, ..*shape };
                    k::max_pool2d_forward(&s, input, out, argmax);
                    if p.fused_relu {
                        k::relu_forward_inplace(out);
                    }
                }
                Layer::Relu => k::relu_forward(input, out),
                Layer::Dense { shape, weight, bias } => {
                    let s = k::DenseShape { batch: n, ..*shape };
                    k::dense_forward(&s, input, &weight.value, bias.as_ref().map(|b| &b.value[..]), out);
                }
                Layer::Flatten => unreachable!("a flatten does not run"),
            }
        }
    }

    /// Loss and backward pass of the chunk after [`ChunkStep::forward`]: its probabilities
    /// and losses, every layer's output gradient, the convolutions' weight gradients of
    /// these images into `c.part` (the dense layers' are computed over the whole batch
    /// afterwards: [`reduce_gradients`]) and, when on, the input gradient.
    pub fn backward(&self, c: &mut Chunk<'_>) {
        let n = c.labels.len();
        let last = self.plan.last();
        let last_slot = last.slot.expect("the last layer has a buffer");
        let classes = last.out_len;
        let (logits, dlogits) = c.bufs.out_and_grad(last_slot, classes);
        k::softmax_cross_entropy_rows(
            logits,
            c.labels,
            classes,
            self.grad_scale,
            c.probs,
            c.losses,
            dlogits,
        )
        .expect("labels are checked before the step");
        for (layer, p) in self.layers.iter().zip(&self.plan.layers).rev() {
            if !p.runs {
                continue;
            }
            let slot = p.slot.expect("a layer that runs has a buffer");
            if p.fused_relu {
                // The ReLU before this pool, on the pool's output gradient, in place.
                let (y, g) = c.bufs.out_and_grad(slot, p.out_len);
                k::relu_backward_inplace(y, g);
            }
            // The input gradient: for every layer with the network's input gradient on,
            // otherwise for those after a trainable layer (whose input is a layer's).
            let dx = self.input_grad || (p.needs_dx && p.input.is_some());
            let LayerGrads {
                input,
                y,
                dy,
                argmax,
                dx,
            } = c.bufs.backward_io(p.input, p.in_len, slot, p.out_len, dx);
            match layer {
                Layer::Conv2d { shape, weight, bias } => {
                    let s = k::Conv2dShape { batch: n, ..*shape };
                    let (wl, at) = (weight.value.len(), p.part_offset);
                    let bl = bias.as_ref().map_or(0, |b| b.value.len());
                    let (gw, gb) = c.part[at..at + wl + bl].split_at_mut(wl);
                    let gb = bias.as_ref().map(|_| gb);
                    k::conv2d_backward_weights(&s, input, dy, gw, gb, c.scratch);
                    if let Some(dx) = dx {
                        k::conv2d_backward_input(&s, &weight.value, dy, dx, c.scratch);
                    }
                }
                Layer::MaxPool2d { shape } => {
                    if let Some(dx) = dx {
                        let s = k::Pool2dShape { batch: n, ..*shape };
                        k::max_pool2d_backward(&s, dy, argmax, dx);
                    }
                }
                Layer::Relu => {
                    if let Some(dx) = dx {
                        k::relu_backward(y, dy, dx);
                    }
                }
                Layer::Dense { shape, weight, .. } => {
                    if let Some(dx) = dx {
                        let s = k::DenseShape { batch: n, ..*shape };
                        k::dense_backward_input(&s, &weight.value, dy, dx);
                    }
                }
                Layer::Flatten => {}
            }
        }
    }
}

/// After the chunks of a training step on `x` (`batch` samples): sums the convolutions'
/// per-chunk gradients in chunk order into their parameters, and computes the dense
/// layers' weight gradients over the whole batch.
pub(crate) fn reduce_gradients(
    layers: &mut [Layer],
    plan: &Plan,
    bufs: &mut Buffers,
    x: &[f32],
    batch: usize,
) {
    const BLOCK: usize = 4096;
    let chunks = batch.div_ceil(CHUNK);
    let Buffers {
        layers: kept, parts, ..
    } = bufs;
    let pl = plan.part_len;
    let (first, rest) = parts[..chunks * pl].split_at_mut(pl);
    let rest = &*rest;
    first.par_chunks_mut(BLOCK).enumerate().for_each(|(b, sum)| {
        for c in 0..chunks - 1 {
            let at = c * pl + b * BLOCK;
            k::simd::add_assign(sum, &rest[at..at + sum.len()]);
        }
    });
    for (layer, p) in layers.iter_mut().zip(&plan.layers) {
        match layer {
            Layer::Conv2d { weight, bias, .. } => {
                let mut at = p.part_offset;
                for param in std::iter::once(weight).chain(bias.as_mut()) {
                    let n = param.grad.len();
                    param.grad.copy_from_slice(&first[at..at + n]);
                    at += n;
                }
            }
            Layer::Dense { shape, weight, bias } => {
                let s = k::DenseShape { batch, ..*shape };
                let input: &[f32] = match p.input {
                    Some(j) => &kept.outs[j][..batch * shape.inputs],
                    None => x,
                };
                let slot = p.slot.expect("a dense layer has a buffer");
                k::dense_backward_weights(
                    &s,
                    input,
                    &kept.grads[slot][..batch * shape.outputs],
                    &mut weight.grad,
                    bias.as_mut().map(|b| &mut b.grad[..]),
                );
            }
            _ => {}
        }
    }
}
