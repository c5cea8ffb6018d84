//! The network a command's `--arch` and input shape describe, refused before anything is
//! allocated for it when it cannot be built.

use crate::data::MAX_SIDE;
use crate::error::TrainerError;
use petal_kernels::ConvAlgo;
use petal_model::{InputShape, Network};

/// Refuses an input of more than [`crate::data::MAX_SIDE`] pixels a side or more values
/// than a network accepts (before anything is allocated for it).
pub(super) fn check_size(input: InputShape) -> Result<(), TrainerError> {
    if input.h > MAX_SIDE as usize || input.w > MAX_SIDE as usize {
        return Err(TrainerError::Usage(format!(
            "--size {} is over the limit of {MAX_SIDE} pixels",
            input.h.max(input.w)
        )));
    }
    petal_model::limits::check_input(input)?;
    Ok(())
}

/// [`Network::for_classes`] (a preset sized to `classes`, a spec checked against it), or
/// without `classes` [`Network::from_spec`] (a preset for 5 classes, a spec as it is), on
/// the convolution algorithm `algo`; then refuses a network whose convolution scratch
/// buffers (which depend on `algo`) could not be allocated
/// (`petal_model::limits::check_buffers`). `data` names where the classes were counted, for
/// the error of a spec whose output count differs.
pub(super) fn network(
    arch: &str,
    input: InputShape,
    classes: Option<usize>,
    data: &str,
    seed: u64,
    algo: ConvAlgo,
) -> Result<Network, TrainerError> {
    let net = match classes {
        Some(n) => Network::for_classes(arch, input, n, seed),
        None => Network::from_spec(arch, input, seed),
    };
    let mut net = net.map_err(|e| match e {
        petal_model::ModelError::ClassCount {
            last,
            outputs,
            classes,
            ..
        } => petal_model::ModelError::ClassCount {
            last,
            outputs,
            data: data.to_string(),
            classes,
        },
        e => e,
    })?;
    net.set_conv_algo(algo);
    petal_model::limits::check_buffers(&net)?;
    Ok(net)
}
