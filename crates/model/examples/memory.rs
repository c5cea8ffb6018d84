//! Prints what training a preset holds in memory at a batch size (`Network::memory`, the
//! network's part of the estimate `trainer train` prints before it starts).
//!
//! `cargo run --release -p petal-model --example memory -- [ARCH] [BATCH] [SIZE] [THREADS]`

use petal_model::{InputShape, Network, OptimizerKind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arch = args.first().map_or("resnet20", String::as_str);
    let batch: usize = args.get(1).map_or(Ok(128), |b| b.parse())?;
    let (c, side) = petal_model::spec::preset_input(arch).unwrap_or((3, 32));
    let side = args.get(2).map_or(Ok(side), |s| s.parse())?;
    let threads: usize = args.get(3).map_or(Ok(2), |t| t.parse())?;
    let net = Network::for_classes(arch, InputShape { c, h: side, w: side }, 5, 0)?;
    let slots = OptimizerKind::Sgd.layout().slots.len();
    let m = net.memory(batch, threads, slots);
    let mb = |v: u64| v as f64 / (1 << 20) as f64;
    println!(
        "{arch} on {c}x{side}x{side}, batch {batch}, {threads} threads, SGD: {} parameters",
        net.param_count()
    );
    println!("  weights and gradients:   {:8.1} MiB", mb(m.weights));
    println!("  optimizer state:         {:8.1} MiB", mb(m.optimizer));
    println!("  the batch's values:      {:8.1} MiB", mb(m.batch));
    println!("  the threads' arenas:     {:8.1} MiB", mb(m.tasks));
    println!("  total:                   {:8.1} MiB", mb(m.total()));
    Ok(())
}
