//! Networks from specs: shapes, errors naming the layer, training that learns,
//! determinism across thread counts.

mod common;

use common::shape;
use petal_kernels::{ConvAlgo, SgdConfig};
use petal_model::layers::{Conv2d, Dense, MaxPool2d};
use petal_model::network::CHUNK;
use petal_model::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[test]
fn presets_have_the_design_shapes() {
    let s = Network::seednet(1);
    assert_eq!(
        s.shapes(),
        &[
            Shape::Spatial { c: 8, h: 48, w: 48 },
            Shape::Spatial { c: 8, h: 24, w: 24 },
            Shape::Flat(4608),
            Shape::Flat(5)
        ]
    );
    assert_eq!(s.param_count(), 8 * 9 + 8 + 5 * 4608 + 5);
    let f = Network::flowernet(1);
    assert_eq!(
        f.spec(),
        "conv3x3:16/p1,relu,maxpool2,conv3x3:32/p1,relu,maxpool2,conv3x3:64/p1,relu,maxpool2,flatten,dense:5"
    );
    assert_eq!(f.shapes()[8], Shape::Spatial { c: 64, h: 8, w: 8 });
    assert_eq!(f.shapes()[9], Shape::Flat(4096));
    assert_eq!(f.classes(), 5);
    let names: Vec<_> = f.params().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "0.weight",
            "0.bias",
            "3.weight",
            "3.bias",
            "6.weight",
            "6.bias",
            "10.weight",
            "10.bias"
        ]
    );
    // About 1 MFLOP per seednet sample and 64 per flowernet sample (design §9).
    assert!(
        (0.7e6..1.2e6).contains(&(s.train_flops_per_sample() as f64)),
        "{}",
        s.train_flops_per_sample()
    );
    assert!(
        (55e6..70e6).contains(&(f.train_flops_per_sample() as f64)),
        "{}",
        f.train_flops_per_sample()
    );
}

fn bits(net: &Network) -> Vec<(String, Vec<u32>)> {
    net.params()
        .map(|p| (p.name.clone(), p.value.iter().map(|v| v.to_bits()).collect()))
        .collect()
}

#[test]
fn for_classes_sizes_presets_and_checks_specs() {
    // Five classes: the presets as they always were, the same weights for a seed.
    let s = Network::for_classes("seednet", shape(1, 50, 50), 5, 7).unwrap();
    assert!(bits(&s) == bits(&Network::seednet(7)));
    let f = Network::for_classes("flowernet", shape(3, 64, 64), 5, 7).unwrap();
    assert!(bits(&f) == bits(&Network::flowernet(7)));
    // Other counts: the last layer follows, the rest is the preset's.
    for classes in [1, 2, 3, 10, 100] {
        for (name, input) in [("seednet", shape(1, 28, 28)), ("flowernet", shape(3, 32, 32))] {
            let net = Network::for_classes(name, input, classes, 1).unwrap();
            assert_eq!(net.classes(), classes, "{name}");
            assert_eq!(net.shapes().last(), Some(&Shape::Flat(classes)));
            let five = Network::from_spec(name, input, 1).unwrap();
            let n = net.layer_specs().len();
            assert_eq!(net.layer_specs()[..n - 1], five.layer_specs()[..n - 1], "{name}");
        }
    }
    // A spec keeps its layers and must end in the class count.
    let net = Network::for_classes("conv3x3:2,dense:3", shape(1, 8, 8), 3, 1).unwrap();
    assert_eq!(net.spec(), "conv3x3:2,flatten,dense:3");
    let e = Network::for_classes("conv3x3:2,dense:4", shape(1, 8, 8), 3, 1).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the spec ends in dense:4 but the data has 3 classes: end it in dense:3, or use a preset"
    );
    let e = Network::for_classes("conv3x3:2,maxpool2,flatten", shape(1, 8, 8), 3, 1).unwrap_err();
    assert!(
        matches!(
            e,
            ModelError::ClassCount {
                outputs: 18,
                classes: 3,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .starts_with("the spec ends in flatten (18 outputs) but"),
        "{e}"
    );
    // Zero classes is no network.
    assert!(matches!(
        Network::for_classes("seednet", shape(1, 8, 8), 0, 1),
        Err(ModelError::Spec(_))
    ));
}

#[test]
fn spec_errors_name_layer_and_position() {
    let cases: [(&str, InputShape, &str); 9] = [
        (
            "conv3x3:8,maxpool64,dense:5",
            shape(1, 50, 50),
            "spec layer 2 (`maxpool64`): does not fit its 8x48x48 input",
        ),
        (
            "conv3x3:8,dense:5,conv3x3:4",
            shape(1, 50, 50),
            "spec layer 3 (`conv3x3:4`): needs [c, h, w] feature maps",
        ),
        ("conv3x3:8,relu", shape(1, 50, 50), "must end in logits"),
        (
            "conv60x60:8,dense:5",
            shape(1, 50, 50),
            "spec layer 1 (`conv60x60:8`)",
        ),
        (
            "conv3x3:8,maxpool2,dense:0",
            shape(1, 50, 50),
            "spec layer 3 (`dense:0`): outputs must be at least 1",
        ),
        (
            "conv3x3:8,maxpool2,dens:5",
            shape(1, 50, 50),
            "spec layer 3 (`dens:5`): unknown layer",
        ),
        (
            "flatten,dense:5,maxpool2",
            shape(1, 4, 4),
            "spec layer 3 (`maxpool2`)",
        ),
        (
            "conv3x3:4/s0,dense:5",
            shape(1, 8, 8),
            "stride must be at least 1",
        ),
        ("conv3x3:4,dense:5", shape(0, 8, 8), "input shape 0x8x8"),
    ];
    for (spec, input, needle) in cases {
        let e = Network::from_spec(spec, input, 0).unwrap_err().to_string();
        assert!(e.contains(needle), "{spec}: `{e}` lacks `{needle}`");
    }
}

#[test]
fn huge_specs_are_refused_before_allocating() {
    // 2^20 x 2^20 dense weights would be 4 TiB: refused by counting, not by trying.
    let e = Network::from_spec("dense:1000000,dense:1000000", shape(1, 1000, 1000), 0).unwrap_err();
    assert!(matches!(e, ModelError::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("spec layer 1 `dense:1000000`"), "{e}");
    let e = Network::from_spec("conv3x3:1000000/p1,dense:5", shape(3, 512, 512), 0).unwrap_err();
    assert!(e.to_string().contains("activations"), "{e}");
    // Parameters and activations fit (2^27 outputs, one column wide), but the backward
    // scratch of that 1-column output (the weight gradient's 16-column copy of dy, the
    // input gradient's padded dy) would be 2^31 values per sample.
    let e = Network::from_spec("conv3x3:8192,conv1x1:1,dense:5", shape(1, 16386, 3), 0).unwrap_err();
    assert!(
        e.to_string()
            .contains("the convolution scratch of one sample (layer 0 `conv3x3:8192`"),
        "{e}"
    );
}

#[test]
fn batch_and_label_errors_are_typed() {
    let mut net = Network::seednet(1);
    let x = vec![0.0f32; 2 * 2500];
    assert!(matches!(
        net.forward_backward(&x[..2499], &[0]),
        Err(ModelError::BatchShape { .. })
    ));
    assert!(matches!(
        net.forward_backward(&x, &[0]),
        Err(ModelError::LabelCount { images: 2, labels: 1 })
    ));
    let e = net.forward_backward(&x, &[0, 5]).unwrap_err();
    assert!(
        e.to_string().contains("label 5 of sample 1 is out of range"),
        "{e}"
    );
    assert!(net.predict(&[]).is_err());
}

#[test]
fn init_is_pytorch_bounded_and_seeded() {
    let a = Network::flowernet(7);
    let b = Network::flowernet(7);
    let c = Network::flowernet(8);
    for ((pa, pb), pc) in a.params().zip(b.params()).zip(c.params()) {
        assert_eq!(pa.value, pb.value, "same seed, same {}", pa.name);
        assert_ne!(pa.value, pc.value, "other seed, other {}", pa.name);
    }
    for layer in a.layers() {
        let (fan_in, w) = match layer {
            Layer::Conv2d(Conv2d { shape, weight, .. }) => (shape.col_rows(), weight),
            Layer::Dense(Dense { shape, weight, .. }) => (shape.inputs, weight),
            _ => continue,
        };
        let bound = 1.0 / (fan_in as f32).sqrt();
        let max = w.value.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(
            max <= bound && max > 0.9 * bound,
            "{}: max |w| {max} vs bound {bound}",
            w.name
        );
        let mean = w.value.iter().sum::<f32>() / w.value.len() as f32;
        assert!(mean.abs() < 0.1 * bound, "{}: mean {mean}", w.name);
    }
}

/// Five classes told apart by where a bright 4x4 blob sits, with noise and jitter.
fn blobs(n: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres = [(10, 10), (10, 38), (38, 10), (38, 38), (24, 24)];
    let mut x = vec![0.0f32; n * 2500];
    let mut y = Vec::with_capacity(n);
    for (i, img) in x.chunks_exact_mut(2500).enumerate() {
        let c = i % 5;
        y.push(c);
        for v in img.iter_mut() {
            *v = rng.random::<f32>() * 0.5;
        }
        let (cy, cx) = centres[c];
        let (cy, cx) = (cy + rng.random_range(0..5) - 2, cx + rng.random_range(0..5) - 2);
        for r in cy - 2..cy + 2 {
            for col in cx - 2..cx + 2 {
                img[r * 50 + col] += 0.5;
            }
        }
    }
    (x, y)
}

#[test]
fn seednet_learns_a_tiny_synthetic_set() {
    let mut net = Network::seednet(2);
    let (x, y) = blobs(100, 1);
    let (xv, yv) = blobs(50, 2);
    let start = net.evaluate(&xv, &yv).unwrap();
    let cfg = SgdConfig {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 0.0,
    };
    for _ in 0..30 {
        for (xb, yb) in x.chunks(20 * 2500).zip(y.chunks(20)) {
            let s = net.train_step(xb, yb, &cfg).unwrap();
            assert!(s.loss.is_finite());
        }
    }
    let end = net.evaluate(&xv, &yv).unwrap();
    assert!(start.loss > 1.4, "starts near ln 5 = 1.61: {}", start.loss);
    assert!(
        end.loss < 0.3,
        "held-out loss after 150 steps: {} (from {})",
        end.loss,
        start.loss
    );
    assert!(end.correct >= 45, "held-out accuracy {}/50", end.correct);
}

#[test]
fn training_is_bit_identical_on_1_2_and_3_threads() {
    let run = |threads: usize, spec: &str, input: InputShape| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                let mut net = Network::from_spec(spec, input, 3).unwrap();
                let mut rng = ChaCha8Rng::seed_from_u64(4);
                let cfg = SgdConfig {
                    lr: 0.01,
                    momentum: 0.9,
                    weight_decay: 1e-4,
                };
                for batch in [13, 32, 5] {
                    let x: Vec<f32> = (0..batch * input.len()).map(|_| rng.random()).collect();
                    let y: Vec<usize> = (0..batch).map(|_| rng.random_range(0..5)).collect();
                    net.train_step(&x, &y, &cfg).unwrap();
                }
                net.params()
                    .flat_map(|p| p.value.iter().map(|v| v.to_bits()))
                    .collect::<Vec<u32>>()
            })
    };
    for (spec, input) in [
        ("seednet", shape(1, 50, 50)),
        (
            "conv3x3:6/p1,relu,maxpool2,conv3x3:9/s2/p1,relu,dense:5",
            shape(5, 20, 18),
        ),
    ] {
        let one = run(1, spec, input);
        assert_eq!(one, run(2, spec, input), "{spec}: 1 vs 2 threads");
        assert_eq!(one, run(3, spec, input), "{spec}: 1 vs 3 threads");
    }
}

/// Inference on Winograd runs on filters prepared from the weights with each batch norm
/// folded in (after training has moved the running statistics off 0 and 1): its logits
/// are the direct kernels' within Winograd's rounding (filters prepared from the unfolded
/// weights would be off by the norms' scales), bit-identical on 1 and 3 threads, and the
/// same after switching back and forth. (Logits, not probabilities: near-uniform
/// probabilities can round to the same bits, as they do on an AVX2 build.)
#[test]
fn winograd_inference_uses_the_folded_weights_on_any_thread_count() {
    let input = shape(3, 12, 10);
    let mut net = Network::for_classes("resnet8", input, 4, 8).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let x: Vec<f32> = (0..11 * input.len()).map(|_| rng.random::<f32>() - 0.5).collect();
    let y: Vec<usize> = (0..11).map(|_| rng.random_range(0..4)).collect();
    let cfg = SgdConfig {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 0.0,
    };
    for _ in 0..3 {
        net.train_step(&x, &y, &cfg).unwrap();
    }
    let logits = |net: &mut Network, algo: ConvAlgo, threads: usize| {
        net.set_conv_algo(algo);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            net.predict(&x).unwrap();
            (net.logits().to_vec(), net.probs().to_vec())
        })
    };
    let (direct, direct_probs) = logits(&mut net, ConvAlgo::Direct, 2);
    let (winograd, _) = logits(&mut net, ConvAlgo::Winograd, 1);
    assert_eq!(
        winograd,
        logits(&mut net, ConvAlgo::Winograd, 3).0,
        "1 vs 3 threads"
    );
    assert_ne!(winograd, direct, "Winograd rounds otherwise");
    let largest = direct.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let worst = winograd
        .iter()
        .zip(&direct)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(
        worst <= 1e-5 * largest,
        "logits {worst:e} off the direct kernels' (largest {largest})"
    );
    assert_eq!(direct, logits(&mut net, ConvAlgo::Direct, 1).0, "back to direct");
    let stats = net.evaluate(&x, &y).unwrap();
    assert_eq!(
        net.probs(),
        &direct_probs[..],
        "evaluate's probabilities are predict's"
    );
    assert_eq!(stats.batch, 11);
}

#[test]
fn buffers_follow_the_batch_size() {
    let mut net = Network::seednet(5);
    let (x, y) = blobs(7, 3);
    let cfg = SgdConfig {
        lr: 0.0,
        momentum: 0.0,
        weight_decay: 0.0,
    };
    // A smaller batch after a larger one uses the same buffers and the same arithmetic.
    let big = net.forward_backward(&x, &y).unwrap();
    let small = net.forward_backward(&x[..3 * 2500], &y[..3]).unwrap();
    let mut fresh = Network::seednet(5);
    assert_eq!(small, fresh.forward_backward(&x[..3 * 2500], &y[..3]).unwrap());
    assert_ne!(big, small);
    let s = net.train_step(&x, &y, &cfg).unwrap();
    assert_eq!(s.batch, 7);
    assert_eq!(net.probs().len(), 35);
}

#[test]
fn a_spec_of_only_flattens_is_an_error_not_a_panic() {
    for spec in ["flatten", "flatten,flatten"] {
        let e = Network::from_spec(spec, shape(1, 1, 5), 0)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("needs at least one layer that computes"),
            "{spec}: {e}"
        );
    }
}

#[test]
fn an_input_too_large_for_memory_is_refused_before_allocating() {
    let e = Network::from_spec("relu,dense:5", shape(1 << 32, 1 << 32, 1), 0).unwrap_err();
    assert!(matches!(e, ModelError::TooLarge { .. }), "{e}");
    // A conv whose output would wrap usize arithmetic is refused by the shape check.
    let e = Network::from_spec("conv1x1:1048576/p1048576,dense:5", shape(1, 1 << 20, 1), 0).unwrap_err();
    assert!(e.to_string().contains("spec layer 1"), "{e}");
}

#[test]
fn losses_belong_to_the_last_training_batch() {
    let mut net = Network::seednet(1);
    let (x, y) = blobs(6, 9);
    net.forward_backward(&x, &y).unwrap();
    let losses = net.losses().to_vec();
    assert_eq!(losses.len(), 6);
    net.predict(&x[..2 * 2500]).unwrap();
    assert_eq!(
        net.losses(),
        &losses[..],
        "predict does not change the training losses"
    );
}

#[test]
fn a_diverged_network_counts_nothing_as_correct() {
    let mut net = Network::seednet(1);
    let (x, y) = blobs(10, 4);
    for p in net.params_mut() {
        p.value.iter_mut().for_each(|v| *v = f32::NAN);
    }
    let s = net.evaluate(&x, &y).unwrap();
    assert!(s.loss.is_nan());
    assert_eq!(s.correct, 0, "NaN probabilities are not class 0");
}

/// The whole-batch path: every kernel called once per layer on all `batch` images (the
/// order a plain layer-by-layer implementation would use). Returns the mean loss, the
/// probabilities, every parameter gradient and the input gradient.
fn layer_by_layer(net: &Network, x: &[f32], labels: &[usize]) -> (f32, Vec<f32>, Vec<Vec<f32>>, Vec<f32>) {
    use petal_kernels as k;
    let batch = labels.len();
    let mut acts: Vec<Vec<f32>> = vec![x.to_vec()];
    let mut argmaxes: Vec<Vec<u32>> = Vec::new();
    for layer in net.layers() {
        let input = acts.last().unwrap();
        let (out, argmax) = match layer {
            Layer::Conv2d(Conv2d {
                shape, weight, bias, ..
            }) => {
                let s = k::Conv2dShape { batch, ..*shape };
                let mut y = vec![0.0; s.output_len()];
                let mut scratch = vec![0.0; s.scratch_len()];
                let b = bias.as_ref().map(|b| &b.value[..]);
                k::conv2d_forward(&s, input, &weight.value, b, &mut y, &mut scratch);
                (y, Vec::new())
            }
            Layer::MaxPool2d(MaxPool2d { shape }) => {
                let s = k::Pool2dShape { batch, ..*shape };
                let (mut y, mut am) = (vec![0.0; s.output_len()], vec![0; s.output_len()]);
                k::max_pool2d_forward(&s, input, &mut y, &mut am);
                (y, am)
            }
            Layer::Relu(_) => {
                let mut y = vec![0.0; input.len()];
                k::relu_forward(input, &mut y);
                (y, Vec::new())
            }
            Layer::Flatten(_) => (input.clone(), Vec::new()),
            Layer::Dense(Dense { shape, weight, bias }) => {
                let s = k::DenseShape { batch, ..*shape };
                let mut y = vec![0.0; batch * s.outputs];
                k::dense_forward(
                    &s,
                    input,
                    &weight.value,
                    bias.as_ref().map(|b| &b.value[..]),
                    &mut y,
                );
                (y, Vec::new())
            }
            other => panic!("layer_by_layer runs sequential networks, not {:?}", other.spec()),
        };
        acts.push(out);
        argmaxes.push(argmax);
    }
    let classes = net.classes();
    let (mut probs, mut losses, mut dy) = (
        vec![0.0; batch * classes],
        vec![0.0; batch],
        vec![0.0; batch * classes],
    );
    let loss = k::softmax_cross_entropy(
        acts.last().unwrap(),
        labels,
        classes,
        &mut probs,
        &mut losses,
        &mut dy,
    )
    .unwrap();
    let mut grads = Vec::new();
    for (i, layer) in net.layers().iter().enumerate().rev() {
        let (input, output) = (&acts[i], &acts[i + 1]);
        let mut dx = vec![0.0; input.len()];
        match layer {
            Layer::Conv2d(Conv2d {
                shape, weight, bias, ..
            }) => {
                let s = k::Conv2dShape { batch, ..*shape };
                let mut scratch = vec![0.0; s.scratch_len()];
                let (gw, gb) = chunk_tree(
                    batch,
                    input,
                    &dy,
                    weight.value.len(),
                    bias.as_ref().map(|b| b.value.len()),
                    |n, x, dy, gw, gb| {
                        let s = k::Conv2dShape { batch: n, ..*shape };
                        let mut scratch = vec![0.0; s.scratch_len()];
                        k::conv2d_backward_weights(&s, x, dy, gw, gb, &mut scratch);
                    },
                );
                k::conv2d_backward_input(&s, &weight.value, &dy, &mut dx, &mut scratch);
                grads.extend(gb);
                grads.push(gw);
            }
            Layer::MaxPool2d(MaxPool2d { shape }) => {
                let s = k::Pool2dShape { batch, ..*shape };
                k::max_pool2d_backward(&s, &dy, &argmaxes[i], &mut dx);
            }
            Layer::Relu(_) => k::relu_backward(output, &dy, &mut dx),
            Layer::Flatten(_) => dx.copy_from_slice(&dy),
            Layer::Dense(Dense { shape, weight, bias }) => {
                let s = k::DenseShape { batch, ..*shape };
                let (gw, gb) = chunk_tree(
                    batch,
                    input,
                    &dy,
                    weight.value.len(),
                    bias.as_ref().map(|b| b.value.len()),
                    |n, x, dy, gw, gb| {
                        k::dense_backward_weights(&k::DenseShape { batch: n, ..*shape }, x, dy, gw, gb);
                    },
                );
                k::dense_backward_input(&s, &weight.value, &dy, &mut dx);
                grads.extend(gb);
                grads.push(gw);
            }
            other => panic!("layer_by_layer runs sequential networks, not {:?}", other.spec()),
        }
        dy = dx;
    }
    grads.reverse();
    (loss, probs, grads, dy)
}

/// A layer's weight (and bias) gradient as the network defines it: the kernel run on each
/// chunk of `CHUNK` images (`grads(n, x, dy, gw, gb)`), the chunks' gradients summed over
/// the pairwise tree (`[lo, hi)` = `[lo, mid)` + `[mid, hi)`, `mid = lo + (hi - lo) / 2`).
#[allow(clippy::type_complexity)]
fn chunk_tree(
    batch: usize,
    x: &[f32],
    dy: &[f32],
    wl: usize,
    bl: Option<usize>,
    grads: impl Fn(usize, &[f32], &[f32], &mut [f32], Option<&mut [f32]>),
) -> (Vec<f32>, Option<Vec<f32>>) {
    let (xl, dl) = (x.len() / batch, dy.len() / batch);
    let chunk = |c: usize| {
        let rows = c * CHUNK..((c + 1) * CHUNK).min(batch);
        let mut gw = vec![0.0; wl];
        let mut gb = bl.map(|n| vec![0.0; n]);
        grads(
            rows.len(),
            &x[rows.start * xl..rows.end * xl],
            &dy[rows.start * dl..rows.end * dl],
            &mut gw,
            gb.as_deref_mut(),
        );
        (gw, gb)
    };
    fn tree(
        lo: usize,
        hi: usize,
        chunk: &dyn Fn(usize) -> (Vec<f32>, Option<Vec<f32>>),
    ) -> (Vec<f32>, Option<Vec<f32>>) {
        if hi - lo == 1 {
            return chunk(lo);
        }
        let m = lo + (hi - lo) / 2;
        let (mut a, mut ab) = tree(lo, m, chunk);
        let (b, bb) = tree(m, hi, chunk);
        a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
        if let (Some(ab), Some(bb)) = (ab.as_mut(), bb) {
            ab.iter_mut().zip(&bb).for_each(|(a, b)| *a += b);
        }
        (a, ab)
    }
    tree(0, batch.div_ceil(CHUNK), &chunk)
}

#[test]
fn chunked_step_equals_the_kernels_layer_by_layer_bit_for_bit() {
    // The network runs each chunk of images through all layers as one task and sums the
    // conv gradients per chunk: the result must be exactly the whole-batch kernels'.
    for (spec, input) in [
        ("seednet", shape(1, 50, 50)),
        (
            "conv3x3:4/p1,relu,maxpool2,conv3x3:6/nobias,relu,conv3x3:5/s2/p1,dense:12,relu,dense:7",
            shape(2, 17, 13),
        ),
        // A ReLU first (before a pool, on the network input) and before an overlapping pool.
        (
            "relu,maxpool2,conv3x3:3,relu,maxpool2/s1,dense:4",
            shape(2, 12, 12),
        ),
        // Dense layers above `DENSE_PART_MAX` weights (80,200 and 75,600), whose weight
        // gradients are summed after the chunk tasks (deferred), one on the network input.
        ("dense:200,relu,dense:3", shape(1, 20, 20)),
        ("conv3x3:4/p1,relu,dense:300,relu,dense:3", shape(3, 9, 7)),
    ] {
        let mut net = Network::from_spec(spec, input, 11).unwrap();
        net.set_input_grad(true);
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        for batch in [1, 4, 13, 9] {
            let x: Vec<f32> = (0..batch * input.len())
                .map(|_| rng.random::<f32>() - 0.5)
                .collect();
            let y: Vec<usize> = (0..batch).map(|_| rng.random_range(0..net.classes())).collect();
            let loss = net.forward_backward(&x, &y).unwrap();
            let (want_loss, want_probs, want_grads, want_dx) = layer_by_layer(&net, &x, &y);
            let same = |a: &[f32], b: &[f32]| {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            };
            assert_eq!(loss.to_bits(), want_loss.to_bits(), "{spec} batch {batch}: loss");
            assert!(same(net.probs(), &want_probs), "{spec} batch {batch}: probs");
            let got: Vec<&Param> = net.params().collect();
            assert_eq!(got.len(), want_grads.len());
            for (p, want) in got.iter().zip(&want_grads) {
                assert!(
                    same(&p.grad, want),
                    "{spec} batch {batch}: gradient of {}",
                    p.name
                );
            }
            assert!(
                same(net.input_grad(), &want_dx),
                "{spec} batch {batch}: input gradient"
            );
        }
    }
}
