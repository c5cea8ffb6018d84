//! Group `conv_resnet`: the stride-2 convolutions of the CIFAR ResNets (resnet8/20: 3x3
//! pad 1 and the 1x1 projection shortcut, 16 -> 32 channels at 32x32 and 32 -> 64 at
//! 16x16), batch [`RESNET_BATCH`], on 1 thread, every kernel on its GEMM path (im2col +
//! `matrixmultiply`) and on its polyphase path, through the forced-path entry points.
//! Then (when measuring) a table timed outside criterion, the two paths alternating
//! round by round so that the noise of a shared machine hits both alike: the median
//! time and GFLOP/s of each, and the speedup. This is what justifies the polyphase rows
//! of the path table in the `conv` module docs.

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

/// The GEMM path and the polyphase path of `kernel`.
fn old_and_new(kernel: ConvKernel) -> [PathRun; 2] {
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

/// `ConvBufs` for `s` with scratch for every path of `conv_resnet`.
fn resnet_bufs(s: Conv2dShape) -> ConvBufs {
    let mut bufs = ConvBufs::new(s);
    let most = ConvKernel::ALL
        .into_iter()
        .flat_map(old_and_new)
        .map(|r| r.scratch_len(&s))
        .max()
        .unwrap_or(0);
    bufs.scratch = vec![0.0; most.max(s.scratch_len())];
    bufs
}

/// Group `conv_resnet` (module docs), then the alternating table when measuring.
pub(super) fn bench_conv_resnet(c: &mut Criterion) {
    let one = one_thread();
    let mut group = c.benchmark_group("conv_resnet");
    for (id, s) in resnet_shapes() {
        let mut bufs = resnet_bufs(s);
        set_images(&mut group, s.batch);
        for kernel in ConvKernel::ALL {
            let mut want: Option<Vec<f32>> = None;
            for run in old_and_new(kernel) {
                let lanes = run.build_lanes(&s);
                bufs.run_path(run, lanes);
                let got = bufs.result(kernel);
                if let Some(want) = &want {
                    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                    assert!(
                        max_abs_diff(&got, want) < 1e-3 * scale,
                        "conv_resnet {id}: {} differs from the GEMM path",
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
        one.install(print_resnet_table);
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

/// Per shape and kernel: GEMM and polyphase, [`ROUNDS`] rounds alternating, medians.
fn print_resnet_table() {
    println!();
    println!(
        "conv_resnet: stride-2 ResNet convs, batch {RESNET_BATCH}, 1 thread, GEMM path vs polyphase path \
         alternating, median of {ROUNDS} rounds (GFLOP/s: nominal forward FLOPs)"
    );
    for (id, s) in resnet_shapes() {
        let mut bufs = resnet_bufs(s);
        let flops = s.forward_flops() as f64;
        for kernel in ConvKernel::ALL {
            let runs = old_and_new(kernel);
            let mut reps = [1usize; 2];
            let mut times = [Vec::new(), Vec::new()];
            for _ in 0..ROUNDS {
                for k in 0..2 {
                    times[k].push(time_run(&mut bufs, runs[k], &mut reps[k]));
                }
            }
            let [old, new] = times.map(|mut t| median(&mut t));
            println!(
                "conv_resnet {id:<24} {:<24} {:<18} {:>8.1} us {:>6.1} GFLOP/s | {:<20} {:>8.1} us {:>6.1} GFLOP/s | {:.2}x",
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
