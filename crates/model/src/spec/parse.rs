//! The spec parser: text to [`LayerSpec`]s (the grammar is in the module above).

use super::{resolve_preset, LayerSpec, DROPOUT_SCALE, MAX_SPEC_NUMBER};
use crate::error::SpecError;

/// Deepest nesting of residual blocks accepted (a spec from outside cannot recurse without
/// bound).
const MAX_DEPTH: usize = 8;

/// Parses a spec string (or a preset name) into its layers (module docs give the grammar).
/// Errors name the top-level layer (1-based position) and, inside a residual block, the
/// inner layer at fault.
pub fn parse_spec(spec: &str) -> Result<Vec<LayerSpec>, SpecError> {
    let spec = resolve_preset(spec);
    if spec.trim().is_empty() {
        return Err(SpecError {
            position: 1,
            layer: String::new(),
            reason: "the spec is empty".into(),
        });
    }
    let tokens = split_top(&spec, ',').map_err(|(position, reason)| SpecError {
        position,
        layer: spec.trim().to_string(),
        reason,
    })?;
    tokens
        .iter()
        .enumerate()
        .map(|(i, tok)| {
            parse_layer(tok.trim(), 0).map_err(|reason| SpecError {
                position: i + 1,
                layer: tok.trim().to_string(),
                reason,
            })
        })
        .collect()
}

/// Splits `text` at the `sep` characters outside parentheses. An unbalanced parenthesis is
/// an error with the 1-based index of the piece holding it.
fn split_top(text: &str, sep: char) -> Result<Vec<&str>, (usize, String)> {
    let (mut depth, mut start, mut pieces) = (0usize, 0, Vec::new());
    for (i, ch) in text.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or((pieces.len() + 1, "a `)` closes no `(`".to_string()))?;
            }
            c if c == sep && depth == 0 => {
                pieces.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err((pieces.len() + 1, "a `(` is not closed".into()));
    }
    pieces.push(&text[start..]);
    Ok(pieces)
}

/// A list of layers inside a residual block (`what`: "body" or "shortcut").
fn parse_list(text: &str, depth: usize, what: &str) -> Result<Vec<LayerSpec>, String> {
    if text.trim().is_empty() {
        return Err(format!("the block's {what} is empty"));
    }
    let tokens = split_top(text, ',').map_err(|(_, r)| r)?;
    tokens
        .iter()
        .enumerate()
        .map(|(i, tok)| {
            parse_layer(tok.trim(), depth)
                .map_err(|r| format!("{what} layer {} `{}`: {r}", i + 1, tok.trim()))
        })
        .collect()
}

fn parse_layer(tok: &str, depth: usize) -> Result<LayerSpec, String> {
    if tok.is_empty() {
        return Err("empty layer (two commas in a row, or a trailing comma?)".into());
    }
    if let Some(inner) = tok.strip_prefix("res") {
        return parse_residual(inner.trim(), depth);
    }
    let mut parts = tok.split('/').map(str::trim);
    let head = parts.next().unwrap_or_default();
    let opts: Vec<&str> = parts.collect();
    let no_opts = |name: &str| -> Result<(), String> {
        match opts.first() {
            Some(o) => Err(format!("`{name}` takes no options, got `/{o}`")),
            None => Ok(()),
        }
    };
    if let Some(rest) = head.strip_prefix("conv") {
        return parse_conv(rest, &opts);
    }
    for (name, max) in [("maxpool", true), ("avgpool", false)] {
        if let Some(rest) = head.strip_prefix(name) {
            if rest.is_empty() {
                return Err(format!("a pool needs its window size: `{name}2`"));
            }
            let k = number(rest, "pool size")?;
            let mut stride = k;
            for o in &opts {
                match o.strip_prefix('s') {
                    Some(v) => stride = number(v, "stride")?,
                    None => return Err(format!("unknown {name} option `/{o}` (expected /sN)")),
                }
            }
            return Ok(if max {
                LayerSpec::MaxPool2d { k, stride }
            } else {
                LayerSpec::AvgPool2d { k, stride }
            });
        }
    }
    if let Some(out) = head.strip_prefix("dense:") {
        let out = number(out, "outputs")?;
        let mut bias = true;
        for o in &opts {
            if *o == "nobias" {
                bias = false;
            } else {
                return Err(format!("unknown dense option `/{o}` (expected /nobias)"));
            }
        }
        return Ok(LayerSpec::Dense { out, bias });
    }
    if let Some(p) = head.strip_prefix("dropout:") {
        no_opts("dropout")?;
        return parse_dropout(p);
    }
    match head {
        "relu" => no_opts("relu").map(|_| LayerSpec::Relu),
        "bn" => no_opts("bn").map(|_| LayerSpec::BatchNorm),
        "gap" => no_opts("gap").map(|_| LayerSpec::GlobalAvgPool),
        "flatten" => no_opts("flatten").map(|_| LayerSpec::Flatten),
        "dense" => Err("a dense layer needs its outputs: `dense:5`".into()),
        "dropout" => Err("a dropout needs its probability: `dropout:0.5`".into()),
        _ => Err(format!(
            "unknown layer `{head}` (expected convKxK:N, maxpoolK, avgpoolK, relu, bn, gap, dropout:P, flatten, dense:N or res(...))"
        )),
    }
}

/// A whole number in `1 ..= MAX_SPEC_NUMBER`.
fn number(text: &str, what: &str) -> Result<usize, String> {
    let n: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("{what} `{text}` is not a whole number"))?;
    if n == 0 {
        return Err(format!("{what} must be at least 1"));
    }
    if n > MAX_SPEC_NUMBER {
        return Err(format!("{what} {n} is larger than the limit {MAX_SPEC_NUMBER}"));
    }
    Ok(n)
}

fn parse_conv(rest: &str, opts: &[&str]) -> Result<LayerSpec, String> {
    let (kernel, out) = rest
        .split_once(':')
        .ok_or("a conv needs its output channels: `conv3x3:8`")?;
    let (kh, kw) = match kernel.split_once('x') {
        Some((a, b)) => (number(a, "kernel height")?, number(b, "kernel width")?),
        None if kernel.is_empty() => return Err("a conv needs its kernel size: `conv3x3:8`".into()),
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
        } else if *o == "nobias" {
            bias = false;
        } else if let Some(v) = o.strip_prefix('p') {
            pad = if v == "0" { 0 } else { number(v, "padding")? };
        } else {
            return Err(format!(
                "unknown conv option `/{o}` (expected /sN, /pN or /nobias)"
            ));
        }
    }
    Ok(LayerSpec::Conv2d {
        out_c,
        kh,
        kw,
        stride,
        pad,
        bias,
    })
}

/// `P` of `dropout:P`: a decimal in `[0, 1)`, kept to millionths.
fn parse_dropout(text: &str) -> Result<LayerSpec, String> {
    let p: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("dropout probability `{text}` is not a number"))?;
    if !(0.0..1.0).contains(&p) {
        return Err(format!("dropout probability {p} is not in [0, 1)"));
    }
    let p = (p * DROPOUT_SCALE as f64).round() as u32;
    Ok(LayerSpec::Dropout {
        p: p.min(DROPOUT_SCALE - 1),
    })
}

/// `(body)` or `(body|shortcut)` after `res`.
fn parse_residual(inner: &str, depth: usize) -> Result<LayerSpec, String> {
    let inner = inner
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or("a residual block is `res(layers)` or `res(layers|shortcut layers)`")?;
    if depth + 1 > MAX_DEPTH {
        return Err(format!("residual blocks nest deeper than {MAX_DEPTH}"));
    }
    let halves = split_top(inner, '|').map_err(|(_, r)| r)?;
    let (body, shortcut) = match halves[..] {
        [body] => (parse_list(body, depth + 1, "body")?, Vec::new()),
        [body, shortcut] => (
            parse_list(body, depth + 1, "body")?,
            parse_list(shortcut, depth + 1, "shortcut")?,
        ),
        _ => return Err("a residual block has at most one `|`".into()),
    };
    Ok(LayerSpec::Residual { body, shortcut })
}
