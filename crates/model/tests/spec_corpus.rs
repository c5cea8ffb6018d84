//! The spec corpus: what petal-model makes of a table of specs, written to
//! `python/spec_corpus.json` for `python/test_petal_spec.py`, which holds the Python
//! parser and shape inference (`python/petal_spec.py`) to it.
//!
//! For each case (a spec and an input shape) the corpus records either the network built
//! from it (canonical spec, output shape of every layer in execution order, parameter names
//! and shapes, batch-norm buffers, parameter count, classes) or the error: parse (from
//! `parse_spec`) or build (from `Network::from_layers`), its 1-based position and the layer
//! text. Only the public API is used. This test fails when the file differs from what the
//! code gives; `PETAL_BLESS_CORPUS=1` rewrites it instead:
//!
//! ```text
//! PETAL_BLESS_CORPUS=1 cargo test --release -p petal-model --test spec_corpus
//! python3 python/test_petal_spec.py
//! ```

use petal_model::spec::{preset_spec, resolve_arch, PRESETS};
use petal_model::{parse_spec, InputShape, ModelError, Network};
use serde::Serialize;
use std::collections::HashSet;
use std::path::PathBuf;

/// The input most cases use.
const S: [usize; 3] = [3, 9, 9];

/// `(spec, input [c, h, w])`, grouped by what they exercise. Presets are added by
/// [`preset_cases`].
#[rustfmt::skip]
const CASES: &[(&str, [usize; 3])] = &[
    // conv: square and KHxKW kernels, every option, options in any order, the last repeat wins
    ("conv3:4,dense:2", S),
    ("conv3x3:4,dense:2", S),
    ("conv1x3:2,dense:2", S),
    ("conv5x2:3/s2/p1/nobias,dense:2", S),
    ("conv3x3:4/s2,dense:2", S),
    ("conv3x3:4/s1,dense:2", S),
    ("conv3x3:4/p1,dense:2", S),
    ("conv3x3:4/p0,dense:2", S),
    ("conv3x3:4/p1/p0,dense:2", S),
    ("conv3x3:4/nobias,dense:2", S),
    ("conv3x3:4/nobias/p2/s3,dense:2", S),
    ("conv3x3:4/s2/s3,dense:2", S),
    ("conv9x9:2,dense:2", S),
    ("conv11x11:2/p1,dense:2", S),
    ("conv1x1:4/s4,dense:2", [1, 37, 53]),
    ("conv3x3:+4,dense:+2", S),
    ("conv1x1:1048576,gap,dense:2", [1, 1, 1]),
    // pools, with and without a stride
    ("maxpool2,dense:2", S),
    ("maxpool2/s2,dense:2", S),
    ("maxpool3/s1,dense:2", S),
    ("maxpool3/s2,dense:2", S),
    ("maxpool9,dense:2", S),
    ("avgpool2,dense:2", S),
    ("avgpool3/s3,dense:2", S),
    ("avgpool2/s1,dense:2", S),
    ("avgpool3/s4,dense:2", [2, 33, 33]),
    // layers without numbers, dropout probabilities, flatten and dense
    ("relu,flatten,dense:2", S),
    ("bn,relu,dense:2", S),
    ("conv3x3:8/p1,bn,relu,gap,dense:2", S),
    ("gap,flatten,dense:2", S),
    ("dropout:0,dense:2", S),
    ("dropout:0.0,dense:2", S),
    ("dropout:-0,dense:2", S),
    ("dropout:0.5,dense:2", S),
    ("dropout:.5,dense:2", S),
    ("dropout:5e-1,dense:2", S),
    ("dropout:0.25,dense:2", S),
    ("dropout:0.123456789,dense:2", S),
    ("dropout:0.00001,dense:2", S),
    ("dropout:0.000001,dense:2", S),
    ("dropout:0.0000004,dense:2", S),
    ("dropout:0.0000005,dense:2", S),
    ("dropout:0.0000015,dense:2", S),
    ("dropout:0.9999994,dense:2", S),
    ("dropout:0.9999999,dense:2", S),
    ("dense:4,dropout:0.3,dense:2", S),
    ("flatten,dense:2", S),
    ("flatten,flatten,dense:2", S),
    ("dense:2", S),
    ("dense:3/nobias", S),
    ("dense:4,relu,dense:2/nobias", S),
    ("dense:1048576", [1, 1, 1]),
    ("flatten,relu", S),
    ("flatten,dropout:0.5", S),
    // residual blocks: identity, explicit and implied projection shortcuts, nesting
    ("res(conv3x3:3/p1),dense:2", S),
    ("res(conv3x3:3/p1,bn,relu,conv3x3:3/p1,bn),relu,gap,dense:2", S),
    ("res(conv3x3:8/s2/p1,bn|conv1x1:8/s2/nobias,bn),gap,dense:2", S),
    ("res(conv3x3:8/s2/p1,bn),gap,dense:2", S),
    ("res(conv3x3:8/p1),dense:2", S),
    ("res(conv3x3:4/s3/p1),dense:2", S),
    ("res(conv3x3:4/s2/p1),dense:2", [1, 37, 53]),
    ("res(maxpool2),dense:2", [2, 8, 8]),
    ("res(conv1x1:2|conv1x1:2),dense:2", [1, 4, 4]),
    ("res(res(conv3x3:3/p1,bn),relu|conv1x1:3),dense:2", S),
    ("res(res(conv3x3:6/s2/p1)),dense:2", S),
    ("res(relu),res(relu),flatten,dense:2", S),
    ("res(dense:4|flatten,dense:4),dense:2", S),
    ("flatten,res(dense:243),dense:2", S),
    ("dense:4,res(dense:4,relu),dense:2", S),
    ("res(res(res(res(res(res(res(res(relu)))))))),dense:2", S),
    // whitespace around tokens (and inside numbers) is ignored
    (" conv3:4 / s2 / p1 / nobias , relu , dense: 2 ", S),
    ("\tconv3x3:4,\n relu,\r\n dense:2\n", S),
    ("conv 3x3:4,maxpool 2,dense:2", S),
    ("conv3 x 3 : 4,dense:2", S),
    ("res (relu),res( relu | relu ),dense:2", S),
    ("\u{a0}relu\u{3000},dense:2", S),
    // presets by name (5 classes)
    ("seednet", [1, 50, 50]),
    (" resnet8 ", [3, 32, 32]),
    // parse errors: unknown layers and options
    ("conv3x3:4,sigmoid,dense:2", S),
    ("Relu,dense:2", S),
    ("maxpol2,dense:2", S),
    ("dense :2", S),
    ("max pool2,dense:2", S),
    ("relu\u{1f},dense:2", S),
    ("conv3x3:4/q1,dense:2", S),
    ("conv3x3:4/,dense:2", S),
    ("maxpool2/p1,dense:2", S),
    ("avgpool2/nobias,dense:2", S),
    ("dense:2/s2", S),
    ("relu/s2,dense:2", S),
    ("bn/x,dense:2", S),
    ("gap/,dense:2", S),
    ("flatten/nobias,dense:2", S),
    ("dropout:0.5/s2,dense:2", S),
    ("conv3x3,dense:2", S),
    ("conv:4,dense:2", S),
    ("maxpool,dense:2", S),
    ("dense,relu", S),
    ("dropout,dense:2", S),
    // parse errors: zero, negative, not a whole number, too large
    ("conv3x3:0,dense:2", S),
    ("conv0x3:4,dense:2", S),
    ("conv3x0:4,dense:2", S),
    ("conv3x3:4/s0,dense:2", S),
    ("conv3x3:4/p00,dense:2", S),
    ("conv3x3:4/p 0,dense:2", S),
    ("maxpool0,dense:2", S),
    ("avgpool2/s0,dense:2", S),
    ("dense:0", S),
    ("conv3x3:-4,dense:2", S),
    ("conv3x3:4/p-1,dense:2", S),
    ("maxpool-2,dense:2", S),
    ("dense:-1", S),
    ("conv3x3:four,dense:2", S),
    ("convAx3:4,dense:2", S),
    ("conv3x3x3:4,dense:2", S),
    ("conv3x3:4:5,dense:2", S),
    ("conv3x3:4/sx,dense:2", S),
    ("maxpoolx,dense:2", S),
    ("dense:2.5", S),
    ("dense:٣", S),
    ("conv3x3:18446744073709551616,dense:2", S),
    ("dense:99999999999999999999999", S),
    ("conv3x3:4/s18446744073709551615,dense:2", S),
    ("conv3x3:1048577,dense:2", S),
    ("conv1048577x1:1,dense:2", S),
    ("conv3x3:4/p1048577,dense:2", S),
    ("maxpool1048577,dense:2", S),
    ("dense:1048577", S),
    // parse errors: dropout probabilities
    ("dropout:,dense:2", S),
    ("dropout:abc,dense:2", S),
    ("dropout:0.1_2,dense:2", S),
    ("dropout:0x1,dense:2", S),
    ("dropout:1,dense:2", S),
    ("dropout:1.0,dense:2", S),
    ("dropout:1.5,dense:2", S),
    ("dropout:-0.1,dense:2", S),
    ("dropout:nan,dense:2", S),
    ("dropout:inf,dense:2", S),
    ("dropout:-inf,dense:2", S),
    // parse errors: empty specs and layers, parentheses, `|`, nesting
    ("", S),
    ("   ", S),
    ("conv3x3:4,dense:2,", S),
    (",relu,dense:2", S),
    ("relu,,dense:2", S),
    ("res(relu,dense:2", S),
    ("relu,res(relu,relu", S),
    ("relu),dense:2", S),
    ("res(relu)),dense:2", S),
    ("relu,)(,dense:2", S),
    ("relu(x),dense:2", S),
    ("relu|relu,dense:2", S),
    ("res(relu|relu|relu),dense:2", S),
    ("res(relu||relu),dense:2", S),
    ("res,dense:2", S),
    ("res(),dense:2", S),
    ("res(|relu),dense:2", S),
    ("res(relu|),dense:2", S),
    ("res(relu,),dense:2", S),
    ("res relu,dense:2", S),
    ("res(relu)x,dense:2", S),
    ("residual(relu),dense:2", S),
    ("(relu),dense:2", S),
    ("res()(relu),dense:2", S),
    ("relu,res(conv3x3:4,sigmoid),dense:2", S),
    ("relu,res(relu,res(bn|maxpool0)),dense:2", S),
    ("res(res(res(res(res(res(res(res(res(relu))))))))),dense:2", S),
    // build errors: layers that do not fit their input
    ("conv11x11:4,dense:2", S),
    ("conv3x11:4,dense:2", S),
    ("conv12x12:4/p1,dense:2", S),
    ("maxpool10,dense:2", S),
    ("avgpool3,maxpool4,dense:2", S),
    ("conv3:4/s2,avgpool5,dense:2", S),
    ("flatten,conv3x3:4,dense:2", S),
    ("flatten,maxpool2,dense:2", S),
    ("dense:4,bn", S),
    ("dense:4,gap,dense:2", S),
    ("dense:4,avgpool2", S),
    ("res(conv3x3:3/p1,maxpool10),dense:2", S),
    ("relu,res(res(conv11x11:3)),dense:2", S),
    ("res(maxpool10|maxpool11),dense:2", S),
    ("res(flatten|conv11x11:3),dense:2", S),
    // build errors: body and shortcut disagree
    ("res(conv3x3:4/p1|conv1x1:4/s2),dense:2", S),
    ("res(conv3x3:4/p1|conv1x1:5),dense:2", S),
    ("res(relu|conv1x1:3/s2),dense:2", S),
    ("res(conv3x3:4),dense:2", S),
    ("res(conv1x3:4/p1),dense:2", S),
    ("res(conv1x1:4/p1),dense:2", S),
    ("res(dense:4),dense:2", S),
    ("res(flatten),dense:2", S),
    ("res(flatten|flatten),dense:2", S),
    ("flatten,res(flatten),dense:2", S),
    ("relu,res(res(conv3x3:3)|relu),dense:2", S),
    // build errors: the network must end in logits, and compute something
    ("conv3x3:4", S),
    ("conv3:4,relu", S),
    ("relu", S),
    ("res(conv3x3:4/p1)", S),
    ("dense:4,res(relu),gap", S),
    ("flatten", S),
    ("flatten,flatten", S),
];

/// Every preset at 2, 5 and 100 classes on its own input, on odd sizes, and on one too
/// small for it.
fn preset_cases() -> Vec<(String, [usize; 3], Option<Preset>)> {
    let mut cases = Vec::new();
    for name in PRESETS {
        let own = match name {
            "seednet" => [1, 50, 50],
            "flowernet" => [3, 64, 64],
            _ => [3, 32, 32],
        };
        for classes in [2, 5, 100] {
            let spec = preset_spec(name, classes).expect("a preset");
            assert_eq!(resolve_arch(name, classes), spec);
            for input in [own, [1, 37, 53], [3, 33, 33]] {
                cases.push((spec.clone(), input, Some(Preset { name, classes })));
            }
        }
        let tiny = if name == "seednet" { [1, 2, 2] } else { [3, 4, 4] };
        let spec = preset_spec(name, 10).expect("a preset");
        cases.push((spec, tiny, Some(Preset { name, classes: 10 })));
    }
    cases
}

#[derive(Serialize)]
struct Preset {
    name: &'static str,
    classes: usize,
}

#[derive(Serialize)]
struct Case {
    spec: String,
    input: [usize; 3],
    #[serde(skip_serializing_if = "Option::is_none")]
    preset: Option<Preset>,
    #[serde(flatten)]
    outcome: Outcome,
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Ok {
        canonical: String,
        /// Output shape of every layer, in execution order (a block's body, its shortcut,
        /// then its add), `CxHxW` or `N`.
        shapes: Vec<String>,
        params: Vec<(String, Vec<usize>)>,
        /// Batch-norm buffers, in `state_dict` order per batch norm.
        buffers: Vec<(String, Vec<usize>)>,
        param_count: usize,
        classes: usize,
    },
    Error {
        /// `parse` (`parse_spec`) or `build` (`Network::from_layers`).
        kind: &'static str,
        position: usize,
        layer: String,
    },
}

fn run(spec: String, input: [usize; 3], preset: Option<Preset>) -> Case {
    let shape = InputShape {
        c: input[0],
        h: input[1],
        w: input[2],
    };
    let error = |kind, position, layer| Outcome::Error {
        kind,
        position,
        layer,
    };
    let outcome = match parse_spec(&spec) {
        Err(e) => error("parse", e.position, e.layer),
        Ok(layers) => match Network::from_layers(&layers, shape) {
            Err(ModelError::Spec(e)) => error("build", e.position, e.layer),
            Err(e) => panic!("{spec:?} on {input:?}: not a spec error, keep it out of the corpus: {e}"),
            Ok(net) => built(&net),
        },
    };
    Case {
        spec,
        input,
        preset,
        outcome,
    }
}

fn built(net: &Network) -> Outcome {
    let params: Vec<_> = net.params().map(|p| (p.name.clone(), p.shape.clone())).collect();
    // A batch norm's weight is its only one-dimensional `.weight` (a conv's is 4-D, a
    // dense's 2-D); PyTorch's BatchNorm2d keeps three buffers beside it.
    let mut buffers = Vec::new();
    for (name, shape) in &params {
        if let (Some(layer), [c]) = (name.strip_suffix(".weight"), &shape[..]) {
            buffers.push((format!("{layer}.running_mean"), vec![*c]));
            buffers.push((format!("{layer}.running_var"), vec![*c]));
            buffers.push((format!("{layer}.num_batches_tracked"), vec![]));
        }
    }
    Outcome::Ok {
        canonical: net.spec(),
        shapes: net.shapes().iter().map(|s| s.to_string()).collect(),
        params,
        buffers,
        param_count: net.param_count(),
        classes: net.classes(),
    }
}

/// The corpus file's text: one case per line, so that a change shows as a line diff.
fn corpus() -> String {
    let mut seen = HashSet::new();
    let cases = CASES
        .iter()
        .map(|&(spec, input)| (spec.to_string(), input, None))
        .chain(preset_cases());
    let mut lines = Vec::new();
    for (spec, input, preset) in cases {
        assert!(seen.insert((spec.clone(), input)), "{spec:?} on {input:?} twice");
        lines.push(serde_json::to_string(&run(spec, input, preset)).expect("a case serializes"));
    }
    format!(
        "{{\n\"about\": \"What petal-model makes of each spec on its input, written by \
         crates/model/tests/spec_corpus.rs (PETAL_BLESS_CORPUS=1 rewrites it) and checked \
         against python/petal_spec.py by python/test_petal_spec.py.\",\n\"cases\": [\n{}\n]\n}}\n",
        lines.join(",\n")
    )
}

#[test]
fn python_spec_corpus_is_what_petal_model_builds() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../python/spec_corpus.json");
    let want = corpus();
    if std::env::var_os("PETAL_BLESS_CORPUS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &want).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    // A missing file reads as empty: the same message, at line 1.
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    if have == want {
        return;
    }
    let (line, (old, new)) = have
        .lines()
        .chain(std::iter::repeat(""))
        .zip(want.lines().chain(std::iter::repeat("")))
        .enumerate()
        .find(|(_, (a, b))| a != b)
        .expect("the texts differ");
    let cut = |s: &str| s.chars().take(300).collect::<String>();
    panic!(
        "python/spec_corpus.json is not what petal-model builds (first difference at line {}):\n  \
         file: {}\n  code: {}\n\
         If the change is meant, regenerate the file and check the Python side against it:\n  \
         PETAL_BLESS_CORPUS=1 cargo test --release -p petal-model --test spec_corpus\n  \
         python3 python/test_petal_spec.py",
        line + 1,
        cut(old),
        cut(new)
    );
}
