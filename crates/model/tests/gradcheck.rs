//! The public gradient checker passes on the presets and on a spec with stride 2 and
//! padding (a wrong gradient failing it is a unit test in `src/gradcheck.rs`).

use petal_model::{gradcheck, GradCheckOptions, InputShape, Network};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn batch(net: &Network, n: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = (0..n * net.input_shape().len())
        .map(|_| rng.random::<f32>())
        .collect();
    let y = (0..n).map(|_| rng.random_range(0..net.classes())).collect();
    (x, y)
}

fn check(mut net: Network, n: usize) {
    let (x, y) = batch(&net, n, 7);
    let before: Vec<Vec<f32>> = net.params().map(|p| p.value.clone()).collect();
    let report = gradcheck(&mut net, &x, &y, &GradCheckOptions::default()).unwrap();
    for t in &report.tensors {
        eprintln!(
            "{:>10}  worst {:.2e}  checked {}  skipped {}",
            t.name, t.worst_rel_err, t.checked, t.skipped
        );
        assert!(
            t.checked >= t.skipped,
            "{}: most probes hit a kink ({} of {})",
            t.name,
            t.skipped,
            t.checked + t.skipped
        );
    }
    assert!(
        report.passed(),
        "worst relative error {:.3e} > {}",
        report.worst(),
        report.tolerance
    );
    let after: Vec<Vec<f32>> = net.params().map(|p| p.value.clone()).collect();
    assert_eq!(before, after, "gradcheck must leave the weights as they were");
    let names: Vec<_> = report.tensors.iter().map(|t| t.name.as_str()).collect();
    let mut want: Vec<_> = net.params().map(|p| p.name.as_str()).collect();
    want.push("input");
    assert_eq!(names, want);
}

#[test]
fn seednet_gradients_match_finite_differences() {
    check(Network::seednet(3), 3);
}

#[test]
fn flowernet_gradients_match_finite_differences() {
    check(Network::flowernet(4), 2);
}

#[test]
fn strided_padded_spec_gradients_match_finite_differences() {
    let net = Network::from_spec(
        "conv3x3:5/s2/p1,relu,conv2x3:6/p2,relu,maxpool3/s2,dense:7,relu,dense:4",
        InputShape { c: 2, h: 13, w: 11 },
        5,
    )
    .unwrap();
    check(net, 3);
}

#[test]
fn a_zero_tolerance_fails() {
    // Finite differences always carry some rounding error: the comparison is live.
    let mut net = Network::seednet(9);
    let (x, y) = batch(&net, 2, 1);
    let strict = GradCheckOptions {
        tolerance: 0.0,
        ..GradCheckOptions::default()
    };
    assert!(!gradcheck(&mut net, &x, &y, &strict).unwrap().passed());
}
