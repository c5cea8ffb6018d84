//! Times the stride-1 3x3 convolutions of the CIFAR ResNets and flowernet on the direct
//! kernels and on Winograd F(2x2, 3x3) and F(4x4, 3x3), forward, weight gradient and input
//! gradient (32 images, one thread), in the direct method's GFLOP/s (its FLOPs over the
//! time taken): the measurements behind `ConvAlgo::Auto`'s table. Each figure is the best
//! of 20 rounds, the three algorithms alternated within each round, so that a machine
//! whose speed drifts treats them alike.
//! `cargo run --release -p petal-kernels --example winograd_shapes [batch]`.
use petal_kernels::conv::{
    conv2d_backward_input_with, conv2d_backward_weights_with, conv2d_forward_with, ForwardPath,
    InputGradPath, WeightGradPath, WinogradTile,
};
use petal_kernels::simd::Lanes;
use petal_kernels::Conv2dShape;
use std::time::Instant;

fn main() {
    let batch = std::env::args()
        .nth(1)
        .map_or(32, |b| b.parse().expect("a batch size"));
    let shapes = [
        ("3->16 @32", 3, 32, 16),
        ("16->16 @32", 16, 32, 16),
        ("32->32 @16", 32, 16, 32),
        ("64->64 @8", 64, 8, 64),
        ("3->16 @64", 3, 64, 16),
        ("16->16 @64", 16, 64, 16),
        ("32->32 @32", 32, 32, 32),
        ("64->64 @16", 64, 16, 64),
        ("8->16 @50", 8, 50, 16),
    ];
    println!(
        "direct-method GFLOP/s, batch {batch}, 1 thread, {:?}: direct / F2 / F4",
        Lanes::BUILD
    );
    println!(
        "{:>12} {:>20} {:>20} {:>20}",
        "shape", "forward", "weight grad", "input grad"
    );
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let lanes = Lanes::BUILD;
    pool.install(|| {
        for (name, c, hw, o) in shapes {
            let s = Conv2dShape {
                batch,
                in_c: c,
                h: hw,
                w: hw,
                out_c: o,
                kh: 3,
                kw: 3,
                stride: 1,
                pad: 1,
            };
            let x: Vec<f32> = (0..s.input_len()).map(|i| (i % 7) as f32 * 0.1).collect();
            let w: Vec<f32> = (0..s.weight_len()).map(|i| (i % 5) as f32 * 0.1).collect();
            let mut y = vec![0.0; s.output_len()];
            let mut gw = vec![0.0; s.weight_len()];
            let mut dx = vec![0.0; s.input_len()];
            let paths = |t: Option<WinogradTile>| match t {
                None => (s.forward_path(), s.weight_grad_path(), s.input_grad_path()),
                Some(t) => (
                    ForwardPath::Winograd(t),
                    WeightGradPath::Winograd(t),
                    InputGradPath::Winograd(t),
                ),
            };
            let scratch_len = [None, Some(WinogradTile::F2), Some(WinogradTile::F4)]
                .into_iter()
                .map(|t| {
                    let (f, g, i) = paths(t);
                    f.scratch_len(&s).max(g.scratch_len(&s)).max(i.scratch_len(&s))
                })
                .max()
                .unwrap();
            let mut scratch = vec![0.0; scratch_len];
            let mut best = [[f64::MAX; 3]; 3];
            for _ in 0..20 {
                for (a, t) in [None, Some(WinogradTile::F2), Some(WinogradTile::F4)]
                    .into_iter()
                    .enumerate()
                {
                    let (fp, gp, ip) = paths(t);
                    let mut time = |pass: usize, f: &mut dyn FnMut()| {
                        let start = Instant::now();
                        f();
                        best[pass][a] = best[pass][a].min(start.elapsed().as_secs_f64());
                    };
                    time(0, &mut || {
                        conv2d_forward_with(&s, fp, lanes, &x, &w, None, &mut y, &mut scratch)
                    });
                    time(1, &mut || {
                        conv2d_backward_weights_with(&s, gp, lanes, &x, &y, &mut gw, None, &mut scratch)
                    });
                    time(2, &mut || {
                        conv2d_backward_input_with(&s, ip, lanes, &w, &y, &mut dx, &mut scratch)
                    });
                }
            }
            let flops = s.forward_flops() as f64;
            let row = |b: &[f64; 3]| {
                let g: Vec<f64> = b.iter().map(|t| flops / t / 1e9).collect();
                format!("{:>6.1} {:>6.1} {:>6.1}", g[0], g[1], g[2])
            };
            println!(
                "{name:>12} {:>20} {:>20} {:>20}",
                row(&best[0]),
                row(&best[1]),
                row(&best[2])
            );
        }
    });
}
