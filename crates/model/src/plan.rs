//! The layer plan: layers built from their specs with every shape inferred from the input,
//! and, per layer, one [`LayerPlan`] saying where its values live and what its step does.

use crate::error::{ModelError, SpecError};
use crate::layer::{InputShape, Layer, Param, Shape};
use crate::limits::{add_activations, add_params, check_buffers, check_input};
use crate::spec::LayerSpec;
use petal_kernels::{Conv2dShape, DenseShape, Pool2dShape};

/// Images per task. A training step (or a forward pass) runs each chunk of this many
/// images through every layer, forward and back, as one rayon task: one parallel region
/// per step instead of one per kernel call, and a chunk's activations stay in cache from
/// layer to layer. Convolution weight gradients are summed per chunk, then in chunk order
/// (the kernels' own order: `petal_kernels::conv`), and dense weight gradients over the
/// whole batch after the chunks, so results do not depend on the thread count.
pub const CHUNK: usize = petal_kernels::conv::BATCH_CHUNK;

/// Where a layer's own output (and its gradient and argmax) lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Storage {
    /// No buffer of its own: a flatten, or a ReLU fused into the max pool after it, whose
    /// output is its input's buffer ([`LayerPlan::slot`]).
    None,
    /// In each chunk task's arena, `CHUNK` images: values used only within the task.
    Arena,
    /// In batch buffers that outlive the tasks: the logits, and a dense layer's input and
    /// output (its weight gradient is computed over the whole batch after the tasks).
    Batch,
}

/// What the network knows about one layer beyond the [`Layer`] itself.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LayerPlan {
    /// Index of the buffer holding the layer's output: its own index, its input's buffer
    /// when it has none ([`Storage::None`]), `None` for the network input.
    pub slot: Option<usize>,
    /// Index of the buffer holding the layer's input (the previous layer's slot; `None`:
    /// the network input).
    pub input: Option<usize>,
    /// Values per sample of the layer's input and output.
    pub in_len: usize,
    pub out_len: usize,
    pub storage: Storage,
    /// Whether the layer computes anything in a chunk step (not a flatten, not a ReLU
    /// fused into the next pool).
    pub runs: bool,
    /// Whether the layer is a max pool that applies the ReLU before it. Max and ReLU
    /// commute (`max(relu(x)) = relu(max(x))`, the same window position winning wherever
    /// the maximum is positive, and the gradient 0 elsewhere either way), so such a ReLU
    /// runs on the pool's output and gradient, a quarter of the values for 2x2 windows, in
    /// place.
    pub fused_relu: bool,
    /// Whether the layer keeps argmax indices (a max pool).
    pub argmax: bool,
    /// Whether the layer must compute its input gradient (a trainable layer comes before).
    pub needs_dx: bool,
    /// Offset of a convolution's weight (then bias) gradient in a chunk's partial sums.
    pub part_offset: usize,
}

/// The plan of a whole network: one [`LayerPlan`] per layer and the sizes of the buffers.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub layers: Vec<LayerPlan>,
    /// Values per sample of the network input.
    pub input_len: usize,
    /// Convolution scratch per arena (the largest layer's, for `CHUNK` images).
    pub scratch_len: usize,
    /// Values of one chunk's partial convolution gradients (at least 1, so the per-chunk
    /// splits are never empty).
    pub part_len: usize,
}

impl Plan {
    /// The plan of the last layer (the logits).
    pub fn last(&self) -> &LayerPlan {
        self.layers.last().expect("a network has layers")
    }
    /// Values per sample of the logits.
    pub fn classes(&self) -> usize {
        self.layers.last().map_or(0, |l| l.out_len)
    }
}

/// A network's parts, as [`build`] makes them.
pub(crate) struct Built {
    pub layers: Vec<Layer>,
    /// Each layer's spec (implied flattens written out).
    pub specs: Vec<LayerSpec>,
    pub shapes: Vec<Shape>,
    pub plan: Plan,
}

/// Builds the layers (zero weights) of `specs` on `input`, inferring every shape and
/// inserting a `flatten` before a `dense` that follows spatial layers, then plans them.
/// Sizes past the [`crate::limits`] are refused before they are allocated.
pub(crate) fn build(specs: &[LayerSpec], input: InputShape) -> Result<Built, ModelError> {
    // Zero sizes and inputs too large for memory, refused before anything is built.
    check_input(input)?;
    let mut layers = Vec::new();
    let mut expanded = Vec::new();
    let mut shapes = Vec::new();
    let mut shape = Shape::Spatial {
        c: input.c,
        h: input.h,
        w: input.w,
    };
    let (mut n_params, mut n_acts) = (0u128, 0u128);
    for (pos, spec) in specs.iter().enumerate() {
        let mut todo = vec![*spec];
        if matches!(spec, LayerSpec::Dense { .. }) && matches!(shape, Shape::Spatial { .. }) {
            todo.insert(0, LayerSpec::Flatten);
        }
        for s in todo {
            // Refuse sizes that cannot fit before building (and allocating) the layer.
            add_params(&s, shape, pos + 1, &mut n_params)?;
            let (layer, out) = build_layer(&s, layers.len(), pos + 1, shape)?;
            debug_assert_eq!(layer.spec(), s);
            add_activations(&s, out, pos + 1, &mut n_acts)?;
            layers.push(layer);
            expanded.push(s);
            shapes.push(out);
            shape = out;
        }
    }
    let last_spec = || specs.last().map(|s| s.to_string()).unwrap_or_default();
    if let Shape::Spatial { .. } = shape {
        return Err(SpecError {
            position: specs.len(),
            layer: last_spec(),
            reason: format!(
                "the network must end in logits (a dense layer), but outputs {shape} feature maps"
            ),
        }
        .into());
    }
    let plan = plan(&layers, &shapes, input);
    if plan.last().slot.is_none() {
        // Only flattens: nothing computes, so there is no output to train.
        return Err(SpecError {
            position: specs.len().max(1),
            layer: last_spec(),
            reason: "the network needs at least one conv, maxpool, relu or dense layer".into(),
        }
        .into());
    }
    // Convolution scratch too large for memory is refused here, not when the first batch
    // allocates it.
    check_buffers(&layers)?;
    Ok(Built {
        layers,
        specs: expanded,
        shapes,
        plan,
    })
}

/// Plans built layers: buffers, fused ReLUs, input gradients, partial-gradient offsets.
fn plan(layers: &[Layer], shapes: &[Shape], input: InputShape) -> Plan {
    let relu_before_pool = |i: usize| {
        matches!(layers[i], Layer::Relu) && matches!(layers.get(i + 1), Some(Layer::MaxPool2d { .. }))
    };
    let mut plans: Vec<LayerPlan> = Vec::with_capacity(layers.len());
    let mut part_offset = 0;
    for (i, (layer, out)) in layers.iter().zip(shapes).enumerate() {
        let input_slot = i.checked_sub(1).and_then(|j| plans[j].slot);
        let runs = !(matches!(layer, Layer::Flatten) || relu_before_pool(i));
        plans.push(LayerPlan {
            // A layer that runs has a buffer of its own; the others are views of their
            // input's buffer (or of the network input).
            slot: if runs { Some(i) } else { input_slot },
            input: input_slot,
            in_len: i.checked_sub(1).map_or(input.len(), |j| shapes[j].len()),
            out_len: out.len(),
            storage: if runs { Storage::Arena } else { Storage::None },
            runs,
            fused_relu: i > 0 && relu_before_pool(i - 1),
            argmax: matches!(layer, Layer::MaxPool2d { .. }),
            needs_dx: layers[..i].iter().any(Layer::has_params),
            part_offset,
        });
        if let Layer::Conv2d { .. } = layer {
            part_offset += layer.params().map(|p| p.value.len()).sum::<usize>();
        }
    }
    // Batch buffers for what outlives a chunk's task: a dense layer's input and output,
    // and the logits.
    for i in 0..plans.len() {
        if let Layer::Dense { .. } = layers[i] {
            plans[i].storage = Storage::Batch;
            if let Some(j) = plans[i].input {
                plans[j].storage = Storage::Batch;
            }
        }
    }
    if let Some(j) = plans.last().and_then(|l| l.slot) {
        plans[j].storage = Storage::Batch;
    }
    let scratch_len = layers
        .iter()
        .filter_map(|l| match l {
            Layer::Conv2d { shape, .. } => Some(
                Conv2dShape {
                    batch: CHUNK,
                    ..*shape
                }
                .scratch_len(),
            ),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    Plan {
        layers: plans,
        input_len: input.len(),
        scratch_len,
        part_len: part_offset.max(1),
    }
}

/// Builds layer `index` of the network from its spec, given its input shape; returns the
/// layer and its output shape. `position` is the layer's 1-based place in the spec
/// string, for errors.
fn build_layer(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse_spec;

    #[test]
    fn flowernet_plan_fuses_relus_into_pools_and_keeps_only_the_dense_layers_values() {
        let b = build(
            &parse_spec("flowernet").unwrap(),
            InputShape { c: 3, h: 64, w: 64 },
        )
        .unwrap();
        let p = &b.plan;
        assert_eq!(p.layers.len(), 11);
        for (i, l) in p.layers.iter().enumerate() {
            let relu_before_pool = matches!(i, 1 | 4 | 7);
            assert_eq!(l.runs, !relu_before_pool && i != 9, "layer {i}");
            assert_eq!(l.fused_relu, matches!(i, 2 | 5 | 8), "layer {i}");
            assert_eq!(l.argmax, matches!(i, 2 | 5 | 8), "layer {i}");
            assert_eq!(l.slot, Some(if l.runs { i } else { i - 1 }), "layer {i}");
            assert_eq!(
                l.input,
                i.checked_sub(1).and_then(|j| p.layers[j].slot),
                "layer {i}"
            );
            assert_eq!(l.needs_dx, i > 0, "layer {i}");
            let storage = match i {
                8 | 10 => Storage::Batch,
                _ if l.runs => Storage::Arena,
                _ => Storage::None,
            };
            assert_eq!(l.storage, storage, "layer {i}");
            assert_eq!(l.out_len, b.shapes[i].len(), "layer {i}");
        }
        assert_eq!(
            p.layers[9].slot,
            Some(8),
            "the flatten is a view of the last pool"
        );
        let conv_params = [16 * 27 + 16, 32 * 144 + 32, 64 * 288 + 64];
        assert_eq!(p.layers[3].part_offset, conv_params[0]);
        assert_eq!(p.layers[6].part_offset, conv_params[0] + conv_params[1]);
        assert_eq!(p.part_len, conv_params.iter().sum::<usize>());
        assert_eq!(p.classes(), 5);
    }
}
