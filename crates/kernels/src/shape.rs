//! Errors for shapes that describe no valid kernel call.

/// Why a shape struct describes no valid kernel call. Kernels panic with this message;
/// callers holding outside data (spec strings, files) call `validate()` first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("{what}: {field} must be at least 1")]
    Zero { what: &'static str, field: &'static str },
    /// `input` includes the padding on both sides where the kernel pads (conv2d).
    #[error("{what}: kernel {}x{} is larger than the input {}x{}", kernel.0, kernel.1, input.0, input.1)]
    KernelTooLarge {
        what: &'static str,
        kernel: (usize, usize),
        input: (usize, usize),
    },
    #[error("{what}: {quantity} would hold {values} values, over the limit of 2^40")]
    TooLarge {
        what: &'static str,
        quantity: &'static str,
        values: u128,
    },
}

/// Largest tensor, in values, a shape may describe: far past any real network, and small
/// enough that sums of a few such sizes never overflow a `usize`.
pub const MAX_VALUES: u128 = 1 << 40;

/// Checks that each named product of dimensions stays within [`MAX_VALUES`] (computed in
/// `u128`, so it cannot wrap).
pub(crate) fn check_sizes(what: &'static str, sizes: &[(&'static str, &[usize])]) -> Result<(), ShapeError> {
    for &(quantity, dims) in sizes {
        let values = dims.iter().fold(1u128, |p, &d| p.saturating_mul(d as u128));
        if values > MAX_VALUES {
            return Err(ShapeError::TooLarge {
                what,
                quantity,
                values,
            });
        }
    }
    Ok(())
}

/// Panics unless a slice holds exactly the values its shape asks for, naming the kernel
/// and the argument: `"{what}: {name} has {got} values, expected {want}"`.
#[track_caller]
pub(crate) fn check_len(what: &str, name: &str, got: usize, want: usize) {
    assert!(got == want, "{what}: {name} has {got} values, expected {want}");
}
