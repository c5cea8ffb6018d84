//! `trainer bench`: training and inference images/s of a network on random data.

use super::args::BenchArgs;
use super::network::{check_size, network};
use super::{Exit, MAX_BENCH_BATCH};
use crate::bench::{bench, estimate, BenchResult};
use crate::error::TrainerError;
use crate::report::thousands;
use crate::train::memory;
use petal_kernels::{ConvAlgo, SimdLevel};

pub(super) fn run(a: BenchArgs) -> Result<Exit, TrainerError> {
    let input = a.arch.input();
    let threads = if a.threads.is_empty() {
        vec![rayon::current_num_threads()]
    } else {
        a.threads.clone()
    };
    if threads.contains(&0) || a.batch_size.contains(&0) {
        return Err(TrainerError::Usage(
            "--threads and --batch-size must be at least 1".into(),
        ));
    }
    if let Some(b) = a.batch_size.iter().find(|&&b| b > MAX_BENCH_BATCH) {
        return Err(TrainerError::Usage(format!(
            "--batch-size {b} is over the limit of {MAX_BENCH_BATCH}"
        )));
    }
    // Refuse a bad spec before measuring anything.
    check_size(input)?;
    // Every algorithm's scratch is checked before anything runs.
    let mut net = network(&a.arch.arch, input, a.classes, "--classes", 0, ConvAlgo::Direct)?;
    for &algo in &a.conv_algo {
        net.set_conv_algo(algo);
        petal_model::limits::check_buffers(&net)?;
    }
    let spec = net.spec();
    if !a.json {
        println!(
            "{} on {input} ({:.2} MFLOP per training image), {:.1} s per configuration; kernels built for {} (this CPU: {})",
            net.spec(),
            net.train_flops_per_sample() as f64 / 1e6,
            a.seconds,
            SimdLevel::COMPILED,
            SimdLevel::detect()
        );
        println!(
            "{:>9} {:>6} {:>8} {:>14} {:>14} {:>12} {:>12}",
            "conv algo", "batch", "threads", "train img/s", "infer img/s", "train GFLOP/s", "memory"
        );
    }
    // Every configuration must fit in the memory available, checked before any runs.
    if let Some(budget) = memory::available() {
        let algos = &a.conv_algo;
        for (&t, &b, &algo) in threads.iter().flat_map(|t| {
            a.batch_size
                .iter()
                .flat_map(move |b| algos.iter().map(move |c| (t, b, c)))
        }) {
            net.set_conv_algo(algo);
            let e = estimate(&net, b, t);
            if e.total() > budget {
                return Err(TrainerError::Usage(format!(
                    "batch {b} on {t} threads needs about {}, more than the {} available",
                    e.describe(t),
                    memory::bytes(budget)
                )));
            }
        }
    }
    for &t in &threads {
        for &b in &a.batch_size {
            for &algo in &a.conv_algo {
                let r = bench(&a.arch.arch, &spec, algo, input, b, t, a.seconds)?;
                print_row(&r, a.json);
            }
        }
    }
    Ok(Exit::Ok)
}

/// One configuration's figures: a line of the table, or a JSON object.
fn print_row(r: &BenchResult, json: bool) {
    if json {
        println!("{}", serde_json::to_string(r).expect("bench result"));
    } else {
        println!(
            "{:>9} {:>6} {:>8} {:>14} {:>14} {:>12.1} {:>12}",
            r.conv_algo,
            r.batch_size,
            r.threads,
            thousands(r.train_images_per_sec),
            thousands(r.infer_images_per_sec),
            r.train_gflops,
            memory::bytes(r.memory_bytes)
        );
    }
}
