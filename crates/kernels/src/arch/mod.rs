//! Instruction sets: everything in the kernels that depends on which vector instructions
//! the build targets.
//!
//! - [`SimdLevel`] (`level.rs`, the one place that reads the target features): the level
//!   this build was compiled for ([`SimdLevel::COMPILED`]), the level the CPU has, and
//!   [`simd_warning`] when they differ;
//! - [`Lanes`] (`lanes.rs`): the two vector widths, and [`Lanes::BUILD`], this build's;
//! - `TILES` (the `Tiles` of `tiles.rs`): the register tiles and path choices that follow
//!   the level, one file per level (`avx2.rs`, `avx512.rs`), picked here from
//!   [`SimdLevel::COMPILED`].
//!
//! A new instruction set (NEON, say) is a new level in `level.rs`, a new file of `Tiles`
//! and its arm where `TILES` is picked; the kernels read only `TILES` and
//! [`Lanes::BUILD`]. (The 2x2 max pooling's column shuffles are the one vector family
//! with code of its own per instruction set, `pool/vector.rs`; other sets take its
//! portable version.)

mod avx2;
mod avx512;
mod lanes;
mod level;
mod tiles;

pub use lanes::Lanes;
pub(crate) use level::FMA;
pub use level::{simd_warning, simd_warning_for, SimdLevel};
pub(crate) use tiles::Tiles;

/// This build's tiles: AVX-512's where it targets AVX-512, else AVX2's (which a build
/// below AVX2 takes too: its vectors are emulated, so no tiling is tuned for it).
pub(crate) const TILES: Tiles = match SimdLevel::COMPILED {
    SimdLevel::Avx512 => avx512::TILES,
    SimdLevel::Avx2 | SimdLevel::Baseline => avx2::TILES,
};

// Every level's tiles are checked when the crate compiles, not only this build's.
const _: () = {
    avx2::TILES.check();
    avx512::TILES.check();
};

impl Lanes {
    /// What this build uses: 16 lanes where it targets AVX-512, else 8.
    pub const BUILD: Lanes = TILES.lanes;
}
