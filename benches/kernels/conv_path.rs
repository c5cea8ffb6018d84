//! Group `conv_path`: every code path of the three conv kernels at each shape it serves
//! (see the bench's top docs), and its report.

use super::*;

/// `(in_c values, side, out_c, pad)` of the 3x3 stride-1 shape families in `conv_path`:
/// seednet's conv (50x50 input, valid, 48x48 output: 3 strips of 16 columns, the input
/// read without a padded copy), flowernet's first conv (64x64, pad 1), each with `in_c`
/// from 1 to 8, then flowernet's second and third convs at their own `in_c` (16, 32).
pub(super) const CONV_PATH_FAMILIES: [(&[usize], usize, usize, usize); 4] = [
    (&[1, 2, 3, 4, 8], 50, 8, 0),
    (&[1, 2, 3, 4, 8], 64, 16, 1),
    (&[8, 16], 32, 32, 1),
    (&[16, 32], 16, 64, 1),
];
/// The other shapes in `conv_path`, for the paths 3x3 stride-1 shapes do not take: a 5x5
/// kernel on one channel (25 taps: `Grouped`; area 25: `DirectArea`), a 1x3 kernel
/// (`DirectRows`; its input gradient only through `Col2im`), a stride-2 3x3 (`Gemm` for
/// all three kernels).
pub(super) const CONV_PATH_OTHERS: [Conv2dShape; 3] = [
    conv_path_shape(1, 64, 16, (5, 5), 1, 2),
    conv_path_shape(2, 50, 8, (1, 3), 1, 0),
    conv_path_shape(8, 32, 16, (3, 3), 2, 1),
];
pub(super) const CONV_PATH_BATCH: usize = 32;

/// A `conv_path` shape: batch [`CONV_PATH_BATCH`], a square input of side `side`.
pub(super) const fn conv_path_shape(
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

pub(super) fn conv_path_shapes() -> Vec<Conv2dShape> {
    let mut out = Vec::new();
    for (in_cs, side, out_c, pad) in CONV_PATH_FAMILIES {
        for &in_c in in_cs {
            out.push(conv_path_shape(in_c, side, out_c, (3, 3), 1, pad));
        }
    }
    out.extend(CONV_PATH_OTHERS);
    out
}

pub(super) fn conv_path_id(s: &Conv2dShape) -> String {
    format!(
        "{}to{}_{}x{}_k{}x{}_s{}_pad{}_b{}",
        s.in_c, s.out_c, s.h, s.w, s.kh, s.kw, s.stride, s.pad, s.batch
    )
}

pub(super) fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// One code path of one conv kernel, run through the kernels' forced-path entry points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PathRun {
    Forward(ForwardPath),
    Weights(WeightGradPath),
    Input(InputGradPath),
}

impl PathRun {
    pub(super) fn all() -> Vec<PathRun> {
        let f = ForwardPath::ALL.map(PathRun::Forward);
        let w = WeightGradPath::ALL.map(PathRun::Weights);
        let i = InputGradPath::ALL.map(PathRun::Input);
        f.into_iter().chain(w).chain(i).collect()
    }
    pub(super) fn kernel(self) -> ConvKernel {
        match self {
            PathRun::Forward(_) => ConvKernel::Forward,
            PathRun::Weights(_) => ConvKernel::Weights,
            PathRun::Input(_) => ConvKernel::Input,
        }
    }
    pub(super) fn supports(self, s: &Conv2dShape) -> bool {
        match self {
            PathRun::Forward(p) => p.supports(s),
            PathRun::Weights(p) => p.supports(s),
            PathRun::Input(p) => p.supports(s),
        }
    }
    /// Whether this is the path the public kernel takes for `s`.
    pub(super) fn shipped(self, s: &Conv2dShape) -> bool {
        match self {
            PathRun::Forward(p) => p == s.forward_path(),
            PathRun::Weights(p) => p == s.weight_grad_path(),
            PathRun::Input(p) => p == s.input_grad_path(),
        }
    }
    /// The width the public kernel runs this path at.
    pub(super) fn build_lanes(self, s: &Conv2dShape) -> Lanes {
        match self {
            PathRun::Forward(p) => p.build_lanes(),
            PathRun::Weights(p) => p.build_lanes(),
            PathRun::Input(p) => p.build_lanes(s),
        }
    }
    pub(super) fn scratch_len(self, s: &Conv2dShape) -> usize {
        match self {
            PathRun::Forward(p) => p.scratch_len(s),
            PathRun::Weights(p) => p.scratch_len(s),
            PathRun::Input(p) => p.scratch_len(s),
        }
    }
    /// `forward/Taps`
    pub(super) fn name(self) -> String {
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
    pub(super) fn run_path(&mut self, run: PathRun, lanes: Lanes) {
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
    pub(super) fn result(&self, kernel: ConvKernel) -> Vec<f32> {
        match kernel {
            ConvKernel::Forward => self.y.clone(),
            ConvKernel::Weights => [&self.grad_weight[..], &self.grad_bias[..]].concat(),
            ConvKernel::Input => self.dx.clone(),
        }
    }
}

/// The widths `conv_path` measures `run` at on `s`: the one the build runs it at, and for
/// the path the public kernel takes, the other one too.
pub(super) fn conv_path_lanes(run: PathRun, s: &Conv2dShape) -> Vec<Lanes> {
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
pub(super) fn bench_conv_path(c: &mut Criterion) {
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
pub(super) fn report_conv_path(samples: &Samples, shapes: &[Conv2dShape]) {
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
