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

/// The weight gradient takes the direct SIMD path when `stride == 1` and
/// `in_c <= DIRECT_MAX_IN_C`: with so few input channels the lowered GEMM has a tiny
/// dimension and starves; with more, im2col + GEMM wins (a channel-grouped direct kernel
/// measured slower). The forward pass and the input gradient are direct for every
/// stride-1 convolution. `benches/kernels.rs`, group `conv_path`, measures both paths.
pub const DIRECT_MAX_IN_C: usize = 3;

/// Zeros after each padded row of the direct path's input copy: the last vector block of
/// a row may read up to 7 values past the row's end.
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
    /// Whether the direct SIMD path (no im2col) computes forward and weight gradients.
    pub fn uses_direct(&self) -> bool {
        self.stride == 1 && self.in_c <= DIRECT_MAX_IN_C
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
    /// Per-chunk lowering buffer of the weight gradient: the padded copy (direct path) or
    /// the im2col matrix.
    fn lowered_len(&self) -> usize {
        if self.uses_direct() {
            self.padded_len()
        } else {
            self.col_len()
        }
    }
    /// Weights regrouped for the direct forward's generic kernel: `[ceil(out_c / 8), taps, 8]`.
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
    let (hp, wp, pad) = (s.h + 2 * s.pad, s.padded_stride(), s.pad);
    buf.fill(0.0);
    for c in 0..s.in_c {
        for r in 0..s.h {
            let dst = (c * hp + r + pad) * wp + pad;
            buf[dst..dst + s.w].copy_from_slice(&x[(c * s.h + r) * s.w..(c * s.h + r + 1) * s.w]);
        }
    }
}

/// Direct forward of one image for stride 1 (module docs give the equation) from its
/// zero-padded copy `xp` ([`pad_image`]).
///
/// For the common tap counts `in_c · kh · kw` (1, 4, 9, 18, 25, 27) a monomorphised kernel
/// loads the input vectors of every tap once per block of output columns and reuses them
/// for every output channel; other counts take [`direct_forward_grouped`]. Blocks are 16
/// columns, then 8; the last partial block is computed whole and stored in part.
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
        18 => direct_forward_taps::<18>(s, xp, weight, bias, y),
        25 => direct_forward_taps::<25>(s, xp, weight, bias, y),
        27 => direct_forward_taps::<27>(s, xp, weight, bias, y),
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
    for i in 0..oh {
        let mut j = 0;
        while j + 16 <= ow {
            forward_block::<T, f32x16>(s, xp, weight, bias, y, &off, i, j, 16);
            j += 16;
        }
        while j < ow {
            forward_block::<T, f32x8>(s, xp, weight, bias, y, &off, i, j, LANES.min(ow - j));
            j += LANES;
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
    matches!(taps, 1 | 4 | 9 | 18 | 25 | 27)
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

/// Direct forward for any tap count, from the padded copy and the grouped weights: per
/// row, block of 16 (then 8) output columns and group of 8 output channels, one input
/// vector per tap feeds 8 independent accumulators.
fn direct_forward_grouped(s: &Conv2dShape, xp: &[f32], grouped: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    let (oh, ow) = (s.out_h(), s.out_w());
    for i in 0..oh {
        let mut j = 0;
        while j + 16 <= ow {
            grouped_block::<f32x16>(s, xp, grouped, bias, y, i, j, 16);
            j += 16;
        }
        while j < ow {
            grouped_block::<f32x8>(s, xp, grouped, bias, y, i, j, LANES.min(ow - j));
            j += LANES;
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn grouped_block<V: Vector>(
    s: &Conv2dShape,
    xp: &[f32],
    grouped: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    i: usize,
    j: usize,
    n: usize,
) {
    let (hp, wp, taps) = (s.h + 2 * s.pad, s.padded_stride(), s.col_rows());
    let (plane, at) = (s.out_h() * s.out_w(), i * s.out_w() + j);
    for (og, wg) in grouped.chunks_exact(8 * taps).enumerate() {
        let mut acc: [V; 8] = std::array::from_fn(|g| {
            let o = og * 8 + g;
            V::splat(bias.filter(|_| o < s.out_c).map_or(0.0, |b| b[o]))
        });
        let mut wt = wg.chunks_exact(8);
        for c in 0..s.in_c {
            for u in 0..s.kh {
                let row = (c * hp + i + u) * wp + j;
                for v in 0..s.kw {
                    let x = V::load(&xp[row + v..]);
                    let w = wt.next().expect("taps of the group");
                    for g in 0..8 {
                        acc[g] = x.mul_add(V::splat(w[g]), acc[g]);
                    }
                }
            }
        }
        for (g, a) in acc.into_iter().enumerate() {
            let o = og * 8 + g;
            if o < s.out_c {
                a.store_prefix(&mut y[o * plane + at..], n);
            }
        }
    }
}

/// Weight and bias gradients: `dW = Σ_n dy_n · col_nᵀ` (`[out_c, in_c, kh, kw]`,
/// overwritten) and `db[o] = Σ_{n,i,j} dy[n, o, i, j]` (`[out_c]`, overwritten, skipped when
/// `None`).
///
/// `x`: the forward input `[batch, in_c, h, w]`; `dy`: `[batch, out_c, oh, ow]`;
/// `scratch`: at least [`Conv2dShape::backward_weights_scratch_len`] values. Partial sums
/// are taken per [`BATCH_CHUNK`] images and added in chunk order (thread-count independent).
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
            pw.fill(0.0);
            pb.fill(0.0);
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
                        *g += simd::sum(row);
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
