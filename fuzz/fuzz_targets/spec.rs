//! The spec parser and network builder on arbitrary text: `parse_spec` and
//! `Network::from_layers` / `from_spec` on a small input, then `check_buffers`; a spec that builds a small
//! network runs a training step, so every shape the builder accepts is one the kernels
//! accept. Canonical specs must parse back to the same layers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use petal_kernels::SgdConfig;
use petal_model::limits::check_buffers;
use petal_model::spec::{format_spec, parse_spec};
use petal_model::{InputShape, Network};

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    // The first byte picks the input shape; the rest is the spec text.
    let shape = InputShape {
        c: 1 + (data[0] & 3) as usize,
        h: 1 + (data[0] >> 2 & 15) as usize,
        w: 1 + (data[0] >> 6) as usize * 5,
    };
    let Ok(text) = std::str::from_utf8(&data[1..]) else {
        return;
    };
    let Ok(layers) = parse_spec(text) else {
        return;
    };
    assert_eq!(parse_spec(&format_spec(&layers)).unwrap(), layers);
    // Shapes first, with zero weights (allocated but never touched): a network near the
    // 2^28-parameter limit is valid and would need 3 GiB once initialised.
    let Ok(net) = Network::from_layers(&layers, shape) else {
        assert!(Network::from_spec(text, shape, 1).is_err());
        return;
    };
    if net.param_count() > 1 << 20 {
        return;
    }
    let mut net = Network::from_spec(text, shape, 1).expect("from_layers accepted it");
    assert_eq!(parse_spec(&net.spec()).map(|l| l.len()), Ok(net.layers().len()));
    if check_buffers(&net).is_err() {
        return;
    }
    let acts: usize = net.shapes().iter().map(|s| s.len()).sum();
    if net.param_count() <= 1 << 16 && acts <= 1 << 16 {
        let classes = net.classes();
        let x = vec![0.25f32; 2 * shape.len()];
        let y = [0, classes - 1];
        let sgd = SgdConfig {
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 1e-4,
        };
        net.train_step(&x, &y, &sgd).expect("a built network trains");
        assert_eq!(net.predict(&x).unwrap().len(), 2 * classes);
    }
});
