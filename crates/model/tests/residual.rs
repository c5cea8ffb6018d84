//! Batch norms, residual blocks, pooling and dropout through the public API: the spec
//! grammar and its errors, PyTorch's names, the ResNet presets, training and inference
//! modes, checkpoints with running statistics (the gradients are `gradcheck.rs`'s and the
//! PyTorch fixture's).

mod common;

use common::{good_meta, safetensors_bytes, shape, tensors_of, Tensor};
use petal_kernels::SgdConfig;
use petal_model::checkpoint::load_checkpoint_bytes;
use petal_model::spec::{format_spec, parse_spec, preset_spec};
use petal_model::{load_checkpoint, save_checkpoint, CheckpointMeta, Layer, Network, Normalization};
use safetensors::tensor::Dtype;

const CFG: SgdConfig = SgdConfig {
    lr: 0.05,
    momentum: 0.9,
    weight_decay: 1e-4,
};

fn data(net: &Network, n: usize) -> (Vec<f32>, Vec<usize>) {
    let x = (0..n * net.input_shape().len())
        .map(|i| ((i * 7919) % 1009) as f32 / 1009.0)
        .collect();
    (x, (0..n).map(|i| i % net.classes()).collect())
}

#[test]
fn residual_specs_round_trip_and_name_like_pytorch() {
    for spec in [
        "res(conv3x3:2/p1,bn,relu,conv3x3:2/p1/nobias,bn),relu,gap,flatten,dense:2",
        "conv3x3:8/s2/p1,res(conv3x3:8/p1|conv1x1:8,bn),avgpool2/s1,dropout:0.25,flatten,dense:3",
        "res(res(conv3x3:2/p1,relu),bn|bn),gap,flatten,dense:4",
    ] {
        let layers = parse_spec(spec).unwrap();
        assert_eq!(format_spec(&layers), spec);
        let net = Network::from_spec(spec, shape(2, 9, 9), 1).unwrap();
        assert_eq!(
            net.spec(),
            spec,
            "nothing implied: the canonical spec is the spec"
        );
    }
    // A body that changes the shape gets the 1x1 projection written out.
    let net = Network::from_spec("res(conv3x3:6/s2/p1,relu),gap,dense:3", shape(2, 9, 9), 1).unwrap();
    assert_eq!(
        net.spec(),
        "res(conv3x3:6/s2/p1,relu|conv1x1:6/s2/nobias,bn),gap,flatten,dense:3"
    );
    let names: Vec<&str> = net.params().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "0.body.0.weight",
            "0.body.0.bias",
            "0.shortcut.0.weight",
            "0.shortcut.1.weight",
            "0.shortcut.1.bias",
            "3.weight",
            "3.bias"
        ]
    );
}

#[test]
fn resnet_presets_are_the_cifar_resnets() {
    // Parameter counts of torchvision-style CIFAR ResNets with batch-norm affine
    // parameters (PyTorch's `sum(p.numel())` for 10 classes: python/petal_torch.py).
    for (name, blocks, params) in [("resnet8", 1, 78_042), ("resnet20", 3, 272_474)] {
        let net = Network::for_classes(name, shape(3, 32, 32), 10, 0).unwrap();
        assert_eq!(net.param_count(), params, "{name}");
        let top = net.layer_specs();
        let res = top.iter().filter(|l| l.to_string().starts_with("res(")).count();
        assert_eq!(res, 3 * blocks, "{name}: blocks");
        let projections = top.iter().filter(|l| l.to_string().contains('|')).count();
        assert_eq!(projections, 2, "{name}: the first block of stages 2 and 3");
        assert_eq!(net.shapes().last(), Some(&petal_model::Shape::Flat(10)));
        // 32 -> 16 -> 8: the global average pooling sees 64x8x8.
        let gap = net
            .layers()
            .iter()
            .position(|l| matches!(l, Layer::GlobalAvgPool(_)))
            .unwrap();
        assert_eq!(
            net.layer_inputs()[gap]
                .0
                .map(|j| net.shapes()[j].to_string())
                .as_deref(),
            Some("64x8x8")
        );
    }
    assert_eq!(
        preset_spec("resnet8", 2).unwrap(),
        "conv3x3:16/p1/nobias,bn,relu,res(conv3x3:16/p1/nobias,bn,relu,conv3x3:16/p1/nobias,bn),relu,\
         res(conv3x3:32/s2/p1/nobias,bn,relu,conv3x3:32/p1/nobias,bn|conv1x1:32/s2/nobias,bn),relu,\
         res(conv3x3:64/s2/p1/nobias,bn,relu,conv3x3:64/p1/nobias,bn|conv1x1:64/s2/nobias,bn),relu,gap,dense:2"
    );
    // Any input size: odd sides go through the strided stages.
    let net = Network::for_classes("resnet20", shape(1, 27, 19), 3, 0).unwrap();
    let (x, y) = data(&net, 3);
    let mut net = net;
    assert!(net.train_step(&x, &y, &CFG).unwrap().loss.is_finite());
}

#[test]
fn spec_errors_name_the_layer_and_what_is_wrong() {
    let cases = [
        ("res(conv3x3:4/p1,dense:3", "not closed"),
        ("res()", "body is empty"),
        ("res(conv3x3:4/p1|)", "shortcut is empty"),
        ("res(conv3x3:4/p1|bn|bn)", "at most one `|`"),
        (
            "res(conv3x3:4/p1,bnn),dense:2",
            "body layer 2 `bnn`: unknown layer",
        ),
        ("dropout:1.5,dense:2", "not in [0, 1)"),
        ("dropout:x,dense:2", "not a number"),
        ("bn/s2,dense:2", "takes no options"),
        ("avgpool,dense:2", "window size"),
        ("dense:2)", "closes no `(`"),
    ];
    for (spec, needle) in cases {
        let e = parse_spec(spec).unwrap_err().to_string();
        assert!(e.contains(needle), "{spec}: `{e}` lacks `{needle}`");
    }
    let nested = format!("{}conv3x3:2/p1{},dense:2", "res(".repeat(9), ")".repeat(9));
    assert!(parse_spec(&nested)
        .unwrap_err()
        .to_string()
        .contains("nest deeper than 8"));
    let build = [
        (
            "res(conv3x3:4/p1|conv3x3:4),gap,dense:2",
            "the body outputs 4x9x9 but the shortcut 4x7x7",
        ),
        ("res(flatten|flatten),dense:2", "must compute something"),
        ("res(flatten),dense:2", "no 1x1 projection shortcut matches"),
        (
            "flatten,bn,dense:2",
            "spec layer 2 (`bn`): needs [c, h, w] feature maps but follows a flatten",
        ),
        (
            "dense:4,gap,dense:2",
            "spec layer 2 (`gap`): needs [c, h, w] feature maps",
        ),
        (
            "res(conv3x3:4/s2|conv3x3:4),dense:2",
            "body outputs 4x4x4 but the shortcut 4x7x7",
        ),
    ];
    for (spec, needle) in build {
        let e = Network::from_spec(spec, shape(2, 9, 9), 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{spec}: `{e}` lacks `{needle}`");
        assert!(e.contains("spec layer "), "{spec}: `{e}` names the layer");
    }
}

#[test]
fn inference_uses_running_statistics_so_a_sample_is_classified_alone_as_in_a_batch() {
    let mut net = Network::for_classes("resnet8", shape(3, 12, 12), 4, 3).unwrap();
    let (x, y) = data(&net, 6);
    for _ in 0..3 {
        net.train_step(&x, &y, &CFG).unwrap();
    }
    let batch = net.predict(&x).unwrap().to_vec();
    let per = net.input_shape().len();
    for i in 0..6 {
        let one = net.predict(&x[i * per..(i + 1) * per]).unwrap().to_vec();
        assert_eq!(one, batch[i * 4..(i + 1) * 4], "sample {i} alone vs in the batch");
    }
    // Training mode normalises with the batch: the same sample gives other logits in
    // another batch, and the running statistics move.
    let running = |n: &Network| -> Vec<f32> {
        n.layers()
            .iter()
            .filter_map(|l| match l {
                Layer::BatchNorm(bn) => Some(bn.running_mean.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    };
    let before = running(&net);
    net.forward_backward(&x, &y).unwrap();
    let whole = net.probs()[..4].to_vec();
    net.forward_backward(&x[..2 * per], &y[..2]).unwrap();
    assert_ne!(
        net.probs()[..4],
        whole[..],
        "batch statistics depend on the batch"
    );
    assert_ne!(running(&net), before);
}

#[test]
fn a_norm_over_one_value_per_channel_needs_a_batch_of_two() {
    let mut net = Network::from_spec("conv3x3:4,gap,bn,flatten,dense:2", shape(1, 5, 5), 0).unwrap();
    assert_eq!(net.min_train_batch(), 2);
    let (x, y) = data(&net, 2);
    let e = net.forward_backward(&x[..25], &y[..1]).unwrap_err().to_string();
    assert!(e.contains("batch norm `2` sees 1 value per channel"), "{e}");
    net.forward_backward(&x, &y).unwrap();
    net.predict(&x[..25]).unwrap(); // inference needs no batch statistics
    assert_eq!(
        Network::for_classes("resnet8", shape(3, 8, 8), 2, 0)
            .unwrap()
            .min_train_batch(),
        1
    );
}

#[test]
fn dropout_is_keyed_by_seed_and_step_and_off_in_inference() {
    let spec = "conv3x3:4/p1,relu,dropout:0.5,flatten,dense:3";
    let mut a = Network::from_spec(spec, shape(1, 6, 6), 9).unwrap();
    let (x, y) = data(&a, 5);
    let p1 = a.predict(&x).unwrap().to_vec();
    assert_eq!(a.predict(&x).unwrap(), &p1[..], "inference draws nothing");
    a.forward_backward(&x, &y).unwrap();
    let t1 = a.probs().to_vec();
    a.forward_backward(&x, &y).unwrap();
    assert_ne!(a.probs(), &t1[..], "each step draws new masks");
    // Another network at the same seed and step draws the same masks.
    let mut b = Network::from_spec(spec, shape(1, 6, 6), 9).unwrap();
    b.set_dropout_state(9, 1);
    b.forward_backward(&x, &y).unwrap();
    assert_eq!(b.probs(), a.probs());
    assert_eq!(a.dropout_state(), (9, 2));
}

fn meta(net: &Network) -> CheckpointMeta {
    CheckpointMeta {
        classes: (0..net.classes()).map(|i| format!("c{i}")).collect(),
        normalization: Normalization::unit(net.input_shape().c),
        epoch: 1,
        step: 4,
        extra: Default::default(),
    }
}

#[test]
fn checkpoints_keep_running_statistics_as_pytorch_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let mut net = Network::for_classes("resnet8", shape(3, 10, 10), 3, 5).unwrap();
    let (x, y) = data(&net, 4);
    for _ in 0..4 {
        net.train_step(&x, &y, &CFG).unwrap();
    }
    save_checkpoint(&path, &net, &meta(&net)).unwrap();
    let (mut back, _) = load_checkpoint(&path).unwrap();
    assert_eq!(back.spec(), net.spec());
    let state = |n: &Network| -> Vec<(String, Vec<f32>, u64)> {
        n.layers()
            .iter()
            .filter_map(|l| match l {
                Layer::BatchNorm(bn) => Some((
                    bn.prefix.clone(),
                    [&bn.running_mean[..], &bn.running_var[..]].concat(),
                    bn.batches_tracked,
                )),
                _ => None,
            })
            .collect()
    };
    assert_eq!(state(&back), state(&net));
    assert!(state(&net).iter().all(|(_, _, t)| *t == 4));
    assert_eq!(
        back.predict(&x).unwrap().to_vec(),
        net.predict(&x).unwrap().to_vec()
    );
    // The file holds num_batches_tracked as an i64 scalar, as PyTorch's state_dict.
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor("5.shortcut.1.num_batches_tracked").unwrap();
    assert_eq!((t.dtype(), t.shape()), (Dtype::I64, &[][..]));
    assert_eq!(st.tensor("1.running_var").unwrap().shape(), &[16]);
}

/// A batch-norm network's tensors as a file would hold them, with `edit` applied.
fn spoiled(net: &Network, edit: impl Fn(&mut Vec<Tensor>)) -> Vec<u8> {
    let mut t = tensors_of(net);
    for l in net.layers() {
        if let Layer::BatchNorm(bn) = l {
            let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
            t.push((
                format!("{}.running_mean", bn.prefix),
                vec![bn.c],
                Dtype::F32,
                f32s(&bn.running_mean),
            ));
            t.push((
                format!("{}.running_var", bn.prefix),
                vec![bn.c],
                Dtype::F32,
                f32s(&bn.running_var),
            ));
            t.push((
                format!("{}.num_batches_tracked", bn.prefix),
                vec![],
                Dtype::I64,
                3i64.to_le_bytes().to_vec(),
            ));
        }
    }
    edit(&mut t);
    safetensors_bytes(&t, Some(good_meta(net)))
}

#[test]
fn bad_running_statistics_are_refused_by_name() {
    let net = Network::from_spec("conv3x3:2/p1/nobias,bn,relu,flatten,dense:2", shape(1, 4, 4), 0).unwrap();
    let (ok, _) = load_checkpoint_bytes(&spoiled(&net, |_| {})).unwrap();
    assert!(matches!(&ok.layers()[1], Layer::BatchNorm(bn) if bn.batches_tracked == 3));
    let set = |name: &'static str, dtype: Dtype, bytes: Vec<u8>| {
        move |t: &mut Vec<Tensor>| {
            let e = t.iter_mut().find(|e| e.0 == name).unwrap();
            e.2 = dtype;
            e.3 = bytes.clone();
        }
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            spoiled(
                &net,
                set("1.num_batches_tracked", Dtype::F64, 3f64.to_le_bytes().to_vec()),
            ),
            "`1.num_batches_tracked` is F64, expected I64",
        ),
        (
            spoiled(
                &net,
                set(
                    "1.num_batches_tracked",
                    Dtype::I64,
                    (-1i64).to_le_bytes().to_vec(),
                ),
            ),
            "cannot be negative",
        ),
        (
            spoiled(
                &net,
                set(
                    "1.running_var",
                    Dtype::F32,
                    [1f32, -0.5].iter().flat_map(|v| v.to_le_bytes()).collect(),
                ),
            ),
            "`1.running_var` holds -0.5",
        ),
        (
            spoiled(
                &net,
                set(
                    "1.running_mean",
                    Dtype::F32,
                    [1f32, f32::NAN].iter().flat_map(|v| v.to_le_bytes()).collect(),
                ),
            ),
            "`1.running_mean` holds NaN",
        ),
        (
            spoiled(&net, |t| t.retain(|e| e.0 != "1.running_mean")),
            "`1.running_mean` is missing",
        ),
    ];
    for (bytes, needle) in cases {
        let e = load_checkpoint_bytes(&bytes).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains(needle), "`{e}` lacks `{needle}`");
    }
}
