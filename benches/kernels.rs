//! Criterion benchmarks of Petal's kernels (`petal-kernels`) at the shapes of the two
//! reference networks, plus two reports printed outside criterion's own output:
//!
//! - a GFLOP/s table (printed first): every conv kernel shape benchmarked here, timed
//!   against a plain `matrixmultiply::sgemm` on the same GEMM shape, on 1 thread and on
//!   rayon's default pool. Skip it with `PETAL_BENCH_NO_GFLOPS=1`.
//! - group `conv_path`: every code path of the three conv kernels (`ForwardPath`,
//!   `WeightGradPath`, `InputGradPath`: the shipped code, forced through
//!   `conv2d_forward_with` and its twins) at each shape it serves: seednet's and
//!   flowernet's 3x3 shapes with `in_c` from 1 to 32, a 5x5, a 1x3 and a stride-2 shape;
//!   the path the public kernel takes also at the other vector width. Then one line per
//!   path with its GFLOP/s, and per kernel how often the public kernel's path (chosen by
//!   `Conv2dShape::forward_path` and its twins) was the fastest. This is what justifies
//!   the path table in the `conv` module docs. Each path's result is checked against the
//!   public kernel's first.
//! - group `conv_resnet` (`kernels/resnet.rs`): the CIFAR ResNets' stride-2 convolutions
//!   (3x3 pad 1 and 1x1), batch 16 on 1 thread, GEMM path vs polyphase path, then a table
//!   of the two alternating round by round.
//!
//! Run: `cargo bench --bench kernels` (all, a few minutes on 2 cores),
//! `cargo bench --bench kernels -- conv_path` (a filter; the table still prints first),
//! `PETAL_BENCH_NO_GFLOPS=1 cargo bench --bench kernels -- pool` (no table). The table
//! prints only when measuring (`cargo bench`), not under `--test`, `--list` or
//! `--profile-time`. Criterion's defaults here (20 samples, 0.5 s warm-up, 2 s measurement;
//! 0.7 s for `conv_path`) are set on the `Criterion` config, so `--sample-size`, `--quick`
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
use petal_kernels::conv::{
    conv2d_backward_input_with, conv2d_backward_weights_with, conv2d_forward_with, ForwardPath,
    InputGradPath, WeightGradPath, BATCH_CHUNK,
};
use petal_kernels::simd::Lanes;
use petal_kernels::{
    conv2d_backward_input, conv2d_backward_weights, conv2d_forward, dense_backward, dense_forward,
    max_pool2d_backward, max_pool2d_forward, relu_backward, relu_forward, relu_forward_inplace, sgd_step,
    softmax_cross_entropy, Conv2dShape, DenseShape, Pool2dShape, SgdConfig,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

#[path = "kernels/resnet.rs"]
mod resnet;

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

/// `(in_c values, side, out_c, pad)` of the 3x3 stride-1 shape families in `conv_path`:
/// seednet's conv (50x50 input, valid, 48x48 output: 3 strips of 16 columns, the input
/// read without a padded copy), flowernet's first conv (64x64, pad 1), each with `in_c`
/// from 1 to 8, then flowernet's second and third convs at their own `in_c` (16, 32).
const CONV_PATH_FAMILIES: [(&[usize], usize, usize, usize); 4] = [
    (&[1, 2, 3, 4, 8], 50, 8, 0),
    (&[1, 2, 3, 4, 8], 64, 16, 1),
    (&[8, 16], 32, 32, 1),
    (&[16, 32], 16, 64, 1),
];
/// The other shapes in `conv_path`, for the paths 3x3 stride-1 shapes do not take: a 5x5
/// kernel on one channel (25 taps: `Grouped`; area 25: `DirectArea`), a 1x3 kernel
/// (`DirectRows`; its input gradient only through `Col2im`), a stride-2 3x3 (`Gemm` for
/// all three kernels).
const CONV_PATH_OTHERS: [Conv2dShape; 3] = [
    conv_path_shape(1, 64, 16, (5, 5), 1, 2),
    conv_path_shape(2, 50, 8, (1, 3), 1, 0),
    conv_path_shape(8, 32, 16, (3, 3), 2, 1),
];
const CONV_PATH_BATCH: usize = 32;

/// A `conv_path` shape: batch [`CONV_PATH_BATCH`], a square input of side `side`.
const fn conv_path_shape(
    in_c: usize,
    side: usize,
    out_c: usize,
    (kh, kw): (usize, usize),
    stride: usize,
    pad: usize,
) -> Conv2dShape {
    Conv2dShape {
        batch: CONV_PATH_BATCH,
        in_c,
        h: side,
        w: side,
        out_c,
        kh,
        kw,
        stride,
        pad,
    }
}

fn conv_path_shapes() -> Vec<Conv2dShape> {
    let mut out = Vec::new();
    for (in_cs, side, out_c, pad) in CONV_PATH_FAMILIES {
        for &in_c in in_cs {
            out.push(conv_path_shape(in_c, side, out_c, (3, 3), 1, pad));
        }
    }
    out.extend(CONV_PATH_OTHERS);
    out
}

fn conv_path_id(s: &Conv2dShape) -> String {
    format!(
        "{}to{}_{}x{}_k{}x{}_s{}_pad{}_b{}",
        s.in_c, s.out_c, s.h, s.w, s.kh, s.kw, s.stride, s.pad, s.batch
    )
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// One code path of one conv kernel, run through the kernels' forced-path entry points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PathRun {
    Forward(ForwardPath),
    Weights(WeightGradPath),
    Input(InputGradPath),
}

impl PathRun {
    fn all() -> Vec<PathRun> {
        let f = ForwardPath::ALL.map(PathRun::Forward);
        let w = WeightGradPath::ALL.map(PathRun::Weights);
        let i = InputGradPath::ALL.map(PathRun::Input);
        f.into_iter().chain(w).chain(i).collect()
    }
    fn kernel(self) -> ConvKernel {
        match self {
            PathRun::Forward(_) => ConvKernel::Forward,
            PathRun::Weights(_) => ConvKernel::Weights,
            PathRun::Input(_) => ConvKernel::Input,
        }
    }
    fn supports(self, s: &Conv2dShape) -> bool {
        match self {
            PathRun::Forward(p) => p.supports(s),
            PathRun::Weights(p) => p.supports(s),
            PathRun::Input(p) => p.supports(s),
        }
    }
    /// Whether this is the path the public kernel takes for `s`.
    fn shipped(self, s: &Conv2dShape) -> bool {
        match self {
            PathRun::Forward(p) => p == s.forward_path(),
            PathRun::Weights(p) => p == s.weight_grad_path(),
            PathRun::Input(p) => p == s.input_grad_path(),
        }
    }
    /// The width the public kernel runs this path at.
    fn build_lanes(self, s: &Conv2dShape) -> Lanes {
        match self {
            PathRun::Forward(p) => p.build_lanes(),
            PathRun::Weights(p) => p.build_lanes(),
            PathRun::Input(p) => p.build_lanes(s),
        }
    }
    fn scratch_len(self, s: &Conv2dShape) -> usize {
        match self {
            PathRun::Forward(p) => p.scratch_len(s),
            PathRun::Weights(p) => p.scratch_len(s),
            PathRun::Input(p) => p.scratch_len(s),
        }
    }
    /// `forward/Taps`
    fn name(self) -> String {
        match self {
            PathRun::Forward(p) => format!("forward/{p:?}"),
            PathRun::Weights(p) => format!("weights/{p:?}"),
            PathRun::Input(p) => format!("input/{p:?}"),
        }
    }
}

impl ConvBufs {
    /// One call of a forced path at `lanes`; `scratch` must hold the path's
    /// `scratch_len`.
    fn run_path(&mut self, run: PathRun, lanes: Lanes) {
        let s = &self.s;
        match run {
            PathRun::Forward(p) => conv2d_forward_with(
                s,
                p,
                lanes,
                black_box(&self.x),
                black_box(&self.weight),
                Some(black_box(&self.bias)),
                black_box(&mut self.y),
                &mut self.scratch,
            ),
            PathRun::Weights(p) => conv2d_backward_weights_with(
                s,
                p,
                lanes,
                black_box(&self.x),
                black_box(&self.dy),
                black_box(&mut self.grad_weight),
                Some(black_box(&mut self.grad_bias)),
                &mut self.scratch,
            ),
            PathRun::Input(p) => conv2d_backward_input_with(
                s,
                p,
                lanes,
                black_box(&self.weight),
                black_box(&self.dy),
                black_box(&mut self.dx),
                &mut self.scratch,
            ),
        }
    }

    /// What `kernel` wrote, as one vector (weights: the weight then the bias gradient).
    fn result(&self, kernel: ConvKernel) -> Vec<f32> {
        match kernel {
            ConvKernel::Forward => self.y.clone(),
            ConvKernel::Weights => [&self.grad_weight[..], &self.grad_bias[..]].concat(),
            ConvKernel::Input => self.dx.clone(),
        }
    }
}

/// The widths `conv_path` measures `run` at on `s`: the one the build runs it at, and for
/// the path the public kernel takes, the other one too.
fn conv_path_lanes(run: PathRun, s: &Conv2dShape) -> Vec<Lanes> {
    let build = run.build_lanes(s);
    let mut lanes = vec![build];
    if run.shipped(s) {
        lanes.extend(Lanes::ALL.into_iter().filter(|&l| l != build));
    }
    lanes
}

/// Group `conv_path`: every path of every conv kernel at each shape it serves
/// (`conv_path_shapes`), through the forced-path entry points (`conv2d_forward_with` and
/// its twins), at the width the build runs it at (and the shipped path at both widths).
/// Each path's result is checked against the public kernel's first.
fn bench_conv_path(c: &mut Criterion) {
    let samples = Samples::default();
    let mut group = c.benchmark_group("conv_path");
    // About 150 benchmarks of batch-32 kernels: short measurements keep the whole run at a
    // few minutes, and the gaps it measures are far wider than the noise.
    group.measurement_time(Duration::from_millis(700));
    group.warm_up_time(Duration::from_millis(300));
    let shapes = conv_path_shapes();
    for s in &shapes {
        let id = conv_path_id(s);
        let runs: Vec<PathRun> = PathRun::all().into_iter().filter(|r| r.supports(s)).collect();
        let mut bufs = ConvBufs::new(*s);
        let most = runs.iter().map(|r| r.scratch_len(s)).max().unwrap_or(0);
        bufs.scratch = vec![0.0; most.max(s.scratch_len())];
        set_images(&mut group, s.batch);
        for kernel in ConvKernel::ALL {
            bufs.run(kernel);
            let want = bufs.result(kernel);
            let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            for &run in runs.iter().filter(|r| r.kernel() == kernel) {
                for lanes in conv_path_lanes(run, s) {
                    bufs.run_path(run, lanes);
                    assert!(
                        max_abs_diff(&bufs.result(kernel), &want) < 1e-3 * scale,
                        "conv_path {id}: {} at {lanes:?} differs from the public kernel",
                        run.name()
                    );
                    let name = format!("{}/x{}", run.name(), lanes.count());
                    let key = format!("{name}/{id}");
                    group.bench_function(BenchmarkId::new(name, &id), |b| {
                        timed(b, &samples, &key, || bufs.run_path(run, lanes))
                    });
                }
            }
        }
    }
    group.finish();
    if benchmark_mode() {
        report_conv_path(&samples, &shapes);
    }
}

/// Per shape and kernel, one line per path and width with its time and GFLOP/s (nominal
/// FLOPs of the forward pass, the same for all three kernels), the public kernel's path
/// marked; then per kernel how often the public kernel's choice was the fastest path.
fn report_conv_path(samples: &Samples, shapes: &[Conv2dShape]) {
    let mut lines = Vec::new();
    // kernel -> (shapes where the shipped path was fastest, shapes compared, misses).
    let mut tally: BTreeMap<&str, (usize, usize, Vec<String>)> = BTreeMap::new();
    for s in shapes {
        let id = conv_path_id(s);
        let flops = s.forward_flops() as f64;
        for kernel in ConvKernel::ALL {
            // (seconds, run) of each path at its build width.
            let mut at_build: Vec<(f64, PathRun)> = Vec::new();
            for run in PathRun::all()
                .into_iter()
                .filter(|r| r.kernel() == kernel && r.supports(s))
            {
                for lanes in conv_path_lanes(run, s) {
                    let Some(t) = recorded(samples, &format!("{}/x{}/{id}", run.name(), lanes.count()))
                    else {
                        continue;
                    };
                    if lanes == run.build_lanes(s) {
                        at_build.push((t, run));
                    }
                    let shipped = if run.shipped(s) && lanes == run.build_lanes(s) {
                        "  <- public kernel"
                    } else {
                        ""
                    };
                    lines.push(format!(
                        "conv_path {id:<34} {:<20} x{:<2} {:>9.1} us {:>7.1} GFLOP/s{shipped}",
                        run.name(),
                        lanes.count(),
                        t * 1e6,
                        flops / t / 1e9,
                    ));
                }
            }
            let Some(&(_, fastest)) = at_build.iter().min_by(|a, b| a.0.total_cmp(&b.0)) else {
                continue;
            };
            let t = tally.entry(kernel.name()).or_default();
            t.1 += 1;
            if fastest.shipped(s) {
                t.0 += 1;
            } else {
                t.2.push(format!("{id}: {}", fastest.name()));
            }
        }
    }
    if lines.is_empty() {
        return;
    }
    println!();
    println!(
        "conv_path: every path through the forced-path entry points, batch {CONV_PATH_BATCH}, \
         median of criterion's samples"
    );
    for line in &lines {
        println!("{line}");
    }
    for (kernel, (won, n, missed)) in &tally {
        let faster = if missed.is_empty() {
            String::new()
        } else {
            format!("; faster elsewhere: {missed:?}")
        };
        println!("conv_path: {kernel}: the public kernel's path fastest on {won}/{n} shapes{faster}");
    }
    println!();
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
    targets = bench_conv, bench_conv_path, resnet::bench_conv_resnet, bench_pool, bench_dense, bench_relu, bench_softmax, bench_sgd
}

fn main() {
    if benchmark_mode() && std::env::var("PETAL_BENCH_NO_GFLOPS").as_deref() != Ok("1") {
        print_gflops_table();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
