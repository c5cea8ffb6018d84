//! Prints where a training step's memory goes for a preset: values per sample kept for
//! backward and held by the shared gradient buffers, and MB at a batch size.
//!
//! `cargo run --release -p petal-model --example memory -- [ARCH] [BATCH] [SIZE]`

use petal_model::{InputShape, Network};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arch = args.first().map_or("resnet20", String::as_str);
    let batch: usize = args.get(1).map_or(Ok(128), |b| b.parse())?;
    let (c, side) = petal_model::spec::preset_input(arch).unwrap_or((3, 32));
    let side = args.get(2).map_or(Ok(side), |s| s.parse())?;
    let net = Network::for_classes(arch, InputShape { c, h: side, w: side }, 5, 0)?;
    let (outs, grads) = net.buffer_values_per_sample();
    let mb = |v: usize| (v * batch * 4) as f64 / 1e6;
    println!(
        "{arch} on {c}x{side}x{side}, batch {batch}: {} parameters",
        net.param_count()
    );
    println!(
        "  outputs kept for backward: {outs} values per sample, {:.1} MB",
        mb(outs)
    );
    println!(
        "  shared gradient buffers:   {grads} values per sample, {:.1} MB",
        mb(grads)
    );
    println!(
        "  input batch:               {} values per sample, {:.1} MB",
        c * side * side,
        mb(c * side * side)
    );
    Ok(())
}
