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
}
