//! The safetensors side of Petal's files (checkpoints and optimizer state): writing tensors
//! with metadata, reading a file within bounds, checking its `format`, and loading its
//! tensors into a network with every name, dtype, shape and value checked before any is
//! written.

use crate::error::ModelError;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// The one version this build writes and reads.
pub const FORMAT_VERSION: &str = "1";
/// Largest file the loaders read (a network is at most 2^28 f32 values, 1 GiB).
pub const MAX_FILE_BYTES: u64 = (1 << 30) + (1 << 24);

/// Values as little-endian bytes.
pub(crate) fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A tensor to write: name, shape, dtype, little-endian bytes.
pub(crate) type Tensor = (String, Vec<usize>, Dtype, Vec<u8>);

/// `tensors` and `metadata` as the bytes of a safetensors file: the same bytes for the
/// same tensors and metadata (the header's keys in a fixed order).
pub(crate) fn serialize(tensors: Vec<Tensor>, metadata: HashMap<String, String>) -> Result<Vec<u8>, String> {
    let views = tensors
        .iter()
        .map(|(name, shape, dtype, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| e.to_string())?;
    Ok(sorted_header(bytes))
}

/// `file` (a safetensors file) with its header's keys sorted. `safetensors` writes the
/// metadata from a `HashMap`, whose order changes from process to process; the data and
/// its offsets (relative to the end of the header) are left as they are.
fn sorted_header(file: Vec<u8>) -> Vec<u8> {
    /// The header as JSON: the metadata with sorted keys, the tensors as written.
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Header {
        #[serde(rename = "__metadata__")]
        metadata: std::collections::BTreeMap<String, String>,
        #[serde(flatten)]
        tensors: serde_json::Map<String, serde_json::Value>,
    }
    let n = u64::from_le_bytes(file[..8].try_into().expect("8 bytes")) as usize;
    let header: Header = serde_json::from_slice(&file[8..8 + n]).expect("safetensors wrote a valid header");
    let mut text = serde_json::to_vec(&header).expect("a header serializes");
    // Aligned to 8 bytes with spaces, as safetensors writes it.
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + text.len() + file.len() - 8 - n);
    out.extend((text.len() as u64).to_le_bytes());
    out.extend(text);
    out.extend(&file[8 + n..]);
    out
}

/// Reads a checkpoint or optimizer file: a regular file (a FIFO or device is refused
/// before it is opened, so it can neither block nor stream forever) of at most
/// [`MAX_FILE_BYTES`], checked again while reading.
pub(crate) fn read_bounded(path: &Path) -> Result<Vec<u8>, ModelError> {
    use std::io::Read;
    let cannot = |e: std::io::Error| ModelError::checkpoint(path, format!("cannot read: {e}"));
    let meta = std::fs::metadata(path).map_err(cannot)?;
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            "a folder"
        } else {
            "a FIFO, socket or device"
        };
        return Err(ModelError::checkpoint(
            path,
            format!("not a regular file ({kind})"),
        ));
    }
    let too_large =
        |len: u64| ModelError::checkpoint(path, format!("{len} bytes, larger than any Petal network"));
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large(meta.len()));
    }
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

pub(crate) fn parse_file<'a>(
    path: &Path,
    bytes: &'a [u8],
    format: &str,
) -> Result<(SafeTensors<'a>, HashMap<String, String>), ModelError> {
    let err = |r: String| ModelError::checkpoint(path, r);
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| {
        err(format!(
            "not a safetensors file (truncated or corrupt header): {e}"
        ))
    })?;
    let st =
        SafeTensors::deserialize(bytes).map_err(|e| err(format!("not a valid safetensors file: {e}")))?;
    let meta = header.metadata().clone().ok_or_else(|| {
        err(format!(
            "no metadata: not a {format} file (written by another program?)"
        ))
    })?;
    match meta.get("format").map(String::as_str) {
        Some(f) if f == format => {}
        Some(other) => return Err(err(format!("metadata format is `{other}`, expected `{format}`"))),
        None => return Err(err(format!("metadata has no `format`: not a {format} file"))),
    }
    match meta.get("format_version").map(String::as_str) {
        Some(FORMAT_VERSION) => {}
        Some(v) => {
            return Err(err(format!(
                "format_version `{v}` is not supported (this build reads {FORMAT_VERSION})"
            )))
        }
        None => return Err(err("metadata has no `format_version`".into())),
    }
    Ok((st, meta))
}

pub(crate) fn meta_field<T: serde::de::DeserializeOwned>(
    path: &Path,
    meta: &HashMap<String, String>,
    key: &str,
) -> Result<T, ModelError> {
    let text = meta
        .get(key)
        .ok_or_else(|| ModelError::checkpoint(path, format!("metadata has no `{key}`")))?;
    serde_json::from_str(text)
        .map_err(|e| ModelError::checkpoint(path, format!("metadata `{key}` = `{text}`: {e}")))
}

fn le_f32(b: &[u8]) -> f32 {
    f32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_i64(b: &[u8]) -> i64 {
    i64::from_le_bytes(b[..8].try_into().expect("8 bytes, checked"))
}

/// Where a tensor of the file goes.
pub(crate) enum Dst<'p> {
    /// f32 values; `nonneg`: negative values are refused (a running variance).
    F32(&'p mut [f32], bool),
    /// An i64 scalar (a batch norm's `num_batches_tracked`), refused when negative.
    Count(&'p mut u64),
}

/// Copies the tensors of `st` into `params` (name, shape, destination), checking that the
/// names match one to one, that every tensor has the destination's dtype and shape, and
/// that every value is finite (and not negative where the destination says so) before any
/// is written: on error the destinations are left as they were.
pub(crate) fn fill_params(
    path: &Path,
    st: &SafeTensors<'_>,
    params: Vec<(String, Vec<usize>, Dst<'_>)>,
) -> Result<(), ModelError> {
    let err = |r: String| ModelError::checkpoint(path, r);
    let mut expected = BTreeSet::new();
    let mut pending = Vec::new();
    for (name, shape, dst) in params {
        expected.insert(name.to_string());
        let t = st
            .tensor(&name)
            .map_err(|_| err(format!("tensor `{name}` is missing")))?;
        let want = match dst {
            Dst::F32(..) => Dtype::F32,
            Dst::Count(_) => Dtype::I64,
        };
        if t.dtype() != want {
            return Err(err(format!(
                "tensor `{name}` is {:?}, expected {want:?}",
                t.dtype()
            )));
        }
        if t.shape() != shape {
            return Err(err(format!(
                "tensor `{name}` has shape {:?}, expected {shape:?}",
                t.shape()
            )));
        }
        pending.push(((name, t), dst));
    }
    let extra: Vec<_> = st
        .names()
        .into_iter()
        .filter(|n| !expected.contains(*n))
        .collect();
    if !extra.is_empty() {
        return Err(err(format!(
            "unexpected tensors {extra:?} (another architecture?)"
        )));
    }
    // Check every value of every tensor before writing any: on error the caller's
    // network is left exactly as it was.
    for ((name, t), dst) in &pending {
        let data = t.data();
        let bytes = match dst {
            Dst::F32(d, _) => d.len() * 4,
            Dst::Count(_) => 8,
        };
        if data.len() != bytes {
            return Err(err(format!(
                "tensor `{name}` holds {} bytes, expected {bytes}",
                data.len(),
            )));
        }
        match dst {
            Dst::F32(_, nonneg) => {
                let bad = |v: &f32| !v.is_finite() || (*nonneg && *v < 0.0);
                if let Some((i, v)) = data.chunks_exact(4).map(le_f32).enumerate().find(|(_, v)| bad(v)) {
                    return Err(err(format!(
                        "tensor `{name}` holds {v} at index {i}: a diverged or corrupt network"
                    )));
                }
            }
            Dst::Count(_) => {
                if le_i64(data) < 0 {
                    return Err(err(format!(
                        "tensor `{name}` holds {}: a count cannot be negative",
                        le_i64(data)
                    )));
                }
            }
        }
    }
    for ((_, t), dst) in pending {
        match dst {
            Dst::F32(d, _) => {
                for (d, b) in d.iter_mut().zip(t.data().chunks_exact(4)) {
                    *d = le_f32(b);
                }
            }
            Dst::Count(d) => *d = le_i64(t.data()) as u64,
        }
    }
    Ok(())
}
