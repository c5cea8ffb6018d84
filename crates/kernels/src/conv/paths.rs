//! The code paths of the three conv kernels, which one a shape takes (chosen here and
//! nowhere else: [`Conv2dShape::forward_path`], [`Conv2dShape::weight_grad_path`],
//! [`Conv2dShape::input_grad_path`]), which shapes each can serve, and the scratch each
//! needs. The module docs of [`conv`](super) give the table and why each path wins.

use super::offset_taps::MAX_AREA;
use super::winograd::{self, WinogradTile};
use super::{Conv2dShape, BATCH_CHUNK};
use crate::arch::{Lanes, TILES};

// The path choices that depend on the instruction set (which tap counts the tap kernels
// take, and whether they pair rows) come from `arch`'s tiles, as do the register tiles
// of the direct paths, which are sized for the build's widest vector: what
// [`Lanes::BUILD`] runs.

/// A non-3x3 stride-1 weight gradient takes a direct path ([`WeightGradPath::DirectArea`]
/// or [`WeightGradPath::DirectRows`]) when `in_c <= DIRECT_MAX_IN_C`: with so few input
/// channels the lowered GEMM has a tiny dimension and starves; with more, im2col + GEMM
/// wins.
const DIRECT_MAX_IN_C: usize = 3;

/// Whether a stride-2 shape is one of the CIFAR ResNets' downsampling convolutions the
/// polyphase paths were measured on (`benches/kernels/resnet.rs`, group `conv_resnet`): a
/// square 1x1 (the projection shortcut) or 3x3 kernel.
fn resnet_stride_2(s: &Conv2dShape) -> bool {
    s.stride == 2 && s.kh == s.kw && (s.kh == 1 || s.kh == 3)
}

/// The polyphase weight gradient of a 3x3 stride-2 kernel beats the GEMM path from this
/// output width up. Below it, its flat runs of `oh · ceil(wp / 2)` positions, rounded to
/// whole vectors, are a quarter padding at 8x8 outputs, with only 5 vectors per image, and
/// GEMM wins. (The 1x1 kernel's runs have no padding, so it takes the polyphase path at
/// any width.)
const POLYPHASE_DW_MIN_OW: usize = 16;

/// Tap counts `in_c · kh · kw` with a kernel of their own ([`ForwardPath::Taps`]).
pub(crate) fn has_tap_kernel(taps: usize) -> bool {
    matches!(taps, 1 | 4 | 9)
}

/// Kernel areas `kh · kw` with a kernel of their own ([`WeightGradPath::DirectArea`]).
pub(crate) fn has_area_kernel(area: usize) -> bool {
    matches!(area, 1 | 4 | 9 | 25)
}

/// Which algorithm the stride-1 3x3 convolutions take (the others have one each): the
/// direct kernels, whose results are today's bits, or Winograd's, which does fewer
/// multiplies and rounds differently ([`winograd`](super::winograd)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ConvAlgo {
    /// The direct kernels (and GEMM where they take it), for every shape.
    #[default]
    Direct,
    /// Winograd for every shape it computes, on the tile measured faster for it.
    Winograd,
    /// Per shape, whichever of the two was measured faster.
    Auto,
}

impl ConvAlgo {
    /// Every algorithm, as the trainer's `--conv-algo` names them.
    pub const NAMES: [&'static str; 3] = ["direct", "winograd", "auto"];

    /// The algorithm named `name` (one of [`ConvAlgo::NAMES`]).
    pub fn parse(name: &str) -> Option<ConvAlgo> {
        match name {
            "direct" => Some(ConvAlgo::Direct),
            "winograd" => Some(ConvAlgo::Winograd),
            "auto" => Some(ConvAlgo::Auto),
            _ => None,
        }
    }

    /// Its name in [`ConvAlgo::NAMES`].
    pub fn name(self) -> &'static str {
        match self {
            ConvAlgo::Direct => "direct",
            ConvAlgo::Winograd => "winograd",
            ConvAlgo::Auto => "auto",
        }
    }
}

/// The Winograd tile of a stride-1 3x3 shape the Winograd paths compute: F(4x4, 3x3) on
/// outputs larger than 8 x 8, F(2x2, 3x3) on the smaller ones, where F(4x4)'s tiles are
/// few and its transforms cost more than they save (measured, `examples/winograd_shapes.rs`,
/// 32 images, one thread, x86-64-v3, direct-method GFLOP/s: 64 -> 64 channels at 8 x 8
/// forward 72 direct / 115 F2 / 112 F4, weight gradient 44 / 77 / 63; at 16 x 16 forward
/// 86 / 119 / 141, weight gradient 61 / 92 / 104).
pub(crate) fn winograd_tile(s: &Conv2dShape) -> WinogradTile {
    if s.out_h().min(s.out_w()) > 8 {
        WinogradTile::F4
    } else {
        WinogradTile::F2
    }
}

/// Whether [`ConvAlgo::Auto`] takes Winograd for a stride-1 3x3 shape: with at least
/// [`AUTO_MIN_CHANNELS`] input and output channels.
fn auto_winograd(s: &Conv2dShape) -> bool {
    s.in_c.min(s.out_c) >= AUTO_MIN_CHANNELS
}

/// The fewest input and output channels on which [`ConvAlgo::Auto`] takes Winograd: two
/// vectors of the build's width, 16 on an AVX2 build and 32 on an AVX-512 one. Fewer
/// channels fill too few lanes of the transforms' vectors and make too short products
/// for Winograd to beat the direct kernels, which are at their best there. Measured as for
/// [`winograd_tile`], forward, direct / F4 (F2 at 8 x 8), direct-method GFLOP/s:
///
/// | channels @ size | x86-64-v3 (8 lanes) | AVX-512 (16 lanes) |
/// | --- | --- | --- |
/// | 3 -> 16 @ 32 | 65 / 23 | 84 / 17 |
/// | 8 -> 16 @ 50 | 71 / 72 | 103 / 49 |
/// | 16 -> 16 @ 32 | 85 / 116 | 104 / 95 |
/// | 32 -> 32 @ 16 | 84 / 150 | 109 / 147 |
/// | 64 -> 64 @ 8 | 72 / 115 | 90 / 116 |
///
/// (AVX-512: an Intel Xeon, 2 cores; the weight and input gradients agree: 16 -> 16 @ 32
/// 93 / 83 and 110 / 91, 32 -> 32 @ 16 84 / 119 and 111 / 141.)
pub const AUTO_MIN_CHANNELS: usize = 2 * Lanes::BUILD.count();

/// How [`conv2d_forward`](super::conv2d_forward) computes a shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ForwardPath {
    /// Stride 1, `in_c · kh · kw` of 1, 4 or 9 taps: a kernel per tap count that loads the
    /// input vectors of every tap once per block of output columns and reuses them for
    /// every output channel.
    Taps,
    /// [`ForwardPath::Taps`] with the blocks of two output rows together; exactly 8
    /// output channels.
    TapPairs,
    /// Stride 1, any taps: register tiles of 8 output channels from regrouped weights.
    Grouped,
    /// Any shape: im2col, then `y = W · col + b` by GEMM.
    Gemm,
    /// Kernel area up to 64, any stride: the input split into its stride phases, so every
    /// tap reads at a fixed offset; register tiles of 8 output channels over the flat
    /// output positions (`strided.rs`).
    Polyphase,
    /// Stride 1, 3x3, padding up to 2: Winograd's algorithm on the tile (`winograd/`).
    Winograd(WinogradTile),
}

/// How [`conv2d_backward_weights`](super::conv2d_backward_weights) computes a shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightGradPath {
    /// Stride 1, 3x3 kernel: register blocks of output channels whose 9 accumulators per
    /// channel stay in registers across every image of a chunk.
    Direct3x3,
    /// Stride 1, `kh · kw` of 1, 4, 9 or 25: one vector accumulator per tap of one input
    /// channel, one image at a time.
    DirectArea,
    /// Stride 1, any kernel: a SIMD dot product per tap and output row.
    DirectRows,
    /// Any shape: im2col, then `dW += dy_n · colᵀ` by GEMM.
    Gemm,
    /// Kernel area up to 64, any stride: each image split into its stride phases, then
    /// register tiles of output channels by taps over every image of a chunk
    /// (`strided.rs`).
    Polyphase,
    /// Stride 1, 3x3, padding up to 2: Winograd's weight gradient on the tile
    /// (`winograd/`).
    Winograd(WinogradTile),
}

/// How [`conv2d_backward_input`](super::conv2d_backward_input) computes a shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InputGradPath {
    /// Stride 1, square kernel, `pad < k`: the direct forward pass of the flipped,
    /// transposed kernel over `dy` padded by `k - 1 - pad` (the transposed convolution,
    /// on its own [`Conv2dShape::forward_path`]).
    Transposed,
    /// Any shape: `dcol = Wᵀ · dy_n` by GEMM, then col2im.
    Col2im,
    /// Kernel area up to 64, any stride: each stride phase of the input gradient as the
    /// stride-1 correlation of `dy` with that phase's sub-kernel, on the polyphase
    /// forward's register tiles, then merged (`strided.rs`).
    Polyphase,
    /// Stride 1, 3x3, padding up to 2: the transposed convolution (as
    /// [`InputGradPath::Transposed`]) on Winograd's forward path with the tile.
    Winograd(WinogradTile),
}

impl Conv2dShape {
    /// The forward path this shape takes: stride 1 runs directly on the padded input (the
    /// tap kernels for those of the tap counts 1, 4 and 9 whose input vectors the
    /// instruction set's registers hold, all three with AVX-512, 1 and 4 with AVX2; in row
    /// pairs for 8 output channels with AVX-512; every other tap count on the grouped
    /// tiles); stride 2 with a 1x1 or 3x3 kernel on the polyphase path (no GEMM packing
    /// allocation); any other stride through im2col + GEMM.
    pub fn forward_path(&self) -> ForwardPath {
        if resnet_stride_2(self) {
            ForwardPath::Polyphase
        } else if self.stride != 1 {
            ForwardPath::Gemm
        } else if !has_tap_kernel(self.col_rows()) || self.col_rows() > TILES.tap_kernel_max_taps {
            ForwardPath::Grouped
        } else if TILES.tap_pairs && self.out_c == 8 {
            ForwardPath::TapPairs
        } else {
            ForwardPath::Taps
        }
    }

    /// The weight-gradient path this shape takes: every 3x3 stride-1 convolution the 3x3
    /// kernel; other stride-1 kernels with `in_c <= 3` a direct kernel (per tap
    /// accumulators for areas 1, 4, 9, 25, else dot products per row); stride 2 with a 1x1
    /// kernel, or a 3x3 one with at least `POLYPHASE_DW_MIN_OW` (16) output columns, the
    /// polyphase kernel; everything else im2col + GEMM.
    pub fn weight_grad_path(&self) -> WeightGradPath {
        if resnet_stride_2(self) && (self.kh == 1 || self.out_w() >= POLYPHASE_DW_MIN_OW) {
            WeightGradPath::Polyphase
        } else if self.stride != 1 {
            WeightGradPath::Gemm
        } else if self.kh == 3 && self.kw == 3 {
            WeightGradPath::Direct3x3
        } else if self.in_c > DIRECT_MAX_IN_C {
            WeightGradPath::Gemm
        } else if has_area_kernel(self.kh * self.kw) {
            WeightGradPath::DirectArea
        } else {
            WeightGradPath::DirectRows
        }
    }

    /// The input-gradient path this shape takes: [`InputGradPath::Transposed`] wherever it
    /// can serve the shape (stride 1, square kernel, `pad < k`); stride 2 with a 1x1 or 3x3
    /// kernel [`InputGradPath::Polyphase`] (without col2im's GEMM packing allocation);
    /// everything else, non-square kernels and `pad >= k` included, col2im.
    pub fn input_grad_path(&self) -> InputGradPath {
        self.input_grad_path_for(ConvAlgo::Direct)
    }

    /// Whether `algo` takes Winograd for this shape (one that it computes).
    fn takes_winograd(&self, algo: ConvAlgo) -> bool {
        winograd::supports(self)
            && match algo {
                ConvAlgo::Direct => false,
                ConvAlgo::Winograd => true,
                ConvAlgo::Auto => auto_winograd(self),
            }
    }

    /// The forward path of this shape under `algo`: Winograd where `algo` takes it, else
    /// [`Conv2dShape::forward_path`].
    pub fn forward_path_for(&self, algo: ConvAlgo) -> ForwardPath {
        if self.takes_winograd(algo) {
            ForwardPath::Winograd(winograd_tile(self))
        } else {
            self.forward_path()
        }
    }

    /// The weight-gradient path of this shape under `algo`: Winograd where `algo` takes
    /// it, else [`Conv2dShape::weight_grad_path`].
    pub fn weight_grad_path_for(&self, algo: ConvAlgo) -> WeightGradPath {
        if self.takes_winograd(algo) {
            WeightGradPath::Winograd(winograd_tile(self))
        } else {
            self.weight_grad_path()
        }
    }

    /// The input-gradient path of this shape under `algo`: its transposed convolution on
    /// Winograd where `algo` takes that one, else [`Conv2dShape::input_grad_path`]'s
    /// choice.
    pub fn input_grad_path_for(&self, algo: ConvAlgo) -> InputGradPath {
        if InputGradPath::Transposed.supports(self) && self.transposed().takes_winograd(algo) {
            InputGradPath::Winograd(winograd_tile(&self.transposed()))
        } else if InputGradPath::Transposed.supports(self) {
            InputGradPath::Transposed
        } else if resnet_stride_2(self) {
            InputGradPath::Polyphase
        } else {
            InputGradPath::Col2im
        }
    }

    /// The stride-1 convolution whose forward pass is this one's input gradient on
    /// [`InputGradPath::Transposed`]: `dy` as its input, the weights flipped and
    /// transposed (`W'[c, o, u, v] = W[o, c, k-1-u, k-1-v]`), padding `k - 1 - pad`:
    /// `dx[c, y, x] = Σ_{o,u,v} W[o, c, u, v] · dy[o, y + pad - u, x + pad - v]`.
    /// Only meaningful where that path [supports](InputGradPath::supports) the shape.
    pub(crate) fn transposed(&self) -> Conv2dShape {
        Conv2dShape {
            batch: self.batch,
            in_c: self.out_c,
            h: self.out_h(),
            w: self.out_w(),
            out_c: self.in_c,
            kh: self.kh,
            kw: self.kw,
            stride: 1,
            pad: self.kh - 1 - self.pad,
        }
    }
}

impl ForwardPath {
    /// Every path, for tests and benches.
    pub const ALL: [ForwardPath; 7] = [
        ForwardPath::Taps,
        ForwardPath::TapPairs,
        ForwardPath::Grouped,
        ForwardPath::Gemm,
        ForwardPath::Polyphase,
        ForwardPath::Winograd(WinogradTile::F2),
        ForwardPath::Winograd(WinogradTile::F4),
    ];

    /// Whether this path can compute the shape.
    pub fn supports(self, s: &Conv2dShape) -> bool {
        match self {
            ForwardPath::Taps => s.stride == 1 && has_tap_kernel(s.col_rows()),
            ForwardPath::TapPairs => s.stride == 1 && has_tap_kernel(s.col_rows()) && s.out_c == 8,
            ForwardPath::Grouped => s.stride == 1,
            ForwardPath::Gemm => true,
            ForwardPath::Polyphase => s.kh * s.kw <= MAX_AREA,
            ForwardPath::Winograd(_) => winograd::supports(s),
        }
    }

    /// Scratch values this path needs for the shape: one padded image per chunk (plus
    /// the regrouped weights for [`ForwardPath::Grouped`]), one im2col matrix per chunk,
    /// or Winograd's transformed filters and each chunk's buffers (for the widest
    /// vector, whose channel blocks need the most).
    pub fn scratch_len(self, s: &Conv2dShape) -> usize {
        match self {
            ForwardPath::Taps | ForwardPath::TapPairs => s.chunks() * s.padded_len(),
            ForwardPath::Grouped => s.chunks() * s.padded_len() + s.grouped_weight_len(),
            ForwardPath::Gemm => s.chunks() * s.col_len(),
            ForwardPath::Polyphase => s.chunks() * s.phase_forward_buf_len() + s.grouped_weight_len(),
            ForwardPath::Winograd(t) => winograd::forward_scratch_len(s, t, Lanes::Sixteen.count()),
        }
    }

    /// The vector width the public kernel runs this path at: the build's
    /// ([`Lanes::BUILD`]), the width its register tiles are sized for (16 lanes on an AVX2
    /// build take two registers per vector, which its tiles do not leave room for). Every
    /// forward path gives the same bits at either width. GEMM has no vector code here.
    pub fn build_lanes(self) -> Lanes {
        Lanes::BUILD
    }
}

impl WeightGradPath {
    /// Every path, for tests and benches.
    pub const ALL: [WeightGradPath; 7] = [
        WeightGradPath::Direct3x3,
        WeightGradPath::DirectArea,
        WeightGradPath::DirectRows,
        WeightGradPath::Gemm,
        WeightGradPath::Polyphase,
        WeightGradPath::Winograd(WinogradTile::F2),
        WeightGradPath::Winograd(WinogradTile::F4),
    ];

    /// Whether this path can compute the shape.
    pub fn supports(self, s: &Conv2dShape) -> bool {
        match self {
            WeightGradPath::Direct3x3 => s.stride == 1 && s.kh == 3 && s.kw == 3,
            WeightGradPath::DirectArea => s.stride == 1 && has_area_kernel(s.kh * s.kw),
            WeightGradPath::DirectRows => s.stride == 1,
            WeightGradPath::Gemm => true,
            WeightGradPath::Polyphase => s.kh * s.kw <= MAX_AREA,
            WeightGradPath::Winograd(_) => winograd::supports(s),
        }
    }

    /// Per-chunk lowering buffer: the 3x3 kernel's copies of its images, the padded copy
    /// of one image (other direct kernels) or the im2col matrix. At least 1, so the
    /// buffer splits into one chunk per task.
    pub(crate) fn lowered_len(self, s: &Conv2dShape) -> usize {
        match self {
            WeightGradPath::Direct3x3 => (s.batch.min(BATCH_CHUNK) * s.dw3x3_image_scratch_len()).max(1),
            WeightGradPath::DirectArea | WeightGradPath::DirectRows => s.padded_len(),
            WeightGradPath::Gemm => s.col_len(),
            WeightGradPath::Polyphase => s.phase_weights_buf_len(),
            WeightGradPath::Winograd(t) => winograd::weight_grad_buf_len(s, t, Lanes::Sixteen.count()),
        }
    }

    /// Scratch values this path needs for the shape: per chunk, its partial weight and
    /// bias gradients and its lowering buffer.
    pub fn scratch_len(self, s: &Conv2dShape) -> usize {
        s.chunks() * (s.weight_len() + s.out_c + self.lowered_len(s))
    }

    /// The vector width the public kernel runs this path at, which the weight gradient's
    /// sums depend on. The 3x3 and polyphase kernels' register tiles follow the build
    /// ([`Lanes::BUILD`]); the other direct paths' per-tap accumulators, and the bias
    /// gradient's plane sums of those and of GEMM, run 16 lanes on every build.
    pub fn build_lanes(self) -> Lanes {
        match self {
            WeightGradPath::Direct3x3 | WeightGradPath::Polyphase | WeightGradPath::Winograd(_) => {
                Lanes::BUILD
            }
            WeightGradPath::DirectArea | WeightGradPath::DirectRows | WeightGradPath::Gemm => Lanes::Sixteen,
        }
    }
}

impl InputGradPath {
    /// Every path, for tests and benches.
    pub const ALL: [InputGradPath; 5] = [
        InputGradPath::Transposed,
        InputGradPath::Col2im,
        InputGradPath::Polyphase,
        InputGradPath::Winograd(WinogradTile::F2),
        InputGradPath::Winograd(WinogradTile::F4),
    ];

    /// Whether this path can compute the shape.
    pub fn supports(self, s: &Conv2dShape) -> bool {
        match self {
            InputGradPath::Transposed => s.stride == 1 && s.kh == s.kw && s.pad < s.kh,
            InputGradPath::Col2im => true,
            InputGradPath::Polyphase => s.kh * s.kw <= MAX_AREA,
            InputGradPath::Winograd(_) => {
                InputGradPath::Transposed.supports(s) && winograd::supports(&s.transposed())
            }
        }
    }

    /// Scratch values this path needs for the shape: the flipped weights and the
    /// transposed convolution's forward scratch (Winograd: that scratch, which holds the
    /// flipped weights' transform); or one im2col matrix per chunk.
    pub fn scratch_len(self, s: &Conv2dShape) -> usize {
        match self {
            InputGradPath::Transposed => {
                let t = s.transposed();
                s.weight_len() + t.forward_path().scratch_len(&t)
            }
            InputGradPath::Col2im => s.chunks() * s.col_len(),
            InputGradPath::Polyphase => s.chunks() * s.phase_input_buf_len() + s.phase_grad_weights_len(),
            InputGradPath::Winograd(tile) => ForwardPath::Winograd(tile).scratch_len(&s.transposed()),
        }
    }

    /// The vector width the public kernel runs this path at: the transposed
    /// convolution's forward path's, the build's for the polyphase tiles (col2im has no
    /// lane choice).
    pub fn build_lanes(self, s: &Conv2dShape) -> Lanes {
        match self {
            InputGradPath::Transposed => s.transposed().forward_path().build_lanes(),
            InputGradPath::Col2im | InputGradPath::Polyphase | InputGradPath::Winograd(_) => Lanes::BUILD,
        }
    }
}
