//! A checked wrapper over `matrixmultiply::sgemm` for matrices given as slices with strides.
//!
//! `matrixmultiply` allocates its packing buffer on every call with a non-empty product:
//! the one allocation the kernels cannot avoid. [`gemm_calls`] counts those calls so a
//! caller can tell them apart from its own allocations.

use std::sync::atomic::{AtomicU64, Ordering};

static GEMM_CALLS: AtomicU64 = AtomicU64::new(0);

/// How many `matrixmultiply::sgemm` calls with a non-empty product (each allocates one
/// packing buffer) the kernels have made in this process.
pub fn gemm_calls() -> u64 {
    GEMM_CALLS.load(Ordering::Relaxed)
}

/// A read-only matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows x cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }
    /// The transpose of a row-major `cols x rows` matrix, without copying.
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: 1,
            cs: rows,
        }
    }
}

/// The largest index a `rows x cols` view with strides `rs`, `cs` reaches; panics if it
/// overflows or a stride does not fit the `isize` matrixmultiply takes.
fn last_index(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    assert!(
        rs <= isize::MAX as usize && cs <= isize::MAX as usize,
        "sgemm: stride too large"
    );
    (rows - 1)
        .checked_mul(rs)
        .and_then(|a| (cols - 1).checked_mul(cs).and_then(|b| a.checked_add(b)))
        .expect("sgemm: view size overflows usize")
}

/// `C = alpha * A * B + beta * C`, with `C` row-major `a.rows x b.cols` with row stride `ldc`.
///
/// Panics if the shapes disagree or a view reaches past its slice. When `beta == 0`
/// `C` is overwritten (its old values, even NaN, are ignored), as BLAS specifies.
pub(crate) fn sgemm(alpha: f32, a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: &mut [f32], ldc: usize) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "sgemm: A is {m}x{k} but B has {} rows", b.rows);
    if m == 0 || n == 0 {
        return;
    }
    assert!(ldc >= n, "sgemm: ldc {ldc} < n {n}");
    assert!(
        last_index(m, n, ldc, 1) < c.len(),
        "sgemm: C ({m}x{n}, ldc {ldc}) needs more than {} values",
        c.len()
    );
    if k == 0 {
        for row in c.chunks_mut(ldc).take(m) {
            for v in &mut row[..n] {
                *v = if beta == 0.0 { 0.0 } else { *v * beta };
            }
        }
        return;
    }
    assert!(
        last_index(m, k, a.rs, a.cs) < a.data.len(),
        "sgemm: A view reaches past its slice"
    );
    assert!(
        last_index(k, n, b.rs, b.cs) < b.data.len(),
        "sgemm: B view reaches past its slice"
    );
    GEMM_CALLS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: every index the GEMM touches, (i, p) of A, (p, j) of B and (i, j) of C for
    // i < m, p < k, j < n, is at most the last index checked above to lie in its slice;
    // `c` is a unique borrow, so C aliases neither A nor B.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.as_mut_ptr(),
            ldc as isize,
            1,
        );
    }
}
