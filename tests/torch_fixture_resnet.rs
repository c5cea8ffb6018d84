//! A small ResNet (batch norms, a residual block with a projection shortcut, one with an
//! identity shortcut, global average pooling, dense) built by petal-model from the spec
//! PyTorch used, loaded with the fixture's weights and running statistics, reproduces
//! PyTorch's float64 training step (logits, loss, every gradient, the running statistics
//! after it) and its inference outputs (`tests/fixtures/torch_resnet_small_seed1.json`,
//! written by `tests/fixtures/make_torch_resnet_fixture.py`).

mod common;

use common::{fixture_path, rel_err, Tensor};
use petal::kernels::ConvAlgo;
use petal::model::{InputShape, Layer, Network};
use serde_json::Value;

/// f32 against float64, relative to each tensor's largest value (the 1e-4).
const TOL: f64 = 1e-4;

struct Fixture(Value);

impl Fixture {
    fn load() -> Self {
        let path = fixture_path("torch_resnet_small_seed1.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let v: Value = serde_json::from_str(&text).expect("fixture parses");
        assert_eq!(v["format"], "resnet-small-gradref/1");
        Fixture(v)
    }
    fn tensor(&self, path: &[&str]) -> Tensor {
        let mut v = &self.0;
        for p in path {
            v = &v[*p];
        }
        let t: Tensor = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        assert_eq!(t.len(), t.data.len(), "{path:?}: shape and data disagree");
        t
    }
}

/// The fixture's network with its weights and running statistics (before the step).
fn network(f: &Fixture) -> Network {
    let spec = f.0["spec"].as_str().unwrap();
    let shape: Vec<usize> = serde_json::from_value(f.0["input_shape"].clone()).unwrap();
    let input = InputShape {
        c: shape[0],
        h: shape[1],
        w: shape[2],
    };
    let mut net = Network::from_spec(spec, input, 0).unwrap();
    assert_eq!(net.spec(), spec, "the canonical spec is PyTorch's");
    let mut loaded = 0;
    for p in net.params_mut() {
        let t = f.tensor(&["params", &p.name]);
        assert_eq!(p.shape, t.shape, "{}", p.name);
        p.value = t.f32();
        loaded += 1;
    }
    for layer in net.layers_mut() {
        if let Layer::BatchNorm(bn) = layer {
            bn.running_mean = f
                .tensor(&["params", &format!("{}.running_mean", bn.prefix)])
                .f32();
            bn.running_var = f.tensor(&["params", &format!("{}.running_var", bn.prefix)]).f32();
            loaded += 3;
        }
    }
    let names = f.0["params"].as_object().unwrap().len();
    assert_eq!(
        loaded, names,
        "every state_dict tensor of the fixture has its place"
    );
    net
}

#[test]
fn small_resnet_training_step_reproduces_pytorch() {
    reproduces_pytorch(ConvAlgo::Direct);
}

/// Winograd in every stride-1 3x3 layer (F(4x4) on the stem's 9x9 maps, F(2x2) on the
/// blocks' 5x5): within the same 1e-4 of PyTorch's float64 step.
#[test]
fn small_resnet_training_step_on_winograd_reproduces_pytorch() {
    reproduces_pytorch(ConvAlgo::Winograd);
}

fn reproduces_pytorch(algo: ConvAlgo) {
    let f = Fixture::load();
    let mut net = network(&f);
    net.set_conv_algo(algo);
    net.set_input_grad(true);
    let x = f.tensor(&["input"]).f32();
    let labels: Vec<usize> = f.tensor(&["labels"]).data.iter().map(|&v| v as usize).collect();
    let loss = net.forward_backward(&x, &labels).unwrap();
    let want_loss = f.0["loss"].as_f64().unwrap();
    assert!(
        ((loss as f64 - want_loss) / want_loss).abs() < TOL,
        "loss {loss} vs {want_loss}"
    );
    let mut checks: Vec<(String, Vec<f32>, Tensor)> = vec![
        ("logits".into(), net.logits().to_vec(), f.tensor(&["logits"])),
        ("probs".into(), net.probs().to_vec(), f.tensor(&["probs"])),
        (
            "per_sample_loss".into(),
            net.losses().to_vec(),
            f.tensor(&["per_sample_loss"]),
        ),
        (
            "grad_input".into(),
            net.input_grad().to_vec(),
            f.tensor(&["grad_input"]),
        ),
    ];
    for p in net.params() {
        checks.push((
            format!("grad {}", p.name),
            p.grad.clone(),
            f.tensor(&["grads", &p.name]),
        ));
    }
    let mut bns = 0;
    for layer in net.layers() {
        if let Layer::BatchNorm(bn) = layer {
            let pre = &bn.prefix;
            for (name, v) in [
                ("running_mean", &bn.running_mean),
                ("running_var", &bn.running_var),
            ] {
                let key = format!("{pre}.{name}");
                checks.push((key.clone(), v.clone(), f.tensor(&["running_after_forward", &key])));
            }
            let tracked = &f.0["running_after_forward"][format!("{pre}.num_batches_tracked")];
            assert_eq!(
                Some(bn.batches_tracked),
                tracked.as_u64(),
                "{pre}.num_batches_tracked"
            );
            bns += 1;
        }
    }
    assert_eq!(bns, 6, "stem, two per block, the projection's");
    assert_eq!(checks.len(), 4 + 20 + 12);
    let mut bad = Vec::new();
    for (name, ours, theirs) in &checks {
        let e = rel_err(ours, &theirs.data);
        eprintln!("{algo:?} {name:>28}  rel err {e:.2e}");
        if e.is_nan() || e >= TOL {
            bad.push(format!("{name}: relative error {e:.3e}"));
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
    // Inference with the running statistics the step left.
    let probs = net.predict(&x).unwrap().to_vec();
    let e = rel_err(&probs, &f.tensor(&["eval_probs"]).data);
    assert!(e < TOL, "eval probs: relative error {e:.3e}");
    let e = rel_err(net.logits(), &f.tensor(&["eval_logits"]).data);
    assert!(e < TOL, "eval logits: relative error {e:.3e}");
}

/// The same step split over any number of threads gives the same bits (batch statistics
/// summed in chunk order).
#[test]
fn small_resnet_step_is_bit_identical_on_1_2_and_3_threads() {
    let f = Fixture::load();
    let x = f.tensor(&["input"]).f32();
    let labels: Vec<usize> = f.tensor(&["labels"]).data.iter().map(|&v| v as usize).collect();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut net = network(&f);
            let cfg = petal::kernels::SgdConfig {
                lr: 0.1,
                momentum: 0.9,
                weight_decay: 1e-4,
            };
            for _ in 0..3 {
                net.train_step(&x, &labels, &cfg).unwrap();
            }
            let mut state: Vec<Vec<f32>> = net.params().map(|p| p.value.clone()).collect();
            for l in net.layers() {
                if let Layer::BatchNorm(bn) = l {
                    state.push(bn.running_mean.clone());
                    state.push(bn.running_var.clone());
                }
            }
            (state, net.predict(&x).unwrap().to_vec())
        })
    };
    let one = run(1);
    for t in [2, 3] {
        assert!(run(t) == one, "{t} threads differ from 1");
    }
}
