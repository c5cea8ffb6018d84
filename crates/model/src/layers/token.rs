//! What every kind's token parser shares: numbers and options.

/// Largest size accepted for any single spec number (channels, kernel, stride, padding,
/// outputs): refused at parse time, before anything is allocated.
pub const MAX_SPEC_NUMBER: usize = 1 << 20;

/// A whole number in `1 ..= MAX_SPEC_NUMBER`; `what` names it in the error.
pub(crate) fn number(text: &str, what: &str) -> Result<usize, String> {
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

/// The token `head` of a kind without arguments or options (`relu`, `bn`, ...): `None`
/// for another head, an error when it has options.
pub(crate) fn bare<T>(head: &str, opts: &[&str], name: &str, spec: T) -> Option<Result<T, String>> {
    (head == name).then(|| match opts.first() {
        Some(o) => Err(format!("`{name}` takes no options, got `/{o}`")),
        None => Ok(spec),
    })
}
