//! The optimizers and label smoothing against PyTorch float64 (`tests/fixtures/torch_recipe.json`,
//! written by `make_torch_recipe.py`): two steps of AdamW, Nesterov SGD and momentum SGD on
//! a small network's parameters from the fixture's gradients, and the label-smoothed loss
//! and its gradient.

use petal::kernels::{smoothed_cross_entropy_rows, AdamWConfig, SgdConfig};
use petal::model::{InputShape, Network, Optimizer, Sgd};
use serde_json::Value;

/// f32 against float64: `|a − b| ≤ 1e-5 · |b|` (plus a floor of 1e-7 for values near 0).
fn assert_rel(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        let err = (a as f64 - b).abs();
        assert!(err <= 1e-5 * b.abs() + 1e-7, "{what}[{i}]: {a} vs PyTorch {b}");
    }
}

fn data(t: &Value) -> Vec<f64> {
    t["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

fn f32s(t: &Value) -> Vec<f32> {
    data(t).iter().map(|&v| v as f32).collect()
}

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/torch_recipe.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let f: Value = serde_json::from_str(&text).expect("fixture parses");
    assert_eq!(f["format"], "petal-torch-recipe/1");
    f
}

fn optimizer(o: &Value) -> Optimizer {
    let num = |k: &str| o[k].as_f64().unwrap() as f32;
    match o["kind"].as_str().unwrap() {
        "adamw" => Optimizer::AdamW(AdamWConfig {
            lr: num("lr"),
            beta1: o["betas"][0].as_f64().unwrap() as f32,
            beta2: o["betas"][1].as_f64().unwrap() as f32,
            eps: num("eps"),
            weight_decay: num("weight_decay"),
        }),
        _ => Optimizer::Sgd(Sgd {
            cfg: SgdConfig {
                lr: num("lr"),
                momentum: num("momentum"),
                weight_decay: num("weight_decay"),
            },
            nesterov: o["nesterov"].as_bool().unwrap(),
        }),
    }
}

#[test]
fn two_optimizer_steps_match_pytorch() {
    let f = fixture();
    let input = InputShape { c: 1, h: 4, w: 4 };
    for o in f["optimizers"].as_array().unwrap() {
        let name = o["name"].as_str().unwrap();
        let mut net = Network::from_spec(f["spec"].as_str().unwrap(), input, 0).unwrap();
        for p in net.params_mut() {
            p.value = f32s(&f["params"][&p.name]["value"]);
        }
        let opt = optimizer(o);
        for step in 1..=2 {
            for p in net.params_mut() {
                p.grad = f32s(&f["params"][&p.name][format!("grad{step}")]);
            }
            net.optimizer_step(&opt);
            for p in net.params() {
                let want = data(&o[format!("after{step}")][&p.name]);
                assert_rel(&format!("{name} step {step} {}", p.name), &p.value, &want);
            }
        }
        assert_eq!(net.optimizer_steps(), 2);
    }
}

#[test]
fn label_smoothed_loss_and_gradient_match_pytorch() {
    let f = fixture();
    let ls = &f["label_smoothing"];
    let logits = f32s(&ls["logits"]);
    let labels: Vec<usize> = ls["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let (batch, classes) = (labels.len(), logits.len() / labels.len());
    for c in ls["cases"].as_array().unwrap() {
        let eps = c["eps"].as_f64().unwrap() as f32;
        let (mut p, mut losses, mut g) = (vec![0.0; logits.len()], vec![0.0; batch], vec![0.0; logits.len()]);
        smoothed_cross_entropy_rows(
            &logits,
            &labels,
            classes,
            eps,
            1.0 / batch as f32,
            &mut p,
            &mut losses,
            &mut g,
        )
        .unwrap();
        let mean = petal::kernels::mean_loss(&losses);
        assert_rel(
            &format!("eps {eps} loss"),
            &[mean],
            &[c["loss"].as_f64().unwrap()],
        );
        assert_rel(&format!("eps {eps} grad"), &g, &data(&c["grad"]));
    }
}
