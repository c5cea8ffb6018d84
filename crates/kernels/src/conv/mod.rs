//! 2-D convolution (cross-correlation, as PyTorch's `Conv2d`): forward, weight and bias
//! gradients, input gradient; im2col / col2im lowering and direct SIMD paths.
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
//! # Paths
//!
//! Each kernel has a few code paths ([`ForwardPath`], [`WeightGradPath`],
//! [`InputGradPath`]); the shape picks one in one place ([`Conv2dShape::forward_path`],
//! [`Conv2dShape::weight_grad_path`], [`Conv2dShape::input_grad_path`]), and its scratch
//! size follows from that choice. Where the best path depends on the instruction set, the
//! choice comes from its tiles (`arch/`). `benches/kernels.rs` measures the paths: group
//! `conv_path` runs every path at the shapes it serves, group `conv_resnet`
//! (`benches/kernels/resnet.rs`) the polyphase paths against GEMM.
//!
//! | kernel | path | shapes that take it | why |
//! | --- | --- | --- | --- |
//! | forward | [`Taps`](ForwardPath::Taps) (`forward_direct.rs`) | stride 1, `in_c·kh·kw` of 1, 4 or 9 taps, `out_c != 8` (AVX2: 1 or 4 taps, any `out_c`) | loads each tap's input vector once per block of columns and reuses it for every output channel: faster than `Grouped` where its input vectors and accumulators fit the registers; with AVX2's 16 registers, 9 taps' input vectors and the accumulators spill, and `Grouped` wins |
//! | forward | [`TapPairs`](ForwardPath::TapPairs) (`forward_direct.rs`) | as `Taps` with exactly 8 output channels, AVX-512 | two rows per block (2 · 8 accumulators) load each tap's weights once for both rows; with 16 or more channels the single row, which shares its input vectors across the channel groups, is as fast |
//! | forward | [`Grouped`](ForwardPath::Grouped) (`forward_direct.rs`) | every other stride-1 shape (with AVX2, 9 taps too) | from 18 taps up the tap kernel's input vectors and accumulators outgrow the registers; the register tiles (output vectors by channels) keep theirs in registers at any tap count |
//! | forward | [`Polyphase`](ForwardPath::Polyphase) (`strided.rs`) | stride 2, 1x1 or 3x3 kernel (ResNet's downsampling and projection convs) | the input split into its 4 stride phases, so every tap reads contiguous columns at a fixed offset, on the grouped forward's register tiles; no GEMM packing allocation |
//! | forward | [`Gemm`](ForwardPath::Gemm) (`lowering.rs`) | other strides > 1 | the direct kernels read contiguous input columns |
//! | weight grad | [`Direct3x3`](WeightGradPath::Direct3x3) (`weight_grad_3x3.rs`) | stride 1, 3x3, any channel counts and padding | its accumulators stay in registers across a chunk's images; beats im2col + GEMM at every channel count measured, most of all with few input channels (seednet's 1 to 8), where the lowered GEMM has a tiny dimension |
//! | weight grad | [`DirectArea`](WeightGradPath::DirectArea) (`weight_grad_direct.rs`) | stride 1, not 3x3, `in_c <= 3`, `kh·kw` of 1, 4, 9 or 25 | with so few input channels the lowered GEMM has a tiny dimension and starves |
//! | weight grad | [`DirectRows`](WeightGradPath::DirectRows) (`weight_grad_direct.rs`) | stride 1, not 3x3, `in_c <= 3`, other kernel areas | as `DirectArea`, without a kernel per area |
//! | weight grad | [`Polyphase`](WeightGradPath::Polyphase) (`strided.rs`) | stride 2, 1x1, or 3x3 with `ow >= 16` | channel-by-tap register tiles over the phases of a chunk's images, no im2col; a 3x3 kernel's flat runs below 16 output columns are too much padding (a quarter at 8x8), so those stay on GEMM |
//! | weight grad | [`Gemm`](WeightGradPath::Gemm) (`lowering.rs`) | other strides > 1, or not 3x3 with `in_c > 3` | with more input channels im2col + GEMM wins |
//! | input grad | [`Transposed`](InputGradPath::Transposed) (`input_grad.rs`) | stride 1, square kernel, `pad < k` | the forward pass of the flipped, transposed kernel ([`Conv2dShape::forward_path`] of the transposed shape), no im2col or GEMM packing |
//! | input grad | [`Polyphase`](InputGradPath::Polyphase) (`strided.rs`) | stride 2, 1x1 or 3x3 | each stride phase of `dx` as a stride-1 correlation of `dy` with that phase's sub-kernel, on the polyphase forward's tiles, no col2im or GEMM packing |
//! | input grad | [`Col2im`](InputGradPath::Col2im) (`lowering.rs`) | everything else: other strides > 1, non-square kernels (`1x3`), `pad >= k` | `Wᵀ · dy_n` by GEMM, then col2im |
//! | all three | `Winograd(tile)` ([`winograd`], [`ConvAlgo`]) | stride 1, 3x3, `pad <= 2`, when the caller's [`ConvAlgo`] takes it (`Winograd`: always; `Auto`: from [`AUTO_MIN_CHANNELS`] input and output channels); F(4x4) above 8x8 outputs, F(2x2) at 8x8 and below | 2.25x (F2) or 4x (F4) fewer multiplies; the `*_algo` and `*_prepared` entry points take it, the plain ones never (`Direct`: the bits above) |
//!
//! The direct paths read a zero-padded copy of each image (`padding.rs`), so their inner
//! loops have no bounds or padding checks; the polyphase paths read its stride phases
//! (`polyphase.rs`) through tap offsets (`offset_taps.rs`). The polyphase forward sums
//! each output as the other direct forward paths do (from the bias, in tap order), so it
//! gives the same bits at either width.
//!
//! # Vector width
//!
//! Every vector path runs at 8 or 16 lanes ([`Lanes`]): the `*_with` entry points take
//! it, chosen once per call. The public kernels run each path at the width the build
//! picks (`build_lanes` of each path enum): [`Lanes::BUILD`], the width the instruction
//! set's register tiles are sized for, for every forward path (so the transposed input
//! gradient), the polyphase paths and the 3x3 weight gradient; 16 lanes on every build
//! for the other direct weight gradients and the bias gradient's plane sums on those
//! paths and GEMM. The forward paths give bit-identical outputs at either width (one lane
//! per output, summed in tap order); the weight gradients' sums depend on it. The dot
//! products of `DirectRows` and the adds of col2im are `simd.rs`'s 8-lane helpers at
//! either width.
//!
//! Threads: rayon over fixed chunks of [`BATCH_CHUNK`] images. The weight and bias
//! gradients are summed per chunk, then over chunks in chunk order, so results are
//! bit-identical for any number of threads.

mod forward_direct;
mod halves;
mod input_grad;
mod lowering;
mod offset_taps;
mod padding;
mod paths;
mod polyphase;
mod prepared;
mod shape;
mod strided;
mod weight_grad_3x3;
mod weight_grad_direct;
pub mod winograd;

pub use lowering::{col2im, im2col};
pub use paths::{ConvAlgo, ForwardPath, InputGradPath, WeightGradPath, AUTO_MIN_CHANNELS};
pub use prepared::{
    conv2d_backward_input_prepared, conv2d_forward_prepared, conv2d_prepare, conv2d_prepare_forward,
};
pub use shape::Conv2dShape;
pub use winograd::WinogradTile;

use crate::arch::Lanes;
use crate::shape::check_len;
use crate::simd;
use crate::vector::Vector;
use padding::pad_image;
use rayon::prelude::*;
use wide::{f32x16, f32x8};

/// Images per parallel task. Fixed (not derived from the thread count) so that the
/// per-chunk partial gradient sums, and so the results, do not depend on threads.
pub const BATCH_CHUNK: usize = 4;

fn check_scratch(what: &str, got: usize, want: usize) {
    assert!(
        got >= want,
        "{what}: scratch has {got} values, needs at least {want}"
    );
}

/// Panics unless the forced `path` can serve `s`.
fn check_path(what: &str, path: impl std::fmt::Debug, supported: bool, s: &Conv2dShape) {
    assert!(supported, "{what}: path {path:?} cannot serve {s:?}");
}

/// Calls `f(out_n, in_n, buf)` for every image `n` of a batch, `out` and `inp` holding
/// `out_len` and `in_len` values per image: one rayon task per [`BATCH_CHUNK`] images,
/// which runs them in order with its own `buf_len` values of `bufs`.
fn for_each_image(
    (out, out_len): (&mut [f32], usize),
    (inp, in_len): (&[f32], usize),
    (bufs, buf_len): (&mut [f32], usize),
    f: impl Fn(&mut [f32], &[f32], &mut [f32]) + Sync,
) {
    out.par_chunks_mut(BATCH_CHUNK * out_len)
        .zip(inp.par_chunks(BATCH_CHUNK * in_len))
        .zip(bufs.par_chunks_mut(buf_len))
        .for_each(|((oc, ic), buf)| {
            for (o, i) in oc.chunks_exact_mut(out_len).zip(ic.chunks_exact(in_len)) {
                f(o, i, buf);
            }
        });
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
    conv2d_forward_algo(s, ConvAlgo::Direct, x, weight, bias, y, scratch);
}

/// [`conv2d_forward`] with the stride-1 3x3 algorithm `algo` ([`ConvAlgo`]; `scratch` at
/// least [`Conv2dShape::scratch_len_for`] values).
pub fn conv2d_forward_algo(
    s: &Conv2dShape,
    algo: ConvAlgo,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    scratch: &mut [f32],
) {
    let path = s.forward_path_for(algo);
    conv2d_forward_with(s, path, path.build_lanes(), x, weight, bias, y, scratch);
}

/// [`conv2d_forward`] on a forced `path` at `lanes`, for tests and benches. Panics if the
/// path cannot serve the shape ([`ForwardPath::supports`]); `scratch`: at least
/// [`ForwardPath::scratch_len`] values.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub fn conv2d_forward_with(
    s: &Conv2dShape,
    path: ForwardPath,
    lanes: Lanes,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    scratch: &mut [f32],
) {
    check_forward("conv2d_forward", s, path, x, weight, bias, y, scratch);
    match (path, lanes) {
        (ForwardPath::Gemm, _) => lowering::forward(s, x, weight, bias, y, scratch),
        (ForwardPath::Winograd(t), Lanes::Eight) => {
            winograd::forward::<f32x8>(s, t, x, weight, bias, y, scratch)
        }
        (ForwardPath::Winograd(t), Lanes::Sixteen) => {
            winograd::forward::<f32x16>(s, t, x, weight, bias, y, scratch)
        }
        (ForwardPath::Polyphase, Lanes::Eight) => strided::forward::<f32x8>(s, x, weight, bias, y, scratch),
        (ForwardPath::Polyphase, Lanes::Sixteen) => {
            strided::forward::<f32x16>(s, x, weight, bias, y, scratch)
        }
        (_, Lanes::Eight) => forward_direct::forward::<f32x8>(s, path, x, weight, bias, y, scratch),
        (_, Lanes::Sixteen) => forward_direct::forward::<f32x16>(s, path, x, weight, bias, y, scratch),
    }
}

/// Panics unless the arguments of a forward pass of `s` on `path` have their shapes
/// (`what` names the kernel).
#[allow(clippy::too_many_arguments)]
fn check_forward(
    what: &str,
    s: &Conv2dShape,
    path: ForwardPath,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &[f32],
    scratch: &[f32],
) {
    s.check();
    check_path(what, path, path.supports(s), s);
    check_len(what, "x", x.len(), s.input_len());
    check_len(what, "weight", weight.len(), s.weight_len());
    if let Some(b) = bias {
        check_len(what, "bias", b.len(), s.out_c);
    }
    check_len(what, "y", y.len(), s.output_len());
    check_scratch(what, scratch.len(), path.scratch_len(s));
}

/// Weight and bias gradients: `dW = Σ_n dy_n · col_nᵀ` (`[out_c, in_c, kh, kw]`,
/// overwritten) and `db[o] = Σ_{n,i,j} dy[n, o, i, j]` (`[out_c]`, overwritten, skipped when
/// `None`).
///
/// `x`: the forward input `[batch, in_c, h, w]`; `dy`: `[batch, out_c, oh, ow]`;
/// `scratch`: at least [`Conv2dShape::backward_weights_scratch_len`] values. Partial sums
/// are taken per [`BATCH_CHUNK`] images and added in chunk order (thread-count
/// independent). The path is [`Conv2dShape::weight_grad_path`] (module docs).
pub fn conv2d_backward_weights(
    s: &Conv2dShape,
    x: &[f32],
    dy: &[f32],
    grad_weight: &mut [f32],
    grad_bias: Option<&mut [f32]>,
    scratch: &mut [f32],
) {
    conv2d_backward_weights_algo(s, ConvAlgo::Direct, x, dy, grad_weight, grad_bias, scratch);
}

/// [`conv2d_backward_weights`] with the stride-1 3x3 algorithm `algo` ([`ConvAlgo`];
/// `scratch` at least [`Conv2dShape::scratch_len_for`] values).
pub fn conv2d_backward_weights_algo(
    s: &Conv2dShape,
    algo: ConvAlgo,
    x: &[f32],
    dy: &[f32],
    grad_weight: &mut [f32],
    grad_bias: Option<&mut [f32]>,
    scratch: &mut [f32],
) {
    let path = s.weight_grad_path_for(algo);
    conv2d_backward_weights_with(
        s,
        path,
        path.build_lanes(),
        x,
        dy,
        grad_weight,
        grad_bias,
        scratch,
    );
}

/// [`conv2d_backward_weights`] on a forced `path` at `lanes`, for tests and benches.
/// Panics if the path cannot serve the shape ([`WeightGradPath::supports`]); `scratch`:
/// at least [`WeightGradPath::scratch_len`] values.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward_weights_with(
    s: &Conv2dShape,
    path: WeightGradPath,
    lanes: Lanes,
    x: &[f32],
    dy: &[f32],
    grad_weight: &mut [f32],
    grad_bias: Option<&mut [f32]>,
    scratch: &mut [f32],
) {
    const WHAT: &str = "conv2d_backward_weights";
    s.check();
    check_path(WHAT, path, path.supports(s), s);
    check_len(WHAT, "x", x.len(), s.input_len());
    check_len(WHAT, "dy", dy.len(), s.output_len());
    check_len(WHAT, "grad_weight", grad_weight.len(), s.weight_len());
    if let Some(gb) = &grad_bias {
        check_len(WHAT, "grad_bias", gb.len(), s.out_c);
    }
    check_scratch(WHAT, scratch.len(), path.scratch_len(s));
    let want_bias = grad_bias.is_some();
    let partials = match lanes {
        Lanes::Eight => backward_weights_chunks::<f32x8>(s, path, x, dy, want_bias, scratch),
        Lanes::Sixteen => backward_weights_chunks::<f32x16>(s, path, x, dy, want_bias, scratch),
    };
    let part_len = s.weight_len() + s.out_c;
    let mut parts = partials.chunks_exact(part_len);
    let first = parts.next().expect("batch >= 1");
    let wl = s.weight_len();
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

/// The per-chunk partial sums of [`conv2d_backward_weights_with`], in the first
/// `chunks() · (weight_len + out_c)` values of `scratch` (returned), each chunk's
/// `[weight gradient, bias gradient]` summed over its images in order; the rest of
/// `scratch` holds each chunk's lowering buffer ([`WeightGradPath::scratch_len`]).
fn backward_weights_chunks<'a, V: Vector>(
    s: &Conv2dShape,
    path: WeightGradPath,
    x: &[f32],
    dy: &[f32],
    want_bias: bool,
    scratch: &'a mut [f32],
) -> &'a [f32] {
    let (il, ol, wl) = (s.in_image_len(), s.out_image_len(), s.weight_len());
    let part_len = wl + s.out_c;
    let (partials, rest) = scratch.split_at_mut(s.chunks() * part_len);
    let lowered = path.lowered_len(s);
    let p = s.out_h() * s.out_w();
    partials
        .par_chunks_mut(part_len)
        .zip(x.par_chunks(BATCH_CHUNK * il))
        .zip(dy.par_chunks(BATCH_CHUNK * ol))
        .zip(rest[..s.chunks() * lowered].par_chunks_mut(lowered))
        .for_each(|(((part, xc), dyc), buf)| {
            let (pw, pb) = part.split_at_mut(wl);
            pb.fill(0.0);
            if path == WeightGradPath::Direct3x3 {
                weight_grad_3x3::backward_weights_chunk::<V>(s, xc, dyc, buf, pw, want_bias.then_some(pb));
                return;
            }
            match path {
                WeightGradPath::Polyphase => strided::backward_weights_chunk::<V>(s, xc, dyc, buf, pw),
                WeightGradPath::Winograd(t) => winograd::backward_weights_chunk::<V>(s, t, xc, dyc, buf, pw),
                _ => pw.fill(0.0),
            }
            let whole_chunk = matches!(path, WeightGradPath::Polyphase | WeightGradPath::Winograd(_));
            for (xn, dyn_) in xc.chunks_exact(il).zip(dyc.chunks_exact(ol)) {
                if whole_chunk {
                    // The weight gradient of the whole chunk is done; only the bias's sums.
                } else if path == WeightGradPath::Gemm {
                    lowering::backward_weights_image(s, xn, dyn_, buf, pw);
                } else {
                    pad_image(s, xn, buf);
                    weight_grad_direct::backward_weights_image::<V>(s, path, buf, dyn_, pw);
                }
                if want_bias {
                    for (g, row) in pb.iter_mut().zip(dyn_.chunks_exact(p)) {
                        *g += weight_grad_direct::plane_sum::<V>(row);
                    }
                }
            }
        });
    partials
}

/// Input gradient: `dx_n = col2im(Wᵀ · dy_n)` for every image (`[batch, in_c, h, w]`,
/// overwritten). A network skips this for its first layer. Where
/// [`InputGradPath::Transposed`] can serve the shape (stride 1, square kernel,
/// `pad < k`), it runs as the direct forward pass of the transposed convolution instead
/// (no im2col, no GEMM packing); stride-2 1x1 and 3x3 kernels run per stride phase
/// ([`InputGradPath::Polyphase`]); other non-square kernels, strides and `pad >= k` go
/// through col2im.
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
    conv2d_backward_input_algo(s, ConvAlgo::Direct, weight, dy, dx, scratch);
}

/// [`conv2d_backward_input`] with the stride-1 3x3 algorithm `algo` for its transposed
/// convolution ([`ConvAlgo`]; `scratch` at least [`Conv2dShape::scratch_len_for`]
/// values).
pub fn conv2d_backward_input_algo(
    s: &Conv2dShape,
    algo: ConvAlgo,
    weight: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    scratch: &mut [f32],
) {
    let path = s.input_grad_path_for(algo);
    conv2d_backward_input_with(s, path, path.build_lanes(s), weight, dy, dx, scratch);
}

/// [`conv2d_backward_input`] on a forced `path` at `lanes`, for tests and benches. Panics
/// if the path cannot serve the shape ([`InputGradPath::supports`]); `scratch`: at least
/// [`InputGradPath::scratch_len`] values.
#[doc(hidden)]
pub fn conv2d_backward_input_with(
    s: &Conv2dShape,
    path: InputGradPath,
    lanes: Lanes,
    weight: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    scratch: &mut [f32],
) {
    check_input_grad("conv2d_backward_input", s, path, weight, dy, dx, scratch);
    match (path, lanes) {
        (InputGradPath::Col2im, _) => lowering::backward_input(s, weight, dy, dx, scratch),
        (InputGradPath::Winograd(t), Lanes::Eight) => {
            input_grad::backward_input_winograd::<f32x8>(s, t, weight, dy, dx, scratch)
        }
        (InputGradPath::Winograd(t), Lanes::Sixteen) => {
            input_grad::backward_input_winograd::<f32x16>(s, t, weight, dy, dx, scratch)
        }
        (InputGradPath::Polyphase, Lanes::Eight) => {
            strided::backward_input::<f32x8>(s, weight, dy, dx, scratch)
        }
        (InputGradPath::Polyphase, Lanes::Sixteen) => {
            strided::backward_input::<f32x16>(s, weight, dy, dx, scratch)
        }
        (_, Lanes::Eight) => input_grad::backward_input_transposed::<f32x8>(s, weight, dy, dx, scratch),
        (_, Lanes::Sixteen) => input_grad::backward_input_transposed::<f32x16>(s, weight, dy, dx, scratch),
    }
}

/// Panics unless the arguments of an input gradient of `s` on `path` have their shapes
/// (`what` names the kernel).
fn check_input_grad(
    what: &str,
    s: &Conv2dShape,
    path: InputGradPath,
    weight: &[f32],
    dy: &[f32],
    dx: &[f32],
    scratch: &[f32],
) {
    s.check();
    check_path(what, path, path.supports(s), s);
    check_len(what, "weight", weight.len(), s.weight_len());
    check_len(what, "dy", dy.len(), s.output_len());
    check_len(what, "dx", dx.len(), s.input_len());
    check_scratch(what, scratch.len(), path.scratch_len(s));
}
