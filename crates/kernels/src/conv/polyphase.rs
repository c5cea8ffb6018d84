//! The buffers of the polyphase paths (`strided.rs`) and the copies into and out of them.
//!
//! With stride `s`, the zero-padded input `xp` (`[in_c, hp, wp]`, `hp = h + 2 pad`) splits
//! into `s · s` phases per channel, `phase(c, p, q)[a, b] = xp[c, s·a + p, s·b + q]`, each
//! `phase_h x phase_w` (`ceil(hp / s) x ceil(wp / s)`, zeros past `xp`). Tap `(c, u, v)`
//! of output `(i, j)` reads `xp[c, s·i + u, s·j + v] = phase(c, u % s, v % s)[i + u / s,
//! j + v / s]`: at a fixed offset from `i · phase_w + j` in the buffer of phases. So the
//! strided convolution is a stride-1 one over fixed tap offsets
//! (`offset_taps.rs`), computed over the flat positions `q = i · phase_w + j`; the
//! columns `j >= ow` of each row are computed and dropped (forward) or meet zeros in a
//! copy of `dy` at the same row stride (weight gradient).
//!
//! The input gradient runs per phase: `dphase(c, p, q)[a, b] = Σ_{o, a', b'} W[o, c,
//! s·a' + p, s·b' + q] · dy[o, a - a', b - b']`, a stride-1 correlation of `dy` (zero-padded
//! by `ceil(k / s) - 1` at the top and left) with each phase's sub-kernel, then every
//! input position takes its value from its phase.

use super::offset_taps::Taps;
use super::Conv2dShape;

/// Values after the last phase (or the padded `dy`): the flat runs of positions end up to
/// 15 values past the last real one, and each tap reads up to `(kw - 1) / s` columns on.
const PHASE_SLACK: usize = 16;

impl Conv2dShape {
    /// Rows of a phase, `ceil((h + 2 pad) / stride)`.
    pub(crate) fn phase_h(&self) -> usize {
        (self.h + 2 * self.pad).div_ceil(self.stride)
    }
    /// Columns (and row stride) of a phase, `ceil((w + 2 pad) / stride)`.
    pub(crate) fn phase_w(&self) -> usize {
        (self.w + 2 * self.pad).div_ceil(self.stride)
    }
    /// Values of one phase plane.
    pub(crate) fn phase_plane(&self) -> usize {
        self.phase_h() * self.phase_w()
    }
    /// Values of one image's phases: `in_c · s · s` planes, then slack.
    pub(crate) fn phases_len(&self) -> usize {
        self.in_c * self.stride * self.stride * self.phase_plane() + self.kw + PHASE_SLACK
    }
    /// Flat positions of an output plane at the phases' row stride, `oh · phase_w`, rounded
    /// up to 16 (so to whole vectors at either width).
    pub(crate) fn phase_out_plane(&self) -> usize {
        (self.out_h() * self.phase_w()).next_multiple_of(16)
    }
    /// Per tap `t = (c·kh + u)·kw + v`, its offset in the phases of an image:
    /// `c · s² · phase_plane` plus that of `(u, v)`.
    pub(super) fn phase_taps(&self) -> Taps {
        let (s, plane, pw) = (self.stride, self.phase_plane(), self.phase_w());
        let base = (0..self.kh * self.kw).map(|k| {
            let (u, v) = (k / self.kw, k % self.kw);
            ((u % s) * s + v % s) * plane + u / s * pw + v / s
        });
        Taps::new(base, self.in_c, s * s * plane)
    }

    /// Rows of a phase's sub-kernel: the `u < kh` with `u % stride == p`.
    pub(crate) fn sub_kh(&self, p: usize) -> usize {
        self.kh.saturating_sub(p).div_ceil(self.stride)
    }
    /// Columns of a phase's sub-kernel: the `v < kw` with `v % stride == q`.
    pub(crate) fn sub_kw(&self, q: usize) -> usize {
        self.kw.saturating_sub(q).div_ceil(self.stride)
    }
    /// Row stride of the padded `dy` of the input gradient, `phase_w + ceil(kw / s) - 1`.
    pub(crate) fn dy_pad_w(&self) -> usize {
        self.phase_w() + self.sub_kw(0) - 1
    }
    /// One plane of the padded `dy`: `phase_h + ceil(kh / s) - 1` rows.
    pub(crate) fn dy_pad_plane(&self) -> usize {
        (self.phase_h() + self.sub_kh(0) - 1) * self.dy_pad_w()
    }
    /// Values of one image's padded `dy`, then slack.
    pub(crate) fn dy_pad_len(&self) -> usize {
        self.out_c * self.dy_pad_plane() + self.kw + PHASE_SLACK
    }
    /// Flat positions of a phase of the input gradient, `phase_h · dy_pad_w`, rounded up
    /// to 16.
    pub(crate) fn phase_grad_plane(&self) -> usize {
        (self.phase_h() * self.dy_pad_w()).next_multiple_of(16)
    }
    /// Taps of phase `(p, q)`'s input gradient, `out_c · sub_kh(p) · sub_kw(q)`.
    pub(crate) fn phase_grad_taps(&self, p: usize, q: usize) -> usize {
        self.out_c * self.sub_kh(p) * self.sub_kw(q)
    }
    /// The input gradient's grouped weights of every phase, one after another.
    pub(crate) fn phase_grad_weights_len(&self) -> usize {
        let phases = (0..self.stride).flat_map(|p| (0..self.stride).map(move |q| (p, q)));
        phases
            .map(|(p, q)| self.in_c.div_ceil(8) * 8 * self.phase_grad_taps(p, q))
            .sum()
    }
    /// Per tap `(o, a, b)` of phase `(p, q)`'s input gradient, its offset in the padded
    /// `dy`: `dy[o, a_out - a, b_out - b]` sits at `a_out · dy_pad_w + b_out` plus this.
    pub(super) fn phase_grad_taps_at(&self, p: usize, q: usize) -> Taps {
        let (ka, kb) = (self.sub_kh(p), self.sub_kw(q));
        let (ea, eb, rw) = (self.sub_kh(0), self.sub_kw(0), self.dy_pad_w());
        let base = (0..ka * kb).map(|k| (ea - 1 - k / kb) * rw + (eb - 1 - k % kb));
        Taps::new(base, self.out_c, self.dy_pad_plane())
    }
}

/// Phase `q`'s columns `b0 .. b1` that hold input columns (`s·b + q - pad` inside
/// `0 .. n`), for a side of `n` values.
fn inside(n: usize, s: usize, pad: usize, q: usize, len: usize) -> (usize, usize) {
    // s·b + q >= pad  <=>  b >= ceil((pad - q) / s)
    let b0 = pad.saturating_sub(q).div_ceil(s);
    // s·b + q - pad <= n - 1  <=>  b <= (n - 1 + pad - q) / s
    let b1 = if n + pad > q {
        ((n - 1 + pad - q) / s + 1).min(len)
    } else {
        0
    };
    (b0.min(b1), b1)
}

/// Splits one image `x` (`[in_c, h, w]`) into its phases (`buf`: at least
/// [`Conv2dShape::phases_len`] values, all written, zeros outside the image and in the
/// slack).
pub(crate) fn split_phases(s: &Conv2dShape, x: &[f32], buf: &mut [f32]) {
    let (st, pad, w) = (s.stride, s.pad, s.w);
    let (ph, pw) = (s.phase_h(), s.phase_w());
    let buf = &mut buf[..s.phases_len()];
    let (planes, slack) = buf.split_at_mut(s.in_c * st * st * ph * pw);
    slack.fill(0.0);
    for (k, plane) in planes.chunks_exact_mut(ph * pw).enumerate() {
        let (c, p, q) = (k / (st * st), k / st % st, k % st);
        let src = &x[c * s.h * w..(c + 1) * s.h * w];
        let (a0, a1) = inside(s.h, st, pad, p, ph);
        let (b0, b1) = inside(w, st, pad, q, pw);
        plane[..a0 * pw].fill(0.0);
        plane[a1 * pw..].fill(0.0);
        for a in a0..a1 {
            let row = &mut plane[a * pw..(a + 1) * pw];
            let y = st * a + p - pad;
            let xr = &src[y * w..(y + 1) * w];
            row[..b0].fill(0.0);
            row[b1..].fill(0.0);
            let x0 = st * b0 + q - pad;
            for (k, v) in row[b0..b1].iter_mut().enumerate() {
                *v = xr[x0 + st * k];
            }
        }
    }
}

/// Copies one image's `dy` (`[out_c, oh, ow]`) into `buf` (`[out_c, oh, phase_w]`, then
/// zeros to `phase_out_plane` per channel): rows at the phases' row stride, zeros past
/// `ow`, so that the flat positions of the weight gradient meet zero wherever they are
/// not an output.
pub(crate) fn spread_dy(s: &Conv2dShape, dy: &[f32], buf: &mut [f32]) {
    let (oh, ow, pw, plane) = (s.out_h(), s.out_w(), s.phase_w(), s.phase_out_plane());
    for (dst, src) in buf[..s.out_c * plane]
        .chunks_exact_mut(plane)
        .zip(dy.chunks_exact(oh * ow))
    {
        let (rows, rest) = dst.split_at_mut(oh * pw);
        rest.fill(0.0);
        for (d, r) in rows.chunks_exact_mut(pw).zip(src.chunks_exact(ow)) {
            d[..ow].copy_from_slice(r);
            d[ow..].fill(0.0);
        }
    }
}

/// The inverse copy of the forward: `y` (`[out_c, oh, ow]`) from the first `ow` columns of
/// each `phase_w`-long row of `flat` (`[out_c, phase_out_plane]`).
pub(crate) fn gather_rows(s: &Conv2dShape, flat: &[f32], y: &mut [f32]) {
    let (oh, ow, pw, plane) = (s.out_h(), s.out_w(), s.phase_w(), s.phase_out_plane());
    for (dst, src) in y.chunks_exact_mut(oh * ow).zip(flat.chunks_exact(plane)) {
        for (d, r) in dst.chunks_exact_mut(ow).zip(src.chunks_exact(pw)) {
            d.copy_from_slice(&r[..ow]);
        }
    }
}

/// Copies one image's `dy` (`[out_c, oh, ow]`) into the padded `dy` of the input gradient
/// (`buf`: [`Conv2dShape::dy_pad_len`] values, all written): at row and column offsets
/// `ceil(kh / s) - 1`, `ceil(kw / s) - 1`, zeros elsewhere.
pub(crate) fn pad_dy(s: &Conv2dShape, dy: &[f32], buf: &mut [f32]) {
    let (oh, ow, rw, plane) = (s.out_h(), s.out_w(), s.dy_pad_w(), s.dy_pad_plane());
    let (top, left) = (s.sub_kh(0) - 1, s.sub_kw(0) - 1);
    let buf = &mut buf[..s.dy_pad_len()];
    let (planes, slack) = buf.split_at_mut(s.out_c * plane);
    slack.fill(0.0);
    for (dst, src) in planes.chunks_exact_mut(plane).zip(dy.chunks_exact(oh * ow)) {
        let (head, rest) = dst.split_at_mut(top * rw);
        let (rows, tail) = rest.split_at_mut(oh * rw);
        head.fill(0.0);
        tail.fill(0.0);
        for (d, r) in rows.chunks_exact_mut(rw).zip(src.chunks_exact(ow)) {
            d[..left].fill(0.0);
            d[left..left + ow].copy_from_slice(r);
            d[left + ow..].fill(0.0);
        }
    }
}

/// The input gradient `dx` (`[in_c, h, w]`) from the phases' gradients `grads`
/// (`[s · s phases (p, q)][in_c, phase_grad_plane]`, row stride `dy_pad_w`):
/// `dx[c, y, x] = dphase(c, (y + pad) % s, (x + pad) % s)[(y + pad) / s, (x + pad) / s]`,
/// zero for the phases without taps (`empty(p, q)`).
pub(crate) fn merge_phases(
    s: &Conv2dShape,
    grads: &[f32],
    dx: &mut [f32],
    empty: impl Fn(usize, usize) -> bool,
) {
    let (st, pad, rw, gp) = (s.stride, s.pad, s.dy_pad_w(), s.phase_grad_plane());
    for (c, plane) in dx.chunks_exact_mut(s.h * s.w).enumerate() {
        for (y, row) in plane.chunks_exact_mut(s.w).enumerate() {
            let (p, a) = ((y + pad) % st, (y + pad) / st);
            for q in 0..st {
                let x0 = (st + q - pad % st) % st;
                let cols = row.iter_mut().skip(x0).step_by(st);
                if empty(p, q) {
                    cols.for_each(|v| *v = 0.0);
                    continue;
                }
                let at = ((p * st + q) * s.in_c + c) * gp + a * rw;
                let b0 = (x0 + pad) / st;
                let src = &grads[at + b0..];
                for (v, &g) in cols.zip(src) {
                    *v = g;
                }
            }
        }
    }
}
