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
//!   of the two alternating round by round; group `conv_winograd` (same file) likewise for
//!   their stride-1 3x3 convolutions, direct path vs Winograd.
//!
//! Run: `cargo bench --bench kernels` (all, a few minutes on 2 cores),
//! `cargo bench --bench kernels -- conv_path` (a filter; the table still prints first),
//! `PETAL_BENCH_NO_GFLOPS=1 cargo bench --bench kernels -- pool` (no table). The table
//! prints only when measuring (`cargo bench`), not under `--test`, `--list` or
//! `--profile-time`. Criterion's defaults here (20 samples, 0.5 s warm-up, 2 s measurement;
//! 0.7 s for `conv_path`) are set on the `Criterion` config, so `--sample-size`, `--quick`
//! and (except for `conv_path`) `--measurement-time` on the command line override them.
//!
//! Files: this one (shapes, buffers, criterion helpers, the conv groups, `main`);
//! `kernels/gflops.rs` (the GFLOP/s table and its sgemm reference), `kernels/conv_path.rs`
//! (group `conv_path`), `kernels/resnet.rs` (groups `conv_resnet`, `conv_winograd`), `kernels/others.rs`
//! (pool, dense, ReLU, softmax, SGD).
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
    conv2d_backward_input_with, conv2d_backward_weights_with, conv2d_forward_with, ConvAlgo, ForwardPath,
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

#[path = "kernels/conv_path.rs"]
mod conv_path;
#[path = "kernels/gflops.rs"]
mod gflops;
#[path = "kernels/others.rs"]
mod others;
#[path = "kernels/resnet.rs"]
mod resnet;

use conv_path::*;
use gflops::*;
use others::*;

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
