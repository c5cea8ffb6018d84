//! Writes a checkpoint of a preset (trained for a few steps on random data), a batch of
//! inputs and Petal's probabilities for them in inference (`probs`: running statistics)
//! and training mode (`train_probs`: batch statistics), for `tests/torch_interop.py` to
//! load into PyTorch and compare.
//!
//! `cargo run --release -p petal-model --example export_for_torch -- OUT_DIR [PRESET|SPEC C H W]`

use petal_kernels::SgdConfig;
use petal_model::{save_checkpoint, CheckpointMeta, InputShape, Network, Normalization};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = PathBuf::from(
        args.first()
            .ok_or("usage: export_for_torch OUT_DIR [ARCH [C H W]]")?,
    );
    let arch = args.get(1).map_or("seednet", String::as_str);
    let preset = petal_model::spec::preset_input(arch).map(|(c, s)| InputShape { c, h: s, w: s });
    let input = match (preset, &args[2.min(args.len())..]) {
        (_, [c, h, w, ..]) => InputShape {
            c: c.parse()?,
            h: h.parse()?,
            w: w.parse()?,
        },
        (Some(input), _) => input,
        _ => return Err("a spec needs C H W".into()),
    };
    std::fs::create_dir_all(&out)?;
    let mut net = Network::from_spec(arch, input, 1)?;
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let batch = 8;
    let x: Vec<f32> = (0..batch * input.len()).map(|_| rng.random()).collect();
    let y: Vec<usize> = (0..batch).map(|_| rng.random_range(0..net.classes())).collect();
    let cfg = SgdConfig {
        lr: 0.01,
        momentum: 0.9,
        weight_decay: 0.0,
    };
    for _ in 0..3 {
        net.train_step(&x, &y, &cfg)?;
    }
    let classes = (0..net.classes()).map(|i| format!("class{i}")).collect();
    let meta = CheckpointMeta {
        classes,
        normalization: Normalization::unit(input.c),
        epoch: 0,
        step: 3,
        extra: Default::default(),
    };
    save_checkpoint(&out.join("model.safetensors"), &net, &meta)?;
    let probs = net.predict(&x)?.to_vec();
    // Training mode on the saved weights: batch statistics (the step's gradients and
    // running statistics are not saved).
    net.forward_backward(&x, &y)?;
    let train_probs = net.probs().to_vec();
    let json = serde_json::json!({
        "spec": net.spec(),
        "input_shape": [input.c, input.h, input.w],
        "batch": batch,
        "input": x,
        "probs": probs,
        "train_probs": train_probs,
    });
    std::fs::write(out.join("petal_outputs.json"), serde_json::to_string(&json)?)?;
    println!("wrote {}", out.display());
    Ok(())
}
