//! Bad input to the model crate that `checkpoint.rs` and `network.rs` tests do not cover:
//! every truncation and byte flip of a checkpoint, headers with absurd lengths, offsets,
//! shapes and dtypes, metadata that describes no usable network (zero or overflowing input
//! shapes, non-finite normalisation, a spec whose buffers could not be allocated, a spec of
//! only flattens), non-finite tensors, files that are not regular files, and spec strings
//! with typos, odd numbers and huge sizes. Each is a typed error naming the file or layer:
//! never a panic, a hang or an allocation the input does not justify.

mod common;

use common::{good_meta, load_err, safetensors_bytes, shape, tensors};
use petal_model::checkpoint::{load_checkpoint_bytes, CHECKPOINT_FORMAT, FORMAT_VERSION, MAX_FILE_BYTES};
use petal_model::limits::{check_buffers, check_input, MAX_SCRATCH_PER_SAMPLE};
use petal_model::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn small_net() -> Network {
    Network::from_spec("conv3x3:2,maxpool2,dense:3", shape(1, 6, 6), 7).unwrap()
}

fn meta() -> CheckpointMeta {
    CheckpointMeta {
        classes: vec!["a".into(), "b".into(), "c".into()],
        normalization: Normalization::unit(1),
        epoch: 2,
        step: 9,
        extra: Default::default(),
    }
}

fn saved(dir: &Path) -> (PathBuf, Vec<u8>) {
    let path = dir.join("m.safetensors");
    save_checkpoint(&path, &small_net(), &meta()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

/// The error loading `path` gives, asserting it names the file.
fn err_of(path: &Path) -> String {
    let e = load_err(path);
    assert!(
        e.starts_with(&format!("checkpoint {}: ", path.display())),
        "`{e}` does not name {}",
        path.display()
    );
    e
}

fn header_of(bytes: &[u8]) -> (serde_json::Value, &[u8]) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&bytes[8..8 + n]).unwrap(), &bytes[8 + n..])
}

fn with_header(header: &serde_json::Value, data: &[u8]) -> Vec<u8> {
    let text = serde_json::to_vec(header).unwrap();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(data);
    out
}

#[test]
fn bytes_and_file_loaders_agree() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = saved(dir.path());
    let (a, ma) = load_checkpoint(&path).unwrap();
    let (b, mb) = load_checkpoint_bytes(&bytes).unwrap();
    assert_eq!(ma, mb);
    assert_eq!(a.spec(), b.spec());
    for (p, q) in a.params().zip(b.params()) {
        assert_eq!(p.value, q.value, "{}", p.name);
    }
    let e = load_checkpoint_bytes(&bytes[..10]).unwrap_err().to_string();
    assert!(
        e.starts_with("checkpoint <memory>: not a safetensors file"),
        "{e}"
    );
}

#[test]
fn every_truncation_is_an_error_and_no_byte_flip_panics() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = saved(dir.path());
    for cut in 0..bytes.len() {
        let e = load_checkpoint_bytes(&bytes[..cut]).unwrap_err().to_string();
        assert!(e.starts_with("checkpoint <memory>: "), "cut at {cut}: {e}");
    }
    // Each byte flipped in turn: some flips only change a weight (and load), the others
    // must be errors; none may panic (a panic fails this test).
    let (mut loaded, mut refused) = (0, 0);
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0xFF;
        match load_checkpoint_bytes(&b) {
            Ok(_) => loaded += 1,
            Err(e) => {
                assert!(e.to_string().starts_with("checkpoint <memory>: "), "{e}");
                refused += 1;
            }
        }
    }
    let n = small_net().param_count();
    // Every flip in the header (all but the 4n bytes of tensor data) is refused.
    assert!(
        refused >= bytes.len() - 4 * n,
        "{refused} refused of {}",
        bytes.len()
    );
    assert!(
        loaded > 0,
        "flipping a weight's low byte changes a weight, no more"
    );
}

#[test]
fn absurd_safetensors_headers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = saved(dir.path());
    let (header, data) = header_of(&bytes);
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut h = header.clone();
        f(&mut h);
        with_header(&h, data)
    };
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("header longer than the file", {
            let mut b = bytes.clone();
            b[..8].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            b
        }),
        ("header length 0", {
            let mut b = 0u64.to_le_bytes().to_vec();
            b.extend_from_slice(&bytes[8..]);
            b
        }),
        ("header of 100 MB", {
            let mut b = (100u64 << 20).to_le_bytes().to_vec();
            b.extend_from_slice(b"{}");
            b
        }),
        ("header not JSON", with_header(&serde_json::json!("x"), data)),
        ("header an array", with_header(&serde_json::json!([1, 2]), data)),
        ("unknown dtype", edit(&|h| h["0.weight"]["dtype"] = "F17".into())),
        (
            "shape product overflows",
            edit(&|h| h["0.weight"]["shape"] = serde_json::json!([1u64 << 40, 1u64 << 40, 1u64 << 40])),
        ),
        (
            "offsets reversed",
            edit(&|h| h["0.weight"]["data_offsets"] = serde_json::json!([72, 0])),
        ),
        (
            "offsets past the end",
            edit(&|h| h["0.weight"]["data_offsets"] = serde_json::json!([0, 1u64 << 62])),
        ),
        (
            "offsets overlap",
            edit(&|h| h["0.bias"]["data_offsets"] = h["0.weight"]["data_offsets"].clone()),
        ),
        (
            "metadata value not a string",
            edit(&|h| h["__metadata__"]["epoch"] = 3.into()),
        ),
        (
            "metadata not an object",
            edit(&|h| h["__metadata__"] = serde_json::json!([1])),
        ),
    ];
    cases.push(("data cut", bytes[..bytes.len() - 4].to_vec()));
    for (what, b) in cases {
        std::fs::write(&path, &b).unwrap();
        let e = err_of(&path);
        assert!(e.contains("safetensors"), "{what}: `{e}`");
        let e = load_checkpoint_bytes(&b).unwrap_err().to_string();
        assert!(e.contains("safetensors"), "{what}: `{e}`");
    }
}

/// A safetensors file with `net`'s tensors (values from `value`) and metadata `meta`.
fn raw(net: &Network, meta: HashMap<String, String>, value: impl Fn(&str, usize) -> f32) -> Vec<u8> {
    safetensors_bytes(&tensors(net, |p, i| value(&p.name, i)), Some(meta))
}

#[test]
fn metadata_that_describes_no_usable_network_is_refused() {
    let net = small_net();
    // The unmodified file loads.
    load_checkpoint_bytes(&raw(&net, good_meta(&net), |_, _| 0.5)).unwrap();
    let cases: [(&str, &str, &str); 14] = [
        (
            "input_shape",
            "[0,6,6]",
            "input shape 0x6x6: every dimension must be at least 1",
        ),
        (
            "input_shape",
            "[1,1099511627776,1099511627776]",
            "network too large",
        ),
        (
            "input_shape",
            "[18446744073709551615,18446744073709551615,2]",
            "network too large",
        ),
        ("input_shape", "[3,16384,16384]", "network too large"),
        ("input_shape", "[1,6,-6]", "metadata `input_shape`"),
        ("input_shape", "[1,6,6,1]", "metadata `input_shape`"),
        ("input_shape", "\"1x6x6\"", "metadata `input_shape`"),
        ("spec", "flatten", "needs at least one layer that computes"),
        ("spec", "conv3x3:2,maxpool2,dense:3,", "empty layer"),
        ("spec", "", "the spec is empty"),
        (
            "normalization",
            r#"{"scale":0.0039,"mean":[0.0],"std":[0.0]}"#,
            "must be finite and non-zero",
        ),
        (
            "normalization",
            r#"{"scale":0.0,"mean":[0.0],"std":[1.0]}"#,
            "must be finite and non-zero",
        ),
        (
            "normalization",
            r#"{"scale":1e39,"mean":[0.0],"std":[1.0]}"#,
            "must be finite and non-zero",
        ),
        (
            "normalization",
            r#"{"scale":0.0039,"mean":[0.0,0.0],"std":[1.0]}"#,
            "2 means and 1 stds",
        ),
    ];
    for (key, value, needle) in cases {
        let mut m = good_meta(&net);
        m.insert(key.into(), value.into());
        let e = load_checkpoint_bytes(&raw(&net, m, |_, _| 0.5))
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{key} = {value}: `{e}` lacks `{needle}`");
    }
    // A spec whose convolution scratch would take 200 GB (a strided conv lowers each image
    // to an im2col matrix of 3 · 63² · 2048² values): refused before allocating it
    // (parameters and activations are within their limits; the scratch check refuses it).
    // The tensors are a small network's: the loader refuses the spec before reading them.
    let small = Network::from_layers(&parse_spec("conv3x3:1/p1,dense:2").unwrap(), shape(3, 8, 8)).unwrap();
    let mut m = good_meta(&small);
    m.insert("spec".into(), "conv63x63:1/s2/p31,flatten,dense:2".into());
    m.insert("input_shape".into(), "[3,4096,4096]".into());
    m.insert("classes".into(), r#"["a","b"]"#.into());
    m.insert(
        "normalization".into(),
        r#"{"scale":0.0039,"mean":[0,0,0],"std":[1,1,1]}"#.into(),
    );
    let e = load_checkpoint_bytes(&raw(&small, m, |_, _| 0.0))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the convolution scratch of one sample (layer 0 `conv63x63:1/s2/p31`"),
        "{e}"
    );
}

/// Peak resident memory of this process so far (KiB).
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_small_file_claiming_a_large_network_costs_no_memory() {
    // 250 million parameters (3 GiB of weights, gradients and velocities once written)
    // claimed by a file of a few hundred bytes with no tensors: refused at the first
    // missing tensor, before any weight is written.
    let mut m = HashMap::from([
        ("format".to_string(), CHECKPOINT_FORMAT.to_string()),
        ("format_version".to_string(), FORMAT_VERSION.to_string()),
        ("spec".to_string(), "dense:100000".to_string()),
        ("input_shape".to_string(), "[1,50,50]".to_string()),
        ("epoch".to_string(), "1".to_string()),
        ("step".to_string(), "1".to_string()),
    ]);
    m.insert(
        "normalization".into(),
        r#"{"scale":0.0039,"mean":[0.0],"std":[1.0]}"#.into(),
    );
    let classes: Vec<String> = (0..100_000).map(|i| i.to_string()).collect();
    m.insert("classes".into(), serde_json::to_string(&classes).unwrap());
    let views: Vec<(String, safetensors::tensor::TensorView)> = Vec::new();
    let bytes = safetensors::serialize(views, Some(m)).unwrap();
    let before = vm_hwm_kib();
    let e = load_checkpoint_bytes(&bytes).unwrap_err().to_string();
    assert!(e.contains("tensor `1.weight` is missing"), "{e}");
    let grown = vm_hwm_kib() - before;
    assert!(grown < 256 << 10, "peak memory grew by {grown} KiB");
}

#[test]
fn non_finite_tensors_are_refused() {
    let net = small_net();
    for (bad, shown) in [
        (f32::NAN, "NaN"),
        (f32::INFINITY, "inf"),
        (f32::NEG_INFINITY, "-inf"),
    ] {
        let b = raw(&net, good_meta(&net), |name, i| {
            if name == "3.weight" && i == 7 {
                bad
            } else {
                0.1
            }
        });
        let e = load_checkpoint_bytes(&b).unwrap_err().to_string();
        assert!(
            e.contains(&format!("tensor `3.weight` holds {shown} at index 7")),
            "{e}"
        );
    }
    // Optimizer state: velocities are checked the same way.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("opt.safetensors");
    let mut m: HashMap<String, String> = HashMap::new();
    m.insert("format".into(), "petal-sgd-state".into());
    m.insert("format_version".into(), FORMAT_VERSION.into());
    m.insert("spec".into(), net.spec());
    std::fs::write(
        &path,
        raw(&net, m, |name, _| if name == "0.bias" { f32::NAN } else { 0.0 }),
    )
    .unwrap();
    let mut target = small_net();
    let e = load_optimizer_state(&path, &mut target).unwrap_err().to_string();
    assert!(e.contains("tensor `0.bias` holds NaN at index 0"), "{e}");
}

#[test]
fn files_that_are_not_checkpoints_are_refused_without_reading_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fifo = d.join("fifo.safetensors");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    std::os::unix::fs::symlink("/dev/zero", d.join("zero.safetensors")).unwrap();
    std::os::unix::fs::symlink(d.join("loop.safetensors"), d.join("loop.safetensors")).unwrap();
    std::fs::create_dir(d.join("folder.safetensors")).unwrap();
    // A sparse file past the limit: refused by its length, never read.
    std::fs::File::create(d.join("big.safetensors"))
        .unwrap()
        .set_len(MAX_FILE_BYTES + 1)
        .unwrap();
    for (name, needle) in [
        (
            "fifo.safetensors",
            "not a regular file (a FIFO, socket or device)",
        ),
        (
            "zero.safetensors",
            "not a regular file (a FIFO, socket or device)",
        ),
        (
            "loop.safetensors",
            "cannot read: Too many levels of symbolic links",
        ),
        ("folder.safetensors", "not a regular file (a folder)"),
        ("missing.safetensors", "cannot read: No such file or directory"),
        ("big.safetensors", "larger than any Petal network"),
    ] {
        let e = err_of(&d.join(name));
        assert!(e.contains(needle), "{name}: `{e}` lacks `{needle}`");
        let mut net = small_net();
        let e = load_optimizer_state(&d.join(name), &mut net)
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "optimizer {name}: `{e}` lacks `{needle}`");
    }
}

#[test]
fn spec_strings_with_typos_odd_numbers_and_huge_sizes() {
    let cases: [(&str, usize, &str); 14] = [
        (
            "conv3x3x3:8,dense:5",
            1,
            "kernel width `3x3` is not a whole number",
        ),
        (
            "conv3x3:99999999999999999999999,dense:5",
            1,
            "output channels `99999999999999999999999` is not a whole number",
        ),
        (
            "conv3x3:-8,dense:5",
            1,
            "output channels `-8` is not a whole number",
        ),
        ("conv3x3:8,dense:5/", 2, "unknown dense option `/`"),
        ("conv3x3:8/p,dense:5", 1, "padding `` is not a whole number"),
        ("conv3x3:8/s,dense:5", 1, "stride `` is not a whole number"),
        ("conv\u{FF13}x3:8,dense:5", 1, "not a whole number"),
        ("Conv3x3:8,dense:5", 1, "unknown layer `Conv3x3:8`"),
        ("conv3x3:8,maxpool2/p1,dense:5", 2, "unknown maxpool option `/p1`"),
        ("conv3x3:8,relu:2,dense:5", 2, "unknown layer `relu:2`"),
        ("conv3x3:8,maxpool0,dense:5", 2, "pool size must be at least 1"),
        (
            "conv3x3:1048577,dense:5",
            1,
            "output channels 1048577 is larger than the limit 1048576",
        ),
        ("dense:5,", 2, "empty layer"),
        ("   ", 1, "the spec is empty"),
    ];
    for (spec, position, needle) in cases {
        let e = parse_spec(spec).unwrap_err();
        assert_eq!(e.position, position, "{spec}: {e}");
        assert!(e.to_string().contains(needle), "{spec}: `{e}` lacks `{needle}`");
    }
    // A very long spec is parsed and refused by size, quickly, not by running out of memory.
    let long = vec!["relu"; 100_000].join(",") + ",dense:5";
    let t = std::time::Instant::now();
    let e = Network::from_spec(&long, shape(3, 64, 64), 0).unwrap_err();
    assert!(e.to_string().contains("activations"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn input_and_scratch_limits_hold_before_allocating() {
    assert!(check_input(shape(3, 64, 64)).is_ok());
    let e = check_input(shape(usize::MAX, usize::MAX, 2))
        .unwrap_err()
        .to_string();
    assert!(e.contains("network too large: the input"), "{e}");
    let e = check_input(shape(1, 0, 5)).unwrap_err().to_string();
    assert!(e.contains("input shape 1x0x5"), "{e}");
    // The presets need little scratch.
    for net in [Network::seednet(0), Network::flowernet(0)] {
        check_buffers(&net).unwrap();
    }
    // A large kernel over a large input: 3 · 31² · 1018² ≈ 3 · 10^9 values of im2col.
    // Building the network refuses it (from_layers runs check_buffers).
    let e = Network::from_layers(
        &parse_spec("conv31x31:1/s2,dense:2").unwrap(),
        shape(3, 2048, 2048),
    )
    .unwrap_err();
    match &e {
        ModelError::TooLarge { values, limit, .. } => {
            assert!(*values > *limit && *limit == MAX_SCRATCH_PER_SAMPLE, "{e}");
        }
        other => panic!("{other}"),
    }
}
