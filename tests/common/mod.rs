//! Shared helpers for the workspace-level integration tests.
#![allow(dead_code)]

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One tensor of a fixture: shape and flat row-major data (f64, as PyTorch wrote it).
#[derive(Deserialize, Clone, Debug)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl Tensor {
    pub fn f32(&self) -> Vec<f32> {
        self.data.iter().map(|&v| v as f32).collect()
    }
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
}

/// `../shared/fixtures/torch_seednet_grad_seed1.json` (vendored in `tests/fixtures/`).
#[derive(Deserialize)]
pub struct SeednetFixture {
    pub format: String,
    pub batch: usize,
    pub loss: f64,
    pub checks: BTreeMap<String, serde_json::Value>,
    pub tensors: BTreeMap<String, serde_json::Value>,
}

impl SeednetFixture {
    pub fn load() -> Self {
        let path = fixture_path("torch_seednet_grad_seed1.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let f: SeednetFixture = serde_json::from_str(&text).expect("fixture parses");
        assert_eq!(f.format, "seednet-gradref/1");
        f
    }

    /// A tensor by its key, e.g. `conv.weight` or `grad.fc.bias`.
    pub fn tensor(&self, name: &str) -> Tensor {
        let v = self
            .tensors
            .get(name)
            .unwrap_or_else(|| panic!("fixture has no tensor {name}"));
        let t: Tensor = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("tensor {name}: {e}"));
        assert_eq!(t.len(), t.data.len(), "tensor {name}: shape and data disagree");
        t
    }

    pub fn labels(&self) -> Vec<usize> {
        self.tensor("labels").data.iter().map(|&v| v as usize).collect()
    }
}

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// `max |a - b| / max(max |b|, tiny)` over a tensor: the fixture README's metric.
pub fn rel_err(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "compared tensors differ in length");
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (&x, &y)| m.max((x as f64 - y).abs()));
    diff / scale
}
