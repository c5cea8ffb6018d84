//! [`WeightGradPath::Direct3x3`](super::WeightGradPath::Direct3x3): the register-blocked
//! weight (and bias) gradient of 3x3 stride-1 convolutions, over the images of one chunk.

use super::halves::HalfLoad;
use super::padding::pad_image;
use super::Conv2dShape;
use crate::arch::TILES;
use crate::vector::Vector;
use wide::{f32x16, f32x8};

/// Output channels per register block (the instruction set's `Tiles::dw3x3_channels`,
/// `arch/`).
const DW3X3_GROUP: usize = TILES.dw3x3_channels;

/// How the kernel covers the `ow` output columns with strips of `L` lanes: full strips
/// up to `wide_end`, then (16 lanes only) one full 8-lane strip when exactly 8 columns
/// remain, else the `ow - wide_end` remaining columns as one strip of `tail_lanes` lanes
/// (0: none) whose `dy` comes from a zero-padded copy.
#[derive(Clone, Copy)]
struct Dw3x3Strips {
    wide_end: usize,
    eight: bool,
    tail_lanes: usize,
}

impl Dw3x3Strips {
    fn new(ow: usize, lanes: usize) -> Self {
        let wide_end = ow / lanes * lanes;
        let rem = ow - wide_end;
        let eight = lanes == 16 && rem == 8;
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
    /// Whether the kernel reads the input as it is instead of a zero-padded copy: no
    /// padding and no partial strip (whose vectors would read past a row's end), which at
    /// either width ([`Dw3x3Strips`]) means `ow` a multiple of 8.
    fn dw3x3_reads_x_directly(&self) -> bool {
        self.pad == 0 && self.out_w() % 8 == 0
    }
    /// Per-image scratch of the kernel: the zero-padded copy (unless it reads the input
    /// directly), then room for the zero-padded copy of the last `dy` columns,
    /// `out_c · oh · 16`, when `ow` is not a multiple of 16 (the most either width uses).
    pub(crate) fn dw3x3_image_scratch_len(&self) -> usize {
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
/// image of the chunk; then one horizontal sum each. A strip (`V::LANES` output columns,
/// then 8; [`Dw3x3Strips`]) walks down the input rows `r`: the 3 shifted input vectors
/// `xp[c, r, j + v ..]` are loaded once and meet the `dy` rows `i = r - u` (`u = 0, 1, 2`)
/// held in registers, one new `dy` row per output channel per step: 3 + G loads for
/// 9 · G FMAs. With the first input channel, each `dy` row loaded is also added to one
/// bias accumulator per output channel. The last, partial strip reads `dy` from a copy
/// of those columns with zeros past `ow` (`[images, out_c, oh, tail_lanes]`), so the
/// input values its extra lanes meet (real columns or row slack, inside the padded copy)
/// add nothing.
///
/// With 16 lanes and `ow == 8`, a strip holds the 8 columns of two input channels
/// ([`dw3x3_pair`]) instead of leaving half of each vector idle; its lanes sum as the
/// 8-lane strip's do.
///
/// The summation order (lanes of each strip width, then images, strips and rows in order)
/// depends only on the shape and `V`, never on threads.
pub(super) fn backward_weights_chunk<V: Vector>(
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
            plane: s.padded_plane(),
            row: s.padded_stride(),
            shift: 0,
        }
    };
    let plan = Dw3x3Strips::new(ow, V::LANES);
    let tl = plan.tail_lanes;
    debug_assert!(!direct || tl == 0);
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
            dw3x3_group::<V, DW3X3_GROUP>(s, xp, dys, plan, images, o, gw, gbo);
            o += DW3X3_GROUP;
        } else {
            dw3x3_group::<V, 1>(s, xp, dys, plan, images, o, gw, gbo);
            o += 1;
        }
    }
}

/// Output channels `o0 .. o0 + G` of [`backward_weights_chunk`], every input channel;
/// `dys`: `dy` as it is, and its zero-padded last columns.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn dw3x3_group<V: Vector, const G: usize>(
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
    // Rows half a 16-lane vector wide: two input channels per vector (`dw3x3_pair`).
    let pairs = if V::LANES == 16 && plan.eight && plan.wide_end == 0 {
        s.in_c / 2
    } else {
        0
    };
    for c in (0..pairs).map(|k| 2 * k) {
        let mut sums = [[[0.0f32; 9]; G]; 2];
        if c == 0 && gb.is_some() {
            dw3x3_pair::<G, true>(s, xp, dys[0], images, o0, c, &mut sums, &mut bias);
        } else {
            dw3x3_pair::<G, false>(s, xp, dys[0], images, o0, c, &mut sums, &mut bias);
        }
        for (k, sk) in sums.iter().enumerate() {
            for (g, sg) in sk.iter().enumerate() {
                let at = ((o0 + g) * s.in_c + c + k) * 9;
                gw[at..at + 9].copy_from_slice(sg);
            }
        }
    }
    for c in 2 * pairs..s.in_c {
        let mut sums = [[0.0f32; 9]; G];
        if c == 0 && gb.is_some() {
            dw3x3_passes::<V, G, true>(s, xp, dys, plan, images, o0, c, &mut sums, &mut bias);
        } else {
            dw3x3_passes::<V, G, false>(s, xp, dys, plan, images, o0, c, &mut sums, &mut bias);
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

/// Every strip of [`backward_weights_chunk`] for output channels `o0 .. o0 + G` and
/// input channel `c`, in the order of [`Dw3x3Strips`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn dw3x3_passes<V: Vector, const G: usize, const BIAS: bool>(
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
        dw3x3_pass::<V, G, BIAS>(xp, direct, sel, 0, we, sums, bias);
    }
    if plan.eight {
        dw3x3_pass::<f32x8, G, BIAS>(xp, direct, sel, we, ow, sums, bias);
    }
    match plan.tail_lanes {
        16 => dw3x3_pass::<f32x16, G, BIAS>(xp, padded, sel, we, we + 16, sums, bias),
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
            dw3x3_strip::<V, Plain, G, BIAS>(
                [xc; 2],
                xp.row,
                j,
                &dyo,
                dy.row,
                j - dy.shift,
                oh,
                &mut acc,
                &mut bacc,
            );
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

/// One strip of `R::COLS` output columns of one image, input columns from `xj` of the
/// plane `xcs[0]` (and with [`Paired`] rows, `xcs[1]` in the upper lanes; row stride
/// `xr`), `dy` columns from `dj` of the planes `dyo` (row stride `dr`): `acc[g][3u + v]
/// += dy[o0 + g, i, ..] · xc[i + u, xj + v ..]` over every output row `i`, walked as
/// input rows `r = i + u` (see [`backward_weights_chunk`]), and with `BIAS`, `bacc[g] +=
/// dy[o0 + g, i, ..]`. The first two and last two input rows meet fewer `dy` rows and run
/// as their own steps.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn dw3x3_strip<V: Vector, R: StripRows<V>, const G: usize, const BIAS: bool>(
    xcs: [&[f32]; 2],
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
        std::array::from_fn(|g| dyo[g].chunks_exact(dr).map(|row| &row[dj..dj + R::COLS]));
    let mut dy_row = || -> [V; G] {
        std::array::from_fn(|g| {
            let d = R::dy(dy_rows[g].next().expect("oh dy rows"));
            if BIAS {
                bacc[g] = bacc[g] + d;
            }
            d
        })
    };
    let mut x_rows0 = xcs[0].chunks_exact(xr).map(|row| &row[xj..xj + R::COLS + 2]);
    let mut x_rows1 = xcs[1].chunks_exact(xr).map(|row| &row[xj..xj + R::COLS + 2]);
    let mut x_row = || -> [V; 3] {
        let r0 = x_rows0.next().expect("oh + 2 input rows");
        // The second channel's rows only where the vectors hold two.
        let r1 = if R::PAIR {
            x_rows1.next().expect("oh + 2 input rows")
        } else {
            r0
        };
        [R::x(r0, r1), R::x(&r0[1..], &r1[1..]), R::x(&r0[2..], &r1[2..])]
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

/// How [`dw3x3_strip`] fills a vector from a row: [`Plain`] or [`Paired`].
trait StripRows<V: Vector> {
    /// Output columns per strip.
    const COLS: usize;
    /// Whether the upper lanes hold a second input channel.
    const PAIR: bool;
    /// The input vector from rows `r0` (and `r1`) at the same columns.
    fn x(r0: &[f32], r1: &[f32]) -> V;
    /// The `dy` vector from a row.
    fn dy(r: &[f32]) -> V;
}

/// `V::LANES` columns of one input channel: `r1` unused.
struct Plain;

impl<V: Vector> StripRows<V> for Plain {
    const COLS: usize = V::LANES;
    const PAIR: bool = false;
    #[inline(always)]
    fn x(r0: &[f32], _: &[f32]) -> V {
        V::load(r0)
    }
    #[inline(always)]
    fn dy(r: &[f32]) -> V {
        V::load(r)
    }
}

/// `V::LANES / 2` columns of two input channels, the second's in the upper lanes, the
/// `dy` row in both halves.
struct Paired;

impl<V: HalfLoad> StripRows<V> for Paired {
    const COLS: usize = V::LANES / 2;
    const PAIR: bool = true;
    #[inline(always)]
    fn x(r0: &[f32], r1: &[f32]) -> V {
        V::load_halves(r0, r1)
    }
    #[inline(always)]
    fn dy(r: &[f32]) -> V {
        V::load_halves(r, r)
    }
}

/// Input channels `c` and `c + 1` of output channels `o0 .. o0 + G` for an 8-column `dy`
/// (`ow == 8`, read as it is) with 16 lanes: each strip vector holds the 8 columns of
/// channel `c` in its lower half and of `c + 1` in its upper half, the `dy` row in both,
/// so each lane sums exactly what the lane of an 8-lane strip ([`dw3x3_pass`] on `f32x8`)
/// would, in the same order: `sums[k]` (channel `c + k`) and with `BIAS` `bias` (the lower
/// halves) are bit for bit the 8-lane pass's, with no lane idle.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn dw3x3_pair<const G: usize, const BIAS: bool>(
    s: &Conv2dShape,
    xp: Planes<'_>,
    dy: Planes<'_>,
    images: usize,
    o0: usize,
    c: usize,
    sums: &mut [[[f32; 9]; G]; 2],
    bias: &mut [f32; G],
) {
    debug_assert_eq!(s.out_w(), 8);
    let mut acc = [[f32x16::splat(0.0); 9]; G];
    let mut bacc = [f32x16::splat(0.0); G];
    for n in 0..images {
        let xcs = [xp.get(n, c), xp.get(n, c + 1)];
        let dyo: [&[f32]; G] = std::array::from_fn(|g| dy.get(n, o0 + g));
        dw3x3_strip::<f32x16, Paired, G, BIAS>(
            xcs,
            xp.row,
            0,
            &dyo,
            dy.row,
            0,
            s.out_h(),
            &mut acc,
            &mut bacc,
        );
    }
    let halves = |a: f32x16| -> [f32x8; 2] {
        let a = a.to_array();
        let h = |k: usize| f32x8::new(a[8 * k..8 * k + 8].try_into().expect("8 lanes"));
        [h(0), h(1)]
    };
    for (g, ag) in acc.iter().enumerate() {
        for (e, a) in ag.iter().enumerate() {
            let [lo, hi] = halves(*a);
            sums[0][g][e] += lo.reduce_add();
            sums[1][g][e] += hi.reduce_add();
        }
    }
    if BIAS {
        for (b, a) in bias.iter_mut().zip(&bacc) {
            *b += halves(*a)[0].reduce_add();
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::arch::Lanes;
    use crate::conv::{conv2d_backward_weights_with, Conv2dShape, WeightGradPath};

    /// With 16 lanes, 8-column planes take two input channels per vector
    /// ([`dw3x3_pair`](super::dw3x3_pair)): each channel's gradient (and the bias
    /// gradient) is bit for bit what it is with that channel alone (one channel: the
    /// 8-lane strip).
    #[test]
    fn paired_channels_match_each_channel_alone() {
        for (in_c, h, pad) in [(5, 8, 1), (4, 10, 0), (2, 8, 1)] {
            let s = Conv2dShape {
                batch: 5,
                in_c,
                h,
                w: h,
                out_c: 3,
                kh: 3,
                kw: 3,
                stride: 1,
                pad,
            };
            assert_eq!(s.out_w(), 8);
            let val = |i: usize, m: usize| ((i * 7919 % m) as f32 - m as f32 / 2.0) * 0.017;
            let x: Vec<f32> = (0..s.input_len()).map(|i| val(i, 89)).collect();
            let dy: Vec<f32> = (0..s.output_len()).map(|i| val(i, 53)).collect();
            let path = WeightGradPath::Direct3x3;
            let run = |s: &Conv2dShape, x: &[f32]| {
                let mut gw = vec![f32::NAN; s.weight_len()];
                let mut gb = vec![f32::NAN; s.out_c];
                let mut scratch = vec![f32::NAN; path.scratch_len(s)];
                conv2d_backward_weights_with(
                    s,
                    path,
                    Lanes::Sixteen,
                    x,
                    &dy,
                    &mut gw,
                    Some(&mut gb),
                    &mut scratch,
                );
                (gw, gb)
            };
            let (gw, gb) = run(&s, &x);
            let one = Conv2dShape { in_c: 1, ..s };
            let plane = h * h;
            for c in 0..in_c {
                let xc: Vec<f32> = (0..s.batch)
                    .flat_map(|n| x[(n * in_c + c) * plane..][..plane].iter().copied())
                    .collect();
                let (gw1, gb1) = run(&one, &xc);
                for o in 0..s.out_c {
                    for e in 0..9 {
                        let (got, want) = (gw[(o * in_c + c) * 9 + e], gw1[o * 9 + e]);
                        assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "in_c {in_c}, pad {pad}: ({o}, {c}, {e})"
                        );
                    }
                }
                for (g, w) in gb.iter().zip(&gb1) {
                    assert_eq!(g.to_bits(), w.to_bits(), "in_c {in_c}: bias");
                }
            }
        }
    }
}
