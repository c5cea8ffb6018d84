//! The products of Winograd's algorithm, one small matrix product per transform point:
//! register-blocked kernels of [`ROWS`] rows by [`COLS`] vectors, on slices the caller
//! laid out for them (no packing, no allocation).
//!
//! Every result is a single running sum over `k` in order, one fused multiply-add per
//! term (where the CPU has FMA), started from zero ([`forward`]) or from the value `C`
//! already holds ([`accumulate_transposed`]): the result does not depend on how the caller
//! splits `k` into calls, on the vector width, or on the thread count.

use crate::vector::Vector;

/// Rows of `C` [`forward`]'s kernel holds in registers.
pub(super) const ROWS: usize = 6;
/// Vectors of columns of `C` a kernel holds in registers.
const COLS: usize = 2;

/// `C = A · B`: `A` `rows x k` with rows `lda` apart (`rows` a multiple of [`ROWS`]), `B`
/// `k x n` row-major, `C` `rows x n` with rows `ldc` apart, `n` a multiple of `V::LANES`.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward<V: Vector>(
    a: &[f32],
    lda: usize,
    b: &[f32],
    c: &mut [f32],
    ldc: usize,
    rows: usize,
    k: usize,
    n: usize,
) {
    assert!(rows % ROWS == 0 && n % V::LANES == 0 && lda >= k && ldc >= n);
    assert!(a.len() >= (rows - 1) * lda + k && b.len() >= k * n && c.len() >= (rows - 1) * ldc + n);
    for r0 in (0..rows).step_by(ROWS) {
        let a_rows: [&[f32]; ROWS] = std::array::from_fn(|r| &a[(r0 + r) * lda..][..k]);
        let mut j = 0;
        while j + COLS * V::LANES <= n {
            let acc = rows_by::<V, COLS>(&a_rows, b, k, n, j, [[V::ZERO; COLS]; ROWS]);
            store(&acc, c, r0, ldc, j);
            j += COLS * V::LANES;
        }
        if j < n {
            let acc = rows_by::<V, 1>(&a_rows, b, k, n, j, [[V::ZERO; 1]; ROWS]);
            store(&acc, c, r0, ldc, j);
        }
    }
}

/// `[ROWS][NV]` vectors of `C[r0.., j..] (+)= A · B` with `A`'s rows `a_rows`, from `acc`.
#[inline(always)]
fn rows_by<V: Vector, const NV: usize>(
    a_rows: &[&[f32]; ROWS],
    b: &[f32],
    k: usize,
    n: usize,
    j: usize,
    mut acc: [[V; NV]; ROWS],
) -> [[V; NV]; ROWS] {
    for p in 0..k {
        let brow = &b[p * n + j..][..NV * V::LANES];
        let bv: [V; NV] = std::array::from_fn(|v| V::load(&brow[v * V::LANES..]));
        for (row, acc_r) in a_rows.iter().zip(&mut acc) {
            let av = V::splat(row[p]);
            for (x, &bvv) in acc_r.iter_mut().zip(&bv) {
                *x = av.mul_add(bvv, *x);
            }
        }
    }
    acc
}

fn store<V: Vector, const NV: usize>(acc: &[[V; NV]; ROWS], c: &mut [f32], r0: usize, ldc: usize, j: usize) {
    for (r, acc_r) in acc.iter().enumerate() {
        for (v, x) in acc_r.iter().enumerate() {
            x.store(&mut c[(r0 + r) * ldc + j + v * V::LANES..]);
        }
    }
}

/// `C += Aᵀ · B`: `A` `k x rows` with rows `lda` apart, `B` `k x n` with rows `ldb`
/// apart, `C` `rows x n` row-major, `rows` and `n` multiples of `V::LANES`. Each value of
/// `C` adds the `k` products to itself in order.
#[allow(clippy::too_many_arguments)]
pub(super) fn accumulate_transposed<V: Vector>(
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    rows: usize,
    k: usize,
    n: usize,
) {
    assert!(rows % V::LANES == 0 && n % V::LANES == 0 && lda >= rows && ldb >= n && k >= 1);
    assert!(a.len() >= (k - 1) * lda + rows && b.len() >= (k - 1) * ldb + n && c.len() >= rows * n);
    for r0 in (0..rows).step_by(TRANSPOSED_ROWS) {
        columns_by::<V, TRANSPOSED_ROWS>((a, lda), (b, ldb), c, k, n, r0);
    }
}

/// Rows of `C` [`accumulate_transposed`]'s kernel holds: 4 divides every multiple of a
/// vector width, and 4 x 2 vectors keep eight sums in flight with six loads per eight
/// multiply-adds.
const TRANSPOSED_ROWS: usize = 4;

/// Rows `r0..r0 + R` of [`accumulate_transposed`], [`COLS`] vectors of columns at a time,
/// then one.
#[inline(always)]
fn columns_by<V: Vector, const R: usize>(
    a: (&[f32], usize),
    b: (&[f32], usize),
    c: &mut [f32],
    k: usize,
    n: usize,
    r0: usize,
) {
    let mut j = 0;
    while j + COLS * V::LANES <= n {
        block::<V, R, COLS>(a, b, c, k, n, r0, j);
        j += COLS * V::LANES;
    }
    if j < n {
        block::<V, R, 1>(a, b, c, k, n, r0, j);
    }
}

/// `C[r0..r0 + R][j..j + NV·L] += Σ_p A[p][r0..]ᵀ B[p][j..]`, the sums in registers.
#[inline(always)]
fn block<V: Vector, const R: usize, const NV: usize>(
    (a, lda): (&[f32], usize),
    (b, ldb): (&[f32], usize),
    c: &mut [f32],
    k: usize,
    n: usize,
    r0: usize,
    j: usize,
) {
    let mut acc: [[V; NV]; R] =
        std::array::from_fn(|r| std::array::from_fn(|v| V::load(&c[(r0 + r) * n + j + v * V::LANES..])));
    for p in 0..k {
        let acol = &a[p * lda + r0..][..R];
        let brow = &b[p * ldb + j..][..NV * V::LANES];
        let bv: [V; NV] = std::array::from_fn(|v| V::load(&brow[v * V::LANES..]));
        for (&ar, acc_r) in acol.iter().zip(&mut acc) {
            let av = V::splat(ar);
            for (x, &bvv) in acc_r.iter_mut().zip(&bv) {
                *x = av.mul_add(bvv, *x);
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        for (v, x) in acc_r.iter().enumerate() {
            x.store(&mut c[(r0 + r) * n + j + v * V::LANES..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wide::{f32x16, f32x8};

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 20) as f32 / 2048.0 - 1.0)
            .collect()
    }

    /// Each value a running fused sum over `k` in order, as the kernels promise.
    fn reference(
        a: impl Fn(usize, usize) -> f32,
        b: &[f32],
        c0: &[f32],
        rows: usize,
        k: usize,
        n: usize,
    ) -> Vec<f32> {
        let mut c = c0.to_vec();
        for r in 0..rows {
            for j in 0..n {
                for p in 0..k {
                    c[r * n + j] = a(r, p).mul_add(b[p * n + j], c[r * n + j]);
                }
            }
        }
        c
    }

    fn check_forward<V: Vector>() {
        for (rows, k, n) in [
            (6, 1, V::LANES),
            (12, 5, 3 * V::LANES),
            (18, 17, 2 * V::LANES),
            (6, 64, 5 * V::LANES),
        ] {
            let (a, b) = (values(rows * k, 1), values(k * n, 2));
            let mut c = vec![f32::NAN; rows * n];
            forward::<V>(&a, k, &b, &mut c, n, rows, k, n);
            let want = reference(|r, p| a[r * k + p], &b, &vec![0.0; rows * n], rows, k, n);
            assert_eq!(c, want, "{rows}x{k}x{n} at {} lanes", V::LANES);
            // Rows apart: A's every third row, C's every other.
            let a3: Vec<f32> = a.chunks_exact(k).flat_map(|r| [r, r, r].concat()).collect();
            let mut c2 = vec![f32::NAN; 2 * rows * n];
            forward::<V>(&a3, 3 * k, &b, &mut c2, 2 * n, rows, k, n);
            let every_other: Vec<f32> = c2.chunks_exact(n).step_by(2).flatten().copied().collect();
            assert_eq!(every_other, want);
        }
    }

    fn check_accumulate<V: Vector>() {
        for (rows, k, n) in [
            (V::LANES, 1, V::LANES),
            (2 * V::LANES, 7, 3 * V::LANES),
            (V::LANES, 30, 2 * V::LANES),
        ] {
            let (a, b, c0) = (values(k * rows, 3), values(k * n, 4), values(rows * n, 5));
            let mut c = c0.clone();
            accumulate_transposed::<V>(&a, rows, &b, n, &mut c, rows, k, n);
            let want = reference(|r, p| a[p * rows + r], &b, &c0, rows, k, n);
            assert_eq!(c, want, "{rows}x{k}x{n} at {} lanes", V::LANES);
            // Rows apart: A's and B's rows each repeated.
            let a2: Vec<f32> = a.chunks_exact(rows).flat_map(|r| [r, r].concat()).collect();
            let b2: Vec<f32> = b.chunks_exact(n).flat_map(|r| [r, r, r].concat()).collect();
            let mut c = c0.clone();
            accumulate_transposed::<V>(&a2, 2 * rows, &b2, 3 * n, &mut c, rows, k, n);
            assert_eq!(c, want);
        }
    }

    #[test]
    fn forward_is_a_running_sum_at_both_widths() {
        if !crate::arch::FMA {
            // Without FMA the kernels multiply and add apart; the reference fuses.
            return check_unfused();
        }
        check_forward::<f32x8>();
        check_forward::<f32x16>();
    }

    #[test]
    fn accumulate_transposed_is_a_running_sum_at_both_widths() {
        if !crate::arch::FMA {
            return check_unfused();
        }
        check_accumulate::<f32x8>();
        check_accumulate::<f32x16>();
    }

    /// Builds without FMA: the two widths agree with each other.
    fn check_unfused() {
        let (rows, k, n) = (12, 9, 32);
        let (a, b) = (values(rows * k, 1), values(k * n, 2));
        let (mut c8, mut c16) = (vec![0.0; rows * n], vec![0.0; rows * n]);
        forward::<f32x8>(&a, k, &b, &mut c8, n, rows, k, n);
        forward::<f32x16>(&a, k, &b, &mut c16, n, rows, k, n);
        assert_eq!(c8, c16);
    }
}
