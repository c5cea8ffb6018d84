//! seednet built by petal-model, loaded with the fixture's weights, reproduces PyTorch's
//! float64 logits, loss and every gradient (`tests/fixtures/torch_seednet_grad_seed1.json`).

mod common;

use common::{rel_err, SeednetFixture};
use petal::model::{gradcheck, GradCheckOptions, Network};

/// f32 against float64, relative error over each tensor (fixture README: "well under 1e-4").
const TOL: f64 = 2e-5;

fn load_fixture_weights(net: &mut Network, f: &SeednetFixture) {
    let names = [
        ("0.weight", "conv.weight"),
        ("0.bias", "conv.bias"),
        ("3.weight", "fc.weight"),
        ("3.bias", "fc.bias"),
    ];
    let params: Vec<&mut petal::model::Param> = net.params_mut().collect();
    assert_eq!(
        params.len(),
        names.len(),
        "seednet has conv and dense weights and biases"
    );
    for (p, (ours, theirs)) in params.into_iter().zip(names) {
        let t = f.tensor(theirs);
        assert_eq!(p.name, ours, "PyTorch nn.Sequential naming");
        assert_eq!(p.shape, t.shape, "{ours} shape vs fixture {theirs}");
        p.value = t.f32();
    }
}

#[test]
fn seednet_reproduces_pytorch_through_the_model_api() {
    let f = SeednetFixture::load();
    let mut net = Network::seednet(0);
    assert_eq!(net.spec(), "conv3x3:8,maxpool2,flatten,dense:5");
    load_fixture_weights(&mut net, &f);
    net.set_input_grad(true);
    let x = f.tensor("input").f32();
    let loss = net.forward_backward(&x, &f.labels()).unwrap();

    let grads: Vec<(String, Vec<f32>)> = net.params().map(|p| (p.name.clone(), p.grad.clone())).collect();
    let checks: [(&str, &[f32]); 8] = [
        ("logits", net.logits()),
        ("probs", net.probs()),
        ("per_sample_loss", net.losses()),
        ("grad.conv.weight", &grads[0].1),
        ("grad.conv.bias", &grads[1].1),
        ("grad.fc.weight", &grads[2].1),
        ("grad.fc.bias", &grads[3].1),
        ("grad.input", net.input_grad()),
    ];
    for (name, ours) in checks {
        let e = rel_err(ours, &f.tensor(name).data);
        assert!(e < TOL, "{name}: relative error {e:.3e} exceeds {TOL:.0e}");
    }
    let e = (loss as f64 - f.loss).abs() / f.loss;
    assert!(e < TOL, "loss {loss} vs {}: {e:.3e}", f.loss);

    // Inference agrees with the training forward pass.
    let logits = net.logits().to_vec();
    let probs = net.predict(&x).unwrap().to_vec();
    assert_eq!(net.logits(), &logits[..]);
    let e = rel_err(&probs, &f.tensor("probs").data);
    assert!(e < TOL, "predict probs: {e:.3e}");
}

#[test]
fn gradient_checker_agrees_on_the_fixture_batch() {
    let f = SeednetFixture::load();
    let mut net = Network::seednet(0);
    load_fixture_weights(&mut net, &f);
    let r = gradcheck(
        &mut net,
        &f.tensor("input").f32(),
        &f.labels(),
        &GradCheckOptions::default(),
    )
    .unwrap();
    assert!(r.passed(), "worst {:.3e}", r.worst());
}
