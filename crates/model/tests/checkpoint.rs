//! Checkpoints: bit-exact round trips, and a typed error naming the fault for every kind
//! of bad file.

use petal_kernels::SgdConfig;
mod common;

use common::{good_meta, load_err, tensors, tensors_of, write_raw};
use petal_model::checkpoint::{CHECKPOINT_FORMAT, FORMAT_VERSION};
use petal_model::*;
use safetensors::tensor::Dtype;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn meta(classes: usize) -> CheckpointMeta {
    CheckpointMeta {
        classes: ["daisy", "dandelion", "rose", "sunflower", "tulip"][..classes]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        normalization: Normalization::unit(1),
        epoch: 3,
        step: 120,
        extra: [("run_state".to_string(), r#"{"batch":3}"#.to_string())].into(),
    }
}

fn small_net(seed: u64) -> Network {
    Network::from_spec(
        "conv3x3:4/p1,relu,maxpool2,dense:5",
        InputShape { c: 1, h: 10, w: 9 },
        seed,
    )
    .unwrap()
}

fn input(net: &Network, n: usize) -> Vec<f32> {
    (0..n * net.input_shape().len())
        .map(|i| ((i * 7919 % 1000) as f32) / 1000.0)
        .collect()
}

fn saved(dir: &Path) -> (Network, PathBuf) {
    let net = small_net(11);
    let path = dir.join("model.safetensors");
    save_checkpoint(&path, &net, &meta(5)).unwrap();
    (net, path)
}

fn assert_err(path: &Path, needle: &str) {
    let e = load_err(path);
    assert!(e.contains(needle), "error `{e}` lacks `{needle}`");
    assert!(
        e.contains(&path.display().to_string()),
        "error `{e}` does not name the file"
    );
}

#[test]
fn round_trip_is_bit_exact_and_predicts_identically() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = small_net(5);
    // Train a little so the weights are not just the initialisation.
    let x = input(&net, 6);
    let cfg = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 1e-4,
    };
    for _ in 0..3 {
        net.train_step(&x, &[0, 1, 2, 3, 4, 0], &cfg).unwrap();
    }
    let path = dir.path().join("m.safetensors");
    let m = CheckpointMeta {
        normalization: Normalization {
            scale: 1.0 / 255.0,
            mean: vec![0.5],
            std: vec![0.25],
        },
        ..meta(5)
    };
    save_checkpoint(&path, &net, &m).unwrap();
    let opt = dir.path().join("m.optimizer.safetensors");
    save_optimizer_state(&opt, &net).unwrap();

    let (mut back, m2) = load_checkpoint(&path).unwrap();
    assert_eq!(m2, m);
    assert_eq!(back.spec(), net.spec());
    assert_eq!(back.input_shape(), net.input_shape());
    for (a, b) in net.params().zip(back.params()) {
        assert_eq!(a.name, b.name);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a.value), bits(&b.value), "{}", a.name);
        assert!(b.state.is_empty(), "optimizer state comes from its own file");
    }
    load_optimizer_state(&opt, &mut back).unwrap();
    for (a, b) in net.params().zip(back.params()) {
        assert_eq!(a.state, b.state, "{}", a.name);
        assert!(a.state[0].iter().any(|&v| v != 0.0));
    }
    let p1 = net.predict(&x).unwrap().to_vec();
    let p2 = back.predict(&x).unwrap().to_vec();
    assert_eq!(p1, p2);
    // Resumed training continues identically.
    let s1 = net.train_step(&x, &[1, 1, 2, 3, 4, 0], &cfg).unwrap();
    let s2 = back.train_step(&x, &[1, 1, 2, 3, 4, 0], &cfg).unwrap();
    assert_eq!(s1, s2);
    for (a, b) in net.params().zip(back.params()) {
        assert_eq!(a.value, b.value);
    }
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn header_is_what_pytorch_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (net, path) = saved(dir.path());
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    assert_eq!(header["0.weight"]["dtype"], "F32");
    assert_eq!(header["0.weight"]["shape"], serde_json::json!([4, 1, 3, 3]));
    assert_eq!(header["4.weight"]["shape"], serde_json::json!([5, 4 * 5 * 4]));
    assert_eq!(header["4.bias"]["shape"], serde_json::json!([5]));
    let m = &header["__metadata__"];
    assert_eq!(m["spec"], net.spec());
    assert_eq!(m["format"], CHECKPOINT_FORMAT);
    assert_eq!(
        m["classes"],
        r#"["daisy","dandelion","rose","sunflower","tulip"]"#
    );
}

#[test]
fn truncated_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, path) = saved(dir.path());
    let bytes = std::fs::read(&path).unwrap();
    for cut in [0, 4, 8, 20, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let e = load_err(&path);
        assert!(e.contains("safetensors"), "cut at {cut}: `{e}`");
    }
}

#[test]
fn random_bytes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("noise.safetensors");
    let mut state = 0x1234_5678u32;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    std::fs::write(&path, noise).unwrap();
    assert_err(&path, "safetensors");
}

#[test]
fn absurd_header_length_and_offsets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absurd.safetensors");
    let mut bytes = u64::MAX.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(&path, &bytes).unwrap();
    assert_err(&path, "safetensors");
    let header = br#"{"0.weight":{"dtype":"F32","shape":[4,1,3,3],"data_offsets":[0,99999999999]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0u8; 144]);
    std::fs::write(&path, &bytes).unwrap();
    assert_err(&path, "safetensors");
}

#[test]
fn foreign_safetensors_without_metadata_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let net = small_net(1);
    let path = dir.path().join("foreign.safetensors");
    write_raw(&path, &tensors_of(&net), None);
    assert_err(&path, "no metadata");
    let mut m = good_meta(&net);
    m.insert("format".into(), "pt".into());
    write_raw(&path, &tensors_of(&net), Some(m));
    assert_err(&path, "metadata format is `pt`");
    let mut m = good_meta(&net);
    m.insert("format_version".into(), "99".into());
    write_raw(&path, &tensors_of(&net), Some(m));
    assert_err(&path, "format_version `99`");
}

#[test]
fn missing_extra_misshapen_and_non_f32_tensors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let net = small_net(1);
    let path = dir.path().join("bad.safetensors");
    let good = tensors_of(&net);
    // The unmodified file loads: the cases below fail for their own reason only.
    write_raw(&path, &good, Some(good_meta(&net)));
    load_checkpoint(&path).unwrap();

    let mut t = good.clone();
    t.retain(|(n, ..)| n != "4.bias");
    write_raw(&path, &t, Some(good_meta(&net)));
    assert_err(&path, "tensor `4.bias` is missing");

    let mut t = good.clone();
    t.push(("9.weight".into(), vec![1], Dtype::F32, vec![0; 4]));
    write_raw(&path, &t, Some(good_meta(&net)));
    assert_err(&path, "unexpected tensors [\"9.weight\"]");

    let mut t = good.clone();
    t[0].1 = vec![4, 9];
    write_raw(&path, &t, Some(good_meta(&net)));
    assert_err(&path, "tensor `0.weight` has shape [4, 9], expected [4, 1, 3, 3]");

    for (dtype, size) in [(Dtype::F64, 8), (Dtype::I32, 4), (Dtype::I64, 8)] {
        let mut t = good.clone();
        let n: usize = t[1].1.iter().product();
        t[1].2 = dtype;
        t[1].3 = vec![0; n * size];
        write_raw(&path, &t, Some(good_meta(&net)));
        assert_err(&path, &format!("tensor `0.bias` is {dtype:?}, expected F32"));
    }
}

#[test]
fn checkpoint_of_another_architecture_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let other = Network::from_spec(
        "conv3x3:6/p1,relu,maxpool2,dense:5",
        InputShape { c: 1, h: 10, w: 9 },
        1,
    )
    .unwrap();
    let net = small_net(1);
    let path = dir.path().join("other.safetensors");
    // Tensors of `other` under the metadata (spec) of `net`.
    write_raw(&path, &tensors_of(&other), Some(good_meta(&net)));
    assert_err(
        &path,
        "tensor `0.weight` has shape [6, 1, 3, 3], expected [4, 1, 3, 3]",
    );
}

#[test]
fn malformed_metadata_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let net = small_net(1);
    let path = dir.path().join("meta.safetensors");
    let cases: [(&str, &str, &str); 6] = [
        (
            "spec",
            "conv3x3:4/p1,relu,maxpol2,dense:5",
            "spec layer 3 (`maxpol2`): unknown layer",
        ),
        ("spec", "conv3x3:4/p1,relu,maxpool20,dense:5", "spec layer 3"),
        ("input_shape", "[1,10]", "metadata `input_shape`"),
        (
            "classes",
            r#"["a","b"]"#,
            "2 class names for a network with 5 outputs",
        ),
        ("normalization", "{}", "metadata `normalization`"),
        ("epoch", "-1", "metadata `epoch`"),
    ];
    for (key, value, needle) in cases {
        let mut m = good_meta(&net);
        m.insert(key.into(), value.into());
        write_raw(&path, &tensors_of(&net), Some(m));
        assert_err(&path, needle);
    }
    let mut m = good_meta(&net);
    m.remove("spec");
    write_raw(&path, &tensors_of(&net), Some(m));
    assert_err(&path, "metadata has no `spec`");
}

#[test]
fn missing_file_and_optimizer_mismatch_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.safetensors");
    let e = load_err(&missing);
    assert!(e.contains("nope.safetensors"), "{e}");

    let (_, ckpt) = saved(dir.path());
    let mut net = small_net(1);
    // A model checkpoint is not an optimizer state file.
    let e = load_optimizer_state(&ckpt, &mut net).unwrap_err().to_string();
    assert!(e.contains("expected `petal-sgd-state`"), "{e}");
    let opt = dir.path().join("opt.safetensors");
    save_optimizer_state(&opt, &Network::seednet(1)).unwrap();
    let e = load_optimizer_state(&opt, &mut net).unwrap_err().to_string();
    assert!(
        e.contains("optimizer state is for `conv3x3:8,maxpool2,flatten,dense:5`"),
        "{e}"
    );
}

#[test]
fn saving_over_a_checkpoint_replaces_it_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let (_, path) = saved(dir.path());
    let net2 = small_net(99);
    save_checkpoint(&path, &net2, &meta(5)).unwrap();
    let (back, _) = load_checkpoint(&path).unwrap();
    assert_eq!(
        back.params().next().unwrap().value,
        net2.params().next().unwrap().value
    );
    // Saving into a folder that does not exist fails and names the path.
    let bad = dir.path().join("no/such/dir/m.safetensors");
    let e = save_checkpoint(&bad, &net2, &meta(5)).unwrap_err().to_string();
    assert!(e.contains("no/such/dir"), "{e}");
    // Wrong number of class names is refused before writing.
    let e = save_checkpoint(&path, &net2, &meta(3)).unwrap_err().to_string();
    assert!(e.contains("3 class names for a network with 5 outputs"), "{e}");
}

#[test]
fn extra_metadata_cannot_shadow_petal_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let mut m = meta(5);
    m.extra.insert("spec".into(), "dense:5".into());
    let e = save_checkpoint(&path, &small_net(1), &m).unwrap_err().to_string();
    assert!(e.contains("extra metadata key `spec` is reserved"), "{e}");
    assert!(!path.exists());
}

#[test]
fn saving_refuses_what_loading_would_refuse_and_keeps_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, path) = saved(dir.path());
    let before = std::fs::read(&path).unwrap();
    let mut bad = small_net(2);
    bad.params_mut().next().unwrap().value[3] = f32::NAN;
    let e = save_checkpoint(&path, &bad, &meta(5)).unwrap_err().to_string();
    assert!(
        e.contains("tensor `0.weight` holds a NaN or infinite value"),
        "{e}"
    );
    let m = CheckpointMeta {
        normalization: Normalization {
            scale: 1.0,
            mean: vec![0.0],
            std: vec![0.0],
        },
        ..meta(5)
    };
    let e = save_checkpoint(&path, &small_net(2), &m).unwrap_err().to_string();
    assert!(e.contains("normalization"), "{e}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the last good checkpoint is untouched"
    );
}

#[test]
fn a_bad_optimizer_file_leaves_the_velocities_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = small_net(1);
    net.set_optimizer_state(OptimizerKind::Sgd, 0);
    for p in net.params_mut() {
        p.state[0].fill(0.5);
    }
    let opt = dir.path().join("opt.safetensors");
    let mut src = small_net(1);
    src.set_optimizer_state(OptimizerKind::Sgd, 0);
    for (k, p) in src.params_mut().enumerate() {
        p.state[0].fill(0.25);
        if k == 3 {
            p.state[0][0] = f32::INFINITY;
        }
    }
    // Written through the raw safetensors path: save_optimizer_state would refuse nothing
    // here, so build the file by hand with the infinite value in the last tensor.
    let tensors = tensors(&src, |p, i| p.state[0][i]);
    let meta = HashMap::from([
        ("format".to_string(), "petal-sgd-state".to_string()),
        ("format_version".to_string(), FORMAT_VERSION.to_string()),
        ("spec".to_string(), net.spec()),
    ]);
    write_raw(&opt, &tensors, Some(meta));
    let e = load_optimizer_state(&opt, &mut net).unwrap_err().to_string();
    assert!(e.contains("inf"), "{e}");
    for p in net.params() {
        assert!(
            p.state[0].iter().all(|&v| v == 0.5),
            "{}: velocities changed by a refused file",
            p.name
        );
    }
}

/// The same network and metadata give the same bytes, file after file (safetensors writes
/// its metadata from a `HashMap`, whose order changes from map to map: Petal sorts it).
#[test]
fn the_same_checkpoint_is_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = small_net(4);
    let (x, y) = (vec![0.25f32; 2 * net.input_shape().len()], [0, 1]);
    let sgd = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.0,
    };
    net.train_step(&x, &y, &sgd).unwrap();
    let mut files = Vec::new();
    for k in 0..4 {
        let (model, opt) = (dir.path().join(format!("m{k}")), dir.path().join(format!("o{k}")));
        save_checkpoint(&model, &net, &meta(5)).unwrap();
        save_optimizer_state(&opt, &net).unwrap();
        files.push((std::fs::read(model).unwrap(), std::fs::read(opt).unwrap()));
    }
    assert!(files.windows(2).all(|w| w[0] == w[1]));
    // And they load.
    let (back, m) = load_checkpoint(&dir.path().join("m3")).unwrap();
    assert_eq!((back.spec(), m), (net.spec(), meta(5)));
}
