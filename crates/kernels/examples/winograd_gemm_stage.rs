//! Whether Winograd F(2x2, 3x3) would pay on Petal's stride-1 3x3 shapes: times the
//! direct forward kernel against the part of a Winograd forward that does the
//! multiplies, 16 products `M[k] = U[k] · V[k]` (`U[k]` `[out_c, in_c]` transformed
//! weights, `V[k]` `[in_c, tiles]` transformed input, `tiles` = 2x2 output tiles of a
//! 4-image chunk), run as 1x1 convolutions on Petal's own kernels (2.25x fewer multiplies
//! than the direct kernel). The input and output transforms are not included: the ratio
//! printed is the most Winograd could gain with free transforms. One thread:
//! `cargo run --release -p petal-kernels --example winograd_gemm_stage`.
use petal_kernels::{conv2d_forward, Conv2dShape};
use std::time::Instant;

/// Microseconds per call of `f` (3 warm-up calls, then the mean of 300).
fn micros(f: &mut dyn FnMut()) -> f64 {
    for _ in 0..3 {
        f();
    }
    let n = 300;
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_secs_f64() / n as f64 * 1e6
}

fn main() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    println!(
        "{:>14} {:>16} {:>22} {:>10}",
        "shape", "direct us (GF/s)", "16 products us (GF/s)", "ratio"
    );
    pool.install(|| {
        for (c, hw, o) in [
            (16, 32, 16),
            (16, 32, 32),
            (32, 16, 32),
            (32, 16, 64),
            (64, 8, 64),
        ] {
            let direct = Conv2dShape {
                batch: petal_kernels::conv::BATCH_CHUNK,
                in_c: c,
                h: hw,
                w: hw,
                out_c: o,
                kh: 3,
                kw: 3,
                stride: 1,
                pad: 1,
            };
            let tiles = (hw / 2) * (hw / 2) * direct.batch;
            let product = Conv2dShape {
                batch: 1,
                h: 1,
                w: tiles,
                kh: 1,
                kw: 1,
                pad: 0,
                ..direct
            };
            let x: Vec<f32> = (0..direct.input_len()).map(|i| (i % 7) as f32 * 0.1).collect();
            let w: Vec<f32> = (0..direct.weight_len()).map(|i| (i % 5) as f32 * 0.1).collect();
            let mut y = vec![0.0; direct.output_len()];
            let mut scratch = vec![0.0; direct.scratch_len().max(product.scratch_len())];
            let v: Vec<f32> = (0..16 * product.input_len())
                .map(|i| (i % 7) as f32 * 0.1)
                .collect();
            let u: Vec<f32> = (0..16 * product.weight_len())
                .map(|i| (i % 5) as f32 * 0.1)
                .collect();
            let mut m = vec![0.0; 16 * product.output_len()];
            let td = micros(&mut || conv2d_forward(&direct, &x, &w, None, &mut y, &mut scratch));
            let tp = micros(&mut || {
                let vs = v.chunks_exact(product.input_len());
                let us = u.chunks_exact(product.weight_len());
                for ((vk, uk), mk) in vs.zip(us).zip(m.chunks_exact_mut(product.output_len())) {
                    conv2d_forward(&product, vk, uk, None, mk, &mut scratch);
                }
            });
            let gf = |flops: u64, us: f64| flops as f64 / us / 1e3;
            println!(
                "{:>14} {td:>8.1} ({:>5.1}) {tp:>14.1} ({:>5.1}) {:>9.2}x",
                format!("{c}->{o} @{hw}"),
                gf(direct.forward_flops(), td),
                gf(16 * product.forward_flops(), tp),
                td / tp
            );
        }
    });
}
