//! Building the layers of a spec: every shape inferred from the input, `flatten`s implied
//! before dense layers, residual blocks laid out as their body's layers, their shortcut's,
//! and an [`Layer::Add`], with `state_dict` names as PyTorch's modules would have them.

use crate::error::{ModelError, SpecError};
use crate::layers::{projection, Add, Layer, LayerSpec, ResidualSpec};
use crate::limits::{add_activations, add_params};
use crate::shape::Shape;

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
            if matches!(spec, LayerSpec::Dense(_)) && matches!(shape, Shape::Spatial { .. }) {
                todo.insert(0, LayerSpec::Flatten);
            }
            for s in todo {
                let name = format!("{}{}", at.prefix, expanded.len());
                let (built, v, out) = match &s {
                    LayerSpec::Residual(r) => self.add_residual(r, value, shape, &name, position)?,
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
        let (layer, out) = spec.kind().build(name, shape).map_err(|reason| SpecError {
            position,
            layer: spec.to_string(),
            reason,
        })?;
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
        block: &ResidualSpec,
        input: Value,
        shape: Shape,
        name: &str,
        position: usize,
    ) -> Result<(LayerSpec, Value, Shape), ModelError> {
        let err = |reason: String| -> ModelError {
            SpecError {
                position,
                layer: block.to_string(),
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
        let (body, body_out, body_shape) = self.add_list(&block.body, at("body"))?;
        let shortcut = &block.shortcut;
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
        self.push(Layer::Add(Add), body_shape, (body_out, Some(sc_out)));
        let v = Some(self.layers.len() - 1);
        Ok((
            LayerSpec::Residual(ResidualSpec { body, shortcut }),
            v,
            body_shape,
        ))
    }
}
