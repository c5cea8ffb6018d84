//! The lowered form: [`im2col`] and [`col2im`], and the GEMM paths built on them
//! ([`ForwardPath::Gemm`](super::ForwardPath::Gemm),
//! [`WeightGradPath::Gemm`](super::WeightGradPath::Gemm),
//! [`InputGradPath::Col2im`](super::InputGradPath::Col2im)).
//!
//! Per image, `col = im2col(x_n)` is `[in_c·kh·kw, oh·ow]`; then `y_n = W · col + b`,
//! `dW += dy_n · colᵀ`, `dx_n = col2im(Wᵀ · dy_n)`.

use super::{for_each_image, Conv2dShape};
use crate::gemm::{sgemm, MatRef};
use crate::shape::check_len;
use crate::simd;

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

/// [`ForwardPath::Gemm`](super::ForwardPath::Gemm) over the batch: per image, im2col into
/// its chunk's `col_len()` part of `scratch`, the rows of `y` prefilled with the bias,
/// then `y_n = W · col + y_n`.
pub(super) fn forward(
    s: &Conv2dShape,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    scratch: &mut [f32],
) {
    let (cl, p) = (s.col_len(), s.out_h() * s.out_w());
    let bufs = &mut scratch[..s.chunks() * cl];
    for_each_image(
        (y, s.out_image_len()),
        (x, s.in_image_len()),
        (bufs, cl),
        |yn, xn, col| {
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
        },
    );
}

/// [`WeightGradPath::Gemm`](super::WeightGradPath::Gemm) for one image: `gw += dy · colᵀ`
/// with `col = im2col(x)` (`col`: `col_len()` values).
pub(super) fn backward_weights_image(
    s: &Conv2dShape,
    x: &[f32],
    dy: &[f32],
    col: &mut [f32],
    gw: &mut [f32],
) {
    im2col(s, x, col);
    sgemm(
        1.0,
        MatRef::row_major(dy, s.out_c, s.out_h() * s.out_w()),
        MatRef::transposed(col, s.out_h() * s.out_w(), s.col_rows()),
        1.0,
        gw,
        s.col_rows(),
    );
}

/// [`InputGradPath::Col2im`](super::InputGradPath::Col2im) over the batch: per image,
/// `dcol = Wᵀ · dy_n` into its chunk's `col_len()` part of `scratch`, then
/// `dx_n = col2im(dcol)`.
pub(super) fn backward_input(
    s: &Conv2dShape,
    weight: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    scratch: &mut [f32],
) {
    let (cl, p) = (s.col_len(), s.out_h() * s.out_w());
    let bufs = &mut scratch[..s.chunks() * cl];
    for_each_image(
        (dx, s.in_image_len()),
        (dy, s.out_image_len()),
        (bufs, cl),
        |dxn, dyn_, dcol| {
            sgemm(
                1.0,
                MatRef::transposed(weight, s.col_rows(), s.out_c),
                MatRef::row_major(dyn_, s.out_c, p),
                0.0,
                dcol,
                p,
            );
            col2im(s, dcol, dxn);
        },
    );
}
