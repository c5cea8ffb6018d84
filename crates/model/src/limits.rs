//! How large a network may be: parameters, activations, input and convolution scratch,
//! each refused with [`ModelError::TooLarge`] before anything of that size is allocated.
//!
//! A caller holding a spec from outside (a command line, a checkpoint) calls
//! [`check_input`] before building a network and [`check_buffers`] after (building runs
//! both too), so an impossible request is an error instead of an allocation failure.

use crate::error::ModelError;
use crate::layer::{InputShape, Layer, Shape};
use crate::spec::LayerSpec;
use petal_kernels::Conv2dShape;

/// Most parameters a network may have (refused before allocating): 2^28 values, 1 GiB.
pub const MAX_PARAMS: u128 = 1 << 28;
/// Most activation values one sample may produce across all layers: 2^28.
pub const MAX_ACTIVATIONS_PER_SAMPLE: u128 = 1 << 28;
/// Most values one sample's input may hold (the same bound as its activations).
pub const MAX_INPUT_PER_SAMPLE: u128 = MAX_ACTIVATIONS_PER_SAMPLE;
/// Most values of convolution scratch (the kernels' im2col matrices, zero-padded copies
/// and regrouped weights: `Conv2dShape::scratch_len`) one sample may need: 2^28, as for
/// activations. A small kernel on a small input needs little, but a large strided kernel
/// over a large input multiplies both (`conv63x63:1/s2/p31` on 3x4096x4096 lowers to
/// 5 · 10^10 values, 200 GB, for a network of 12,000 convolution parameters).
pub const MAX_SCRATCH_PER_SAMPLE: u128 = 1 << 28;

/// Refuses an input shape with a zero dimension or more than [`MAX_INPUT_PER_SAMPLE`]
/// values, computed without overflow (so `c · h · w` fits in a `usize` afterwards).
pub fn check_input(input: InputShape) -> Result<(), ModelError> {
    let InputShape { c, h, w } = input;
    if c == 0 || h == 0 || w == 0 {
        return Err(ModelError::InputShape { c, h, w });
    }
    let values = c as u128 * h as u128 * w as u128;
    if values > MAX_INPUT_PER_SAMPLE {
        return Err(ModelError::TooLarge {
            what: format!("the input {c}x{h}x{w}"),
            values,
            limit: MAX_INPUT_PER_SAMPLE,
        });
    }
    Ok(())
}

/// Refuses a network (its layers: `&net` for a [`crate::Network`], or a slice of
/// [`Layer`]s) whose convolution scratch per sample would exceed
/// [`MAX_SCRATCH_PER_SAMPLE`] values, as the kernels size it
/// (`Conv2dShape::scratch_len` for one image). Building a network runs this; the
/// scratch itself is only allocated at the first forward pass.
pub fn check_buffers<N: AsRef<[Layer]> + ?Sized>(net: &N) -> Result<(), ModelError> {
    for (i, layer) in net.as_ref().iter().enumerate() {
        let Layer::Conv2d { shape, .. } = layer else {
            continue;
        };
        let what = || {
            format!(
                "the convolution scratch of one sample (layer {i} `{}` on {}x{}x{})",
                layer.spec(),
                shape.in_c,
                shape.h,
                shape.w
            )
        };
        let one = Conv2dShape { batch: 1, ..*shape };
        // A validated shape has every size within 2^40 values, so the kernels' usize
        // arithmetic in `scratch_len` cannot wrap.
        one.validate()
            .map_err(|source| ModelError::LayerShape { what: what(), source })?;
        let values = one.scratch_len() as u128;
        if values > MAX_SCRATCH_PER_SAMPLE {
            return Err(ModelError::TooLarge {
                what: what(),
                values,
                limit: MAX_SCRATCH_PER_SAMPLE,
            });
        }
    }
    Ok(())
}

/// Adds the parameters `spec` would create on `input` to `n_params`, refusing sizes past
/// [`MAX_PARAMS`] before anything is allocated. `position` is the layer's 1-based place in
/// the spec string, for the error.
pub(crate) fn add_params(
    spec: &LayerSpec,
    input: Shape,
    position: usize,
    n_params: &mut u128,
) -> Result<(), ModelError> {
    let add = match (*spec, input) {
        (LayerSpec::Conv2d { out_c, kh, kw, .. }, Shape::Spatial { c, .. }) => {
            out_c as u128 * c as u128 * kh as u128 * kw as u128 + out_c as u128
        }
        (LayerSpec::Dense { out, .. }, s) => out as u128 * s.len() as u128 + out as u128,
        _ => 0,
    };
    *n_params += add;
    if *n_params > MAX_PARAMS {
        return Err(ModelError::TooLarge {
            what: format!("the parameters (up to spec layer {position} `{spec}`)"),
            values: *n_params,
            limit: MAX_PARAMS,
        });
    }
    Ok(())
}

/// Adds the values of a layer's output `out` to `n_acts`, refusing totals past
/// [`MAX_ACTIVATIONS_PER_SAMPLE`] (`position` and `spec` as in [`add_params`]).
pub(crate) fn add_activations(
    spec: &LayerSpec,
    out: Shape,
    position: usize,
    n_acts: &mut u128,
) -> Result<(), ModelError> {
    *n_acts += out.len() as u128;
    if *n_acts > MAX_ACTIVATIONS_PER_SAMPLE {
        return Err(ModelError::TooLarge {
            what: format!("the activations of one sample (up to layer {position} `{spec}`)"),
            values: *n_acts,
            limit: MAX_ACTIVATIONS_PER_SAMPLE,
        });
    }
    Ok(())
}
