//! Layers: what each holds (shapes, parameters) and how its output shape follows from its
//! input shape.
//!
//! The seed's three layers map to: "Convolution_layer" = [`Layer::Conv2d`],
//! "Pooling_layer" = [`Layer::MaxPool2d`], and "Softmax_layer" = [`Layer::Dense`] followed
//! by the fused softmax cross-entropy loss (`petal_kernels::softmax_cross_entropy`),
//! which the network applies to its last layer's output (the logits).

use crate::error::SpecError;
use crate::spec::LayerSpec;
use petal_kernels::{Conv2dShape, DenseShape, Pool2dShape};
use std::fmt;

/// The shape of one sample as it flows between layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shape {
    /// `[c, h, w]` feature maps.
    Spatial { c: usize, h: usize, w: usize },
    /// A flat vector (after `flatten`), in C,H,W order.
    Flat(usize),
}

impl Shape {
    /// Values per sample.
    pub fn len(&self) -> usize {
        match *self {
            Shape::Spatial { c, h, w } => c * h * w,
            Shape::Flat(n) => n,
        }
    }
    /// Whether the shape holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The dimensions, `[c, h, w]` or `[n]`.
    pub fn dims(&self) -> Vec<usize> {
        match *self {
            Shape::Spatial { c, h, w } => vec![c, h, w],
            Shape::Flat(n) => vec![n],
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Shape::Spatial { c, h, w } => write!(f, "{c}x{h}x{w}"),
            Shape::Flat(n) => write!(f, "{n}"),
        }
    }
}

/// A trainable tensor with its gradient and SGD velocity (all the same length).
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// PyTorch `state_dict` name: `"{layer index}.weight"` or `"{layer index}.bias"`.
    pub name: String,
    /// Dimensions, as PyTorch's (`[out_c, in_c, kh, kw]`, `[out, in]`, `[out]`).
    pub shape: Vec<usize>,
    pub value: Vec<f32>,
    pub grad: Vec<f32>,
    pub velocity: Vec<f32>,
}

impl Param {
    pub(crate) fn zeros(name: String, shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        Param {
            name,
            shape,
            value: vec![0.0; n],
            grad: vec![0.0; n],
            velocity: vec![0.0; n],
        }
    }
}

/// One layer of a sequential network. Shape structs are stored for batch 1; the network
/// sets the batch at each call.
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    /// 2-D convolution, `y = W ⋆ x + b` (`petal_kernels::conv`).
    Conv2d {
        shape: Conv2dShape,
        weight: Param,
        bias: Option<Param>,
    },
    /// Max pooling; the gradient flows to each window's maximum (`petal_kernels::pool`).
    MaxPool2d { shape: Pool2dShape },
    /// `max(x, 0)`.
    Relu,
    /// `[c, h, w]` to `[c·h·w]` in C,H,W order: a view, no copy.
    Flatten,
    /// `y = W · x + b`, the seed's eq. (10) (`petal_kernels::dense`).
    Dense {
        shape: DenseShape,
        weight: Param,
        bias: Option<Param>,
    },
}

impl Layer {
    /// Builds layer `index` of the network from its spec, given its input shape; returns
    /// the layer and its output shape. `position` is the layer's 1-based place in the
    /// spec string, for errors.
    pub(crate) fn build(
        spec: &LayerSpec,
        index: usize,
        position: usize,
        input: Shape,
    ) -> Result<(Layer, Shape), SpecError> {
        let err = |reason: String| SpecError {
            position,
            layer: spec.to_string(),
            reason,
        };
        match (*spec, input) {
            (
                LayerSpec::Conv2d {
                    out_c,
                    kh,
                    kw,
                    stride,
                    pad,
                    bias,
                },
                Shape::Spatial { c, h, w },
            ) => {
                let shape = Conv2dShape {
                    batch: 1,
                    in_c: c,
                    h,
                    w,
                    out_c,
                    kh,
                    kw,
                    stride,
                    pad,
                };
                shape
                    .validate()
                    .map_err(|e| err(format!("does not fit its {input} input: {e}")))?;
                let weight = Param::zeros(format!("{index}.weight"), vec![out_c, c, kh, kw]);
                let bias = bias.then(|| Param::zeros(format!("{index}.bias"), vec![out_c]));
                let out = Shape::Spatial {
                    c: out_c,
                    h: shape.out_h(),
                    w: shape.out_w(),
                };
                Ok((Layer::Conv2d { shape, weight, bias }, out))
            }
            (LayerSpec::MaxPool2d { k, stride }, Shape::Spatial { c, h, w }) => {
                let shape = Pool2dShape {
                    batch: 1,
                    c,
                    h,
                    w,
                    k,
                    stride,
                };
                shape
                    .validate()
                    .map_err(|e| err(format!("does not fit its {input} input: {e}")))?;
                let out = Shape::Spatial {
                    c,
                    h: shape.out_h(),
                    w: shape.out_w(),
                };
                Ok((Layer::MaxPool2d { shape }, out))
            }
            (LayerSpec::Conv2d { .. } | LayerSpec::MaxPool2d { .. }, Shape::Flat(n)) => Err(err(format!(
                "needs [c, h, w] feature maps but follows a flatten or dense layer (a flat vector of {n})"
            ))),
            (LayerSpec::Relu, s) => Ok((Layer::Relu, s)),
            (LayerSpec::Flatten, s) => Ok((Layer::Flatten, Shape::Flat(s.len()))),
            (LayerSpec::Dense { out, bias }, Shape::Flat(n)) => {
                let shape = DenseShape {
                    batch: 1,
                    inputs: n,
                    outputs: out,
                };
                let weight = Param::zeros(format!("{index}.weight"), vec![out, n]);
                let bias = bias.then(|| Param::zeros(format!("{index}.bias"), vec![out]));
                Ok((Layer::Dense { shape, weight, bias }, Shape::Flat(out)))
            }
            (LayerSpec::Dense { .. }, Shape::Spatial { .. }) => Err(err(format!(
                "needs a flat input, got {input}: the network inserts a flatten before it"
            ))),
        }
    }

    /// The layer's parameters (weight first, then bias).
    pub fn params(&self) -> impl Iterator<Item = &Param> {
        let (w, b) = match self {
            Layer::Conv2d { weight, bias, .. } | Layer::Dense { weight, bias, .. } => {
                (Some(weight), bias.as_ref())
            }
            _ => (None, None),
        };
        w.into_iter().chain(b)
    }

    /// The layer's parameters, mutably (weight first, then bias).
    pub fn params_mut(&mut self) -> impl Iterator<Item = &mut Param> {
        let (w, b) = match self {
            Layer::Conv2d { weight, bias, .. } | Layer::Dense { weight, bias, .. } => {
                (Some(weight), bias.as_mut())
            }
            _ => (None, None),
        };
        w.into_iter().chain(b)
    }

    /// Whether the layer has trainable parameters.
    pub fn has_params(&self) -> bool {
        matches!(self, Layer::Conv2d { .. } | Layer::Dense { .. })
    }
}
