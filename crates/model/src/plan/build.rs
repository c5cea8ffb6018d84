//! Building the layers of a spec: every shape inferred from the input, `flatten`s implied
//! before dense layers, residual blocks laid out as their body's layers, their shortcut's,
//! and an [`Layer::Add`], with `state_dict` names as PyTorch's modules would have them.

use crate::error::{ModelError, SpecError};
use crate::layer::{BatchNorm, Layer, Param, Shape};
use crate::limits::{add_activations, add_params};
use crate::spec::LayerSpec;
use petal_kernels::{Conv2dShape, DenseShape, Pool2dShape};

/// A value of the network: the output of layer `Some(i)`, or the network input (`None`).
pub(crate) type Value = Option<usize>;

/// The layers built so far, in execution order, and what each reads.
#[derive(Default)]
pub(crate) struct Ops {
    pub layers: Vec<Layer>,
    /// Each layer's output shape, per sample.
    pub shapes: Vec<Shape>,
    /// Each layer's input value, and a second one for an [`Layer::Add`].
    pub inputs: Vec<(Value, Option<Value>)>,
    n_params: u128,
    n_acts: u128,
}

/// Where a list of layers starts: its input value and shape, its names' prefix
/// (`""` at the top, `"3.body."` in a block), and the 1-based top-level position of the
/// spec layer being built (for errors).
#[derive(Clone)]
pub(crate) struct At {
    pub value: Value,
    pub shape: Shape,
    pub prefix: String,
    pub position: Option<usize>,
}

impl Ops {
    /// Builds `specs` from `at`; returns the specs as built (implied flattens and
    /// projection shortcuts written out) and the value and shape they end in.
    pub fn add_list(
        &mut self,
        specs: &[LayerSpec],
        at: At,
    ) -> Result<(Vec<LayerSpec>, Value, Shape), ModelError> {
        let (mut value, mut shape) = (at.value, at.shape);
        let mut expanded = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let position = at.position.unwrap_or(i + 1);
            let mut todo = vec![spec.clone()];
            if matches!(spec, LayerSpec::Dense { .. }) && matches!(shape, Shape::Spatial { .. }) {
                todo.insert(0, LayerSpec::Flatten);
            }
            for s in todo {
                let name = format!("{}{}", at.prefix, expanded.len());
                let (built, v, out) = match &s {
                    LayerSpec::Residual { body, shortcut } => {
                        self.add_residual(body, shortcut, value, shape, &name, position)?
                    }
                    _ => {
                        let v = self.add_layer(&s, &name, position, value, shape)?;
                        (s, Some(v), self.shapes[v])
                    }
                };
                expanded.push(built);
                value = v;
                shape = out;
            }
        }
        Ok((expanded, value, shape))
    }

    /// One layer reading `input` (of shape `shape`); returns its index.
    fn add_layer(
        &mut self,
        spec: &LayerSpec,
        name: &str,
        position: usize,
        input: Value,
        shape: Shape,
    ) -> Result<usize, ModelError> {
        // Refuse sizes that cannot fit before building (and allocating) the layer.
        add_params(spec, shape, position, &mut self.n_params)?;
        let (layer, out) = build_layer(spec, name, position, shape)?;
        debug_assert_eq!(layer.spec().as_ref(), Some(spec));
        add_activations(spec, out, position, &mut self.n_acts)?;
        self.push(layer, out, (input, None));
        Ok(self.layers.len() - 1)
    }

    fn push(&mut self, layer: Layer, out: Shape, inputs: (Value, Option<Value>)) {
        self.layers.push(layer);
        self.shapes.push(out);
        self.inputs.push(inputs);
    }

    /// A residual block named `name` on `input`: its body, its shortcut (the given layers;
    /// none: the identity, or the projection when the body changes the shape), and the
    /// add.
    fn add_residual(
        &mut self,
        body: &[LayerSpec],
        shortcut: &[LayerSpec],
        input: Value,
        shape: Shape,
        name: &str,
        position: usize,
    ) -> Result<(LayerSpec, Value, Shape), ModelError> {
        let err = |reason: String| -> ModelError {
            SpecError {
                position,
                layer: LayerSpec::Residual {
                    body: body.to_vec(),
                    shortcut: shortcut.to_vec(),
                }
                .to_string(),
                reason,
            }
            .into()
        };
        let at = |part: &str| At {
            value: input,
            shape,
            prefix: format!("{name}.{part}."),
            position: Some(position),
        };
        let (body, body_out, body_shape) = self.add_list(body, at("body"))?;
        let shortcut = if shortcut.is_empty() && body_shape != shape {
            projection(shape, body_shape).ok_or_else(|| {
                err(format!(
                    "the body turns {shape} into {body_shape}, which no 1x1 projection shortcut matches: give the shortcut after `|`"
                ))
            })?
        } else {
            shortcut.to_vec()
        };
        let (shortcut, sc_out, sc_shape) = if shortcut.is_empty() {
            (shortcut, input, shape)
        } else {
            self.add_list(&shortcut, at("shortcut"))?
        };
        if sc_shape != body_shape {
            return Err(err(format!(
                "the body outputs {body_shape} but the shortcut {sc_shape}: they must agree to be added"
            )));
        }
        if body.iter().all(|l| matches!(l, LayerSpec::Flatten)) {
            return Err(err("the body must compute something (not only a flatten)".into()));
        }
        add_activations(&LayerSpec::Relu, body_shape, position, &mut self.n_acts)?;
        self.push(Layer::Add, body_shape, (body_out, Some(sc_out)));
        let v = Some(self.layers.len() - 1);
        Ok((LayerSpec::Residual { body, shortcut }, v, body_shape))
    }
}

/// The projection shortcut `conv1x1:C/sS/nobias,bn` from `from` to `to` feature maps, when
/// one stride S maps the sizes (`(h − 1)/S + 1 = h'`, the same for w).
fn projection(from: Shape, to: Shape) -> Option<Vec<LayerSpec>> {
    let (Shape::Spatial { h, w, .. }, Shape::Spatial { c, h: oh, w: ow }) = (from, to) else {
        return None;
    };
    let stride = (1..=h.max(w)).find(|s| (h - 1) / s + 1 == oh && (w - 1) / s + 1 == ow)?;
    Some(vec![
        LayerSpec::Conv2d {
            out_c: c,
            kh: 1,
            kw: 1,
            stride,
            pad: 0,
            bias: false,
        },
        LayerSpec::BatchNorm,
    ])
}

/// Builds the layer `spec` named `name` (its parameters are `{name}.weight`, ...), given
/// its input shape; returns the layer and its output shape. `position` is the top-level
/// spec layer's 1-based place, for errors.
fn build_layer(
    spec: &LayerSpec,
    name: &str,
    position: usize,
    input: Shape,
) -> Result<(Layer, Shape), SpecError> {
    let err = |reason: String| SpecError {
        position,
        layer: spec.to_string(),
        reason,
    };
    let flat_err = |n: usize| {
        err(format!(
            "needs [c, h, w] feature maps but follows a flatten or dense layer (a flat vector of {n})"
        ))
    };
    let spatial = match input {
        Shape::Spatial { c, h, w } => Some((c, h, w)),
        Shape::Flat(_) => None,
    };
    match (spec, spatial) {
        (
            &LayerSpec::Conv2d {
                out_c,
                kh,
                kw,
                stride,
                pad,
                bias,
            },
            Some((c, h, w)),
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
            let weight = Param::zeros(format!("{name}.weight"), vec![out_c, c, kh, kw]);
            let bias = bias.then(|| Param::zeros(format!("{name}.bias"), vec![out_c]));
            let out = Shape::Spatial {
                c: out_c,
                h: shape.out_h(),
                w: shape.out_w(),
            };
            Ok((Layer::Conv2d { shape, weight, bias }, out))
        }
        (&LayerSpec::MaxPool2d { k, stride } | &LayerSpec::AvgPool2d { k, stride }, Some((c, h, w))) => {
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
            let layer = if matches!(spec, LayerSpec::MaxPool2d { .. }) {
                Layer::MaxPool2d { shape }
            } else {
                Layer::AvgPool2d { shape }
            };
            Ok((layer, out))
        }
        (LayerSpec::BatchNorm, Some((c, h, w))) => Ok((
            Layer::BatchNorm(BatchNorm::new(name.to_string(), c, h * w)),
            input,
        )),
        (LayerSpec::GlobalAvgPool, Some((c, h, w))) => Ok((
            Layer::GlobalAvgPool { c, hw: h * w },
            Shape::Spatial { c, h: 1, w: 1 },
        )),
        (
            LayerSpec::Conv2d { .. }
            | LayerSpec::MaxPool2d { .. }
            | LayerSpec::AvgPool2d { .. }
            | LayerSpec::BatchNorm
            | LayerSpec::GlobalAvgPool,
            None,
        ) => Err(flat_err(input.len())),
        (LayerSpec::Relu, _) => Ok((Layer::Relu, input)),
        (&LayerSpec::Dropout { p }, _) => Ok((Layer::Dropout { p }, input)),
        (LayerSpec::Flatten, _) => Ok((Layer::Flatten, Shape::Flat(input.len()))),
        (&LayerSpec::Dense { out, bias }, None) => {
            let n = input.len();
            let shape = DenseShape {
                batch: 1,
                inputs: n,
                outputs: out,
            };
            let weight = Param::zeros(format!("{name}.weight"), vec![out, n]);
            let bias = bias.then(|| Param::zeros(format!("{name}.bias"), vec![out]));
            Ok((Layer::Dense { shape, weight, bias }, Shape::Flat(out)))
        }
        (LayerSpec::Dense { .. }, Some(_)) => Err(err(format!(
            "needs a flat input, got {input}: the network inserts a flatten before it"
        ))),
        (LayerSpec::Residual { .. }, _) => unreachable!("residual blocks are built by add_residual"),
    }
}
