//! Vectors loaded in two halves from two places: the direct kernels' vectors over two
//! rows of a plane whose rows are half a vector wide (8x8 planes with 16 lanes), so no
//! lane is wasted.

use crate::vector::Vector;
use wide::{f32x16, f32x8};

/// A [`Vector`] whose lower half can come from one slice and upper half from another.
pub(crate) trait HalfLoad: Vector {
    /// Lanes `0 .. LANES / 2` from the start of `lo`, lanes `LANES / 2 ..` from the start
    /// of `hi` (each must hold at least `LANES / 2` values).
    fn load_halves(lo: &[f32], hi: &[f32]) -> Self;
}

impl HalfLoad for f32x8 {
    #[inline(always)]
    fn load_halves(lo: &[f32], hi: &[f32]) -> Self {
        let mut a = [0.0f32; 8];
        a[..4].copy_from_slice(&lo[..4]);
        a[4..].copy_from_slice(&hi[..4]);
        f32x8::new(a)
    }
}

impl HalfLoad for f32x16 {
    /// Two 8-lane loads joined into one register (with AVX-512, one `vinsertf64x4`).
    #[inline(always)]
    fn load_halves(lo: &[f32], hi: &[f32]) -> Self {
        let mut a = [0.0f32; 16];
        a[..8].copy_from_slice(&lo[..8]);
        a[8..].copy_from_slice(&hi[..8]);
        f32x16::new(a)
    }
}

#[cfg(test)]
mod tests {
    use crate::arch::Lanes;
    use crate::conv::{conv2d_forward_with, Conv2dShape, ForwardPath};
    use crate::simd::fma;

    /// The grouped path on planes whose rows are half a vector (or less, or more) wide,
    /// even and odd heights, at both widths: bit for bit the tap-order sum from the bias.
    #[test]
    fn grouped_row_pairs_sum_in_tap_order() {
        for (h, w) in [(8, 8), (7, 8), (4, 4), (5, 4), (1, 8), (3, 9), (6, 16)] {
            let s = Conv2dShape {
                batch: 3,
                in_c: 5,
                h,
                w,
                out_c: 11,
                kh: 3,
                kw: 3,
                stride: 1,
                pad: 1,
            };
            let val = |i: usize, m: usize| ((i * 7919 % m) as f32 - m as f32 / 2.0) * 0.013;
            let x: Vec<f32> = (0..s.input_len()).map(|i| val(i, 97)).collect();
            let wt: Vec<f32> = (0..s.weight_len()).map(|i| val(i, 61)).collect();
            let b: Vec<f32> = (0..s.out_c).map(|i| val(i, 13)).collect();
            let (oh, ow) = (s.out_h(), s.out_w());
            let mut want = vec![0.0f32; s.output_len()];
            for n in 0..s.batch {
                for o in 0..s.out_c {
                    for i in 0..oh {
                        for j in 0..ow {
                            let mut acc = b[o];
                            for c in 0..s.in_c {
                                for u in 0..3 {
                                    for v in 0..3 {
                                        let (r, q) = ((i + u) as isize - 1, (j + v) as isize - 1);
                                        let xv = if r < 0 || q < 0 || r >= h as isize || q >= w as isize {
                                            0.0
                                        } else {
                                            x[((n * s.in_c + c) * h + r as usize) * w + q as usize]
                                        };
                                        acc = fma(wt[((o * s.in_c + c) * 3 + u) * 3 + v], xv, acc);
                                    }
                                }
                            }
                            want[((n * s.out_c + o) * oh + i) * ow + j] = acc;
                        }
                    }
                }
            }
            for lanes in Lanes::ALL {
                let path = ForwardPath::Grouped;
                let mut y = vec![f32::NAN; s.output_len()];
                let mut scratch = vec![f32::NAN; path.scratch_len(&s)];
                conv2d_forward_with(&s, path, lanes, &x, &wt, Some(&b), &mut y, &mut scratch);
                for (k, (g, e)) in y.iter().zip(&want).enumerate() {
                    assert_eq!(
                        g.to_bits(),
                        e.to_bits(),
                        "{h}x{w} at {lanes:?}: output {k}: {g} vs {e}"
                    );
                }
            }
        }
    }
}
