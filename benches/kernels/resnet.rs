//! Two comparisons on the CIFAR ResNets' convolutions, batch [`RESNET_BATCH`], 1 thread,
//! every kernel on two paths through the forced-path entry points:
//!
//! - group `conv_resnet`: the stride-2 convolutions (resnet8/20: 3x3 pad 1 and the 1x1
//!   projection shortcut, 16 -> 32 channels at 32x32 and 32 -> 64 at 16x16), each kernel
//!   on its GEMM path (im2col + `matrixmultiply`) and on its polyphase path: what justifies
//!   the polyphase rows of the path table in the `conv` module docs;
//! - group `conv_winograd`: the stride-1 3x3 convolutions (16 channels at 32x32, 32 at
//!   16x16, 64 at 8x8), each kernel on its direct path and on Winograd's (the tile
//!   `ConvAlgo::Winograd` takes): what justifies `ConvAlgo::Auto`'s table.
//!
//! Then (when measuring) a table per group timed outside criterion, the two paths
//! alternating round by round so that the noise of a shared machine hits both alike: the
//! median time and GFLOP/s of each, and the speedup.

use super::*;

/// Images per call: 4 of the kernels' `BATCH_CHUNK`s.
const RESNET_BATCH: usize = 16;

/// `(name, in_c, side, out_c, k, pad)` of the ResNet stride-2 convolutions.
const RESNET_SHAPES: [(&str, usize, usize, usize, usize, usize); 4] = [
    ("3x3s2_16to32_32x32", 16, 32, 32, 3, 1),
    ("3x3s2_32to64_16x16", 32, 16, 64, 3, 1),
    ("1x1s2_16to32_32x32", 16, 32, 32, 1, 0),
    ("1x1s2_32to64_16x16", 32, 16, 64, 1, 0),
];

/// `(name, channels, side)` of the ResNet stride-1 3x3 convolutions (pad 1).
const WINOGRAD_SHAPES: [(&str, usize, usize); 3] = [
    ("3x3_16to16_32x32", 16, 32),
    ("3x3_32to32_16x16", 32, 16),
    ("3x3_64to64_8x8", 64, 8),
];

/// One comparison: its criterion group, its table's title, its shapes and the two paths
/// of each kernel on a shape (the reference first).
struct Comparison {
    group: &'static str,
    title: &'static str,
    shapes: fn() -> Vec<(String, Conv2dShape)>,
    paths: fn(ConvKernel, &Conv2dShape) -> [PathRun; 2],
}

const COMPARISONS: [Comparison; 2] = [
    Comparison {
        group: "conv_resnet",
        title: "stride-2 ResNet convs, GEMM path vs polyphase path",
        shapes: resnet_shapes,
        paths: old_and_new,
    },
    Comparison {
        group: "conv_winograd",
        title: "stride-1 3x3 ResNet convs, direct path vs Winograd",
        shapes: winograd_shapes,
        paths: direct_and_winograd,
    },
];

/// Alternating rounds of the table, and the least time one timed run of a path takes.
const ROUNDS: usize = 41;
const RUN_SECONDS: f64 = 0.01;

fn resnet_shapes() -> Vec<(String, Conv2dShape)> {
    RESNET_SHAPES
        .iter()
        .map(|&(name, in_c, side, out_c, k, pad)| {
            let s = Conv2dShape {
                batch: RESNET_BATCH,
                in_c,
                h: side,
                w: side,
                out_c,
                kh: k,
                kw: k,
                stride: 2,
                pad,
            };
            (format!("{name}_b{RESNET_BATCH}"), s)
        })
        .collect()
}

fn winograd_shapes() -> Vec<(String, Conv2dShape)> {
    WINOGRAD_SHAPES
        .iter()
        .map(|&(name, c, side)| {
            let s = Conv2dShape {
                batch: RESNET_BATCH,
                in_c: c,
                h: side,
                w: side,
                out_c: c,
                kh: 3,
                kw: 3,
                stride: 1,
                pad: 1,
            };
            (format!("{name}_b{RESNET_BATCH}"), s)
        })
        .collect()
}

/// The direct path of `kernel` on `s` and Winograd's.
fn direct_and_winograd(kernel: ConvKernel, s: &Conv2dShape) -> [PathRun; 2] {
    let w = ConvAlgo::Winograd;
    match kernel {
        ConvKernel::Forward => [s.forward_path(), s.forward_path_for(w)].map(PathRun::Forward),
        ConvKernel::Weights => [s.weight_grad_path(), s.weight_grad_path_for(w)].map(PathRun::Weights),
        ConvKernel::Input => [s.input_grad_path(), s.input_grad_path_for(w)].map(PathRun::Input),
    }
}

/// The GEMM path and the polyphase path of `kernel`.
fn old_and_new(kernel: ConvKernel, _: &Conv2dShape) -> [PathRun; 2] {
    match kernel {
        ConvKernel::Forward => [
            PathRun::Forward(ForwardPath::Gemm),
            PathRun::Forward(ForwardPath::Polyphase),
        ],
        ConvKernel::Weights => [
            PathRun::Weights(WeightGradPath::Gemm),
            PathRun::Weights(WeightGradPath::Polyphase),
        ],
        ConvKernel::Input => [
            PathRun::Input(InputGradPath::Col2im),
            PathRun::Input(InputGradPath::Polyphase),
        ],
    }
}

fn one_thread() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a 1-thread rayon pool")
}

/// `ConvBufs` for `s` with scratch for every path of comparison `c`.
fn resnet_bufs(c: &Comparison, s: Conv2dShape) -> ConvBufs {
    let mut bufs = ConvBufs::new(s);
    let most = ConvKernel::ALL
        .into_iter()
        .flat_map(|k| (c.paths)(k, &s))
        .map(|r| r.scratch_len(&s))
        .max()
        .unwrap_or(0);
    bufs.scratch = vec![0.0; most.max(s.scratch_len())];
    bufs
}

/// Groups `conv_resnet` and `conv_winograd` (module docs), each followed by its
/// alternating table when measuring.
pub(super) fn bench_conv_resnet(c: &mut Criterion) {
    for cmp in &COMPARISONS {
        bench_comparison(c, cmp);
    }
}

fn bench_comparison(c: &mut Criterion, cmp: &Comparison) {
    let one = one_thread();
    let mut group = c.benchmark_group(cmp.group);
    for (id, s) in (cmp.shapes)() {
        let mut bufs = resnet_bufs(cmp, s);
        set_images(&mut group, s.batch);
        for kernel in ConvKernel::ALL {
            let mut want: Option<Vec<f32>> = None;
            for run in (cmp.paths)(kernel, &s) {
                let lanes = run.build_lanes(&s);
                bufs.run_path(run, lanes);
                let got = bufs.result(kernel);
                if let Some(want) = &want {
                    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                    assert!(
                        max_abs_diff(&got, want) < 1e-3 * scale,
                        "{} {id}: {} differs from the first path",
                        cmp.group,
                        run.name()
                    );
                } else {
                    want = Some(got);
                }
                group.bench_function(BenchmarkId::new(run.name(), &id), |b| {
                    b.iter_custom(|iters| {
                        one.install(|| {
                            let t = Instant::now();
                            for _ in 0..iters {
                                bufs.run_path(run, lanes);
                            }
                            t.elapsed()
                        })
                    })
                });
            }
        }
    }
    group.finish();
    if benchmark_mode() {
        one.install(|| print_table(cmp));
    }
}

/// Seconds per call of `run`, over enough calls to last [`RUN_SECONDS`] (`reps`, found on
/// the first call and kept).
fn time_run(bufs: &mut ConvBufs, run: PathRun, reps: &mut usize) -> f64 {
    let lanes = run.build_lanes(&bufs.s);
    loop {
        let t = Instant::now();
        for _ in 0..*reps {
            bufs.run_path(run, lanes);
        }
        let secs = t.elapsed().as_secs_f64();
        if secs >= RUN_SECONDS / 2.0 {
            return secs / *reps as f64;
        }
        *reps *= 2;
    }
}

/// Per shape and kernel of `cmp`: its two paths, [`ROUNDS`] rounds alternating, medians.
fn print_table(cmp: &Comparison) {
    println!();
    println!(
        "{}: {}, batch {RESNET_BATCH}, 1 thread, alternating, median of {ROUNDS} rounds \
         (GFLOP/s: nominal forward FLOPs)",
        cmp.group, cmp.title
    );
    for (id, s) in (cmp.shapes)() {
        let mut bufs = resnet_bufs(cmp, s);
        let flops = s.forward_flops() as f64;
        for kernel in ConvKernel::ALL {
            let runs = (cmp.paths)(kernel, &s);
            let mut reps = [1usize; 2];
            let mut times = [Vec::new(), Vec::new()];
            for _ in 0..ROUNDS {
                for k in 0..2 {
                    times[k].push(time_run(&mut bufs, runs[k], &mut reps[k]));
                }
            }
            let [old, new] = times.map(|mut t| median(&mut t));
            println!(
                "{} {id:<24} {:<24} {:<18} {:>8.1} us {:>6.1} GFLOP/s | {:<20} {:>8.1} us {:>6.1} GFLOP/s | {:.2}x",
                cmp.group,
                kernel.name(),
                runs[0].name(),
                old * 1e6,
                flops / old / 1e9,
                runs[1].name(),
                new * 1e6,
                flops / new / 1e9,
                old / new,
            );
        }
    }
    println!();
}
