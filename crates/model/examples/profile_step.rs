//! Runs training steps (or inference) of a preset in a loop, for a profiler:
//! `perf record cargo run --release -p petal-model --example profile_step -- flowernet 32 train 5`
//! (arch, batch, `train` or `infer`, seconds).

use petal_kernels::SgdConfig;
use petal_model::{InputShape, Network};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arch = args.first().map_or("seednet", String::as_str);
    let batch: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(32);
    let train = args.get(2).is_none_or(|s| s == "train");
    let seconds: f64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let input = if arch == "seednet" {
        InputShape { c: 1, h: 50, w: 50 }
    } else {
        InputShape { c: 3, h: 64, w: 64 }
    };
    let mut net = Network::from_spec(arch, input, 0).expect("arch");
    let x: Vec<f32> = (0..batch * input.len())
        .map(|i| (i * 7919 % 1000) as f32 / 1000.0)
        .collect();
    let y: Vec<usize> = (0..batch).map(|i| i % net.classes()).collect();
    let sgd = SgdConfig {
        lr: 0.005,
        momentum: 0.0,
        weight_decay: 0.0,
    };
    let t = Instant::now();
    let mut steps = 0;
    while t.elapsed().as_secs_f64() < seconds {
        if train {
            net.train_step(&x, &y, &sgd).expect("step");
        } else {
            net.predict(&x).expect("predict");
        }
        steps += 1;
    }
    let ips = (steps * batch) as f64 / t.elapsed().as_secs_f64();
    println!(
        "{arch} batch {batch} {}: {ips:.0} images/s",
        if train { "train" } else { "infer" }
    );
}
