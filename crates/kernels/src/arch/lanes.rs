//! [`Lanes`]: the two vector widths the kernels are written for.

/// The width of the widest vector a kernel's main blocks use. A build runs
/// [`Lanes::BUILD`]; tests run every vector kernel at both widths on any x86-64 machine
/// (without AVX-512 an `f32x16` runs as two AVX2 halves), through the kernels' `_lanes` and
/// `_with` entry points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lanes {
    /// `f32x8`: one AVX2 register.
    Eight,
    /// `f32x16`: one AVX-512 register (two AVX2 registers).
    Sixteen,
}

impl Lanes {
    /// Both widths, for tests and benches.
    pub const ALL: [Lanes; 2] = [Lanes::Eight, Lanes::Sixteen];
    /// Lanes in the vector.
    pub const fn count(self) -> usize {
        match self {
            Lanes::Eight => 8,
            Lanes::Sixteen => 16,
        }
    }
}
