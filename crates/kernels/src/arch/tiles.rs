//! [`Tiles`]: what each instruction set picks for the kernels whose best blocking depends
//! on its registers (how many vectors, how wide). One value per level, each in its own
//! file (`avx2.rs`, `avx512.rs`); [`TILES`](super::TILES) is this build's.

use super::lanes::Lanes;

/// The register tiles and path choices of one instruction set. Each tile is sized so its
/// accumulators, the vectors they meet and the broadcast weights fit the vector registers
/// without spilling. Only [`Tiles::lanes`] can change a result: the weight gradients'
/// lane sums follow the vector width. The tiles set how many outputs a loop computes at
/// once, never what an output sums or in which order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tiles {
    /// The widest vector of the kernels' main blocks ([`Lanes::BUILD`]).
    pub lanes: Lanes,
    /// Stride-1 forward (and transposed input gradient): the most taps `in_c · kh · kw`
    /// that run on the tap kernels (`ForwardPath::Taps` and `TapPairs`, kernels for 1, 4
    /// and 9 taps, which hold every tap's input vector and their accumulators in
    /// registers); a shape with more takes the grouped tiles (`ForwardPath::Grouped`).
    pub tap_kernel_max_taps: usize,
    /// Whether the tap kernels take two output rows per block for exactly 8 output
    /// channels (`ForwardPath::TapPairs`: 2 · 8 accumulators, 2 input vectors per tap).
    pub tap_pairs: bool,
    /// Output vectors per register tile of the grouped forward (`ForwardPath::Grouped`)
    /// and of the polyphase paths' forward tiles (`offset_taps::forward`).
    pub grouped_vectors: usize,
    /// Output channels per register tile of those kernels: 8 (a whole group of the
    /// regrouped weights in one pass) or 4 (half a group per pass, two passes). Divides 8.
    pub grouped_channels: usize,
    /// 3x3 stride-1 weight gradient (`WeightGradPath::Direct3x3`): output channels per
    /// register block, each with 9 accumulators held across a chunk's images.
    pub dw3x3_channels: usize,
    /// Polyphase weight gradient (`offset_taps::weight_grad`): output channels per
    /// register tile.
    pub polyphase_dw_channels: usize,
    /// Polyphase weight gradient: taps per register tile (the rest of a channel's taps go
    /// in tiles of 4, 2 and 1). More than 4.
    pub polyphase_dw_taps: usize,
}

impl Tiles {
    /// Panics unless the tiles fit the loops that run them: every count at least 1,
    /// `grouped_channels` a divisor of 8, `polyphase_dw_taps` more than 4. `mod.rs`
    /// evaluates it for every level's tiles at compile time.
    pub(super) const fn check(&self) {
        assert!(
            self.tap_kernel_max_taps >= 1
                && self.grouped_vectors >= 1
                && self.dw3x3_channels >= 1
                && self.polyphase_dw_channels >= 1,
            "Tiles: a tile of 0"
        );
        assert!(
            self.grouped_channels >= 1 && 8 % self.grouped_channels == 0,
            "Tiles: grouped_channels must divide the group of 8"
        );
        assert!(
            self.polyphase_dw_taps > 4,
            "Tiles: polyphase_dw_taps must exceed the remainder tiles' 4"
        );
    }
}
