//! The public gradient checker passes on the presets and on a spec with stride 2 and
//! padding (a wrong gradient failing it is a unit test in `src/gradcheck.rs`).

use petal_kernels::ConvAlgo;
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

fn check(net: Network, n: usize) {
    check_with(net, n, &GradCheckOptions::default());
}

fn check_with(mut net: Network, n: usize, opts: &GradCheckOptions) {
    let (x, y) = batch(&net, n, 7);
    let before: Vec<Vec<f32>> = net.params().map(|p| p.value.clone()).collect();
    let report = gradcheck(&mut net, &x, &y, opts).unwrap();
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

/// Batch norms (training mode: the batch's statistics), residual blocks with a projection
/// and with an identity shortcut, global average pooling: an odd 9x9 input, batches that
/// fill one chunk, part of one, and several. The weights before a batch norm have
/// gradients that are sums with cancellation (its backward subtracts the batch means): in
/// f32 they are exact to about 1e-7 of the tensor's largest gradient, so entries below
/// 1e-4 of it are compared absolutely (`relative_floor`; measured: 1.4e-8 off on an entry
/// of 1e-5 whose tensor's largest is 0.1). A conv bias right before a batch norm would
/// have a gradient of exactly 0 (the norm removes per-channel constants), rounding noise
/// in f32: the convs here have none, as in ResNets.
#[test]
fn batch_norm_residual_gap_gradients_match_finite_differences() {
    let spec = "conv3x3:4/p1/nobias,bn,relu,\
                res(conv3x3:6/s2/p1/nobias,bn,relu,conv3x3:6/p1/nobias,bn),relu,\
                res(conv3x3:6/p1/nobias,bn,relu,conv3x3:6/p1/nobias,bn),relu,gap,dense:3";
    let opts = GradCheckOptions {
        relative_floor: 1e-4,
        ..GradCheckOptions::default()
    };
    for (n, seed) in [(5, 11), (2, 12), (petal_model::network::CHUNK + 3, 13)] {
        check_with(
            Network::from_spec(spec, InputShape { c: 3, h: 9, w: 9 }, seed).unwrap(),
            n,
            &opts,
        );
    }
}

/// Average pooling, dropout (its masks those of the step checked), a batch norm straight
/// on the input, and a residual block starting at the input (its gradient summed from the
/// body and the identity shortcut).
#[test]
fn avgpool_dropout_and_input_blocks_gradients_match_finite_differences() {
    let spec = "bn,res(conv3x3:2/p1,relu,conv3x3:2/p1),conv3x3:5/p1,relu,avgpool3/s2,dropout:0.3,dense:6,relu,dropout:0.5,dense:4";
    check(
        Network::from_spec(spec, InputShape { c: 2, h: 7, w: 8 }, 21).unwrap(),
        4,
    );
}

#[test]
fn resnet8_gradients_match_finite_differences() {
    let net = Network::for_classes("resnet8", InputShape { c: 3, h: 8, w: 8 }, 4, 31).unwrap();
    check(net, 3);
}

/// Winograd's passes (`--conv-algo winograd`: every stride-1 3x3 convolution, the 3-channel
/// stem too; `auto`: those of 16 channels and more), on F(4x4) tiles (12x12 maps) and
/// F(2x2) (6x6 and 3x3 after the strided stages), within the same tolerance of the
/// float64 reference as the direct kernels.
#[test]
fn resnet8_gradients_match_finite_differences_with_winograd() {
    for algo in [ConvAlgo::Winograd, ConvAlgo::Auto] {
        let mut net = Network::for_classes("resnet8", InputShape { c: 3, h: 12, w: 12 }, 5, 32).unwrap();
        net.set_conv_algo(algo);
        assert_eq!(net.conv_algo(), algo);
        check(net, 5);
    }
}
