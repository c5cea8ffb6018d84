//! Helpers the model's test binaries share: input shapes, and safetensors files written by
//! hand (a valid checkpoint's metadata, a network's tensors) to be spoiled one fault at a
//! time.

// Each test binary uses some of these.
#![allow(dead_code)]

use petal_model::checkpoint::{CHECKPOINT_FORMAT, FORMAT_VERSION};
use petal_model::{load_checkpoint, InputShape, Network, Param};
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// `c x h x w` inputs.
pub fn shape(c: usize, h: usize, w: usize) -> InputShape {
    InputShape { c, h, w }
}

/// One tensor of a safetensors file: name, dimensions, dtype, little-endian bytes.
pub type Tensor = (String, Vec<usize>, Dtype, Vec<u8>);

/// `net`'s parameters as F32 tensors, value `i` of parameter `p` being `value(p, i)`.
pub fn tensors(net: &Network, value: impl Fn(&Param, usize) -> f32) -> Vec<Tensor> {
    net.params()
        .map(|p| {
            let bytes = (0..p.value.len())
                .flat_map(|i| value(p, i).to_le_bytes())
                .collect();
            (p.name.clone(), p.shape.clone(), Dtype::F32, bytes)
        })
        .collect()
}

/// `net`'s parameter values as F32 tensors.
pub fn tensors_of(net: &Network) -> Vec<Tensor> {
    tensors(net, |p, i| p.value[i])
}

/// A safetensors file's bytes: `tensors` with metadata `meta`.
pub fn safetensors_bytes(tensors: &[Tensor], meta: Option<HashMap<String, String>>) -> Vec<u8> {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, s, d, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, meta).unwrap()
}

/// Writes a safetensors file of `tensors` with metadata `meta` at `path`.
pub fn write_raw(path: &Path, tensors: &[Tensor], meta: Option<HashMap<String, String>>) {
    std::fs::write(path, safetensors_bytes(tensors, meta)).unwrap();
}

/// The metadata of a valid checkpoint of `net`, its classes named `a`, `b`, ...
pub fn good_meta(net: &Network) -> HashMap<String, String> {
    let i = net.input_shape();
    let classes: Vec<String> = (0..net.classes())
        .map(|c| format!("\"{}\"", char::from(b'a' + c as u8)))
        .collect();
    HashMap::from([
        ("format".into(), CHECKPOINT_FORMAT.into()),
        ("format_version".into(), FORMAT_VERSION.into()),
        ("spec".into(), net.spec()),
        ("input_shape".into(), format!("[{},{},{}]", i.c, i.h, i.w)),
        ("classes".into(), format!("[{}]", classes.join(","))),
        (
            "normalization".into(),
            r#"{"scale":0.00392,"mean":[0.0],"std":[1.0]}"#.into(),
        ),
        ("epoch".into(), "1".into()),
        ("step".into(), "2".into()),
    ])
}

/// The error loading the checkpoint at `path` gives, on a thread with a timeout (a FIFO
/// or /dev/zero would block or stream forever).
pub fn load_err(path: &Path) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(load_checkpoint(&p).map(|_| ()).map_err(|e| e.to_string()));
    });
    match rx.recv_timeout(Duration::from_secs(30)).expect("loading hangs") {
        Ok(()) => panic!("{} loaded, expected an error", path.display()),
        Err(e) => e,
    }
}
