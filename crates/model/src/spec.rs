//! The one-line network spec: grammar, parser, presets.
//!
//! ```text
//! spec    := layer ( ',' layer )*            whitespace around tokens is ignored
//! layer   := conv | maxpool | 'relu' | 'flatten' | dense
//! conv    := 'conv' K [ 'x' K ] ':' N opt*   K x K kernel (or KH x KW), N output channels
//! opt     := '/s' N                           stride (default 1)
//!          | '/p' N                           zero padding on every side (default 0)
//!          | '/nobias'                        no bias (default: with bias)
//! maxpool := 'maxpool' K [ '/s' N ]           K x K max pooling, stride defaults to K
//! dense   := 'dense:' N [ '/nobias' ]         fully connected, N outputs
//! ```
//!
//! A `flatten` is implied before the first `dense` that follows spatial layers (and counts
//! as a layer, as in PyTorch's `nn.Sequential`). The network ends in the logits: the last
//! layer must produce a flat vector, whose length is the number of classes.
//!
//! Presets end in a classifier sized to the data, `dense:N` for N classes, like
//! torchvision's `num_classes` ([`preset_spec`], [`resolve_arch`]):
//! `seednet` = `conv3x3:8,maxpool2,dense:N`;
//! `flowernet` = `conv3x3:16/p1,relu,maxpool2,conv3x3:32/p1,relu,maxpool2,conv3x3:64/p1,relu,maxpool2,dense:N`.
//! A preset name given where no class count is known ([`parse_spec`]) means N = 5, the
//! seed's five flowers ([`SEEDNET`], [`FLOWERNET`]).

use crate::error::{ModelError, SpecError};
use crate::layer::Layer;
use crate::network::{InputShape, Network, MAX_ACTIVATIONS_PER_SAMPLE};
use std::fmt;

/// The seed's network on 1x50x50 inputs, for its 5 classes.
pub const SEEDNET: &str = "conv3x3:8,maxpool2,dense:5";
/// The RGB flower network on 3x64x64 inputs, for 5 classes.
pub const FLOWERNET: &str =
    "conv3x3:16/p1,relu,maxpool2,conv3x3:32/p1,relu,maxpool2,conv3x3:64/p1,relu,maxpool2,dense:5";

/// Each preset's name and its layers before the classifier (`dense:N` is appended).
const PRESET_BODIES: [(&str, &str); 2] = [
    ("seednet", "conv3x3:8,maxpool2"),
    (
        "flowernet",
        "conv3x3:16/p1,relu,maxpool2,conv3x3:32/p1,relu,maxpool2,conv3x3:64/p1,relu,maxpool2",
    ),
];

/// The preset names, in the order the help lists them.
pub fn preset_names() -> impl Iterator<Item = &'static str> {
    PRESET_BODIES.iter().map(|(n, _)| *n)
}

/// The spec of preset `name` (surrounding whitespace ignored) for a classifier of
/// `classes` classes: its body, then `dense:classes`. `None` when `name` is not a preset.
pub fn preset_spec(name: &str, classes: usize) -> Option<String> {
    let name = name.trim();
    PRESET_BODIES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, body)| format!("{body},dense:{classes}"))
}

/// `arch` as a spec for data of `classes` classes: a preset's spec sized to `classes`
/// ([`preset_spec`]), any other text (a spec) as it is.
pub fn resolve_arch(arch: &str, classes: usize) -> String {
    preset_spec(arch, classes).unwrap_or_else(|| arch.to_string())
}

/// Largest size accepted for any single spec number (channels, kernel, stride, padding,
/// outputs): refused at parse time, before anything is allocated.
pub const MAX_SPEC_NUMBER: usize = 1 << 20;

/// One layer as the spec describes it (shapes are inferred later from the input).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerSpec {
    Conv2d {
        out_c: usize,
        kh: usize,
        kw: usize,
        stride: usize,
        pad: usize,
        bias: bool,
    },
    MaxPool2d {
        k: usize,
        stride: usize,
    },
    Relu,
    Flatten,
    Dense {
        out: usize,
        bias: bool,
    },
}

impl fmt::Display for LayerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LayerSpec::Conv2d {
                out_c,
                kh,
                kw,
                stride,
                pad,
                bias,
            } => {
                write!(f, "conv{kh}x{kw}:{out_c}")?;
                if stride != 1 {
                    write!(f, "/s{stride}")?;
                }
                if pad != 0 {
                    write!(f, "/p{pad}")?;
                }
                if !bias {
                    write!(f, "/nobias")?;
                }
                Ok(())
            }
            LayerSpec::MaxPool2d { k, stride } => {
                write!(f, "maxpool{k}")?;
                if stride != k {
                    write!(f, "/s{stride}")?;
                }
                Ok(())
            }
            LayerSpec::Relu => write!(f, "relu"),
            LayerSpec::Flatten => write!(f, "flatten"),
            LayerSpec::Dense { out, bias } => {
                write!(f, "dense:{out}")?;
                if !bias {
                    write!(f, "/nobias")?;
                }
                Ok(())
            }
        }
    }
}

/// Writes layers back as a spec string that [`parse_spec`] reads to the same layers.
pub fn format_spec(layers: &[LayerSpec]) -> String {
    layers.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(",")
}

/// Expands a preset name (`seednet`, `flowernet`) to its 5-class spec; any other text is
/// returned as it is. [`resolve_arch`] sizes a preset for another class count.
pub fn resolve_preset(name_or_spec: &str) -> &str {
    match name_or_spec.trim() {
        "seednet" => SEEDNET,
        "flowernet" => FLOWERNET,
        _ => name_or_spec,
    }
}

/// Parses a spec string (or a preset name) into its layers (module docs give the grammar).
pub fn parse_spec(spec: &str) -> Result<Vec<LayerSpec>, SpecError> {
    let spec = resolve_preset(spec);
    if spec.trim().is_empty() {
        return Err(SpecError {
            position: 1,
            layer: String::new(),
            reason: "the spec is empty".into(),
        });
    }
    spec.split(',')
        .enumerate()
        .map(|(i, tok)| parse_layer(i + 1, tok.trim()))
        .collect()
}

fn parse_layer(position: usize, tok: &str) -> Result<LayerSpec, SpecError> {
    let err = |reason: String| SpecError {
        position,
        layer: tok.to_string(),
        reason,
    };
    if tok.is_empty() {
        return Err(err(
            "empty layer (two commas in a row, or a trailing comma?)".into()
        ));
    }
    let mut parts = tok.split('/').map(str::trim);
    let head = parts.next().unwrap_or_default();
    let opts: Vec<&str> = parts.collect();
    let number = |text: &str, what: &str| -> Result<usize, SpecError> {
        let n: usize = text
            .parse()
            .map_err(|_| err(format!("{what} `{text}` is not a whole number")))?;
        if n == 0 {
            return Err(err(format!("{what} must be at least 1")));
        }
        if n > MAX_SPEC_NUMBER {
            return Err(err(format!(
                "{what} {n} is larger than the limit {MAX_SPEC_NUMBER}"
            )));
        }
        Ok(n)
    };
    let no_opts = |name: &str| -> Result<(), SpecError> {
        match opts.first() {
            Some(o) => Err(err(format!("`{name}` takes no options, got `/{o}`"))),
            None => Ok(()),
        }
    };
    if let Some(rest) = head.strip_prefix("conv") {
        let (kernel, out) = rest
            .split_once(':')
            .ok_or_else(|| err("a conv needs its output channels: `conv3x3:8`".into()))?;
        let (kh, kw) = match kernel.split_once('x') {
            Some((a, b)) => (number(a, "kernel height")?, number(b, "kernel width")?),
            None if kernel.is_empty() => return Err(err("a conv needs its kernel size: `conv3x3:8`".into())),
            None => {
                let k = number(kernel, "kernel size")?;
                (k, k)
            }
        };
        let out_c = number(out, "output channels")?;
        let (mut stride, mut pad, mut bias) = (1, 0, true);
        for o in opts {
            if let Some(v) = o.strip_prefix('s') {
                stride = number(v, "stride")?;
            } else if o == "nobias" {
                bias = false;
            } else if let Some(v) = o.strip_prefix('p') {
                pad = if v == "0" { 0 } else { number(v, "padding")? };
            } else {
                return Err(err(format!(
                    "unknown conv option `/{o}` (expected /sN, /pN or /nobias)"
                )));
            }
        }
        return Ok(LayerSpec::Conv2d {
            out_c,
            kh,
            kw,
            stride,
            pad,
            bias,
        });
    }
    if let Some(rest) = head.strip_prefix("maxpool") {
        if rest.is_empty() {
            return Err(err("a max pool needs its window size: `maxpool2`".into()));
        }
        let k = number(rest, "pool size")?;
        let mut stride = k;
        for o in opts {
            match o.strip_prefix('s') {
                Some(v) => stride = number(v, "stride")?,
                None => return Err(err(format!("unknown maxpool option `/{o}` (expected /sN)"))),
            }
        }
        return Ok(LayerSpec::MaxPool2d { k, stride });
    }
    if let Some(out) = head.strip_prefix("dense:") {
        let out = number(out, "outputs")?;
        let mut bias = true;
        for o in opts {
            if o == "nobias" {
                bias = false;
            } else {
                return Err(err(format!("unknown dense option `/{o}` (expected /nobias)")));
            }
        }
        return Ok(LayerSpec::Dense { out, bias });
    }
    match head {
        "relu" => no_opts("relu").map(|_| LayerSpec::Relu),
        "flatten" => no_opts("flatten").map(|_| LayerSpec::Flatten),
        "dense" => Err(err("a dense layer needs its outputs: `dense:5`".into())),
        _ => Err(err(format!(
            "unknown layer `{head}` (expected convKxK:N, maxpoolK, relu, flatten or dense:N)"
        ))),
    }
}

/// Most values one sample's input may hold (the same bound as its activations).
pub const MAX_INPUT_PER_SAMPLE: u128 = MAX_ACTIVATIONS_PER_SAMPLE;

/// Most values of convolution scratch (im2col matrix or zero-padded copy) one sample may
/// need: 2^28, as for activations. A small kernel on a small input needs little, but on
/// the im2col paths a large kernel over a large input multiplies both
/// (`conv63x63:1/s2/p31` on 3x4096x4096 would need 5 · 10^10 values, 200 GB, for a
/// convolution of 12,000 parameters).
pub const MAX_SCRATCH_PER_SAMPLE: u128 = 1 << 28;

/// Refuses an input shape with a zero dimension or more than [`MAX_INPUT_PER_SAMPLE`]
/// values, computed without overflow (so `c · h · w` fits in a `usize` afterwards).
pub fn check_input(input: InputShape) -> Result<(), ModelError> {
    let InputShape { c, h, w } = input;
    if c == 0 || h == 0 || w == 0 {
        return Err(ModelError::InputShape { c, h, w });
    }
    let values = c as u128 * h as u128 * w as u128;
    if values > MAX_INPUT_PER_SAMPLE {
        return Err(ModelError::TooLarge {
            what: format!("the input {c}x{h}x{w}"),
            values,
            limit: MAX_INPUT_PER_SAMPLE,
        });
    }
    Ok(())
}

/// Refuses a network whose convolution scratch per sample would exceed
/// [`MAX_SCRATCH_PER_SAMPLE`] values. [`Network::from_spec`] bounds parameters and
/// activations; the scratch buffers are only allocated at the first forward pass, so a
/// caller holding a spec from outside (a command line, a checkpoint) calls this first,
/// and an impossible request is an error instead of an allocation failure.
pub fn check_buffers(net: &Network) -> Result<(), ModelError> {
    for (i, layer) in net.layers().iter().enumerate() {
        let Layer::Conv2d { shape: s, .. } = layer else {
            continue;
        };
        // What the conv kernels ask for one sample, on the paths the shape takes. A
        // shape that does not validate (a built network's always do) counts as too large.
        let one = petal_kernels::Conv2dShape { batch: 1, ..*s };
        let values = one.validate().map_or(u128::MAX, |()| one.scratch_len() as u128);
        if values > MAX_SCRATCH_PER_SAMPLE {
            return Err(ModelError::TooLarge {
                what: format!(
                    "the convolution scratch of one sample (layer {i} `{}` on {}x{}x{})",
                    net.layer_specs()[i],
                    s.in_c,
                    s.h,
                    s.w
                ),
                values,
                limit: MAX_SCRATCH_PER_SAMPLE,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_round_trip_through_format() {
        for p in [SEEDNET, FLOWERNET] {
            let layers = parse_spec(p).unwrap();
            assert_eq!(format_spec(&layers), p);
        }
        assert_eq!(parse_spec("seednet").unwrap(), parse_spec(SEEDNET).unwrap());
    }

    #[test]
    fn preset_spec_sizes_the_classifier_to_the_class_count() {
        // Five classes give the constants (the seed's network, bit for bit).
        assert_eq!(preset_spec("seednet", 5).as_deref(), Some(SEEDNET));
        assert_eq!(preset_spec(" flowernet ", 5).as_deref(), Some(FLOWERNET));
        for classes in [2, 3, 10, 100] {
            for name in preset_names() {
                let spec = preset_spec(name, classes).unwrap();
                let layers = parse_spec(&spec).unwrap();
                assert_eq!(
                    layers.last(),
                    Some(&LayerSpec::Dense {
                        out: classes,
                        bias: true
                    }),
                    "{name} for {classes}: {spec}"
                );
                // Everything before the classifier is the 5-class preset's.
                let five = parse_spec(name).unwrap();
                assert_eq!(layers[..layers.len() - 1], five[..five.len() - 1], "{name}");
            }
        }
        assert_eq!(preset_spec("resnet99", 5), None);
        assert_eq!(resolve_arch("conv3x3:4,dense:7", 3), "conv3x3:4,dense:7");
        assert_eq!(resolve_arch("seednet", 2), "conv3x3:8,maxpool2,dense:2");
    }

    #[test]
    fn options_and_shorthands_parse() {
        let l =
            parse_spec(" conv5:4 / s2 / p2 / nobias , maxpool3/s2, relu, flatten, dense:7/nobias").unwrap();
        assert_eq!(
            l,
            vec![
                LayerSpec::Conv2d {
                    out_c: 4,
                    kh: 5,
                    kw: 5,
                    stride: 2,
                    pad: 2,
                    bias: false
                },
                LayerSpec::MaxPool2d { k: 3, stride: 2 },
                LayerSpec::Relu,
                LayerSpec::Flatten,
                LayerSpec::Dense { out: 7, bias: false },
            ]
        );
        assert_eq!(
            parse_spec("conv1x3:2/p0").unwrap()[0],
            LayerSpec::Conv2d {
                out_c: 2,
                kh: 1,
                kw: 3,
                stride: 1,
                pad: 0,
                bias: true
            }
        );
    }

    #[test]
    fn errors_name_the_layer_and_position() {
        let cases = [
            ("conv3x3:8,maxpol2,dense:5", 2, "unknown layer `maxpol2`"),
            ("conv3x3:0,dense:5", 1, "output channels must be at least 1"),
            ("conv3x3,dense:5", 1, "needs its output channels"),
            ("conv3x3:8,,dense:5", 2, "empty layer"),
            ("conv3x3:8,dense:five", 2, "outputs `five` is not a whole number"),
            ("conv3x3:8/q1,dense:5", 1, "unknown conv option `/q1`"),
            ("relu/s2", 1, "takes no options"),
            ("dense", 1, "needs its outputs"),
            ("maxpool", 1, "needs its window size"),
            ("conv3x3:99999999,dense:5", 1, "larger than the limit"),
            ("", 1, "empty"),
        ];
        for (spec, pos, msg) in cases {
            let e = parse_spec(spec).unwrap_err();
            assert_eq!(e.position, pos, "{spec}: {e}");
            assert!(e.to_string().contains(msg), "{spec}: `{e}` lacks `{msg}`");
        }
    }
}
