//! The one-line network spec: grammar, parser ([`parse_spec`]), presets.
//!
//! ```text
//! spec     := layer ( ',' layer )*          whitespace around tokens is ignored
//! layer    := conv | maxpool | avgpool | 'relu' | 'bn' | 'gap' | dropout | 'flatten'
//!           | dense | res
//! conv     := 'conv' K [ 'x' K ] ':' N opt*   K x K kernel (or KH x KW), N output channels
//! opt      := '/s' N                         stride (default 1)
//!           | '/p' N                         zero padding on every side (default 0)
//!           | '/nobias'                      no bias (default: with bias)
//! maxpool  := 'maxpool' K [ '/s' N ]         K x K max pooling, stride defaults to K
//! avgpool  := 'avgpool' K [ '/s' N ]         K x K average pooling (divisor K·K), stride defaults to K
//! bn       := 'bn'                           batch norm over the channels (PyTorch's BatchNorm2d:
//!                                            eps 1e-5, momentum 0.1, learnable scale and shift)
//! gap      := 'gap'                          global average pooling: [c, h, w] -> [c, 1, 1]
//! dropout  := 'dropout:' P                   zeroes each value with probability P (0 <= P < 1),
//!                                            scales the others by 1/(1-P); off in inference
//! dense    := 'dense:' N [ '/nobias' ]       fully connected, N outputs
//! res      := 'res(' spec [ '|' spec ] ')'   residual block: body(x) + shortcut(x)
//! ```
//!
//! A residual block adds its body's output to its input (an identity shortcut) or, after
//! `|`, to the output of its own shortcut layers. With no `|` and a body that changes the
//! shape (a stride, other channels), the shortcut is the projection `conv1x1:C/sS/nobias,bn`
//! (C the body's output channels, S the ratio of the input and output sizes), as in the
//! CIFAR ResNets; the network's canonical spec writes it out. A ReLU after the sum is a
//! `relu` after the block.
//!
//! A `flatten` is implied before the first `dense` that follows spatial layers (and counts
//! as a layer, as in PyTorch's `nn.Sequential`). The network ends in the logits: the last
//! layer must produce a flat vector, whose length is the number of classes.
//!
//! Presets end in a classifier sized to the data, `dense:N` for N classes, like
//! torchvision's `num_classes` ([`preset_spec`], [`resolve_arch`]):
//! `seednet` = `conv3x3:8,maxpool2,dense:N`;
//! `flowernet` = `conv3x3:16/p1,relu,maxpool2,conv3x3:32/p1,relu,maxpool2,conv3x3:64/p1,relu,maxpool2,dense:N`;
//! `resnet8` and `resnet20`, the CIFAR ResNets of He et al. (2016) with 1 and 3 basic
//! blocks per stage ([`resnet_body`]).
//! A preset name given where no class count is known ([`parse_spec`]) means N = 5, the
//! seed's five flowers ([`SEEDNET`], [`FLOWERNET`]).

mod parse;

pub use crate::layers::{format_spec, LayerSpec, DROPOUT_SCALE, MAX_SPEC_NUMBER};
pub use parse::parse_spec;

/// The seed's network on 1x50x50 inputs, for its 5 classes.
pub const SEEDNET: &str = "conv3x3:8,maxpool2,dense:5";
/// The RGB flower network on 3x64x64 inputs, for 5 classes.
pub const FLOWERNET: &str =
    "conv3x3:16/p1,relu,maxpool2,conv3x3:32/p1,relu,maxpool2,conv3x3:64/p1,relu,maxpool2,dense:5";

/// The preset names, in the order the help lists them.
pub const PRESETS: [&str; 4] = ["seednet", "flowernet", "resnet8", "resnet20"];

/// The preset names, in the order the help lists them.
pub fn preset_names() -> impl Iterator<Item = &'static str> {
    PRESETS.iter().copied()
}

/// A preset's layers before the classifier (`dense:N` is appended), `None` for other names.
fn preset_body(name: &str) -> Option<String> {
    match name {
        "seednet" => Some("conv3x3:8,maxpool2".into()),
        "flowernet" => {
            Some("conv3x3:16/p1,relu,maxpool2,conv3x3:32/p1,relu,maxpool2,conv3x3:64/p1,relu,maxpool2".into())
        }
        "resnet8" => Some(resnet_body(1)),
        "resnet20" => Some(resnet_body(3)),
        _ => None,
    }
}

/// The CIFAR ResNet of He et al. (2016) with `blocks` basic blocks per stage (depth
/// `6·blocks + 2`), up to its global average pooling: a 3x3 stem of 16 channels with batch
/// norm and ReLU, then stages of 16, 32 and 64 channels; each basic block is
/// `conv3x3 (no bias), bn, relu, conv3x3 (no bias), bn`, plus its shortcut, then a ReLU;
/// the first block of stages 2 and 3 has stride 2 and a `conv1x1 (stride 2, no bias), bn`
/// projection shortcut.
pub fn resnet_body(blocks: usize) -> String {
    let mut layers = vec!["conv3x3:16/p1/nobias,bn,relu".to_string()];
    for (stage, c) in [16, 32, 64].into_iter().enumerate() {
        for b in 0..blocks {
            let down = stage > 0 && b == 0;
            let s = if down { "/s2" } else { "" };
            let body = format!("conv3x3:{c}{s}/p1/nobias,bn,relu,conv3x3:{c}/p1/nobias,bn");
            let block = if down {
                format!("res({body}|conv1x1:{c}/s2/nobias,bn)")
            } else {
                format!("res({body})")
            };
            layers.push(block + ",relu");
        }
    }
    layers.push("gap".into());
    layers.join(",")
}

/// The spec of preset `name` (surrounding whitespace ignored) for a classifier of
/// `classes` classes: its body, then `dense:classes`. `None` when `name` is not a preset.
pub fn preset_spec(name: &str, classes: usize) -> Option<String> {
    preset_body(name.trim()).map(|body| format!("{body},dense:{classes}"))
}

/// `arch` as a spec for data of `classes` classes: a preset's spec sized to `classes`
/// ([`preset_spec`]), any other text (a spec) as it is.
pub fn resolve_arch(arch: &str, classes: usize) -> String {
    preset_spec(arch, classes).unwrap_or_else(|| arch.to_string())
}

/// The input a preset is made for, `(channels, size)`: seednet 1x50x50 grayscale,
/// flowernet 3x64x64, the ResNets 3x32x32 (CIFAR's). `None` for a spec.
pub fn preset_input(name: &str) -> Option<(usize, usize)> {
    match name.trim() {
        "seednet" => Some((1, 50)),
        "flowernet" => Some((3, 64)),
        "resnet8" | "resnet20" => Some((3, 32)),
        _ => None,
    }
}

/// Expands a preset name to its 5-class spec; any other text is returned as it is.
/// [`resolve_arch`] sizes a preset for another class count.
pub fn resolve_preset(name_or_spec: &str) -> std::borrow::Cow<'_, str> {
    match preset_spec(name_or_spec, 5) {
        Some(s) => s.into(),
        None => name_or_spec.into(),
    }
}

#[cfg(test)]
mod tests;
