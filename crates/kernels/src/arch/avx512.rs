//! The tiles of AVX-512 builds (`x86-64-v4`): 16-lane vectors (`f32x16`, one `zmm`
//! register each) and 32 vector registers.

use super::lanes::Lanes;
use super::tiles::Tiles;

pub(super) const TILES: Tiles = Tiles {
    lanes: Lanes::Sixteen,
    // 9 taps' input vectors and 8 accumulators fit in 32 registers.
    tap_kernel_max_taps: 9,
    // 2 · 8 accumulators and 2 input vectors per tap fit too. With 16 or more channels the
    // single-row block, which shares its input vectors across the channel groups, is as
    // fast, so pairs are for 8 channels only.
    tap_pairs: true,
    // 2 · 8 accumulators, 2 input vectors and the broadcast weights; a third vector's 8
    // more accumulators spill.
    grouped_vectors: 2,
    grouped_channels: 8,
    // 2 · 9 accumulators, 2 · 3 `dy` rows, 3 input vectors and 2 bias accumulators: 29
    // of 32.
    dw3x3_channels: 2,
    // 4 · 6 accumulators, 4 `dy` vectors and 1 input vector: 29 of 32.
    polyphase_dw_channels: 4,
    polyphase_dw_taps: 6,
};
