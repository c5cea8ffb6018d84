//! The tiles of AVX2 builds (`x86-64-v3`, and builds below it): 8-lane vectors
//! (`f32x8`, one `ymm` register each) and 16 vector registers.

use super::lanes::Lanes;
use super::tiles::Tiles;

pub(super) const TILES: Tiles = Tiles {
    lanes: Lanes::Eight,
    // 9 taps' input vectors and 8 accumulators spill from 16 registers in the tap loop;
    // the grouped 3 x 4 tile fits, so 9 taps go there.
    tap_kernel_max_taps: 4,
    // Row pairs' 16 accumulators alone fill the registers.
    tap_pairs: false,
    // 3 · 4 accumulators, 3 input vectors and 1 broadcast weight: all 16 registers, 7
    // loads per 12 FMAs.
    grouped_vectors: 3,
    grouped_channels: 4,
    // 9 accumulators, 3 `dy` rows, 3 input vectors and 1 bias accumulator: 16.
    dw3x3_channels: 1,
    // 2 · 6 accumulators, 2 `dy` vectors and 1 input vector: 15 of 16. 6 taps rather than
    // 5 because the ResNets' tap counts split into whole tiles or large ones: 16 = 6 + 6
    // + 4, 32 = 5 · 6 + 2, 9 · 16 and 9 · 32 whole (with 5, 16 and 9 · 32 would end in a
    // 1-tap tile).
    polyphase_dw_channels: 2,
    polyphase_dw_taps: 6,
};
