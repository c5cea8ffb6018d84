//! Times the conv kernels on the CIFAR ResNets' shapes (one chunk of images, one thread):
//! `cargo run --release -p petal-kernels --example resnet_shapes`.
use petal_kernels::{conv2d_backward_input, conv2d_backward_weights, conv2d_forward, Conv2dShape};
use std::time::Instant;

fn main() {
    let batch = petal_kernels::conv::BATCH_CHUNK;
    let shapes = [
        ("stem 3->16 @32", 3, 32, 16, 3, 1, 1),
        ("16->16 @32", 16, 32, 16, 3, 1, 1),
        ("16->32 s2 @32", 16, 32, 32, 3, 2, 1),
        ("1x1 16->32 s2", 16, 32, 32, 1, 2, 0),
        ("32->32 @16", 32, 16, 32, 3, 1, 1),
        ("32->64 s2 @16", 32, 16, 64, 3, 2, 1),
        ("1x1 32->64 s2", 32, 16, 64, 1, 2, 0),
        ("64->64 @8", 64, 8, 64, 3, 1, 1),
    ];
    println!(
        "{:>16} {:>10} {:>10} {:>10}   GFLOP/s (batch {batch}, 1 thread)",
        "shape", "forward", "dW", "dX"
    );
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    pool.install(|| {
        for (name, c, hw, o, k, s, p) in shapes {
            let sh = Conv2dShape {
                batch,
                in_c: c,
                h: hw,
                w: hw,
                out_c: o,
                kh: k,
                kw: k,
                stride: s,
                pad: p,
            };
            let x: Vec<f32> = (0..sh.input_len()).map(|i| (i % 7) as f32 * 0.1).collect();
            let w: Vec<f32> = (0..sh.weight_len()).map(|i| (i % 5) as f32 * 0.1).collect();
            let mut y = vec![0.0; sh.output_len()];
            let mut scratch = vec![0.0; sh.scratch_len()];
            let mut gw = vec![0.0; sh.weight_len()];
            let mut dx = vec![0.0; sh.input_len()];
            let flops = sh.forward_flops() as f64;
            let time = |f: &mut dyn FnMut()| {
                for _ in 0..3 {
                    f();
                }
                let n = 200;
                let t = Instant::now();
                for _ in 0..n {
                    f();
                }
                flops * n as f64 / t.elapsed().as_secs_f64() / 1e9
            };
            let fw = time(&mut || conv2d_forward(&sh, &x, &w, None, &mut y, &mut scratch));
            let dw = time(&mut || conv2d_backward_weights(&sh, &x, &y, &mut gw, None, &mut scratch));
            let di = time(&mut || conv2d_backward_input(&sh, &w, &y, &mut dx, &mut scratch));
            println!(
                "{name:>16} {fw:>10.1} {dw:>10.1} {di:>10.1}   {:?}",
                (sh.forward_path(), sh.weight_grad_path(), sh.input_grad_path())
            );
        }
    });
}
