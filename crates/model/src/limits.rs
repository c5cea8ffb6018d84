//! How large a network may be: parameters, activations, input and convolution scratch,
//! each refused with [`ModelError::TooLarge`] before anything of that size is allocated.
//!
//! A caller holding a spec from outside (a command line, a checkpoint) calls
//! [`check_input`] before building a network and [`check_buffers`] after (building runs
//! both too), so an impossible request is an error instead of an allocation failure.

use crate::error::ModelError;
use crate::layers::{Layer, LayerSpec};
use crate::shape::{InputShape, Shape};

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
/// [`Layer`]s) whose kernel scratch per sample (a convolution's im2col matrices, padded
/// copies, regrouped weights) would exceed [`MAX_SCRATCH_PER_SAMPLE`] values, as the
/// kernels size it for one image, or whose shape the kernels refuse. Building a network
/// runs this; the scratch itself is only allocated at the first forward pass.
pub fn check_buffers<N: AsRef<[Layer]> + ?Sized>(net: &N) -> Result<(), ModelError> {
    for (i, layer) in net.as_ref().iter().enumerate() {
        let Some(scratch) = layer.kind().scratch() else {
            continue;
        };
        let what = || {
            format!(
                "the {} of one sample (layer {i} `{}` on {})",
                scratch.what,
                layer.spec().map(|s| s.to_string()).unwrap_or_default(),
                scratch.input
            )
        };
        let values = scratch
            .per_sample
            .map_err(|source| ModelError::LayerShape { what: what(), source })? as u128;
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
    let add = spec.kind().param_count(input);
    add_up(n_params, add, MAX_PARAMS, || {
        format!("the parameters (up to spec layer {position} `{spec}`)")
    })
}

/// Adds the values of a layer's output `out` to `n_acts`, refusing totals past
/// [`MAX_ACTIVATIONS_PER_SAMPLE`] (`position` and `spec` as in [`add_params`]).
pub(crate) fn add_activations(
    spec: &LayerSpec,
    out: Shape,
    position: usize,
    n_acts: &mut u128,
) -> Result<(), ModelError> {
    add_up(n_acts, out.len() as u128, MAX_ACTIVATIONS_PER_SAMPLE, || {
        format!("the activations of one sample (up to layer {position} `{spec}`)")
    })
}

/// Adds `add` values to `total`, refusing a total past `limit` as `what` needs.
fn add_up(total: &mut u128, add: u128, limit: u128, what: impl FnOnce() -> String) -> Result<(), ModelError> {
    *total += add;
    if *total > limit {
        return Err(ModelError::TooLarge {
            what: what(),
            values: *total,
            limit,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{Conv2d, Relu};
    use crate::param::Param;
    use petal_kernels::Conv2dShape;

    fn conv(shape: Conv2dShape) -> Layer {
        let weight = Param::zeros(
            "0.weight".into(),
            vec![shape.out_c, shape.in_c, shape.kh, shape.kw],
        );
        Layer::Conv2d(Conv2d {
            shape,
            weight,
            bias: None,
            algo: petal_kernels::ConvAlgo::Direct,
        })
    }

    fn shape(
        in_c: usize,
        h: usize,
        w: usize,
        out_c: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Conv2dShape {
        Conv2dShape {
            batch: 7,
            in_c,
            h,
            w,
            out_c,
            kh: k,
            kw: k,
            stride,
            pad,
        }
    }

    #[test]
    fn check_buffers_refuses_a_conv_whose_kernel_scratch_for_one_image_is_over_the_limit() {
        let cases = [
            shape(3, 64, 64, 16, 3, 1, 1),
            shape(3, 4096, 4096, 1, 63, 1, 31),
            shape(3, 4096, 4096, 1, 63, 2, 31),
            shape(1, 16386, 3, 8192, 3, 1, 0),
            shape(8, 1000, 1000, 8, 9, 3, 0),
            shape(8, 2000, 2000, 8, 9, 3, 0),
        ];
        let mut refused = 0;
        for s in cases {
            let want = Conv2dShape { batch: 1, ..s }.scratch_len() as u128;
            match check_buffers(&[Layer::Relu(Relu), conv(s)][..]) {
                Ok(()) => assert!(want <= MAX_SCRATCH_PER_SAMPLE, "{s:?}"),
                Err(ModelError::TooLarge { what, values, limit }) => {
                    assert_eq!((values, limit), (want, MAX_SCRATCH_PER_SAMPLE), "{s:?}");
                    assert!(want > limit, "{s:?}");
                    assert!(what.contains("scratch of one sample (layer 1 `conv"), "{what}");
                    refused += 1;
                }
                Err(e) => panic!("{s:?}: {e}"),
            }
        }
        assert!(refused >= 2 && refused < cases.len(), "{refused}");
    }

    #[test]
    fn check_buffers_names_a_hand_built_conv_the_kernels_refuse() {
        let e = check_buffers(&[conv(shape(1, 4, 4, 1, 9, 1, 0))][..]).unwrap_err();
        assert!(matches!(e, ModelError::LayerShape { .. }), "{e}");
        assert!(
            e.to_string().contains("layer 0 `conv9x9:1/nobias` on 1x4x4"),
            "{e}"
        );
    }
}
