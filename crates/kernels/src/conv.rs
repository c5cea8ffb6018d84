//! 2-D convolution (cross-correlation, as PyTorch's `Conv2d`): forward, weight and bias
//! gradients, input gradient; im2col / col2im lowering and a direct SIMD path.
//!
//! Shapes (all row-major, NCHW, batch first):
//! - input `x`: `[batch, in_c, h, w]`
//! - weight `W`: `[out_c, in_c, kh, kw]`, bias `b`: `[out_c]`
//! - output `y`: `[batch, out_c, oh, ow]` with `oh = (h + 2 pad - kh) / stride + 1`
//!
//! `y[n, o, i, j] = b[o] + Σ_{c, u, v} W[o, c, u, v] · x[n, c, i·stride + u - pad, j·stride + v - pad]`
//! (out-of-range input positions read as zero).
//!
//! Lowered form, per image: `col = im2col(x_n)` is `[in_c·kh·kw, oh·ow]`, then
//! `y_n = W · col + b` (`W` seen as `[out_c, in_c·kh·kw]`). The gradients follow by the
//! chain rule (the seed's eq. 10-12 with `T = W · input + b`):
//! `dW = Σ_n dy_n · col_nᵀ`, `db[o] = Σ_{n, i, j} dy[n, o, i, j]`,
//! `dcol_n = Wᵀ · dy_n`, `dx_n = col2im(dcol_n)`.
//!
//! Which path runs: stride-1 forward passes and input gradients run directly on a
//! zero-padded copy of the input (the input gradient as the forward pass of the flipped,
//! transposed kernel). Weight gradients of 3x3 stride-1 convolutions, any channel count,
//! take a register-blocked direct kernel (`backward_weights_3x3_chunk`), which beats
//! im2col + GEMM at every channel count measured (`benches/kernels.rs`, group
//! `conv_path`, 2 threads: 1.4x at flowernet's 32 to 64 channels, 16x16, up to 7x at
//! seednet's 1 to 8, 50x50); other stride-1 kernels
//! with `in_c <= DIRECT_MAX_IN_C` take a simpler direct kernel; everything else goes
//! through im2col + GEMM.
//!
//! Threads: rayon over fixed chunks of [`BATCH_CHUNK`] images. The weight and bias
//! gradients are summed per chunk, then over chunks in chunk order, so results are
//! bit-identical for any number of threads.

use crate::gemm::{sgemm, MatRef};
use crate::shape::{check_len, check_sizes, ShapeError, MAX_VALUES};
use crate::simd::{self, Vector, LANES};
use rayon::prelude::*;
use wide::{f32x16, f32x8};

/// Images per parallel task. Fixed (not derived from the thread count) so that the
/// per-chunk partial gradient sums, and so the results, do not depend on threads.
pub const BATCH_CHUNK: usize = 4;

/// The weight gradient of a stride-1 convolution whose kernel is not 3x3 takes the direct
/// SIMD path (one image at a time, one vector accumulator per tap) when
/// `in_c <= DIRECT_MAX_IN_C`: with so few input channels the lowered GEMM has a tiny
/// dimension and starves; with more, im2col + GEMM wins. 3x3 stride-1 kernels take the
/// register-blocked 3x3 kernel at any `in_c` ([`Conv2dShape::uses_direct_3x3`]). The
/// forward pass and the input gradient are direct for every stride-1 convolution.
/// `benches/kernels.rs`, group `conv_path`, measures the paths.
pub const DIRECT_MAX_IN_C: usize = 3;

/// Zeros after each padded row of the direct path's input copy: the last, partial vector
/// of a row (16 lanes in the grouped forward kernel with AVX-512) may read up to 15
/// values past the row's end.
pub const DIRECT_ROW_SLACK: usize = 16;

/// The shape of a batched 2-D convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dShape {
    pub batch: usize,
    pub in_c: usize,
    pub h: usize,
    pub w: usize,
    pub out_c: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Conv2dShape {
    /// Checks that the shape describes a convolution with a non-empty output.
    pub fn validate(&self) -> Result<(), ShapeError> {
        let dims = [
            ("batch", self.batch),
            ("in_c", self.in_c),
            ("h", self.h),
            ("w", self.w),
            ("out_c", self.out_c),
            ("kh", self.kh),
            ("kw", self.kw),
            ("stride", self.stride),
        ];
        for (name, v) in dims {
            if v == 0 {
                return Err(ShapeError::Zero {
                    what: "conv2d",
                    field: name,
                });
            }
        }
        // Every size below is a product of at most 5 dimensions, each checked first, so
        // the usize arithmetic of the kernels cannot wrap.
        let (hp, wp) = (
            self.h as u128 + 2 * self.pad as u128,
            self.w as u128 + 2 * self.pad as u128,
        );
        if hp > MAX_VALUES || wp > MAX_VALUES {
            return Err(ShapeError::TooLarge {
                what: "conv2d",
                quantity: "the padded input side",
                values: hp.max(wp),
            });
        }
        if hp < self.kh as u128 || wp < self.kw as u128 {
            return Err(ShapeError::KernelTooLarge {
                what: "conv2d (input size includes padding)",
                kernel: (self.kh, self.kw),
                input: (hp as usize, wp as usize),
            });
        }
        let (oh, ow) = (self.out_h(), self.out_w());
        let (b, ic, oc, h, w) = (self.batch, self.in_c, self.out_c, self.h, self.w);
        let (kh, kw) = (self.kh, self.kw);
        check_sizes(
            "conv2d",
            &[
                ("the input", &[b, ic, h, w]),
                ("the output", &[b, oc, oh, ow]),
                ("the weight", &[oc, ic, kh, kw]),
                ("the im2col matrix", &[b, ic, kh, kw, oh, ow]),
                (
                    "the padded input",
                    &[b, ic, hp as usize, wp as usize + DIRECT_ROW_SLACK],
                ),
            ],
        )
    }

    fn check(&self) {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
    }

    /// Output height, `(h + 2 pad - kh) / stride + 1`.
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.pad - self.kh) / self.stride + 1
    }
    /// Output width, `(w + 2 pad - kw) / stride + 1`.
    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pad - self.kw) / self.stride + 1
    }
    /// Values in one input image, `in_c · h · w`.
    pub fn in_image_len(&self) -> usize {
        self.in_c * self.h * self.w
    }
    /// Values in one output image, `out_c · oh · ow`.
    pub fn out_image_len(&self) -> usize {
        self.out_c * self.out_h() * self.out_w()
    }
    /// Values in the input, `batch · in_c · h · w`.
    pub fn input_len(&self) -> usize {
        self.batch * self.in_image_len()
    }
    /// Values in the output, `batch · out_c · oh · ow`.
    pub fn output_len(&self) -> usize {
        self.batch * self.out_image_len()
    }
    /// Values in the weight, `out_c · in_c · kh · kw`.
    pub fn weight_len(&self) -> usize {
        self.out_c * self.col_rows()
    }
    /// Rows of one image's im2col matrix, `in_c · kh · kw`.
    pub fn col_rows(&self) -> usize {
        self.in_c * self.kh * self.kw
    }
    /// Values in one image's im2col matrix, `in_c · kh · kw · oh · ow`.
    pub fn col_len(&self) -> usize {
        self.col_rows() * self.out_h() * self.out_w()
    }
    /// Number of [`BATCH_CHUNK`]-image tasks the batch is split into.
    pub fn chunks(&self) -> usize {
        self.batch.div_ceil(BATCH_CHUNK)
    }
    /// Whether the weight gradient takes a direct SIMD path (no im2col): every 3x3
    /// stride-1 convolution ([`Conv2dShape::uses_direct_3x3`]), and other stride-1 kernels
    /// with `in_c <= DIRECT_MAX_IN_C`.
    pub fn uses_direct(&self) -> bool {
        self.uses_direct_3x3() || (self.stride == 1 && self.in_c <= DIRECT_MAX_IN_C)
    }
    /// Whether the weight gradient takes the register-blocked 3x3 kernel (stride 1, 3x3
    /// kernel, any channel counts and padding), which keeps its accumulators across the
    /// images of a chunk.
    pub fn uses_direct_3x3(&self) -> bool {
        self.stride == 1 && self.kh == 3 && self.kw == 3
    }
    /// Nominal FLOPs of the forward pass (multiply-adds count 2, padded taps included).
    pub fn forward_flops(&self) -> u64 {
        2 * (self.output_len() as u64) * (self.col_rows() as u64)
    }
    /// Row stride of the zero-padded copy the direct path works on: `w + 2 pad` plus
    /// [`DIRECT_ROW_SLACK`] zeros, so vector loads past the last column stay in the buffer.
    pub fn padded_stride(&self) -> usize {
        self.w + 2 * self.pad + DIRECT_ROW_SLACK
    }
    /// Values in one image's zero-padded copy, `in_c · (h + 2 pad) · padded_stride`.
    pub fn padded_len(&self) -> usize {
        self.in_c * (self.h + 2 * self.pad) * self.padded_stride()
    }
    /// Whether the forward pass runs directly on the padded input (every stride-1
    /// convolution; see `benches/kernels.rs`, group `conv_path`) rather than through im2col
    /// and GEMM.
    pub fn uses_direct_forward(&self) -> bool {
        self.stride == 1
    }
    /// Per-chunk lowering buffer of the weight gradient: the 3x3 kernel's copies of its
    /// images, the padded copy of one image (other direct kernels) or the im2col matrix.
    /// At least 1, so the buffer splits into one chunk per task.
    fn lowered_len(&self) -> usize {
        if self.uses_direct_3x3() {
            (self.batch.min(BATCH_CHUNK) * self.dw3x3_image_scratch_len()).max(1)
        } else if self.uses_direct() {
            self.padded_len()
        } else {
            self.col_len()
        }
    }
    /// Weights regrouped for the direct forward's grouped kernel: `[ceil(out_c / 8), taps, 8]`.
    fn grouped_weight_len(&self) -> usize {
        self.out_c.div_ceil(8) * 8 * self.col_rows()
    }
    /// Scratch values [`conv2d_forward`] needs.
    pub fn forward_scratch_len(&self) -> usize {
        if self.uses_direct_forward() {
            self.chunks() * self.padded_len() + self.grouped_weight_len()
        } else {
            self.chunks() * self.col_len()
        }
    }
    /// Scratch values [`conv2d_backward_weights`] needs.
    pub fn backward_weights_scratch_len(&self) -> usize {
        self.chunks() * (self.weight_len() + self.out_c + self.lowered_len())
    }
    /// Scratch values [`conv2d_backward_input`] needs.
    pub fn backward_input_scratch_len(&self) -> usize {
        match self.transposed() {
            Some(t) => self.weight_len() + t.grouped_weight_len() + self.chunks() * t.padded_len(),
            None => self.chunks() * self.col_len(),
        }
    }
    /// The stride-1 convolution whose forward pass is this one's input gradient, when the
    /// direct path computes it (stride 1, square kernel, `pad < k`): `dy` as its input,
    /// the weights flipped and transposed (`W'[c, o, u, v] = W[o, c, k-1-u, k-1-v]`),
    /// padding `k - 1 - pad`:
    /// `dx[c, y, x] = Σ_{o,u,v} W[o, c, u, v] · dy[o, y + pad - u, x + pad - v]`.
    pub fn transposed(&self) -> Option<Conv2dShape> {
        (self.stride == 1 && self.kh == self.kw && self.pad < self.kh).then(|| Conv2dShape {
            batch: self.batch,
            in_c: self.out_c,
            h: self.out_h(),
            w: self.out_w(),
            out_c: self.in_c,
            kh: self.kh,
            kw: self.kw,
            stride: 1,
            pad: self.kh - 1 - self.pad,
        })
    }
    /// Scratch values that serve all three conv kernels.
    pub fn scratch_len(&self) -> usize {
        self.forward_scratch_len()
            .max(self.backward_weights_scratch_len())
            .max(self.backward_input_scratch_len())
    }
}

fn check_scratch(what: &str, got: usize, want: usize) {
    assert!(
        got >= want,
        "{what}: scratch has {got} values, needs at least {want}"
    );
}

/// Lowers one image `x` (`[in_c, h, w]`) to `col` (`[in_c·kh·kw, oh·ow]`):
/// `col[(c·kh + u)·kw + v, i·ow + j] = x[c, i·stride + u - pad, j·stride + v - pad]`, zero
/// outside the image.
pub fn im2col(s: &Conv2dShape, x: &[f32], col: &mut [f32]) {
    s.check();
    check_len("im2col", "x", x.len(), s.in_image_len());
    check_len("im2col", "col", col.len(), s.col_len());
    let (oh, ow) = (s.out_h(), s.out_w());
    let mut rows = col.chunks_exact_mut(oh * ow);
    for c in 0..s.in_c {
        let plane = &x[c * s.h * s.w..(c + 1) * s.h * s.w];
        for u in 0..s.kh {
            for v in 0..s.kw {
                let row = rows.next().expect("col has in_c·kh·kw rows");
                let (j0, j1) = valid_cols(s, v, ow);
                for (i, out) in row.chunks_exact_mut(ow).enumerate() {
                    let iy = (i * s.stride + u) as isize - s.pad as isize;
                    if iy < 0 || iy >= s.h as isize || j0 >= j1 {
                        out.fill(0.0);
                        continue;
                    }
                    let src = &plane[iy as usize * s.w..(iy as usize + 1) * s.w];
                    out[..j0].fill(0.0);
                    out[j1..].fill(0.0);
                    let x0 = j0 * s.stride + v - s.pad;
                    if s.stride == 1 {
                        out[j0..j1].copy_from_slice(&src[x0..x0 + (j1 - j0)]);
                    } else {
                        for (k, o) in out[j0..j1].iter_mut().enumerate() {
                            *o = src[x0 + k * s.stride];
                        }
                    }
                }
            }
        }
    }
}

/// The inverse scatter of [`im2col`]: `dx` (`[in_c, h, w]`) is zeroed, then every entry of
/// `dcol` (`[in_c·kh·kw, oh·ow]`) is added at the input position it was read from.
pub fn col2im(s: &Conv2dShape, dcol: &[f32], dx: &mut [f32]) {
    s.check();
    check_len("col2im", "dcol", dcol.len(), s.col_len());
    check_len("col2im", "dx", dx.len(), s.in_image_len());
    dx.fill(0.0);
    let (oh, ow) = (s.out_h(), s.out_w());
    let mut rows = dcol.chunks_exact(oh * ow);
    for c in 0..s.in_c {
        let plane = &mut dx[c * s.h * s.w..(c + 1) * s.h * s.w];
        for u in 0..s.kh {
            for v in 0..s.kw {
                let row = rows.next().expect("dcol has in_c·kh·kw rows");
                let (j0, j1) = valid_cols(s, v, ow);
                if j0 >= j1 {
                    continue;
                }
                for (i, src) in row.chunks_exact(ow).enumerate() {
                    let iy = (i * s.stride + u) as isize - s.pad as isize;
                    if iy < 0 || iy >= s.h as isize {
                        continue;
                    }
                    let dst = &mut plane[iy as usize * s.w..(iy as usize + 1) * s.w];
                    let x0 = j0 * s.stride + v - s.pad;
                    if s.stride == 1 {
                        simd::add_assign(&mut dst[x0..x0 + (j1 - j0)], &src[j0..j1]);
                    } else {
                        for (k, g) in src[j0..j1].iter().enumerate() {
                            dst[x0 + k * s.stride] += g;
                        }
                    }
                }
            }
        }
    }
}

/// Output columns `j0..j1` whose input column `j·stride + v - pad` lies inside the image.
fn valid_cols(s: &Conv2dShape, v: usize, ow: usize) -> (usize, usize) {
    // j·stride + v >= pad  <=>  j >= ceil((pad - v) / stride)
    let j0 = if s.pad > v {
        (s.pad - v).div_ceil(s.stride)
    } else {
        0
    };
    // j·stride + v - pad <= w - 1  <=>  j <= (w - 1 + pad - v) / stride
    let j1 = if s.w + s.pad > v {
        ((s.w - 1 + s.pad - v) / s.stride + 1).min(ow)
    } else {
        0
    };
    (j0.min(j1), j1)
}

/// Forward convolution, `y = conv(x, W) + b` (module docs give the equation).
///
/// `x`: `[batch, in_c, h, w]`, `weight`: `[out_c, in_c, kh, kw]`, `bias`: `[out_c]` or
/// `None`, `y`: `[batch, out_c, oh, ow]` (overwritten), `scratch`: at least
/// [`Conv2dShape::forward_scratch_len`] values.
pub fn conv2d_forward(
    s: &Conv2dShape,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    scratch: &mut [f32],
) {
    const WHAT: &str = "conv2d_forward";
    s.check();
    check_len(WHAT, "x", x.len(), s.input_len());
    check_len(WHAT, "weight", weight.len(), s.weight_len());
    if let Some(b) = bias {
        check_len(WHAT, "bias", b.len(), s.out_c);
    }
    check_len(WHAT, "y", y.len(), s.output_len());
    check_scratch(WHAT, scratch.len(), s.forward_scratch_len());
    let (il, ol) = (s.in_image_len(), s.out_image_len());
    if s.uses_direct_forward() {
        let pl = s.padded_len();
        let (bufs, grouped) = scratch.split_at_mut(s.chunks() * pl);
        let grouped = &mut grouped[..s.grouped_weight_len()];
        if !has_tap_kernel(s.col_rows()) {
            group_weights(s, weight, grouped);
        }
        let grouped = &*grouped;
        y.par_chunks_mut(BATCH_CHUNK * ol)
            .zip(x.par_chunks(BATCH_CHUNK * il))
            .zip(bufs.par_chunks_mut(pl))
            .for_each(|((yc, xc), buf)| {
                for (yn, xn) in yc.chunks_exact_mut(ol).zip(xc.chunks_exact(il)) {
                    pad_image(s, xn, buf);
                    direct_forward_image(s, buf, weight, grouped, bias, yn);
                }
            });
        return;
    }
    let cl = s.col_len();
    let p = s.out_h() * s.out_w();
    y.par_chunks_mut(BATCH_CHUNK * ol)
        .zip(x.par_chunks(BATCH_CHUNK * il))
        .zip(scratch[..s.forward_scratch_len()].par_chunks_mut(cl))
        .for_each(|((yc, xc), col)| {
            for (yn, xn) in yc.chunks_exact_mut(ol).zip(xc.chunks_exact(il)) {
                im2col(s, xn, col);
                let beta = match bias {
                    Some(b) => {
                        for (row, &bo) in yn.chunks_exact_mut(p).zip(b) {
                            row.fill(bo);
                        }
                        1.0
                    }
                    None => 0.0,
                };
                sgemm(
                    1.0,
                    MatRef::row_major(weight, s.out_c, s.col_rows()),
                    MatRef::row_major(col, s.col_rows(), p),
                    beta,
                    yn,
                    p,
                );
            }
        });
}

/// Copies one image `x` (`[in_c, h, w]`) into `buf` (`[in_c, h + 2 pad, padded_stride]`):
/// the image at row and column offset `pad`, zeros everywhere else. The direct kernels
/// then read every tap of every output inside `buf`, with no bounds or padding checks.
fn pad_image(s: &Conv2dShape, x: &[f32], buf: &mut [f32]) {
    let (hp, wp, pad, w) = (s.h + 2 * s.pad, s.padded_stride(), s.pad, s.w);
    // Each value written once: the pad rows whole, the image rows in three parts.
    for (plane, src) in buf[..s.padded_len()]
        .chunks_exact_mut(hp * wp)
        .zip(x.chunks_exact(s.h * w))
    {
        let (top, rest) = plane.split_at_mut(pad * wp);
        let (rows, bottom) = rest.split_at_mut(s.h * wp);
        top.fill(0.0);
        bottom.fill(0.0);
        for (row, xr) in rows.chunks_exact_mut(wp).zip(src.chunks_exact(w)) {
            row[..pad].fill(0.0);
            row[pad..pad + w].copy_from_slice(xr);
            row[pad + w..].fill(0.0);
        }
    }
}

/// Direct forward of one image for stride 1 (module docs give the equation) from its
/// zero-padded copy `xp` ([`pad_image`]).
///
/// For the small tap counts `in_c · kh · kw` 1, 4 and 9 (seednet's 1-channel 3x3) a
/// monomorphised kernel ([`direct_forward_taps`]) loads the input vectors of every tap
/// once per block of output columns and reuses them for every output channel; every
/// other count takes the register-tiled [`direct_forward_grouped`]. From 18 taps up the
/// tap kernel's `T` input vectors plus 8 accumulators outgrow the registers and the
/// grouped kernel is 1.25x to 1.6x faster (1 thread, AVX-512, batch 32: 18 taps 143 ->
/// 180 GFLOP/s, 25 taps 120 -> 150, flowernet's first layer, 27 taps, 152 -> 199); at 9
/// taps and fewer the tap kernel is 5-25 % faster.
#[inline(never)]
fn direct_forward_image(
    s: &Conv2dShape,
    xp: &[f32],
    weight: &[f32],
    grouped: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    match s.col_rows() {
        1 => direct_forward_taps::<1>(s, xp, weight, bias, y),
        4 => direct_forward_taps::<4>(s, xp, weight, bias, y),
        9 => direct_forward_taps::<9>(s, xp, weight, bias, y),
        taps => {
            debug_assert!(!has_tap_kernel(taps), "has_tap_kernel lists {taps}");
            direct_forward_grouped(s, xp, grouped, bias, y)
        }
    }
}

/// Per tap `t = (c·kh + u)·kw + v`: its offset `c·hp·wp + u·wp + v` in the padded copy.
fn tap_offsets<const T: usize>(s: &Conv2dShape) -> [usize; T] {
    let (hp, wp) = (s.h + 2 * s.pad, s.padded_stride());
    std::array::from_fn(|t| {
        let (c, u, v) = (t / (s.kh * s.kw), t / s.kw % s.kh, t % s.kw);
        c * hp * wp + u * wp + v
    })
}

/// Direct forward for `T = in_c · kh · kw` taps: per output row, blocks of 16 columns
/// ([`forward_block`]), then 8; the last partial block is computed whole and stored in
/// part. With exactly 8 output channels (seednet) and AVX-512, rows go in pairs: the
/// 16-column blocks of rows `i` and `i + 1` together ([`tap_pair_block`]), then the rest
/// of both rows as single blocks; an odd last row alone.
fn direct_forward_taps<const T: usize>(
    s: &Conv2dShape,
    xp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    debug_assert_eq!(s.col_rows(), T);
    let (oh, ow) = (s.out_h(), s.out_w());
    let off = tap_offsets::<T>(s);
    // Columns `j ..` of output row `i`, one block at a time.
    let row_from = |y: &mut [f32], i: usize, mut j: usize| {
        while j + 16 <= ow {
            forward_block::<T, f32x16>(s, xp, weight, bias, y, &off, i, j, 16);
            j += 16;
        }
        while j < ow {
            forward_block::<T, f32x8>(s, xp, weight, bias, y, &off, i, j, LANES.min(ow - j));
            j += LANES;
        }
    };
    let pairs = TAP_PAIRS && s.out_c == 8;
    let mut i = 0;
    while i < oh {
        if pairs && i + 1 < oh {
            let mut j = 0;
            while j + 16 <= ow {
                tap_pair_block::<T>(s, xp, weight, bias, y, &off, i, j);
                j += 16;
            }
            row_from(y, i, j);
            row_from(y, i + 1, j);
            i += 2;
        } else {
            row_from(y, i, 0);
            i += 1;
        }
    }
}

/// Whether [`direct_forward_taps`] pairs rows for 8 output channels: with AVX-512 (2 · 8
/// accumulators, 2 input vectors per tap; 1.2x at seednet's 1 -> 8 channels, 132 -> 157
/// GFLOP/s on 1 thread, batch 32). With 16 or more channels the single-row block, which
/// shares its `T` input vectors across the channel groups, is as fast or faster (1 -> 16:
/// 158 vs 152, 1 -> 32: 170 vs 155).
const TAP_PAIRS: bool = simd::AVX512;

/// Outputs `(i .. i + 2, j .. j + 16)` of the 8 output channels of [`direct_forward_taps`]:
/// `y[o, i', j'] = b[o] + Σ_t W[o, t] · xp[tap t at (i', j')]`, summed in tap order (as
/// [`channels_block`] does), 16 accumulators; each tap's two input vectors are loaded
/// where used, its 8 weights broadcast once for both rows. Index loops (not iterators)
/// over the accumulators, so every index is a constant once unrolled and they stay in
/// registers.
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
#[inline(always)]
fn tap_pair_block<const T: usize>(
    s: &Conv2dShape,
    xp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    off: &[usize; T],
    i: usize,
    j: usize,
) {
    debug_assert_eq!(s.out_c, 8);
    let (wp, ow) = (s.padded_stride(), s.out_w());
    let plane = s.out_h() * ow;
    let base = [i * wp + j, (i + 1) * wp + j];
    let at = [i * ow + j, (i + 1) * ow + j];
    let w = &weight[..8 * T];
    let b: [f32; 8] = std::array::from_fn(|g| bias.map_or(0.0, |b| b[g]));
    let mut acc: [[f32x16; 8]; 2] = [std::array::from_fn(|g| f32x16::splat(b[g])); 2];
    for t in 0..T {
        let xv: [f32x16; 2] = std::array::from_fn(|p| <f32x16 as Vector>::load(&xp[off[t] + base[p]..]));
        for g in 0..8 {
            let wv = f32x16::splat(w[g * T + t]);
            for p in 0..2 {
                acc[p][g] = xv[p].mul_add(wv, acc[p][g]);
            }
        }
    }
    for g in 0..8 {
        for p in 0..2 {
            let o = g * plane + at[p];
            acc[p][g].store_prefix(&mut y[o..o + 16], 16);
        }
    }
}

/// Outputs `(i, j .. j + n)` of every output channel (`n <= V` lanes): the input vector of
/// each tap is loaded once, then channels go in groups of 8/4/1 so several independent
/// FMA chains hide the FMA latency.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_block<const T: usize, V: Vector>(
    s: &Conv2dShape,
    xp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    off: &[usize; T],
    i: usize,
    j: usize,
    n: usize,
) {
    let ow = s.out_w();
    let base = i * s.padded_stride() + j;
    let xv: [V; T] = std::array::from_fn(|t| V::load(&xp[off[t] + base..]));
    let (plane, at) = (s.out_h() * ow, i * ow + j);
    let mut o = 0;
    while o + 8 <= s.out_c {
        channels_block::<T, 8, V>(o, &xv, weight, bias, y, plane, at, n);
        o += 8;
    }
    while o + 4 <= s.out_c {
        channels_block::<T, 4, V>(o, &xv, weight, bias, y, plane, at, n);
        o += 4;
    }
    while o < s.out_c {
        channels_block::<T, 1, V>(o, &xv, weight, bias, y, plane, at, n);
        o += 1;
    }
}

/// Output channels `o0 .. o0 + G` of one block of output columns at offset `at` of each
/// `plane`-sized output channel, its first `n` lanes stored: `y = b + Σ_t W[o, t] · xv[t]`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn channels_block<const T: usize, const G: usize, V: Vector>(
    o0: usize,
    xv: &[V; T],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    plane: usize,
    at: usize,
    n: usize,
) {
    let w: &[f32] = &weight[o0 * T..(o0 + G) * T];
    let mut acc: [V; G] = std::array::from_fn(|g| V::splat(bias.map_or(0.0, |b| b[o0 + g])));
    for t in 0..T {
        for g in 0..G {
            acc[g] = xv[t].mul_add(V::splat(w[g * T + t]), acc[g]);
        }
    }
    for (g, a) in acc.into_iter().enumerate() {
        a.store_prefix(&mut y[(o0 + g) * plane + at..], n);
    }
}

/// Whether [`direct_forward_image`] has a kernel specialised for this tap count (those
/// read the weights as they are; the others read them regrouped by [`group_weights`]).
fn has_tap_kernel(taps: usize) -> bool {
    matches!(taps, 1 | 4 | 9)
}

/// Regroups `weight` (`[out_c, taps]`) as `[ceil(out_c / 8), taps, 8]`, zero-filling the
/// channels past `out_c`: the 8 weights one input vector meets are then adjacent.
fn group_weights(s: &Conv2dShape, weight: &[f32], grouped: &mut [f32]) {
    let taps = s.col_rows();
    for (og, block) in grouped.chunks_exact_mut(8 * taps).enumerate() {
        for (t, lane) in block.chunks_exact_mut(8).enumerate() {
            for (g, v) in lane.iter_mut().enumerate() {
                let o = og * 8 + g;
                *v = if o < s.out_c { weight[o * taps + t] } else { 0.0 };
            }
        }
    }
}

/// Output vectors per register tile of [`direct_forward_grouped`]: 2 with AVX-512
/// (2 · 8 accumulators, 2 input vectors and the broadcast weights of its 32 registers;
/// 3 vectors, 24 accumulators, measured no faster and spill), 1 with AVX2 (8 + 1 of its
/// 16; a 2-vector tile spills and runs 25 % slower).
const FWD_TILE: usize = if simd::AVX512 { 2 } else { 1 };

/// One output vector of a tile: output row `i`, columns `j .. j + n` (`n <= V::LANES`),
/// `x` = `i · padded_stride + j` (its first tap's input offset in a plane of the padded
/// copy), `y` = `i · ow + j` (its offset in an output plane).
#[derive(Clone, Copy)]
struct OutVec {
    x: usize,
    y: usize,
    n: usize,
}

/// Direct forward for any tap count, from the padded copy and the grouped weights
/// ([`group_weights`]):
///
/// `y[o, i, j] = b[o] + Σ_{c,u,v} W[o, c, u, v] · xp[c, i + u, j + v]`.
///
/// Shapes: `xp` one image's padded copy `[in_c, h + 2 pad, padded_stride]`, `grouped`
/// `[ceil(out_c / 8), in_c · kh · kw, 8]`, `bias` `[out_c]`, `y` one output image
/// `[out_c, oh, ow]` (overwritten).
///
/// Blocking: each output row is cut into `ceil(ow / L)` vectors of `L` = [`simd::WIDE_LANES`]
/// columns (the last one partial: computed whole and stored in part; its extra lanes
/// read on into the row's [`DIRECT_ROW_SLACK`] and are discarded). The vectors of the
/// whole plane, in row-major order, go in tiles of [`FWD_TILE`] (a 1-vector tile for an
/// odd last one), so a tile holds two segments of one row (`ow` 32) or the same columns
/// of two consecutive rows (`ow <= 16`), or straddles a row end. Per group of 8 output
/// channels (outer loop: its weights stay in L1) and tile, `FWD_TILE · 8` vector
/// accumulators start at the bias; per tap `(c, u, v)` one input vector per tile vector
/// and 8 broadcast weights feed `FWD_TILE · 8` independent FMAs (`FWD_TILE + 8` loads).
/// The taps of one kernel row `(c, u)` come from one bounds-checked slice per tile
/// vector, `kw` constant for the common widths, so the tap loop has no per-tap checks.
/// Each output is summed in tap order from its bias, so results depend only on the shape
/// (and equal the tap kernels' order).
fn direct_forward_grouped(s: &Conv2dShape, xp: &[f32], grouped: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    if simd::WIDE_LANES == 16 {
        grouped_kw::<f32x16>(s, xp, grouped, bias, y);
    } else {
        grouped_kw::<f32x8>(s, xp, grouped, bias, y);
    }
}

/// [`grouped_tiles`] with the common kernel widths as constants (the tap loop unrolled).
#[inline(always)]
fn grouped_kw<V: Vector>(s: &Conv2dShape, xp: &[f32], grouped: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    match s.kw {
        1 => grouped_tiles::<V>(s, xp, grouped, bias, y, 1),
        2 => grouped_tiles::<V>(s, xp, grouped, bias, y, 2),
        3 => grouped_tiles::<V>(s, xp, grouped, bias, y, 3),
        5 => grouped_tiles::<V>(s, xp, grouped, bias, y, 5),
        kw => grouped_tiles::<V>(s, xp, grouped, bias, y, kw),
    }
}

/// Every tile of every channel group of [`direct_forward_grouped`], `kw == s.kw`.
#[inline(always)]
fn grouped_tiles<V: Vector>(
    s: &Conv2dShape,
    xp: &[f32],
    grouped: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    kw: usize,
) {
    debug_assert_eq!(s.kw, kw);
    let (oh, ow, wp) = (s.out_h(), s.out_w(), s.padded_stride());
    let per_row = ow.div_ceil(V::LANES);
    let count = oh * per_row;
    let vec_at = |q: usize| {
        let (i, j) = (q / per_row, q % per_row * V::LANES);
        OutVec {
            x: i * wp + j,
            y: i * ow + j,
            n: V::LANES.min(ow - j),
        }
    };
    let plane = oh * ow;
    for (og, wg) in grouped.chunks_exact(8 * s.col_rows()).enumerate() {
        let b: [f32; 8] = std::array::from_fn(|g| {
            let o = og * 8 + g;
            bias.filter(|_| o < s.out_c).map_or(0.0, |b| b[o])
        });
        let outs = s.out_c.min(og * 8 + 8) - og * 8;
        let yg = &mut y[og * 8 * plane..(og * 8 + outs) * plane];
        let mut q = 0;
        while q + FWD_TILE <= count {
            grouped_tile::<V, FWD_TILE>(
                s,
                xp,
                wg,
                &b,
                kw,
                std::array::from_fn(|k| vec_at(q + k)),
                yg,
                plane,
            );
            q += FWD_TILE;
        }
        while q < count {
            grouped_tile::<V, 1>(s, xp, wg, &b, kw, [vec_at(q)], yg, plane);
            q += 1;
        }
    }
}

/// One tile of [`direct_forward_grouped`]: the `P` output vectors `at` of one group of 8
/// output channels, `wg` its grouped weights (`[taps, 8]`), `b` its biases, `yg` its
/// output planes (`plane` values each, only the real channels).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn grouped_tile<V: Vector, const P: usize>(
    s: &Conv2dShape,
    xp: &[f32],
    wg: &[f32],
    b: &[f32; 8],
    kw: usize,
    at: [OutVec; P],
    yg: &mut [f32],
    plane: usize,
) {
    let (wp, plane_in) = (s.padded_stride(), (s.h + 2 * s.pad) * s.padded_stride());
    let mut acc: [[V; 8]; P] = [std::array::from_fn(|g| V::splat(b[g])); P];
    // One row of taps (c, u, v = 0 .. kw) at a time: its kw · 8 weights and, per tile
    // vector, the kw - 1 + L input values its kw shifted vectors read.
    let mut w_rows = wg.chunks_exact(kw * 8);
    for c in 0..s.in_c {
        for u in 0..s.kh {
            let w = w_rows.next().expect("in_c · kh rows of taps");
            let off = c * plane_in + u * wp;
            let xr: [&[f32]; P] = std::array::from_fn(|p| &xp[off + at[p].x..][..kw - 1 + V::LANES]);
            for v in 0..kw {
                let xv: [V; P] = std::array::from_fn(|p| V::load(&xr[p][v..]));
                let wv = &w[v * 8..v * 8 + 8];
                for g in 0..8 {
                    let wgv = V::splat(wv[g]);
                    for p in 0..P {
                        acc[p][g] = xv[p].mul_add(wgv, acc[p][g]);
                    }
                }
            }
        }
    }
    for p in 0..P {
        store_channels(acc[p], yg, plane, at[p]);
    }
}

/// Stores one output vector `at` of each channel of a group (`yg`: its real channels'
/// planes of `plane` values). Not inlined, and given copies of the accumulators, so
/// the tap loop never indexes its accumulators at run time (which would keep them in
/// memory).
#[inline(never)]
fn store_channels<V: Vector>(acc: [V; 8], yg: &mut [f32], plane: usize, at: OutVec) {
    for (a, yo) in acc.into_iter().zip(yg.chunks_exact_mut(plane)) {
        a.store_prefix(&mut yo[at.y..], at.n);
    }
}

/// Weight and bias gradients: `dW = Σ_n dy_n · col_nᵀ` (`[out_c, in_c, kh, kw]`,
/// overwritten) and `db[o] = Σ_{n,i,j} dy[n, o, i, j]` (`[out_c]`, overwritten, skipped when
/// `None`).
///
/// `x`: the forward input `[batch, in_c, h, w]`; `dy`: `[batch, out_c, oh, ow]`;
/// `scratch`: at least [`Conv2dShape::backward_weights_scratch_len`] values. Partial sums
/// are taken per [`BATCH_CHUNK`] images and added in chunk order (thread-count independent).
/// Paths: 3x3 stride 1 ([`Conv2dShape::uses_direct_3x3`]) a register-blocked direct kernel
/// over each chunk, other stride-1 kernels with `in_c <= DIRECT_MAX_IN_C` a direct kernel
/// per image, everything else im2col + GEMM per image (module docs).
pub fn conv2d_backward_weights(
    s: &Conv2dShape,
    x: &[f32],
    dy: &[f32],
    grad_weight: &mut [f32],
    grad_bias: Option<&mut [f32]>,
    scratch: &mut [f32],
) {
    const WHAT: &str = "conv2d_backward_weights";
    s.check();
    check_len(WHAT, "x", x.len(), s.input_len());
    check_len(WHAT, "dy", dy.len(), s.output_len());
    check_len(WHAT, "grad_weight", grad_weight.len(), s.weight_len());
    if let Some(gb) = &grad_bias {
        check_len(WHAT, "grad_bias", gb.len(), s.out_c);
    }
    check_scratch(WHAT, scratch.len(), s.backward_weights_scratch_len());
    let (il, ol, wl) = (s.in_image_len(), s.out_image_len(), s.weight_len());
    let part_len = wl + s.out_c;
    let (partials, rest) = scratch.split_at_mut(s.chunks() * part_len);
    let p = s.out_h() * s.out_w();
    let want_bias = grad_bias.is_some();
    partials
        .par_chunks_mut(part_len)
        .zip(x.par_chunks(BATCH_CHUNK * il))
        .zip(dy.par_chunks(BATCH_CHUNK * ol))
        .zip(rest[..s.chunks() * s.lowered_len()].par_chunks_mut(s.lowered_len()))
        .for_each(|(((part, xc), dyc), buf)| {
            // This chunk's partial sums, in image order: [weight gradient, bias gradient].
            let (pw, pb) = part.split_at_mut(wl);
            pb.fill(0.0);
            if s.uses_direct_3x3() {
                backward_weights_3x3_chunk(s, xc, dyc, buf, pw, want_bias.then_some(pb));
                return;
            }
            pw.fill(0.0);
            for (xn, dyn_) in xc.chunks_exact(il).zip(dyc.chunks_exact(ol)) {
                if s.uses_direct() {
                    pad_image(s, xn, buf);
                    direct_backward_weights_image(s, buf, dyn_, pw);
                } else {
                    im2col(s, xn, buf);
                    sgemm(
                        1.0,
                        MatRef::row_major(dyn_, s.out_c, p),
                        MatRef::transposed(buf, p, s.col_rows()),
                        1.0,
                        pw,
                        s.col_rows(),
                    );
                }
                if want_bias {
                    for (g, row) in pb.iter_mut().zip(dyn_.chunks_exact(p)) {
                        *g += plane_sum(row);
                    }
                }
            }
        });
    let mut parts = partials.chunks_exact(part_len);
    let first = parts.next().expect("batch >= 1");
    grad_weight.copy_from_slice(&first[..wl]);
    let mut gb = grad_bias;
    if let Some(gb) = gb.as_deref_mut() {
        gb.copy_from_slice(&first[wl..]);
    }
    for part in parts {
        simd::add_assign(grad_weight, &part[..wl]);
        if let Some(gb) = gb.as_deref_mut() {
            simd::add_assign(gb, &part[wl..]);
        }
    }
}

/// Output channels per register block of [`backward_weights_3x3_chunk`]: 2 with AVX-512
/// (2 · 9 accumulators, 2 · 3 `dy` rows, 3 input vectors and 2 bias accumulators: 29 of
/// its 32 vector registers), 1 otherwise (9 + 3 + 3 + 1 = 16, AVX2's 16).
const DW3X3_GROUP: usize = if simd::AVX512 { 2 } else { 1 };

/// How [`backward_weights_3x3_chunk`] covers the `ow` output columns: full strips of
/// [`simd::WIDE_LANES`] lanes up to `wide_end`, then (AVX-512 only) one full 8-lane strip when
/// exactly 8 columns remain, else the `ow - wide_end` remaining columns as one strip of
/// `tail_lanes` lanes (0: none) whose `dy` comes from a zero-padded copy.
#[derive(Clone, Copy)]
struct Dw3x3Strips {
    wide_end: usize,
    eight: bool,
    tail_lanes: usize,
}

impl Dw3x3Strips {
    fn new(ow: usize) -> Self {
        let wide_end = ow / simd::WIDE_LANES * simd::WIDE_LANES;
        let rem = ow - wide_end;
        let eight = simd::WIDE_LANES == 16 && rem == 8;
        let tail_lanes = match rem {
            0 => 0,
            _ if eight => 0,
            r if r > 8 => 16,
            _ => 8,
        };
        Self {
            wide_end,
            eight,
            tail_lanes,
        }
    }
}

impl Conv2dShape {
    /// Whether [`backward_weights_3x3_chunk`] reads the input as it is (no padding and
    /// no partial strip, whose vectors would read past a row's end) instead of a
    /// zero-padded copy.
    fn dw3x3_reads_x_directly(&self) -> bool {
        self.pad == 0 && Dw3x3Strips::new(self.out_w()).tail_lanes == 0
    }
    /// Per-image scratch of [`backward_weights_3x3_chunk`]: the zero-padded copy (unless
    /// it reads the input directly), then room for the zero-padded copy of the last `dy`
    /// columns, `out_c · oh · 16`, when `ow` is not a multiple of 16 (the most any build
    /// uses).
    fn dw3x3_image_scratch_len(&self) -> usize {
        let padded = if self.dw3x3_reads_x_directly() {
            0
        } else {
            self.padded_len()
        };
        let tail = if self.out_w() % 16 == 0 {
            0
        } else {
            self.out_c * self.out_h() * 16
        };
        padded + tail
    }
}

/// A view of `[n, c, rows, cols]` values: plane `(n, c)` starts at `n · image + c · plane`,
/// its rows are `row` values apart, and column `j` of the kernel's output columns is at
/// `j - shift` in a row.
#[derive(Clone, Copy)]
struct Planes<'a> {
    data: &'a [f32],
    image: usize,
    plane: usize,
    row: usize,
    shift: usize,
}

impl<'a> Planes<'a> {
    fn get(&self, n: usize, c: usize) -> &'a [f32] {
        let at = n * self.image + c * self.plane;
        &self.data[at..at + self.plane]
    }
}

/// Direct weight (and bias) gradient of a 3x3 stride-1 convolution over the images of
/// one chunk, `xc` (`[images, in_c, h, w]`) and `dyc` (`[images, out_c, oh, ow]`), written
/// (not added) to `gw` (`[out_c, in_c, 3, 3]`) and `gb` (`[out_c]`, when asked for):
///
/// `gw[o, c, u, v] = Σ_n Σ_{i,j} dy[n, o, i, j] · xp[n, c, i + u, j + v]`,
/// `gb[o] = Σ_n Σ_{i,j} dy[n, o, i, j]`,
///
/// `xp` the zero-padded input. `buf` (at least `images ·`
/// [`Conv2dShape::dw3x3_image_scratch_len`] values) takes the padded copies
/// ([`pad_image`]; none when `pad == 0` and every strip is full, then the kernel reads
/// `xc` itself), then the zero-padded last `dy` columns of a partial strip.
///
/// Per block of [`DW3X3_GROUP`] output channels and one input channel, 9 vector
/// accumulators per output channel stay in registers across every column strip of every
/// image of the chunk; then one horizontal sum each. A strip (16 output columns with
/// AVX-512, else 8; [`Dw3x3Strips`]) walks down the input rows `r`: the 3 shifted input
/// vectors `xp[c, r, j + v ..]` are loaded once and meet the `dy` rows `i = r - u`
/// (`u = 0, 1, 2`) held in registers, one new `dy` row per output channel per step:
/// 3 + G loads for 9 · G FMAs. With the first input channel, each `dy` row loaded is also
/// added to one bias accumulator per output channel. The last, partial strip reads `dy`
/// from a copy of those columns with zeros past `ow`
/// (`[images, out_c, oh, tail_lanes]`), so the input values its extra lanes meet (real
/// columns or row slack, inside the padded copy) add nothing.
///
/// The summation order (lanes of each strip width, then images, strips and rows in order)
/// depends only on the shape, never on threads.
fn backward_weights_3x3_chunk(
    s: &Conv2dShape,
    xc: &[f32],
    dyc: &[f32],
    buf: &mut [f32],
    gw: &mut [f32],
    mut gb: Option<&mut [f32]>,
) {
    debug_assert!(s.kh == 3 && s.kw == 3 && s.stride == 1);
    let (il, oh, ow) = (s.in_image_len(), s.out_h(), s.out_w());
    let images = xc.len() / il;
    let direct = s.dw3x3_reads_x_directly();
    let pl = if direct { 0 } else { s.padded_len() };
    let (pads, tail) = buf.split_at_mut(images * pl);
    let xp = if direct {
        Planes {
            data: xc,
            image: il,
            plane: s.h * s.w,
            row: s.w,
            shift: 0,
        }
    } else {
        for (xn, bn) in xc.chunks_exact(il).zip(pads.chunks_exact_mut(pl)) {
            pad_image(s, xn, bn);
        }
        Planes {
            data: pads,
            image: pl,
            plane: (s.h + 2 * s.pad) * s.padded_stride(),
            row: s.padded_stride(),
            shift: 0,
        }
    };
    let plan = Dw3x3Strips::new(ow);
    let tl = plan.tail_lanes;
    if tl > 0 {
        let rem = ow - plan.wide_end;
        let rows = dyc.chunks_exact(ow).take(images * s.out_c * oh);
        for (dst, src) in tail.chunks_exact_mut(tl).zip(rows) {
            dst[..rem].copy_from_slice(&src[plan.wide_end..]);
            dst[rem..].fill(0.0);
        }
    }
    let dys = [
        Planes {
            data: dyc,
            image: s.out_image_len(),
            plane: oh * ow,
            row: ow,
            shift: 0,
        },
        Planes {
            data: tail,
            image: s.out_c * oh * tl,
            plane: oh * tl,
            row: tl,
            shift: plan.wide_end,
        },
    ];
    let mut o = 0;
    while o < s.out_c {
        let gbo = gb.as_deref_mut();
        if o + DW3X3_GROUP <= s.out_c {
            dw3x3_group::<DW3X3_GROUP>(s, xp, dys, plan, images, o, gw, gbo);
            o += DW3X3_GROUP;
        } else {
            dw3x3_group::<1>(s, xp, dys, plan, images, o, gw, gbo);
            o += 1;
        }
    }
}

/// Output channels `o0 .. o0 + G` of [`backward_weights_3x3_chunk`], every input channel;
/// `dys`: `dy` as it is, and its zero-padded last columns.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn dw3x3_group<const G: usize>(
    s: &Conv2dShape,
    xp: Planes<'_>,
    dys: [Planes<'_>; 2],
    plan: Dw3x3Strips,
    images: usize,
    o0: usize,
    gw: &mut [f32],
    gb: Option<&mut [f32]>,
) {
    let mut bias = [0.0f32; G];
    for c in 0..s.in_c {
        let mut sums = [[0.0f32; 9]; G];
        if c == 0 && gb.is_some() {
            dw3x3_passes::<G, true>(s, xp, dys, plan, images, o0, c, &mut sums, &mut bias);
        } else {
            dw3x3_passes::<G, false>(s, xp, dys, plan, images, o0, c, &mut sums, &mut bias);
        }
        for (g, sg) in sums.iter().enumerate() {
            let at = ((o0 + g) * s.in_c + c) * 9;
            gw[at..at + 9].copy_from_slice(sg);
        }
    }
    if let Some(gb) = gb {
        gb[o0..o0 + G].copy_from_slice(&bias);
    }
}

/// Every strip of [`backward_weights_3x3_chunk`] for output channels `o0 .. o0 + G` and
/// input channel `c`, in the order of [`Dw3x3Strips`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn dw3x3_passes<const G: usize, const BIAS: bool>(
    s: &Conv2dShape,
    xp: Planes<'_>,
    [direct, padded]: [Planes<'_>; 2],
    plan: Dw3x3Strips,
    images: usize,
    o0: usize,
    c: usize,
    sums: &mut [[f32; 9]; G],
    bias: &mut [f32; G],
) {
    let (oh, ow, we) = (s.out_h(), s.out_w(), plan.wide_end);
    let sel = (oh, images, o0, c);
    if we > 0 {
        if simd::WIDE_LANES == 16 {
            dw3x3_pass::<f32x16, G, BIAS>(xp, direct, sel, 0, we, sums, bias);
        } else {
            dw3x3_pass::<f32x8, G, BIAS>(xp, direct, sel, 0, we, sums, bias);
        }
    }
    if plan.eight {
        dw3x3_pass::<f32x8, G, BIAS>(xp, direct, sel, we, ow, sums, bias);
    }
    match plan.tail_lanes {
        16 if simd::WIDE_LANES == 16 => {
            dw3x3_pass::<f32x16, G, BIAS>(xp, padded, sel, we, we + 16, sums, bias)
        }
        8 => dw3x3_pass::<f32x8, G, BIAS>(xp, padded, sel, we, we + 8, sums, bias),
        _ => {}
    }
}

/// Strips of `V::LANES` output columns from `j_begin` to `j_end` of every image, for
/// `(oh, images, o0, c)`: output channels `o0 .. o0 + G` and input channel `c`.
/// `sums[g][3u + v]` (and with `BIAS`, `bias[g]`) gain the horizontal sums of the
/// accumulators.
#[inline(always)]
fn dw3x3_pass<V: Vector, const G: usize, const BIAS: bool>(
    xp: Planes<'_>,
    dy: Planes<'_>,
    (oh, images, o0, c): (usize, usize, usize, usize),
    j_begin: usize,
    j_end: usize,
    sums: &mut [[f32; 9]; G],
    bias: &mut [f32; G],
) {
    let mut acc = [[V::splat(0.0); 9]; G];
    let mut bacc = [V::splat(0.0); G];
    for n in 0..images {
        let xc = xp.get(n, c);
        let dyo: [&[f32]; G] = std::array::from_fn(|g| dy.get(n, o0 + g));
        let mut j = j_begin;
        while j < j_end {
            dw3x3_strip::<V, G, BIAS>(xc, xp.row, j, &dyo, dy.row, j - dy.shift, oh, &mut acc, &mut bacc);
            j += V::LANES;
        }
    }
    for (sg, ag) in sums.iter_mut().zip(&acc) {
        for (e, a) in sg.iter_mut().zip(ag) {
            *e += a.reduce_add();
        }
    }
    if BIAS {
        for (b, a) in bias.iter_mut().zip(&bacc) {
            *b += a.reduce_add();
        }
    }
}

/// One strip of `V::LANES` output columns of one image, input columns from `xj` of the
/// plane `xc` (row stride `xr`), `dy` columns from `dj` of the planes `dyo` (row stride
/// `dr`): `acc[g][3u + v] += dy[o0 + g, i, ..] · xc[i + u, xj + v ..]` over every output row
/// `i`, walked as input rows `r = i + u` (see [`backward_weights_3x3_chunk`]), and with
/// `BIAS`, `bacc[g] += dy[o0 + g, i, ..]`. The first two and last two input rows meet fewer
/// `dy` rows and run as their own steps.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn dw3x3_strip<V: Vector, const G: usize, const BIAS: bool>(
    xc: &[f32],
    xr: usize,
    xj: usize,
    dyo: &[&[f32]; G],
    dr: usize,
    dj: usize,
    oh: usize,
    acc: &mut [[V; 9]; G],
    bacc: &mut [V; G],
) {
    // Row iterators: every row of a plane has the same length, so the compiler checks the
    // slicing below once per strip, not per row.
    let mut dy_rows: [_; G] =
        std::array::from_fn(|g| dyo[g].chunks_exact(dr).map(|row| &row[dj..dj + V::LANES]));
    let mut dy_row = || -> [V; G] {
        std::array::from_fn(|g| {
            let d = V::load(dy_rows[g].next().expect("oh dy rows"));
            if BIAS {
                bacc[g] = bacc[g].add(d);
            }
            d
        })
    };
    let mut x_rows = xc.chunks_exact(xr).map(|row| &row[xj..xj + V::LANES + 2]);
    let mut x_row = || -> [V; 3] {
        let row = x_rows.next().expect("oh + 2 input rows");
        [V::load(row), V::load(&row[1..]), V::load(&row[2..])]
    };
    // Each step passes d[u] = dy row r - u for the rows u it uses.
    if oh == 1 {
        let d0 = dy_row();
        let d = [d0, d0, d0];
        dw3x3_rows::<V, G, 0, 1>(&d, &x_row(), acc);
        dw3x3_rows::<V, G, 1, 2>(&d, &x_row(), acc);
        dw3x3_rows::<V, G, 2, 3>(&d, &x_row(), acc);
        return;
    }
    let (mut d1, mut d0) = (dy_row(), dy_row());
    dw3x3_rows::<V, G, 0, 1>(&[d1, d1, d1], &x_row(), acc);
    dw3x3_rows::<V, G, 0, 2>(&[d0, d1, d1], &x_row(), acc);
    for _ in 2..oh {
        let d2 = d1;
        (d1, d0) = (d0, dy_row());
        dw3x3_rows::<V, G, 0, 3>(&[d0, d1, d2], &x_row(), acc);
    }
    dw3x3_rows::<V, G, 1, 3>(&[d0, d0, d1], &x_row(), acc);
    dw3x3_rows::<V, G, 2, 3>(&[d0, d0, d0], &x_row(), acc);
}

/// `acc[g][3u + v] += d[u][g] · x[v]` for `u` in `LO .. HI`.
#[inline(always)]
fn dw3x3_rows<V: Vector, const G: usize, const LO: usize, const HI: usize>(
    d: &[[V; G]; 3],
    x: &[V; 3],
    acc: &mut [[V; 9]; G],
) {
    for u in LO..HI {
        for v in 0..3 {
            for g in 0..G {
                acc[g][3 * u + v] = d[u][g].mul_add(x[v], acc[g][3 * u + v]);
            }
        }
    }
}

/// Sum of one `dy` plane for the bias gradient: four independent 16-lane partial sums (so
/// the adds pipeline instead of waiting on each other), then the lanes, then the tail, in
/// that order.
fn plane_sum(x: &[f32]) -> f32 {
    let mut acc = [f32x16::ZERO; 4];
    let mut blocks = x.chunks_exact(64);
    for b in &mut blocks {
        for (k, a) in acc.iter_mut().enumerate() {
            *a += <f32x16 as Vector>::load(&b[16 * k..]);
        }
    }
    let total = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    total.reduce_add() + simd::sum(blocks.remainder())
}

/// Direct weight gradient of one image for stride 1 from its zero-padded copy `xp`, added
/// into `gw` (`[out_c, in_c, kh, kw]`): `gw[o, c, u, v] += Σ_{i,j} dy[o, i, j] · xp[c, i + u, j + v]`.
///
/// For the common kernel areas `kh · kw` (1, 4, 9, 25) a monomorphised kernel keeps one
/// vector accumulator per tap of one input channel in registers across the whole image
/// (one horizontal sum per tap at the end); other areas take a SIMD dot product per tap
/// and row.
#[inline(never)]
fn direct_backward_weights_image(s: &Conv2dShape, xp: &[f32], dy: &[f32], gw: &mut [f32]) {
    match s.kh * s.kw {
        1 => direct_backward_weights_area::<1>(s, xp, dy, gw),
        4 => direct_backward_weights_area::<4>(s, xp, dy, gw),
        9 => direct_backward_weights_area::<9>(s, xp, dy, gw),
        25 => direct_backward_weights_area::<25>(s, xp, dy, gw),
        _ => direct_backward_weights_generic(s, xp, dy, gw),
    }
}

/// Per output channel and input channel, `K = kh · kw` accumulators (16 lanes, plus 8 for
/// a remainder block) over every output position.
fn direct_backward_weights_area<const K: usize>(s: &Conv2dShape, xp: &[f32], dy: &[f32], gw: &mut [f32]) {
    debug_assert_eq!(s.kh * s.kw, K);
    let (oh, ow, hp, wp) = (s.out_h(), s.out_w(), s.h + 2 * s.pad, s.padded_stride());
    let off: [usize; K] = std::array::from_fn(|t| t / s.kw * wp + t % s.kw);
    for (o, dyo) in dy.chunks_exact(oh * ow).enumerate() {
        for c in 0..s.in_c {
            let xc = &xp[c * hp * wp..(c + 1) * hp * wp];
            let mut acc16 = [f32x16::ZERO; K];
            let mut acc8 = [f32x8::ZERO; K];
            let mut tail = [0.0f32; K];
            for (i, dyrow) in dyo.chunks_exact(ow).enumerate() {
                let base = i * wp;
                let mut j = 0;
                while j + 16 <= ow {
                    dw_block(xc, dyrow, &off, base, j, &mut acc16);
                    j += 16;
                }
                while j + 8 <= ow {
                    dw_block(xc, dyrow, &off, base, j, &mut acc8);
                    j += 8;
                }
                for (jj, &d) in dyrow.iter().enumerate().skip(j) {
                    for (e, &at) in tail.iter_mut().zip(&off) {
                        *e = simd::fma(xc[at + base + jj], d, *e);
                    }
                }
            }
            let gwo = &mut gw[(o * s.in_c + c) * K..(o * s.in_c + c + 1) * K];
            for t in 0..K {
                gwo[t] += acc16[t].reduce_add() + acc8[t].reduce_add() + tail[t];
            }
        }
    }
}

/// One block of columns `j..` of an output row (input offset `base` in the padded copy):
/// `acc[t] += dy[i, j..] · xp[tap t at (i, j..)]`.
#[inline(always)]
fn dw_block<const T: usize, V: Vector>(
    xp: &[f32],
    dyrow: &[f32],
    off: &[usize; T],
    base: usize,
    j: usize,
    acc: &mut [V; T],
) {
    let d = V::load(&dyrow[j..]);
    for t in 0..T {
        acc[t] = V::load(&xp[off[t] + base + j..]).mul_add(d, acc[t]);
    }
}

fn direct_backward_weights_generic(s: &Conv2dShape, xp: &[f32], dy: &[f32], gw: &mut [f32]) {
    let (oh, ow) = (s.out_h(), s.out_w());
    let (hp, wp) = (s.h + 2 * s.pad, s.padded_stride());
    let taps = s.col_rows();
    for (o, dyo) in dy.chunks_exact(oh * ow).enumerate() {
        for t in 0..taps {
            let (c, u, v) = (t / (s.kh * s.kw), t / s.kw % s.kh, t % s.kw);
            let mut acc = 0.0f32;
            for (i, dyrow) in dyo.chunks_exact(ow).enumerate() {
                let at = (c * hp + i + u) * wp + v;
                acc += simd::dot(dyrow, &xp[at..at + ow]);
            }
            gw[o * taps + t] += acc;
        }
    }
}

/// Input gradient: `dx_n = col2im(Wᵀ · dy_n)` for every image (`[batch, in_c, h, w]`,
/// overwritten). A network skips this for its first layer. Where
/// [`Conv2dShape::transposed`] applies, it runs as that convolution's direct forward
/// pass instead (no im2col, no GEMM packing).
///
/// `weight`: `[out_c, in_c, kh, kw]`; `dy`: `[batch, out_c, oh, ow]`; `scratch`: at least
/// [`Conv2dShape::backward_input_scratch_len`] values.
pub fn conv2d_backward_input(
    s: &Conv2dShape,
    weight: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    scratch: &mut [f32],
) {
    const WHAT: &str = "conv2d_backward_input";
    s.check();
    check_len(WHAT, "weight", weight.len(), s.weight_len());
    check_len(WHAT, "dy", dy.len(), s.output_len());
    check_len(WHAT, "dx", dx.len(), s.input_len());
    check_scratch(WHAT, scratch.len(), s.backward_input_scratch_len());
    let (il, ol, cl) = (s.in_image_len(), s.out_image_len(), s.col_len());
    if let Some(t) = s.transposed() {
        let (flipped, rest) = scratch.split_at_mut(s.weight_len());
        let (grouped, bufs) = rest.split_at_mut(t.grouped_weight_len());
        let k = s.kh * s.kw;
        for o in 0..s.out_c {
            for c in 0..s.in_c {
                for uv in 0..k {
                    flipped[(c * s.out_c + o) * k + uv] = weight[(o * s.in_c + c) * k + (k - 1 - uv)];
                }
            }
        }
        if !has_tap_kernel(t.col_rows()) {
            group_weights(&t, flipped, grouped);
        }
        let (flipped, grouped) = (&*flipped, &*grouped);
        let pl = t.padded_len();
        dx.par_chunks_mut(BATCH_CHUNK * il)
            .zip(dy.par_chunks(BATCH_CHUNK * ol))
            .zip(bufs[..s.chunks() * pl].par_chunks_mut(pl))
            .for_each(|((dxc, dyc), buf)| {
                for (dxn, dyn_) in dxc.chunks_exact_mut(il).zip(dyc.chunks_exact(ol)) {
                    pad_image(&t, dyn_, buf);
                    direct_forward_image(&t, buf, flipped, grouped, None, dxn);
                }
            });
        return;
    }
    let p = s.out_h() * s.out_w();
    dx.par_chunks_mut(BATCH_CHUNK * il)
        .zip(dy.par_chunks(BATCH_CHUNK * ol))
        .zip(scratch[..s.chunks() * cl].par_chunks_mut(cl))
        .for_each(|((dxc, dyc), dcol)| {
            for (dxn, dyn_) in dxc.chunks_exact_mut(il).zip(dyc.chunks_exact(ol)) {
                sgemm(
                    1.0,
                    MatRef::transposed(weight, s.col_rows(), s.out_c),
                    MatRef::row_major(dyn_, s.out_c, p),
                    0.0,
                    dcol,
                    p,
                );
                col2im(s, dcol, dxn);
            }
        });
}
