//! The zero-padded copy of an image that the direct paths read (forward, the transposed
//! input gradient, and the direct weight gradients): every tap of every output lies
//! inside it, so their inner loops have no bounds or padding checks.

use super::Conv2dShape;

/// Zeros after each padded row of the copy: the last, partial vector of a row (16 lanes
/// at most) may read up to 15 values past the row's end, and the 3x3 weight gradient's
/// strips 2 more columns; both stay inside the row.
pub(crate) const DIRECT_ROW_SLACK: usize = 16;

impl Conv2dShape {
    /// Rows of one plane of the padded copy, `h + 2 pad`.
    #[inline]
    pub(crate) fn padded_h(&self) -> usize {
        self.h + 2 * self.pad
    }
    /// Row stride of the padded copy: `w + 2 pad` plus [`DIRECT_ROW_SLACK`] zeros, so
    /// vector loads past the last column stay in the buffer.
    #[inline]
    pub(crate) fn padded_stride(&self) -> usize {
        self.w + 2 * self.pad + DIRECT_ROW_SLACK
    }
    /// Values in one plane of the padded copy, `(h + 2 pad) · padded_stride`.
    #[inline]
    pub(crate) fn padded_plane(&self) -> usize {
        self.padded_h() * self.padded_stride()
    }
    /// Values in one image's padded copy, `in_c · (h + 2 pad) · padded_stride`.
    #[inline]
    pub(crate) fn padded_len(&self) -> usize {
        self.in_c * self.padded_plane()
    }
}

/// Copies one image `x` (`[in_c, h, w]`) into `buf` (`[in_c, h + 2 pad, padded_stride]`):
/// the image at row and column offset `pad`, zeros everywhere else.
pub(crate) fn pad_image(s: &Conv2dShape, x: &[f32], buf: &mut [f32]) {
    let (wp, pad, w) = (s.padded_stride(), s.pad, s.w);
    // Each value written once: the pad rows whole, the image rows in three parts.
    for (plane, src) in buf[..s.padded_len()]
        .chunks_exact_mut(s.padded_plane())
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
