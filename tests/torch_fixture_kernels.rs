//! Chaining the kernels for seednet reproduces PyTorch's float64 forward and backward
//! (`tests/fixtures/torch_seednet_grad_seed1.json`, a copy of `../shared/fixtures/`).

mod common;

use common::{rel_err, SeednetFixture};
use petal::kernels::*;

/// f32 against float64: every tensor within this relative error (the fixture README
/// expects "well under 1e-4").
const TOL: f64 = 2e-5;

#[test]
fn kernels_reproduce_pytorch_seednet_forward_and_gradients() {
    let f = SeednetFixture::load();
    let b = f.batch;
    let labels = f.labels();
    let x = f.tensor("input").f32();
    let cw = f.tensor("conv.weight").f32();
    let cb = f.tensor("conv.bias").f32();
    let fw = f.tensor("fc.weight").f32();
    let fb = f.tensor("fc.bias").f32();
    assert!(
        f.checks["min_maxpool_top2_gap"].as_f64().expect("gap") > 1e-6,
        "pool windows too close to a tie for an f32 comparison"
    );

    let conv = Conv2dShape {
        batch: b,
        in_c: 1,
        h: 50,
        w: 50,
        out_c: 8,
        kh: 3,
        kw: 3,
        stride: 1,
        pad: 0,
    };
    let pool = Pool2dShape {
        batch: b,
        c: 8,
        h: 48,
        w: 48,
        k: 2,
        stride: 2,
    };
    let dense = DenseShape {
        batch: b,
        inputs: 4608,
        outputs: 5,
    };
    let mut scratch = vec![0.0f32; conv.scratch_len()];

    // Forward.
    let mut conv_out = vec![0.0f32; conv.output_len()];
    conv2d_forward(&conv, &x, &cw, Some(&cb), &mut conv_out, &mut scratch);
    let mut pooled = vec![0.0f32; pool.output_len()];
    let mut argmax = vec![0u32; pool.output_len()];
    max_pool2d_forward(&pool, &conv_out, &mut pooled, &mut argmax);
    let mut logits = vec![0.0f32; b * 5];
    dense_forward(&dense, &pooled, &fw, Some(&fb), &mut logits);
    let mut probs = vec![0.0f32; b * 5];
    let mut losses = vec![0.0f32; b];
    let mut dlogits = vec![0.0f32; b * 5];
    let loss =
        softmax_cross_entropy(&logits, &labels, 5, &mut probs, &mut losses, &mut dlogits).expect("labels");

    // Backward.
    let mut gfw = vec![0.0f32; fw.len()];
    let mut gfb = vec![0.0f32; 5];
    let mut gpooled = vec![0.0f32; pooled.len()];
    dense_backward(
        &dense,
        &pooled,
        &fw,
        &dlogits,
        &mut gfw,
        Some(&mut gfb),
        Some(&mut gpooled),
    );
    let mut gconv = vec![0.0f32; conv_out.len()];
    max_pool2d_backward(&pool, &gpooled, &argmax, &mut gconv);
    let mut gcw = vec![0.0f32; cw.len()];
    let mut gcb = vec![0.0f32; 8];
    conv2d_backward_weights(&conv, &x, &gconv, &mut gcw, Some(&mut gcb), &mut scratch);
    let mut gx = vec![0.0f32; x.len()];
    conv2d_backward_input(&conv, &cw, &gconv, &mut gx, &mut scratch);

    let checks: [(&str, &[f32]); 10] = [
        ("pool_out", &pooled),
        ("logits", &logits),
        ("probs", &probs),
        ("per_sample_loss", &losses),
        ("grad.logits", &dlogits),
        ("grad.fc.weight", &gfw),
        ("grad.fc.bias", &gfb),
        ("grad.conv.weight", &gcw),
        ("grad.conv.bias", &gcb),
        ("grad.input", &gx),
    ];
    for (name, ours) in checks {
        let want = f.tensor(name);
        let e = rel_err(ours, &want.data);
        assert!(e < TOL, "{name}: relative error {e:.3e} exceeds {TOL:.0e}");
    }
    let loss_err = ((loss as f64) - f.loss).abs() / f.loss.abs();
    assert!(
        loss_err < TOL,
        "mean loss {loss} vs PyTorch {}: relative error {loss_err:.3e}",
        f.loss
    );

    // One plain SGD step matches the fixture's rule w_new = w - lr * grad.
    let lr = 0.05f32;
    let mut w = fw.clone();
    sgd_step(
        &SgdConfig {
            lr,
            momentum: 0.0,
            weight_decay: 0.0,
        },
        &mut w,
        &gfw,
        &mut [],
    );
    let want: Vec<f64> = f
        .tensor("fc.weight")
        .data
        .iter()
        .zip(&f.tensor("grad.fc.weight").data)
        .map(|(w, g)| w - lr as f64 * g)
        .collect();
    let e = rel_err(&w, &want);
    assert!(e < TOL, "SGD step: relative error {e:.3e}");
}
