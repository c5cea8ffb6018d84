//! Criterion benchmarks of Petal's kernels (`petal-kernels`) at the shapes of the two
//! reference networks, plus two reports printed outside criterion's own output:
//!
//! - a GFLOP/s table (printed first): every conv kernel shape benchmarked here, timed
//!   against a plain `matrixmultiply::sgemm` on the same GEMM shape, on 1 thread and on
//!   rayon's default pool. Skip it with `PETAL_BENCH_NO_GFLOPS=1`.
//! - group `conv_path`: the public conv kernels (direct SIMD for every stride-1 3x3
//!   convolution, forward and weight gradient) against the im2col + GEMM path they replace
//!   (a bench-local copy, `*_gemm`), at seednet's and flowernet's shapes with `in_c` from
//!   1 to 32, with one line per shape saying which is faster. This is what justifies
//!   `Conv2dShape::uses_direct_3x3` (and `uses_direct_forward`). Each GEMM result is
//!   checked against the API's first.
//!
//! Run: `cargo bench --bench kernels` (all, a few minutes on 2 cores),
//! `cargo bench --bench kernels -- conv_path` (a filter; the table still prints first),
//! `PETAL_BENCH_NO_GFLOPS=1 cargo bench --bench kernels -- pool` (no table). The table
//! prints only when measuring (`cargo bench`), not under `--test`, `--list` or
//! `--profile-time`. Criterion's defaults here (20 samples, 0.5 s warm-up, 2 s measurement;
//! 1 s for `conv_path`) are set on the `Criterion` config, so `--sample-size`, `--quick`
//! and (except for `conv_path`) `--measurement-time` on the command line override them.
//!
//! Benchmark ids read `kernel/network_shape_bBATCH`, e.g. `conv2d_forward/seednet_1to8_50x50_b32`
//! or `max_pool2d_forward/flowernet_16x64x64_b128`. Throughput is in images (elements =
//! batch) for the conv, pool, dense and softmax kernels, in values for ReLU and SGD.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, Bencher, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use petal_kernels::conv::BATCH_CHUNK;
use petal_kernels::{
    conv2d_backward_input, conv2d_backward_weights, conv2d_forward, dense_backward, dense_forward, im2col,
    max_pool2d_backward, max_pool2d_forward, relu_backward, relu_forward, relu_forward_inplace, sgd_step,
    simd, softmax_cross_entropy, Conv2dShape, DenseShape, Pool2dShape, SgdConfig,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

// ---------------------------------------------------------------------------------------
// Shapes
// ---------------------------------------------------------------------------------------

/// One conv layer of a reference network (3x3, stride 1).
#[derive(Clone, Copy)]
struct ConvLayer {
    /// `network_layer`, e.g. `flowernet_c2`.
    name: &'static str,
    in_c: usize,
    /// Square input side.
    hw: usize,
    out_c: usize,
    pad: usize,
    /// Whether a network computes this layer's input gradient (not for its first layer).
    input_grad: bool,
}

impl ConvLayer {
    fn shape(&self, batch: usize) -> Conv2dShape {
        Conv2dShape {
            batch,
            in_c: self.in_c,
            h: self.hw,
            w: self.hw,
            out_c: self.out_c,
            kh: 3,
            kw: 3,
            stride: 1,
            pad: self.pad,
        }
    }
    /// `seednet_1to8_50x50_b32`
    fn id(&self, batch: usize) -> String {
        format!(
            "{}_{}to{}_{}x{}_b{batch}",
            self.name, self.in_c, self.out_c, self.hw, self.hw
        )
    }
}

/// seednet's conv, then flowernet's three convs.
const CONV_LAYERS: [ConvLayer; 4] = [
    ConvLayer {
        name: "seednet",
        in_c: 1,
        hw: 50,
        out_c: 8,
        pad: 0,
        input_grad: false,
    },
    ConvLayer {
        name: "flowernet_c1",
        in_c: 3,
        hw: 64,
        out_c: 16,
        pad: 1,
        input_grad: false,
    },
    ConvLayer {
        name: "flowernet_c2",
        in_c: 16,
        hw: 32,
        out_c: 32,
        pad: 1,
        input_grad: true,
    },
    ConvLayer {
        name: "flowernet_c3",
        in_c: 32,
        hw: 16,
        out_c: 64,
        pad: 1,
        input_grad: true,
    },
];

const CONV_BATCHES: [usize; 3] = [1, 32, 128];

#[derive(Clone, Copy, PartialEq, Eq)]
enum ConvKernel {
    Forward,
    Weights,
    Input,
}

impl ConvKernel {
    const ALL: [ConvKernel; 3] = [ConvKernel::Forward, ConvKernel::Weights, ConvKernel::Input];

    fn name(self) -> &'static str {
        match self {
            ConvKernel::Forward => "conv2d_forward",
            ConvKernel::Weights => "conv2d_backward_weights",
            ConvKernel::Input => "conv2d_backward_input",
        }
    }

    fn applies_to(self, layer: &ConvLayer) -> bool {
        self != ConvKernel::Input || layer.input_grad
    }

    /// The per-image GEMM `(M, K, N)` of this kernel in its im2col form.
    fn gemm_mkn(self, s: &Conv2dShape) -> (usize, usize, usize) {
        let p = s.out_h() * s.out_w();
        match self {
            ConvKernel::Forward => (s.out_c, s.col_rows(), p),
            ConvKernel::Weights => (s.out_c, p, s.col_rows()),
            ConvKernel::Input => (s.col_rows(), s.out_c, p),
        }
    }
}

/// `(network, channels, side)` of the 2x2 stride-2 max-pool inputs.
const POOL_SHAPES: [(&str, usize, usize); 4] = [
    ("seednet", 8, 48),
    ("flowernet", 16, 64),
    ("flowernet", 32, 32),
    ("flowernet", 64, 16),
];

const BATCHES_32_128: [usize; 2] = [32, 128];

// ---------------------------------------------------------------------------------------
// Buffers
// ---------------------------------------------------------------------------------------

fn random_vec(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Every buffer the three conv kernels read or write, scratch included.
struct ConvBufs {
    s: Conv2dShape,
    x: Vec<f32>,
    weight: Vec<f32>,
    bias: Vec<f32>,
    y: Vec<f32>,
    dy: Vec<f32>,
    dx: Vec<f32>,
    grad_weight: Vec<f32>,
    grad_bias: Vec<f32>,
    scratch: Vec<f32>,
}

impl ConvBufs {
    fn new(s: Conv2dShape) -> Self {
        Self {
            s,
            x: random_vec(s.input_len(), 1),
            weight: random_vec(s.weight_len(), 2),
            bias: random_vec(s.out_c, 3),
            y: vec![0.0; s.output_len()],
            dy: random_vec(s.output_len(), 4),
            dx: vec![0.0; s.input_len()],
            grad_weight: vec![0.0; s.weight_len()],
            grad_bias: vec![0.0; s.out_c],
            scratch: vec![0.0; s.scratch_len()],
        }
    }

    /// One call of the Petal kernel.
    fn run(&mut self, kernel: ConvKernel) {
        let s = &self.s;
        match kernel {
            ConvKernel::Forward => conv2d_forward(
                s,
                black_box(&self.x),
                black_box(&self.weight),
                Some(black_box(&self.bias)),
                black_box(&mut self.y),
                &mut self.scratch,
            ),
            ConvKernel::Weights => conv2d_backward_weights(
                s,
                black_box(&self.x),
                black_box(&self.dy),
                black_box(&mut self.grad_weight),
                Some(black_box(&mut self.grad_bias)),
                &mut self.scratch,
            ),
            ConvKernel::Input => conv2d_backward_input(
                s,
                black_box(&self.weight),
                black_box(&self.dy),
                black_box(&mut self.dx),
                &mut self.scratch,
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------
// A checked wrapper over matrixmultiply::sgemm (the same call the kernels make)
// ---------------------------------------------------------------------------------------

/// A strided matrix view: element `(r, c)` is `data[r·rs + c·cs]`.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }
    /// `data` holds a `cols x rows` row-major matrix, seen transposed as `rows x cols`.
    fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: 1,
            cs: rows,
        }
    }
    fn last(&self) -> usize {
        (self.rows - 1) * self.rs + (self.cols - 1) * self.cs
    }
}

/// `c = a·b + beta·c`, `c` row-major with leading dimension `ldc`.
fn gemm(a: Mat<'_>, b: Mat<'_>, beta: f32, c: &mut [f32], ldc: usize) {
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
struct SgemmRef {
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
    fn new(kernel: ConvKernel, s: Conv2dShape) -> Self {
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

    fn run(&mut self) {
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
// Bench-local conv paths for group `conv_path`
// ---------------------------------------------------------------------------------------

/// The GEMM forward path, as `conv2d_forward` runs it when `!uses_direct_forward()`: per image,
/// `im2col`, rows of `y` prefilled with the bias, then `y = W·col + y` (beta = 1).
/// `cols` holds one `col_len()` buffer per `BATCH_CHUNK`-image task.
fn gemm_forward(s: &Conv2dShape, x: &[f32], weight: &[f32], bias: &[f32], y: &mut [f32], cols: &mut [f32]) {
    let (il, ol, cl, kk) = (s.in_image_len(), s.out_image_len(), s.col_len(), s.col_rows());
    let p = s.out_h() * s.out_w();
    y.par_chunks_mut(BATCH_CHUNK * ol)
        .zip(x.par_chunks(BATCH_CHUNK * il))
        .zip(cols.par_chunks_mut(cl))
        .for_each(|((yc, xc), col)| {
            for (yn, xn) in yc.chunks_exact_mut(ol).zip(xc.chunks_exact(il)) {
                im2col(s, xn, col);
                for (row, &b) in yn.chunks_exact_mut(p).zip(bias) {
                    row.fill(b);
                }
                gemm(
                    Mat::row_major(weight, s.out_c, kk),
                    Mat::row_major(col, kk, p),
                    1.0,
                    yn,
                    p,
                );
            }
        });
}

/// Weight and bias gradients by the im2col + GEMM path, as `conv2d_backward_weights` ran
/// them for 3x3 kernels before the direct kernel: a partial sum per `BATCH_CHUNK`-image
/// task (`partials`: `chunks() · (weight_len + out_c)`), added in chunk order; per image,
/// `im2col` then `dy_n · colᵀ` (`cols`: one `col_len()` buffer per task).
fn gemm_backward_weights(
    s: &Conv2dShape,
    x: &[f32],
    dy: &[f32],
    grad: (&mut [f32], &mut [f32]),
    partials: &mut [f32],
    cols: &mut [f32],
) {
    let (il, ol, wl, kk) = (s.in_image_len(), s.out_image_len(), s.weight_len(), s.col_rows());
    let p = s.out_h() * s.out_w();
    let part_len = wl + s.out_c;
    partials[..s.chunks() * part_len]
        .par_chunks_mut(part_len)
        .zip(x.par_chunks(BATCH_CHUNK * il))
        .zip(dy.par_chunks(BATCH_CHUNK * ol))
        .zip(cols.par_chunks_mut(s.col_len()))
        .for_each(|(((part, xc), dyc), col)| {
            let (pw, pb) = part.split_at_mut(wl);
            pw.fill(0.0);
            pb.fill(0.0);
            for (xn, dyn_) in xc.chunks_exact(il).zip(dyc.chunks_exact(ol)) {
                im2col(s, xn, col);
                gemm(
                    Mat::row_major(dyn_, s.out_c, p),
                    Mat::transposed(col, p, kk),
                    1.0,
                    pw,
                    kk,
                );
                for (g, row) in pb.iter_mut().zip(dyn_.chunks_exact(p)) {
                    *g += simd::sum(row);
                }
            }
        });
    let (gw, gb) = grad;
    let mut parts = partials.chunks_exact(part_len).take(s.chunks());
    let first = parts.next().expect("batch >= 1");
    gw.copy_from_slice(&first[..wl]);
    gb.copy_from_slice(&first[wl..]);
    for part in parts {
        simd::add_assign(gw, &part[..wl]);
        simd::add_assign(gb, &part[wl..]);
    }
}

// ---------------------------------------------------------------------------------------
// Criterion helpers
// ---------------------------------------------------------------------------------------

/// Seconds per iteration of every sample criterion took, by benchmark id.
type Samples = RefCell<BTreeMap<String, Vec<f64>>>;

/// Times `f` through criterion (`iter_custom`) and records each sample's seconds per
/// iteration under `key`, so that a group can compare its own variants afterwards.
fn timed<F: FnMut()>(b: &mut Bencher<'_>, samples: &Samples, key: &str, mut f: F) {
    b.iter_custom(|iters| {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        let d = t.elapsed();
        samples
            .borrow_mut()
            .entry(key.to_owned())
            .or_default()
            .push(d.as_secs_f64() / iters.max(1) as f64);
        d
    });
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median of the last (at most) 20 samples recorded under `key` (the samples after warm-up).
fn recorded(samples: &Samples, key: &str) -> Option<f64> {
    let map = samples.borrow();
    let v = map.get(key)?;
    let mut tail = v[v.len().saturating_sub(20)..].to_vec();
    Some(median(&mut tail))
}

/// Whether this process measures (`cargo bench`), rather than lists or tests the benches.
fn benchmark_mode() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    has("--bench") && !has("--test") && !has("--list") && !has("--profile-time")
}

fn set_images(group: &mut BenchmarkGroup<'_, WallTime>, batch: usize) {
    group.throughput(Throughput::Elements(batch as u64));
}

// ---------------------------------------------------------------------------------------
// Benchmark groups
// ---------------------------------------------------------------------------------------

fn bench_conv(c: &mut Criterion) {
    for kernel in ConvKernel::ALL {
        let mut group = c.benchmark_group(kernel.name());
        for layer in CONV_LAYERS.iter().filter(|l| kernel.applies_to(l)) {
            for batch in CONV_BATCHES {
                let mut bufs = ConvBufs::new(layer.shape(batch));
                set_images(&mut group, batch);
                group.bench_function(BenchmarkId::from_parameter(layer.id(batch)), |b| {
                    b.iter(|| bufs.run(kernel))
                });
            }
        }
        group.finish();
    }
}

/// `(out_c, input side, pad, in_c values)` of the shape families in `conv_path`:
/// seednet's conv (50x50 input, valid, 48x48 output: 3 strips of 16 columns, the input
/// read without a padded copy), flowernet's first conv (64x64, pad 1), each with `in_c`
/// from 1 to 8, then flowernet's second and third convs at their own `in_c` (16, 32).
const CONV_PATH_FAMILIES: [(usize, usize, usize, &[usize]); 4] = [
    (8, 50, 0, &[1, 2, 3, 4, 8]),
    (16, 64, 1, &[1, 2, 3, 4, 8]),
    (32, 32, 1, &[8, 16]),
    (64, 16, 1, &[16, 32]),
];
const CONV_PATH_BATCH: usize = 32;

fn conv_path_id(s: &Conv2dShape) -> String {
    format!(
        "{}to{}_{}x{}_pad{}_b{}",
        s.in_c, s.out_c, s.h, s.w, s.pad, s.batch
    )
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn bench_conv_path(c: &mut Criterion) {
    let samples = Samples::default();
    let mut group = c.benchmark_group("conv_path");
    // 52 benchmarks of batch-32 kernels: half the usual measurement time keeps the whole
    // run at a few minutes, and the gaps it measures are far wider than the noise.
    group.measurement_time(Duration::from_secs(1));
    let mut shapes = Vec::new();
    for (out_c, side, pad, in_cs) in CONV_PATH_FAMILIES {
        for &in_c in in_cs {
            let s = Conv2dShape {
                batch: CONV_PATH_BATCH,
                in_c,
                h: side,
                w: side,
                out_c,
                kh: 3,
                kw: 3,
                stride: 1,
                pad,
            };
            assert!(s.uses_direct_forward() && s.uses_direct_3x3());
            shapes.push(s);
            let id = conv_path_id(&s);
            let mut bufs = ConvBufs::new(s);
            let mut cols = vec![0.0f32; s.chunks() * s.col_len()];
            let mut partials = vec![0.0f32; s.chunks() * (s.weight_len() + s.out_c)];
            let (mut y2, mut gw2, mut gb2) =
                (bufs.y.clone(), bufs.grad_weight.clone(), bufs.grad_bias.clone());

            // Both paths must compute the same thing before their times mean anything.
            bufs.run(ConvKernel::Forward);
            bufs.run(ConvKernel::Weights);
            let tol = 1e-3;
            gemm_forward(&s, &bufs.x, &bufs.weight, &bufs.bias, &mut y2, &mut cols);
            assert!(
                max_abs_diff(&bufs.y, &y2) < tol,
                "conv_path {id}: GEMM forward differs from the API"
            );
            gemm_backward_weights(
                &s,
                &bufs.x,
                &bufs.dy,
                (&mut gw2, &mut gb2),
                &mut partials,
                &mut cols,
            );
            let scale = bufs
                .grad_weight
                .iter()
                .chain(&bufs.grad_bias)
                .fold(1.0f32, |m, v| m.max(v.abs()));
            assert!(
                max_abs_diff(&bufs.grad_weight, &gw2).max(max_abs_diff(&bufs.grad_bias, &gb2)) < tol * scale,
                "conv_path {id}: GEMM weight gradient differs from the API"
            );

            set_images(&mut group, s.batch);
            let ConvBufs {
                x, weight, bias, dy, ..
            } = &bufs;
            let mut y = vec![0.0f32; s.output_len()];
            let mut scratch = vec![0.0f32; s.scratch_len()];
            let key = format!("forward_direct/{id}");
            group.bench_function(BenchmarkId::new("forward_direct", &id), |b| {
                timed(b, &samples, &key, || {
                    conv2d_forward(
                        &s,
                        black_box(x),
                        black_box(weight),
                        Some(black_box(bias)),
                        black_box(&mut y),
                        &mut scratch,
                    )
                })
            });
            let key = format!("forward_gemm/{id}");
            group.bench_function(BenchmarkId::new("forward_gemm", &id), |b| {
                timed(b, &samples, &key, || {
                    gemm_forward(
                        &s,
                        black_box(x),
                        black_box(weight),
                        black_box(bias),
                        black_box(&mut y),
                        &mut cols,
                    )
                })
            });
            let (mut gw, mut gb) = (vec![0.0f32; s.weight_len()], vec![0.0f32; s.out_c]);
            let key = format!("weights_direct/{id}");
            group.bench_function(BenchmarkId::new("weights_direct", &id), |b| {
                timed(b, &samples, &key, || {
                    conv2d_backward_weights(
                        &s,
                        black_box(x),
                        black_box(dy),
                        black_box(&mut gw),
                        Some(black_box(&mut gb)),
                        &mut scratch,
                    )
                })
            });
            let key = format!("weights_gemm/{id}");
            group.bench_function(BenchmarkId::new("weights_gemm", &id), |b| {
                timed(b, &samples, &key, || {
                    gemm_backward_weights(
                        &s,
                        black_box(x),
                        black_box(dy),
                        (black_box(&mut gw), black_box(&mut gb)),
                        &mut partials,
                        &mut cols,
                    )
                })
            });
        }
    }
    group.finish();
    if benchmark_mode() {
        report_conv_path(&samples, &shapes);
    }
}

/// One line per shape and pass saying which path is faster, then per pass the `in_c`
/// values where the direct path lost.
fn report_conv_path(samples: &Samples, shapes: &[Conv2dShape]) {
    let mut lines = Vec::new();
    // pass -> (shapes where direct won, shapes compared, in_c values where GEMM won).
    let mut tally: BTreeMap<&str, (usize, usize, Vec<usize>)> = BTreeMap::new();
    for s in shapes {
        let id = conv_path_id(s);
        for pass in ["forward", "weights"] {
            let (Some(direct), Some(gemm_t)) = (
                recorded(samples, &format!("{pass}_direct/{id}")),
                recorded(samples, &format!("{pass}_gemm/{id}")),
            ) else {
                continue;
            };
            let t = tally.entry(pass).or_default();
            t.1 += 1;
            if direct < gemm_t {
                t.0 += 1;
            } else {
                t.2.push(s.in_c);
            }
            lines.push(format!(
                "conv_path {id:<22} {pass:<8} direct(api) {:>9.1} us  gemm(local) {:>9.1} us  -> {}",
                direct * 1e6,
                gemm_t * 1e6,
                verdict(direct, gemm_t),
            ));
        }
    }
    if lines.is_empty() {
        return;
    }
    println!();
    println!(
        "conv_path: direct SIMD (the public kernels) vs im2col+GEMM (bench-local), batch {CONV_PATH_BATCH}, \
         median of criterion's samples"
    );
    for line in &lines {
        println!("{line}");
    }
    for (pass, (won, n, lost)) in &tally {
        let where_lost = if lost.is_empty() {
            String::new()
        } else {
            format!("; GEMM faster at in_c {lost:?}")
        };
        println!("conv_path: {pass}: direct faster on {won}/{n} shapes{where_lost}");
    }
    println!();
}

/// `direct faster (1.23x)` or `gemm faster (1.23x)`.
fn verdict(direct: f64, gemm_t: f64) -> String {
    if direct < gemm_t {
        format!("direct faster ({:.2}x)", gemm_t / direct)
    } else {
        format!("gemm faster ({:.2}x)", direct / gemm_t)
    }
}

fn bench_pool(c: &mut Criterion) {
    let shapes: Vec<(String, Pool2dShape)> = POOL_SHAPES
        .iter()
        .flat_map(|&(net, ch, side)| {
            BATCHES_32_128.map(move |batch| {
                (
                    format!("{net}_{ch}x{side}x{side}_b{batch}"),
                    Pool2dShape {
                        batch,
                        c: ch,
                        h: side,
                        w: side,
                        k: 2,
                        stride: 2,
                    },
                )
            })
        })
        .collect();
    let mut fwd = c.benchmark_group("max_pool2d_forward");
    for (id, s) in &shapes {
        let x = random_vec(s.input_len(), 11);
        let (mut y, mut argmax) = (vec![0.0f32; s.output_len()], vec![0u32; s.output_len()]);
        set_images(&mut fwd, s.batch);
        fwd.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.iter(|| max_pool2d_forward(s, black_box(&x), black_box(&mut y), black_box(&mut argmax)))
        });
    }
    fwd.finish();
    let mut bwd = c.benchmark_group("max_pool2d_backward");
    for (id, s) in &shapes {
        let x = random_vec(s.input_len(), 11);
        let (mut y, mut argmax) = (vec![0.0f32; s.output_len()], vec![0u32; s.output_len()]);
        max_pool2d_forward(s, &x, &mut y, &mut argmax);
        let dy = random_vec(s.output_len(), 12);
        let mut dx = vec![0.0f32; s.input_len()];
        set_images(&mut bwd, s.batch);
        bwd.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.iter(|| max_pool2d_backward(s, black_box(&dy), black_box(&argmax), black_box(&mut dx)))
        });
    }
    bwd.finish();
}

fn bench_dense(c: &mut Criterion) {
    let shapes: Vec<(String, DenseShape)> = [("seednet", 4608usize), ("flowernet", 4096)]
        .iter()
        .flat_map(|&(net, inputs)| {
            BATCHES_32_128.map(move |batch| {
                (
                    format!("{net}_{inputs}to5_b{batch}"),
                    DenseShape {
                        batch,
                        inputs,
                        outputs: 5,
                    },
                )
            })
        })
        .collect();
    let mut fwd = c.benchmark_group("dense_forward");
    for (id, s) in &shapes {
        let x = random_vec(s.batch * s.inputs, 21);
        let w = random_vec(s.outputs * s.inputs, 22);
        let bias = random_vec(s.outputs, 23);
        let mut y = vec![0.0f32; s.batch * s.outputs];
        set_images(&mut fwd, s.batch);
        fwd.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.iter(|| {
                dense_forward(
                    s,
                    black_box(&x),
                    black_box(&w),
                    Some(black_box(&bias)),
                    black_box(&mut y),
                )
            })
        });
    }
    fwd.finish();
    let mut bwd = c.benchmark_group("dense_backward");
    for (id, s) in &shapes {
        let x = random_vec(s.batch * s.inputs, 21);
        let w = random_vec(s.outputs * s.inputs, 22);
        let dy = random_vec(s.batch * s.outputs, 24);
        let (mut gw, mut gb) = (vec![0.0f32; s.outputs * s.inputs], vec![0.0f32; s.outputs]);
        let mut gx = vec![0.0f32; s.batch * s.inputs];
        set_images(&mut bwd, s.batch);
        bwd.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.iter(|| {
                dense_backward(
                    s,
                    black_box(&x),
                    black_box(&w),
                    black_box(&dy),
                    black_box(&mut gw),
                    Some(black_box(&mut gb)),
                    Some(black_box(&mut gx)),
                )
            })
        });
    }
    bwd.finish();
}

/// flowernet's three conv outputs (the ReLU inputs), batch 128.
const RELU_SHAPES: [(usize, usize); 3] = [(16, 64), (32, 32), (64, 16)];
const RELU_BATCH: usize = 128;

fn bench_relu(c: &mut Criterion) {
    let mut fwd = c.benchmark_group("relu_forward");
    for (ch, side) in RELU_SHAPES {
        let n = RELU_BATCH * ch * side * side;
        let x = random_vec(n, 31);
        let mut y = vec![0.0f32; n];
        fwd.throughput(Throughput::Elements(n as u64));
        fwd.bench_function(
            BenchmarkId::from_parameter(format!("flowernet_{ch}x{side}x{side}_b{RELU_BATCH}")),
            |b| b.iter(|| relu_forward(black_box(&x), black_box(&mut y))),
        );
    }
    fwd.finish();
    let mut bwd = c.benchmark_group("relu_backward");
    for (ch, side) in RELU_SHAPES {
        let n = RELU_BATCH * ch * side * side;
        // A ReLU output (about half zeros), as `relu_backward` sees in training.
        let mut y = random_vec(n, 31);
        relu_forward_inplace(&mut y);
        let dy = random_vec(n, 32);
        let mut dx = vec![0.0f32; n];
        bwd.throughput(Throughput::Elements(n as u64));
        bwd.bench_function(
            BenchmarkId::from_parameter(format!("flowernet_{ch}x{side}x{side}_b{RELU_BATCH}")),
            |b| b.iter(|| relu_backward(black_box(&y), black_box(&dy), black_box(&mut dx))),
        );
    }
    bwd.finish();
}

fn bench_softmax(c: &mut Criterion) {
    let (batch, classes) = (128usize, 5usize);
    let logits = random_vec(batch * classes, 41);
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let labels: Vec<usize> = (0..batch).map(|_| rng.random_range(0..classes)).collect();
    let mut probs = vec![0.0f32; batch * classes];
    let mut losses = vec![0.0f32; batch];
    let mut grad = vec![0.0f32; batch * classes];
    let mut group = c.benchmark_group("softmax_cross_entropy");
    set_images(&mut group, batch);
    group.bench_function(BenchmarkId::from_parameter(format!("b{batch}x{classes}")), |b| {
        b.iter(|| {
            softmax_cross_entropy(
                black_box(&logits),
                black_box(&labels),
                classes,
                black_box(&mut probs),
                black_box(&mut losses),
                black_box(&mut grad),
            )
            .expect("labels are in range")
        })
    });
    group.finish();
}

/// Trainable parameters of seednet (conv 8·1·3·3 + 8, dense 5·4608 + 5) and flowernet
/// (convs 3→16→32→64 with biases, dense 5·4096 + 5).
const SEEDNET_PARAMS: usize = 8 * 9 + 8 + 5 * 4608 + 5;
const FLOWERNET_PARAMS: usize = (16 * 3 * 9 + 16) + (32 * 16 * 9 + 32) + (64 * 32 * 9 + 64) + (5 * 4096 + 5);

fn bench_sgd(c: &mut Criterion) {
    let mut group = c.benchmark_group("sgd_step");
    for (net, n) in [("seednet", SEEDNET_PARAMS), ("flowernet", FLOWERNET_PARAMS)] {
        for momentum in [0.0f32, 0.9] {
            let cfg = SgdConfig {
                lr: 0.01,
                momentum,
                weight_decay: 5e-4,
            };
            let mut params = random_vec(n, 51);
            let grads = random_vec(n, 52);
            let mut velocity = if momentum == 0.0 {
                Vec::new()
            } else {
                vec![0.0f32; n]
            };
            let label = if momentum == 0.0 { "plain" } else { "momentum" };
            group.throughput(Throughput::Elements(n as u64));
            group.bench_function(BenchmarkId::from_parameter(format!("{net}_{n}_{label}")), |b| {
                b.iter(|| {
                    sgd_step(
                        &cfg,
                        black_box(&mut params),
                        black_box(&grads),
                        black_box(&mut velocity),
                    )
                })
            });
        }
    }
    group.finish();
}

// ---------------------------------------------------------------------------------------
// GFLOP/s table
// ---------------------------------------------------------------------------------------

/// Runs of the timed loop; the median is reported.
const GFLOPS_RUNS: usize = 7;
/// Each run repeats the call until it covers about this many FLOPs (a few ms).
const GFLOPS_RUN_FLOPS: f64 = 2.0e8;

/// Median seconds per call of `f` over `GFLOPS_RUNS` runs of `reps` calls, after one
/// warm-up run.
fn time_per_call(reps: usize, mut f: impl FnMut()) -> f64 {
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

fn gflops_rows(label: &str) {
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
fn print_gflops_table() {
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

// ---------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    targets = bench_conv, bench_conv_path, bench_pool, bench_dense, bench_relu, bench_softmax, bench_sgd
}

fn main() {
    if benchmark_mode() && std::env::var("PETAL_BENCH_NO_GFLOPS").as_deref() != Ok("1") {
        print_gflops_table();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
