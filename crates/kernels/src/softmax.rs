//! Softmax and the fused softmax cross-entropy loss with its gradient.
//!
//! Shapes: logits `t` `[batch, classes]`, labels `c` `[batch]`, probabilities `p`
//! `[batch, classes]`, per-sample losses `[batch]`.
//!
//! Forward (the seed's eq. 1, 2, 4): `p[n, i] = exp(t[n, i]) / Σ_k exp(t[n, k])`, computed
//! as `exp(t - max) / Σ exp(t - max)` so no exponential overflows, and
//! `L_n = -log p[n, c_n] = log Σ_k exp(t[n, k] - m) - (t[n, c_n] - m)` with `m = max_k t[n, k]`,
//! which stays finite even when `p[n, c_n]` underflows to 0. The loss is the mean
//! `L = (1/B) Σ_n L_n`.
//!
//! Gradient with respect to the logits (the seed's eq. 3, 7 and 9, by the chain rule):
//! with `out = p[n, ·]` and the true class `c`, eq. (3) gives `∂L_n/∂out(c) = -1 / p_c`
//! (and 0 for the other outputs), so only `out(c)` carries gradient. Eq. (9) gives
//! `∂out(c)/∂t_c = p_c (1 - p_c)` and eq. (7) gives `∂out(c)/∂t_i = -p_c p_i` for `i ≠ c`.
//! Multiplying:
//! - `i = c`: `(-1/p_c) · p_c (1 - p_c) = p_c - 1`,
//! - `i ≠ c`: `(-1/p_c) · (-p_c p_i) = p_i`,
//!
//! that is `∂L_n/∂t[n, i] = p[n, i] - onehot(c_n)[i]`; the mean over the batch divides by
//! `B`: `∂L/∂t[n, i] = (p[n, i] - onehot(c_n)[i]) / B`. The fused form never divides by
//! `p_c`, so it is exact where the unfused eq. (3) would divide by an underflowed 0.
//!
//! Label smoothing (PyTorch's `CrossEntropyLoss(label_smoothing = ε)`): the target is the
//! distribution `q_i = (1 − ε)·onehot(c)[i] + ε/K` over the `K` classes instead of the one-hot,
//! and `L_n = −Σ_i q_i log p_i`. With `log p_i = t_i − m − log Σ_k exp(t_k − m)` this is
//! `L_n = (1 − ε)·(−log p_c) + ε · (1/K) Σ_i (−log p_i)` (PyTorch's form: the one-hot loss
//! plus ε times the mean over classes). Its gradient: `∂(−log p_j)/∂t_i = p_i − [i = j]`
//! (the derivation above with `j` for `c`), so by linearity
//! `∂L_n/∂t_i = Σ_j q_j (p_i − [i = j]) = p_i Σ_j q_j − q_i = p_i − q_i` (since `Σ_j q_j = 1`),
//! and over the batch mean `∂L/∂t[n, i] = (p[n, i] − q_n[i]) / B`. ε = 0 gives back the
//! one-hot loss and gradient; [`smoothed_cross_entropy_rows`] then calls the one-hot code.

/// A label that names no class.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("label {label} of sample {sample} is out of range: there are {classes} classes (0..{classes})")]
pub struct LabelError {
    pub sample: usize,
    pub label: usize,
    pub classes: usize,
}

fn check_shapes(what: &str, logits: usize, classes: usize, out: &[(&str, usize, usize)]) -> usize {
    assert!(classes > 0, "{what}: classes must be at least 1");
    assert!(
        logits % classes == 0,
        "{what}: logits has {logits} values, not a multiple of {classes} classes"
    );
    let batch = logits / classes;
    for &(name, got, per) in out {
        assert!(
            got == batch * per,
            "{what}: {name} has {got} values, expected {}",
            batch * per
        );
    }
    batch
}

/// Softmax of one row into `p`; returns `log Σ exp(t - max)` and `max`.
#[inline]
fn softmax_row(t: &[f32], p: &mut [f32]) -> (f32, f32) {
    let m = t.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for (pi, &ti) in p.iter_mut().zip(t) {
        *pi = (ti - m).exp();
        sum += *pi;
    }
    let inv = 1.0 / sum;
    for pi in p.iter_mut() {
        *pi *= inv;
    }
    (sum.ln(), m)
}

/// Softmax over the last axis: `probs[n, i] = exp(t[n, i] - m_n) / Σ_k exp(t[n, k] - m_n)`.
pub fn softmax_forward(logits: &[f32], classes: usize, probs: &mut [f32]) {
    check_shapes(
        "softmax_forward",
        logits.len(),
        classes,
        &[("probs", probs.len(), classes)],
    );
    for (t, p) in logits.chunks_exact(classes).zip(probs.chunks_exact_mut(classes)) {
        softmax_row(t, p);
    }
}

/// Fused softmax cross-entropy, forward and backward in one pass (module docs derive it).
///
/// Writes `probs` (`[batch, classes]`), `losses` (`[batch]`, `L_n`) and `grad_logits`
/// (`[batch, classes]`, `(p - onehot) / batch`), and returns the mean loss. Labels are
/// checked first: an out-of-range label returns [`LabelError`] and writes nothing.
///
/// The classes axis is short (5 for the seed's flowers), so each row is a scalar loop;
/// the mean is summed in f64 in sample order.
pub fn softmax_cross_entropy(
    logits: &[f32],
    labels: &[usize],
    classes: usize,
    probs: &mut [f32],
    losses: &mut [f32],
    grad_logits: &mut [f32],
) -> Result<f32, LabelError> {
    let batch = logits.len() / classes.max(1);
    softmax_cross_entropy_rows(
        logits,
        labels,
        classes,
        1.0 / batch as f32,
        probs,
        losses,
        grad_logits,
    )?;
    Ok(mean_loss(losses))
}

/// [`softmax_cross_entropy`] on some rows of a larger batch (one task's share): writes
/// `probs`, `losses` and `grad_logits = (p - onehot) · grad_scale` for these rows, where
/// `grad_scale` is `1 / B` for the mean over the whole batch of `B` samples. The mean loss
/// is then [`mean_loss`] of all the batch's `losses`. Labels are checked first, as there.
pub fn softmax_cross_entropy_rows(
    logits: &[f32],
    labels: &[usize],
    classes: usize,
    grad_scale: f32,
    probs: &mut [f32],
    losses: &mut [f32],
    grad_logits: &mut [f32],
) -> Result<(), LabelError> {
    check_shapes(
        "softmax_cross_entropy",
        logits.len(),
        classes,
        &[
            ("labels", labels.len(), 1),
            ("probs", probs.len(), classes),
            ("losses", losses.len(), 1),
            ("grad_logits", grad_logits.len(), classes),
        ],
    );
    check_labels(labels, classes)?;
    for ((((t, p), g), &c), loss) in logits
        .chunks_exact(classes)
        .zip(probs.chunks_exact_mut(classes))
        .zip(grad_logits.chunks_exact_mut(classes))
        .zip(labels)
        .zip(losses.iter_mut())
    {
        *loss = row_loss(t, p, c);
        for (gi, &pi) in g.iter_mut().zip(p.iter()) {
            *gi = pi * grad_scale;
        }
        g[c] = (p[c] - 1.0) * grad_scale;
    }
    Ok(())
}

/// [`softmax_cross_entropy_rows`] with label smoothing `smoothing` (ε, in `[0, 1]`):
/// writes `probs`, `losses` (`(1 − ε)·(−log p_c) + ε·mean_i(−log p_i)`) and
/// `grad_logits = (p − q) · grad_scale` with `q = (1 − ε)·onehot + ε/K` (module docs derive
/// it). `smoothing == 0` runs [`softmax_cross_entropy_rows`] itself, bit for bit.
#[allow(clippy::too_many_arguments)]
pub fn smoothed_cross_entropy_rows(
    logits: &[f32],
    labels: &[usize],
    classes: usize,
    smoothing: f32,
    grad_scale: f32,
    probs: &mut [f32],
    losses: &mut [f32],
    grad_logits: &mut [f32],
) -> Result<(), LabelError> {
    if smoothing == 0.0 {
        return softmax_cross_entropy_rows(logits, labels, classes, grad_scale, probs, losses, grad_logits);
    }
    check_shapes(
        "smoothed_cross_entropy",
        logits.len(),
        classes,
        &[
            ("labels", labels.len(), 1),
            ("probs", probs.len(), classes),
            ("losses", losses.len(), 1),
            ("grad_logits", grad_logits.len(), classes),
        ],
    );
    check_labels(labels, classes)?;
    let off = smoothing / classes as f32;
    let on = 1.0 - smoothing + off;
    for ((((t, p), g), &c), loss) in logits
        .chunks_exact(classes)
        .zip(probs.chunks_exact_mut(classes))
        .zip(grad_logits.chunks_exact_mut(classes))
        .zip(labels)
        .zip(losses.iter_mut())
    {
        let (log_sum, m) = softmax_row(t, p);
        let nll = log_sum - (t[c] - m);
        let all: f32 = t.iter().map(|&ti| log_sum - (ti - m)).sum();
        *loss = (1.0 - smoothing) * nll + smoothing * (all / classes as f32);
        for (gi, &pi) in g.iter_mut().zip(p.iter()) {
            *gi = (pi - off) * grad_scale;
        }
        g[c] = (p[c] - on) * grad_scale;
    }
    Ok(())
}

/// The mean of per-sample losses, summed in f64 in sample order (the value
/// [`softmax_cross_entropy`] returns).
pub fn mean_loss(losses: &[f32]) -> f32 {
    let total: f64 = losses.iter().map(|&l| l as f64).sum();
    (total / losses.len() as f64) as f32
}

/// Softmax cross-entropy forward only (validation): writes `probs` (`[batch, classes]`) and
/// returns the mean loss, the same value [`softmax_cross_entropy`] returns, without a
/// gradient. Labels are checked first, as there.
pub fn softmax_cross_entropy_loss(
    logits: &[f32],
    labels: &[usize],
    classes: usize,
    probs: &mut [f32],
) -> Result<f32, LabelError> {
    let batch = check_shapes(
        "softmax_cross_entropy_loss",
        logits.len(),
        classes,
        &[("labels", labels.len(), 1), ("probs", probs.len(), classes)],
    );
    check_labels(labels, classes)?;
    let mut total = 0.0f64;
    for ((t, p), &c) in logits
        .chunks_exact(classes)
        .zip(probs.chunks_exact_mut(classes))
        .zip(labels)
    {
        total += row_loss(t, p, c) as f64;
    }
    Ok((total / batch as f64) as f32)
}

fn check_labels(labels: &[usize], classes: usize) -> Result<(), LabelError> {
    match labels.iter().enumerate().find(|(_, &l)| l >= classes) {
        Some((sample, &label)) => Err(LabelError {
            sample,
            label,
            classes,
        }),
        None => Ok(()),
    }
}

/// Softmax of one row into `p` and its loss `-log p_c = log Σ exp(t - m) - (t_c - m)`.
#[inline]
fn row_loss(t: &[f32], p: &mut [f32], c: usize) -> f32 {
    let (log_sum, m) = softmax_row(t, p);
    log_sum - (t[c] - m)
}
