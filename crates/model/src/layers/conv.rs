//! Convolution: `convK:N`, `convKxK:N` or `convKHxKW:N`, with `/sS` (stride, default 1),
//! `/pP` (zero padding on every side, default 0) and `/nobias` (PyTorch's
//! `Conv2d(c, N, (KH, KW), S, P, bias)`): `y = W ⋆ x + b`, weight `{name}.weight`
//! `[N, c, KH, KW]` and bias `{name}.bias` `[N]` (`petal_kernels::conv`).
//!
//! Its stride-1 3x3 algorithm ([`ConvAlgo`]: the direct kernels or Winograd's) is a
//! setting of the network ([`Network::set_conv_algo`](crate::Network::set_conv_algo)),
//! not part of the spec or the checkpoint. Winograd's transformed filters are prepared
//! once per step (or inference pass) from the weights the step uses
//! ([`Conv2d::prepare`]) and read by every chunk task ([`Ctx::prepared`](super::Ctx)).

use super::token::number;
use super::{
    init_uniform, needs_spatial, split_grads, weight_and_bias, weight_and_bias_mut, Backward, Forward, Kind,
    Layer, LayerSpec, Reference, Scratch, SpecKind, Traits,
};
use crate::param::Param;
use crate::shape::Shape;
use petal_kernels as k;
use petal_kernels::{reference, Conv2dShape, ConvAlgo};
use rand_chacha::ChaCha8Rng;
use std::fmt;

/// A convolution as the spec describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvSpec {
    /// Output channels.
    pub out_c: usize,
    /// Kernel height and width.
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
    pub bias: bool,
}

/// `conv...` tokens.
pub(super) fn parse(head: &str, opts: &[&str]) -> Option<Result<LayerSpec, String>> {
    let rest = head.strip_prefix("conv")?;
    Some(parse_conv(rest, opts).map(LayerSpec::Conv2d))
}

fn parse_conv(rest: &str, opts: &[&str]) -> Result<ConvSpec, String> {
    let (kernel, out) = rest
        .split_once(':')
        .ok_or("a conv needs its output channels: `conv3x3:8`")?;
    let (kh, kw) = match kernel.split_once('x') {
        Some((a, b)) => (number(a, "kernel height")?, number(b, "kernel width")?),
        None if kernel.is_empty() => return Err("a conv needs its kernel size: `conv3x3:8`".into()),
        None => {
            let k = number(kernel, "kernel size")?;
            (k, k)
        }
    };
    let out_c = number(out, "output channels")?;
    let (mut stride, mut pad, mut bias) = (1, 0, true);
    for o in opts {
        if let Some(v) = o.strip_prefix('s') {
            stride = number(v, "stride")?;
        } else if *o == "nobias" {
            bias = false;
        } else if let Some(v) = o.strip_prefix('p') {
            pad = if v == "0" { 0 } else { number(v, "padding")? };
        } else {
            return Err(format!(
                "unknown conv option `/{o}` (expected /sN, /pN or /nobias)"
            ));
        }
    }
    Ok(ConvSpec {
        out_c,
        kh,
        kw,
        stride,
        pad,
        bias,
    })
}

impl fmt::Display for ConvSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conv{}x{}:{}", self.kh, self.kw, self.out_c)?;
        if self.stride != 1 {
            write!(f, "/s{}", self.stride)?;
        }
        if self.pad != 0 {
            write!(f, "/p{}", self.pad)?;
        }
        if !self.bias {
            write!(f, "/nobias")?;
        }
        Ok(())
    }
}

impl SpecKind for ConvSpec {
    fn build(&self, name: &str, input: Shape) -> Result<(Layer, Shape), String> {
        let (c, h, w) = needs_spatial(input)?;
        let shape = Conv2dShape {
            batch: 1,
            in_c: c,
            h,
            w,
            out_c: self.out_c,
            kh: self.kh,
            kw: self.kw,
            stride: self.stride,
            pad: self.pad,
        };
        shape
            .validate()
            .map_err(|e| format!("does not fit its {input} input: {e}"))?;
        let weight = Param::zeros(format!("{name}.weight"), vec![self.out_c, c, self.kh, self.kw]);
        let bias = self
            .bias
            .then(|| Param::zeros(format!("{name}.bias"), vec![self.out_c]));
        let out = Shape::Spatial {
            c: self.out_c,
            h: shape.out_h(),
            w: shape.out_w(),
        };
        let conv = Conv2d {
            shape,
            weight,
            bias,
            algo: ConvAlgo::Direct,
        };
        Ok((Layer::Conv2d(conv), out))
    }
    fn param_count(&self, input: Shape) -> u128 {
        let c = input.spatial().map_or(0, |(c, _, _)| c) as u128;
        let out = self.out_c as u128;
        out * c * self.kh as u128 * self.kw as u128 + out
    }
}

/// A convolution layer: its shape (for batch 1), weight and optional bias, and the
/// algorithm its stride-1 3x3 passes take.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2d {
    pub shape: Conv2dShape,
    pub weight: Param,
    pub bias: Option<Param>,
    /// [`ConvAlgo::Direct`] unless the network sets another
    /// ([`Network::set_conv_algo`](crate::Network::set_conv_algo)).
    pub algo: ConvAlgo,
}

impl Conv2d {
    /// The forward pass of `images` samples with weights `w` and bias `b` (the layer's,
    /// or inference's with a batch norm folded in) and the filters `prepared` from `w`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward_with(
        &self,
        images: usize,
        x: &[f32],
        w: &[f32],
        prepared: &[f32],
        b: Option<&[f32]>,
        y: &mut [f32],
        scratch: &mut [f32],
    ) {
        let s = Conv2dShape {
            batch: images,
            ..self.shape
        };
        k::conv2d_forward_prepared(&s, self.algo, x, w, prepared, b, y, scratch);
    }

    /// Values of its prepared filters ([`Conv2d::prepare`]): 0 where its algorithm
    /// transforms none.
    pub fn prepared_len(&self) -> usize {
        self.shape.prepared_len(self.algo)
    }

    /// Its algorithm's transformed filters of the weights `w` (the layer's, or inference's
    /// with a batch norm folded in) into `out`, resized to [`Conv2d::prepared_len`]: for
    /// both passes in training, the forward pass's alone in inference (`train` false).
    pub(crate) fn prepare(&self, w: &[f32], out: &mut Vec<f32>, train: bool) {
        out.resize(self.prepared_len(), 0.0);
        match (out.is_empty(), train) {
            (true, _) => {}
            (false, true) => k::conv2d_prepare(&self.shape, self.algo, w, out),
            (false, false) => k::conv2d_prepare_forward(&self.shape, self.algo, w, out),
        }
    }
}

impl Kind for Conv2d {
    fn spec(&self) -> Option<LayerSpec> {
        let s = &self.shape;
        Some(LayerSpec::Conv2d(ConvSpec {
            out_c: s.out_c,
            kh: s.kh,
            kw: s.kw,
            stride: s.stride,
            pad: s.pad,
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
        let fan_in = self.shape.col_rows();
        init_uniform(rng, fan_in, self.params_mut());
    }
    fn forward_flops(&self) -> u64 {
        self.shape.forward_flops()
    }
    fn scratch_len(&self, images: usize) -> usize {
        Conv2dShape {
            batch: images,
            ..self.shape
        }
        .scratch_len_for(self.algo)
    }
    fn scratch(&self) -> Option<Scratch> {
        let one = Conv2dShape {
            batch: 1,
            ..self.shape
        };
        let s = &self.shape;
        Some(Scratch {
            what: "convolution scratch",
            input: format!("{}x{}x{}", s.in_c, s.h, s.w),
            // A validated shape has every size within 2^40 values, so the kernels' usize
            // arithmetic in `scratch_len` cannot wrap.
            per_sample: one.validate().map(|()| one.scratch_len_for(self.algo)),
        })
    }
    fn traits(&self) -> Traits {
        Traits {
            chunk_grads: true,
            ..Traits::default()
        }
    }
    fn forward(&self, f: Forward<'_>) {
        let bias = self.bias.as_ref().map(|b| &b.value[..]);
        let (w, prepared) = (&self.weight.value, f.ctx.prepared);
        self.forward_with(f.images, f.x, w, prepared, bias, f.y, f.scratch);
    }
    fn backward(&self, b: Backward<'_>) {
        let s = Conv2dShape {
            batch: b.images,
            ..self.shape
        };
        let (gw, gb) = split_grads(b.grads, &self.weight, &self.bias);
        k::conv2d_backward_weights_algo(&s, self.algo, b.x, b.dy, gw, gb, b.scratch);
        if let Some(dx) = b.dx {
            let (w, prepared) = (&self.weight.value, b.ctx.prepared);
            k::conv2d_backward_input_prepared(&s, self.algo, w, prepared, b.dy, dx, b.scratch);
        }
    }
    fn reference(&self, r: Reference<'_>) -> (Vec<f64>, Vec<u64>) {
        let s = Conv2dShape {
            batch: r.batch,
            ..self.shape
        };
        let w = r.weight.expect("a convolution has a weight");
        (reference::conv2d_forward(&s, r.x, w, r.bias), Vec::new())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn gradients_match_finite_differences() {
        super::super::gradcheck_case::check(
            "conv3x2:3/s2/p1,relu,conv2x2:2/nobias,dense:3",
            [2, 7, 6],
            3,
            0.0,
        );
    }
}
