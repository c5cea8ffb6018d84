//! The spec parser: text to [`LayerSpec`]s (the grammar is in the module above).

use super::resolve_preset;
use crate::error::SpecError;
use crate::layers::{LayerSpec, ResidualSpec, TOKENS, TOKEN_FORMS};

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

/// One layer's token: a residual block, or a kind's token (`layers::TOKENS`).
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
    TOKENS
        .iter()
        .find_map(|parse| parse(head, &opts))
        .unwrap_or_else(|| Err(format!("unknown layer `{head}` (expected {TOKEN_FORMS})")))
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
    Ok(LayerSpec::Residual(ResidualSpec { body, shortcut }))
}
