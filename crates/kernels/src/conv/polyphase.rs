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
    /// The phases `(p, q)` some tap reads: `p < phase_rows()`, `q < phase_cols()`
    /// (`min(kh, s)`, `min(kw, s)`; the 1x1 kernel reads only phase `(0, 0)`). Only those
    /// are stored.
    pub(crate) fn phase_rows(&self) -> usize {
        self.kh.min(self.stride)
    }
    /// See [`Conv2dShape::phase_rows`].
    pub(crate) fn phase_cols(&self) -> usize {
        self.kw.min(self.stride)
    }
    /// Values of one image's phases: `in_c · phase_rows · phase_cols` planes, then slack.
    pub(crate) fn phases_len(&self) -> usize {
        self.in_c * self.phase_rows() * self.phase_cols() * self.phase_plane() + self.kw + PHASE_SLACK
    }
    /// Flat positions of an output plane at the phases' row stride, `oh · phase_w`, rounded
    /// up to 16 (so to whole vectors at either width).
    pub(crate) fn phase_out_plane(&self) -> usize {
        (self.out_h() * self.phase_w()).next_multiple_of(16)
    }
    /// Per tap `t = (c·kh + u)·kw + v`, its offset in the phases of an image:
    /// `c · phase_rows · phase_cols · phase_plane` plus that of `(u, v)`.
    pub(super) fn phase_taps(&self) -> Taps {
        let (s, plane, pw) = (self.stride, self.phase_plane(), self.phase_w());
        let (np, nq) = (self.phase_rows(), self.phase_cols());
        let base = (0..self.kh * self.kw).map(|k| {
            let (u, v) = (k / self.kw, k % self.kw);
            ((u % s) * nq + v % s) * plane + u / s * pw + v / s
        });
        Taps::new(base, self.in_c, np * nq * plane)
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
    /// Values of one image's padded `dy`, then slack (a row more than the reads need).
    pub(crate) fn dy_pad_len(&self) -> usize {
        self.out_c * self.dy_pad_plane() + self.dy_pad_w() + self.kw + PHASE_SLACK
    }
    /// Whether the output rows at the phases' row stride are the output itself
    /// (`phase_w == ow`, `oh · ow` a multiple of 16, as the 1x1 stride-2 kernel on an even
    /// side has): then the forward writes `y` and the weight gradient reads `dy` in place.
    pub(crate) fn phase_rows_exact(&self) -> bool {
        self.phase_w() == self.out_w() && (self.out_h() * self.out_w()) % 16 == 0
    }
    /// Whether the input gradient reads `dy` in place: no padding of `dy` (every sub-kernel
    /// 1x1, so `stride >= k`) and a phase the size of the output.
    pub(crate) fn dy_unpadded(&self) -> bool {
        self.sub_kh(0) == 1
            && self.sub_kw(0) == 1
            && self.phase_rows_exact()
            && self.phase_h() == self.out_h()
    }
    /// Rows `a0 .. a1` of phase `p` that hold input rows (`s·a + p - pad` inside `0 .. h`):
    /// the only ones the input gradient computes.
    pub(crate) fn phase_grad_rows(&self, p: usize) -> (usize, usize) {
        inside(self.h, self.stride, self.pad, p, self.phase_h())
    }
    /// Flat positions of a phase of the input gradient: its rows that hold input rows (at
    /// most `ceil(h / s)`) times `dy_pad_w`, rounded up to 16.
    pub(crate) fn phase_grad_plane(&self) -> usize {
        (self.h.div_ceil(self.stride) * self.dy_pad_w()).next_multiple_of(16)
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
        // Flat position 0 is row a0 of the phase.
        let a0 = self.phase_grad_rows(p).0;
        let base = (0..ka * kb).map(|k| (a0 + ea - 1 - k / kb) * rw + (eb - 1 - k % kb));
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

/// Splits one image `x` (`[in_c, h, w]`) into the phases its taps read (`buf`: at least
/// [`Conv2dShape::phases_len`] values, all written, zeros outside the image and in the
/// slack); with stride 2 each input row goes to its (one or two) phases in one pass.
pub(crate) fn split_phases(s: &Conv2dShape, x: &[f32], buf: &mut [f32]) {
    let (st, pad, w) = (s.stride, s.pad, s.w);
    let (ph, pw) = (s.phase_h(), s.phase_w());
    let (np, nq) = (s.phase_rows(), s.phase_cols());
    let pp = ph * pw;
    let buf = &mut buf[..s.phases_len()];
    let (planes, slack) = buf.split_at_mut(s.in_c * np * nq * pp);
    slack.fill(0.0);
    let cols: [(usize, usize); 2] = [0, 1].map(|q| inside(w, st, pad, q, pw));
    // One block per (c, p): the planes of its phases q = 0 .. nq.
    for (k, block) in planes.chunks_exact_mut(nq * pp).enumerate() {
        let (c, p) = (k / np, k % np);
        let (a0, a1) = inside(s.h, st, pad, p, ph);
        let src = &x[c * s.h * w..(c + 1) * s.h * w];
        for plane in block.chunks_exact_mut(pp) {
            plane[..a0 * pw].fill(0.0);
            plane[a1.max(a0) * pw..].fill(0.0);
        }
        for a in a0..a1 {
            let y = st * a + p - pad;
            let xr = &src[y * w..(y + 1) * w];
            if st == 2 {
                let (q0, q1) = block.split_at_mut(pp);
                let r1 = (nq == 2).then(|| &mut q1[a * pw..(a + 1) * pw]);
                split_row_2(xr, pad, &mut q0[a * pw..(a + 1) * pw], r1, cols);
                continue;
            }
            for (q, plane) in block.chunks_exact_mut(pp).enumerate() {
                let row = &mut plane[a * pw..(a + 1) * pw];
                let (b0, b1) = inside(w, st, pad, q, pw);
                row[..b0].fill(0.0);
                row[b1..].fill(0.0);
                // Indexed per column: where no column of this phase holds input (b0 ==
                // b1), the first one's input position may lie past the row.
                for (b, v) in (b0..b1).zip(&mut row[b0..b1]) {
                    *v = xr[st * b + q - pad];
                }
            }
        }
    }
}

/// One input row `xr` into its two stride-2 phase rows `r0` (even padded columns) and `r1`
/// (odd; `None`: not wanted), zeros where the padded row has padding; `cols`: each
/// phase's columns that hold input ([`inside`]).
fn split_row_2(xr: &[f32], pad: usize, r0: &mut [f32], r1: Option<&mut [f32]>, cols: [(usize, usize); 2]) {
    // Input column x sits in phase (x + pad) % 2 at column (x + pad) / 2.
    let (b0, b1) = cols[0];
    r0[..b0].fill(0.0);
    r0[b1..].fill(0.0);
    let x0 = 2 * b0 - pad;
    for (d, pr) in r0[b0..b1].iter_mut().zip(xr[x0..].chunks(2)) {
        *d = pr[0];
    }
    if let Some(r1) = r1 {
        let (b0, b1) = cols[1];
        r1[..b0].fill(0.0);
        r1[b1..].fill(0.0);
        let x0 = 2 * b0 + 1 - pad;
        for (d, pr) in r1[b0..b1].iter_mut().zip(xr[x0..].chunks(2)) {
            *d = pr[0];
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
/// (`[s · s phases (p, q)][in_c, phase_grad_plane]`, row stride `dy_pad_w`, from row `a0`
/// of [`Conv2dShape::phase_grad_rows`]):
/// `dx[c, y, x] = dphase(c, (y + pad) % s, (x + pad) % s)[(y + pad) / s, (x + pad) / s]`,
/// zero for the phases without taps (`empty(p, q)`).
pub(crate) fn merge_phases(
    s: &Conv2dShape,
    grads: &[f32],
    dx: &mut [f32],
    empty: impl Fn(usize, usize) -> bool,
) {
    let (st, pad, rw, gp) = (s.stride, s.pad, s.dy_pad_w(), s.phase_grad_plane());
    if st == 2 {
        merge_phases_2(s, grads, dx, [0, 1].map(|p| [0, 1].map(|q| empty(p, q))));
        return;
    }
    for (c, plane) in dx.chunks_exact_mut(s.h * s.w).enumerate() {
        for (y, row) in plane.chunks_exact_mut(s.w).enumerate() {
            let (p, a) = ((y + pad) % st, (y + pad) / st);
            let a0 = s.phase_grad_rows(p).0;
            for q in 0..st {
                // The first column x with (x + pad) % st == q, then every st-th.
                let x0 = (st + q - pad % st) % st;
                if x0 >= row.len() {
                    continue;
                }
                let cols = row[x0..].chunks_mut(st);
                if empty(p, q) {
                    cols.for_each(|v| v[0] = 0.0);
                    continue;
                }
                let at = ((p * st + q) * s.in_c + c) * gp + (a - a0) * rw + (x0 + pad) / st;
                for (v, &g) in cols.zip(&grads[at..]) {
                    v[0] = g;
                }
            }
        }
    }
}

/// [`merge_phases`] for stride 2, a row at a time ([`merge_row_2`]); `empty[p][q]`: phase
/// `(p, q)` has no taps.
fn merge_phases_2(s: &Conv2dShape, grads: &[f32], dx: &mut [f32], empty: [[bool; 2]; 2]) {
    let (pad, rw, gp, w) = (s.pad, s.dy_pad_w(), s.phase_grad_plane(), s.w);
    for (c, plane) in dx.chunks_exact_mut(s.h * w).enumerate() {
        // The rows of each phase p: y = y0, y0 + 2, ... with (y + pad) % 2 == p.
        for (p, &empty_p) in empty.iter().enumerate() {
            let y0 = (p + 2 - pad % 2) % 2;
            let a0 = s.phase_grad_rows(p).0;
            let rows = plane.chunks_exact_mut(w).skip(y0).step_by(2);
            let at = [0, 1].map(|q| ((p * 2 + q) * s.in_c + c) * gp);
            match empty_p {
                [true, true] => rows.for_each(|row| row.fill(0.0)),
                [e0, e1] => {
                    for (k, row) in rows.enumerate() {
                        // Row y = y0 + 2k is phase row (y + pad) / 2 = (y0 + pad) / 2 + k.
                        let r = ((y0 + pad) / 2 + k - a0) * rw;
                        let src0 = (!e0).then(|| &grads[at[0] + r..at[0] + r + rw]);
                        let src1 = (!e1).then(|| &grads[at[1] + r..at[1] + r + rw]);
                        merge_row_2(row, pad, [src0, src1]);
                    }
                }
            }
        }
    }
}

/// One row of `dx` from its two stride-2 phases' rows (`None`: a phase without taps, so
/// zeros): input column `x` is column `(x + pad) / 2` of phase `(x + pad) % 2`.
fn merge_row_2(row: &mut [f32], pad: usize, src: [Option<&[f32]>; 2]) {
    // From column xs on, pairs (phase 0, phase 1) at phase columns bs, bs + 1, ...
    let xs = (pad % 2).min(row.len());
    let bs = (xs + pad) / 2;
    if xs == 1 {
        row[0] = src[1].map_or(0.0, |o| o[bs - 1]);
    }
    let body = &mut row[xs..];
    let n = body.len() / 2;
    let (pairs, tail) = body.split_at_mut(2 * n);
    match src {
        [Some(e), Some(o)] => {
            for (pr, (&g0, &g1)) in pairs
                .chunks_exact_mut(2)
                .zip(e[bs..bs + n].iter().zip(&o[bs..bs + n]))
            {
                pr[0] = g0;
                pr[1] = g1;
            }
        }
        [Some(e), None] => {
            for (pr, &g0) in pairs.chunks_exact_mut(2).zip(&e[bs..bs + n]) {
                pr[0] = g0;
                pr[1] = 0.0;
            }
        }
        [None, Some(o)] => {
            for (pr, &g1) in pairs.chunks_exact_mut(2).zip(&o[bs..bs + n]) {
                pr[0] = 0.0;
                pr[1] = g1;
            }
        }
        [None, None] => pairs.fill(0.0),
    }
    if let [last] = tail {
        *last = src[0].map_or(0.0, |e| e[bs + n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `split_phases` against its definition, `phase(c, p, q)[a, b] = xp[c, s·a + p, s·b +
    /// q]` (zero outside the image), for strides 2 and 3, pads 0-3, 1x1 to 3x3 kernels and
    /// row widths 1-41 (phases with no input column among them); the slack is zero.
    #[test]
    fn split_phases_matches_the_definition() {
        for stride in [2, 3] {
            for pad in 0..4 {
                for k in 1..=3 {
                    for w in 1..=41 {
                        for h in [1, 2, 5] {
                            let s = Conv2dShape {
                                batch: 1,
                                in_c: 2,
                                h,
                                w,
                                out_c: 1,
                                kh: k,
                                kw: k,
                                stride,
                                pad,
                            };
                            if s.validate().is_err() {
                                continue;
                            }
                            let x: Vec<f32> = (0..2 * h * w).map(|i| i as f32 + 1.0).collect();
                            let mut buf = vec![f32::NAN; s.phases_len()];
                            split_phases(&s, &x, &mut buf);
                            let (np, nq, ph, pw) = (s.phase_rows(), s.phase_cols(), s.phase_h(), s.phase_w());
                            let mut at = 0;
                            for c in 0..2 {
                                for p in 0..np {
                                    for q in 0..nq {
                                        for a in 0..ph {
                                            for b in 0..pw {
                                                let (r, col) = (stride * a + p, stride * b + q);
                                                let inside = (pad..pad + h).contains(&r)
                                                    && (pad..pad + w).contains(&col);
                                                let want = if inside {
                                                    x[(c * h + r - pad) * w + col - pad]
                                                } else {
                                                    0.0
                                                };
                                                assert_eq!(
                                                    buf[at].to_bits(),
                                                    want.to_bits(),
                                                    "{s:?} phase ({c}, {p}, {q}) at ({a}, {b})"
                                                );
                                                at += 1;
                                            }
                                        }
                                    }
                                }
                            }
                            assert!(buf[at..].iter().all(|&v| v == 0.0), "{s:?} slack");
                        }
                    }
                }
            }
        }
    }
}
