//! The GFLOP/s table printed before the criterion groups: every conv kernel shape of
//! `CONV_LAYERS` against a plain `matrixmultiply::sgemm` on its GEMM shape, through a
//! checked wrapper over that call (the same one the kernels make).

use super::*;

// ---------------------------------------------------------------------------------------
// A checked wrapper over matrixmultiply::sgemm (the same call the kernels make)
// ---------------------------------------------------------------------------------------

/// A strided matrix view: element `(r, c)` is `data[r·rs + c·cs]`.
#[derive(Clone, Copy)]
pub(super) struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    pub(super) fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }
    /// `data` holds a `cols x rows` row-major matrix, seen transposed as `rows x cols`.
    pub(super) fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: 1,
            cs: rows,
        }
    }
    pub(super) fn last(&self) -> usize {
        (self.rows - 1) * self.rs + (self.cols - 1) * self.cs
    }
}

/// `c = a·b + beta·c`, `c` row-major with leading dimension `ldc`.
pub(super) fn gemm(a: Mat<'_>, b: Mat<'_>, beta: f32, c: &mut [f32], ldc: usize) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "gemm: A is {m}x{k}, B has {} rows", b.rows);
    assert!(m > 0 && k > 0 && n > 0 && ldc >= n, "gemm: empty or bad ldc");
    assert!(a.last() < a.data.len(), "gemm: A view reaches past its slice");
    assert!(b.last() < b.data.len(), "gemm: B view reaches past its slice");
    assert!((m - 1) * ldc + n <= c.len(), "gemm: C too short");
    // SAFETY: the asserts above keep every index of A, B and C inside its slice, and `c`
    // is borrowed mutably, so it does not alias `a` or `b`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
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

/// Buffers for `matrixmultiply::sgemm` on one conv kernel's GEMM shape, repeated `batch`
/// times, split in `BATCH_CHUNK`-image rayon tasks as the kernels split theirs.
pub(super) struct SgemmRef {
    kernel: ConvKernel,
    s: Conv2dShape,
    /// `[in_c·kh·kw, oh·ow]`: one lowered image, shared read-only by every task.
    col: Vec<f32>,
    weight: Vec<f32>,
    dy: Vec<f32>,
    /// Forward: the whole `y`; weights: one `[out_c, in_c·kh·kw]` partial per task;
    /// input: one `[in_c·kh·kw, oh·ow]` dcol per task.
    out: Vec<f32>,
}

impl SgemmRef {
    pub(super) fn new(kernel: ConvKernel, s: Conv2dShape) -> Self {
        let out_len = match kernel {
            ConvKernel::Forward => s.output_len(),
            ConvKernel::Weights => s.chunks() * s.weight_len(),
            ConvKernel::Input => s.chunks() * s.col_len(),
        };
        Self {
            kernel,
            s,
            col: random_vec(s.col_len(), 5),
            weight: random_vec(s.weight_len(), 6),
            dy: random_vec(s.output_len(), 7),
            out: vec![0.0; out_len],
        }
    }

    pub(super) fn run(&mut self) {
        let s = &self.s;
        let (ol, p, kk) = (s.out_image_len(), s.out_h() * s.out_w(), s.col_rows());
        let (col, weight, dy) = (
            black_box(&self.col[..]),
            black_box(&self.weight[..]),
            black_box(&self.dy[..]),
        );
        match self.kernel {
            // y_n = W[out_c, K] · col[K, P]
            ConvKernel::Forward => self.out.par_chunks_mut(BATCH_CHUNK * ol).for_each(|yc| {
                for yn in yc.chunks_exact_mut(ol) {
                    gemm(
                        Mat::row_major(weight, s.out_c, kk),
                        Mat::row_major(col, kk, p),
                        0.0,
                        yn,
                        p,
                    );
                }
            }),
            // dW += dy_n[out_c, P] · colᵀ[P, K]
            ConvKernel::Weights => self
                .out
                .par_chunks_mut(s.weight_len())
                .zip(dy.par_chunks(BATCH_CHUNK * ol))
                .for_each(|(part, dyc)| {
                    for dyn_ in dyc.chunks_exact(ol) {
                        gemm(
                            Mat::row_major(dyn_, s.out_c, p),
                            Mat::transposed(col, p, kk),
                            1.0,
                            part,
                            kk,
                        );
                    }
                }),
            // dcol = Wᵀ[K, out_c] · dy_n[out_c, P]
            ConvKernel::Input => self
                .out
                .par_chunks_mut(s.col_len())
                .zip(dy.par_chunks(BATCH_CHUNK * ol))
                .for_each(|(dcol, dyc)| {
                    for dyn_ in dyc.chunks_exact(ol) {
                        gemm(
                            Mat::transposed(weight, kk, s.out_c),
                            Mat::row_major(dyn_, s.out_c, p),
                            0.0,
                            dcol,
                            p,
                        );
                    }
                }),
        }
        black_box(&mut self.out);
    }
}

// ---------------------------------------------------------------------------------------
// GFLOP/s table
// ---------------------------------------------------------------------------------------

/// Runs of the timed loop; the median is reported.
pub(super) const GFLOPS_RUNS: usize = 7;
/// Each run repeats the call until it covers about this many FLOPs (a few ms).
pub(super) const GFLOPS_RUN_FLOPS: f64 = 2.0e8;

/// Median seconds per call of `f` over `GFLOPS_RUNS` runs of `reps` calls, after one
/// warm-up run.
pub(super) fn time_per_call(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut run = || {
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        t.elapsed().as_secs_f64() / reps as f64
    };
    run();
    let mut times: Vec<f64> = (0..GFLOPS_RUNS).map(|_| run()).collect();
    median(&mut times)
}

pub(super) fn gflops_rows(label: &str) {
    println!("-- {label} --");
    for layer in &CONV_LAYERS {
        for batch in CONV_BATCHES {
            let s = layer.shape(batch);
            let mut bufs = ConvBufs::new(s);
            for kernel in ConvKernel::ALL.into_iter().filter(|k| k.applies_to(layer)) {
                let (m, k, n) = kernel.gemm_mkn(&s);
                let flops = 2.0 * (m * k * n * batch) as f64;
                let reps = (GFLOPS_RUN_FLOPS / flops).ceil().max(1.0) as usize;
                let petal = time_per_call(reps, || bufs.run(kernel));
                let mut reference = SgemmRef::new(kernel, s);
                let sgemm = time_per_call(reps, || reference.run());
                println!(
                    "{:<32} {:<24} M={m:<4} K={k:<5} N={n:<5} petal {:>7.1} GFLOP/s  sgemm-same-shape {:>7.1} GFLOP/s  ({:.2}x)",
                    layer.id(batch),
                    kernel.name(),
                    flops / petal / 1e9,
                    flops / sgemm / 1e9,
                    sgemm / petal,
                );
            }
        }
    }
}

/// The conv GFLOP/s table: each conv kernel shape benchmarked, against `matrixmultiply`'s
/// sgemm on its GEMM shape (repeated `batch` times, split over rayon tasks as the kernel
/// is), first in a 1-thread rayon pool, then in rayon's default pool.
pub(super) fn print_gflops_table() {
    let start = Instant::now();
    println!(
        "== conv GFLOP/s: Petal kernel vs matrixmultiply::sgemm on the same GEMM shape \
         (FLOPs = 2*M*N*K*batch, median of {GFLOPS_RUNS} runs; skip with PETAL_BENCH_NO_GFLOPS=1) =="
    );
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a 1-thread rayon pool");
    one.install(|| gflops_rows("1 thread (rayon pool of 1)"));
    gflops_rows(&format!(
        "rayon default pool ({} threads)",
        rayon::current_num_threads()
    ));
    println!("== table took {:.1} s ==\n", start.elapsed().as_secs_f64());
}
