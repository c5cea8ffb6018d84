//! References of the training recipe's kernels: Nesterov SGD, AdamW and the
//! label-smoothed cross-entropy (equations in the parent module's table).
#![allow(clippy::needless_range_loop)]

use super::{softmax, CrossEntropy};

/// PyTorch's Nesterov SGD step: `d = g + wd·w; v = m·v + d; w -= lr·(d + m·v)`. Returns
/// the new `(w, v)`.
pub fn sgd_nesterov_step(
    lr: f64,
    momentum: f64,
    weight_decay: f64,
    w: &[f64],
    g: &[f64],
    v: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let (mut w2, mut v2) = (w.to_vec(), v.to_vec());
    for i in 0..w.len() {
        let d = g[i] + weight_decay * w[i];
        v2[i] = momentum * v[i] + d;
        w2[i] = w[i] - lr * (d + momentum * v2[i]);
    }
    (w2, v2)
}

/// PyTorch's AdamW step `t` (1-based): `w ·= 1 − lr·wd; m = β1 m + (1−β1) g;
/// v = β2 v + (1−β2) g²; w −= lr · (m / (1 − β1ᵗ)) / (√(v / (1 − β2ᵗ)) + eps)`. Returns
/// the new `(w, m, v)`.
#[allow(clippy::too_many_arguments)]
pub fn adamw_step(
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    t: u64,
    w: &[f64],
    g: &[f64],
    m: &[f64],
    v: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut w2, mut m2, mut v2) = (w.to_vec(), m.to_vec(), v.to_vec());
    let (bc1, bc2) = (1.0 - beta1.powi(t as i32), 1.0 - beta2.powi(t as i32));
    for i in 0..w.len() {
        let wd = w[i] * (1.0 - lr * weight_decay);
        m2[i] = beta1 * m[i] + (1.0 - beta1) * g[i];
        v2[i] = beta2 * v[i] + (1.0 - beta2) * g[i] * g[i];
        w2[i] = wd - lr * (m2[i] / bc1) / ((v2[i] / bc2).sqrt() + eps);
    }
    (w2, m2, v2)
}

/// PyTorch's `CrossEntropyLoss(label_smoothing = ε)` over logits `t` (`[labels.len(),
/// classes]`): target `q = (1 − ε)·onehot(c_n) + ε/K`, `L_n = −Σ_k q_k log p_k` with
/// `log p_k = t_k − m − log Σ exp(t − m)`, the mean over rows, and `dL/dt = (p − q) / B`.
/// `ε = 0` is [`super::softmax_cross_entropy`].
pub fn smoothed_cross_entropy(t: &[f64], labels: &[usize], classes: usize, eps: f64) -> CrossEntropy {
    let batch = labels.len();
    assert_eq!(t.len(), batch * classes);
    let probs = softmax(t, classes);
    let mut losses = vec![0.0; batch];
    let mut grad = vec![0.0; t.len()];
    let k = classes as f64;
    for n in 0..batch {
        let row = &t[n * classes..(n + 1) * classes];
        let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse: f64 = row.iter().map(|&v| (v - m).exp()).sum::<f64>().ln();
        let mut loss = 0.0;
        for i in 0..classes {
            let q = (1.0 - eps) * if i == labels[n] { 1.0 } else { 0.0 } + eps / k;
            loss -= q * (row[i] - m - lse);
            grad[n * classes + i] = (probs[n * classes + i] - q) / batch as f64;
        }
        losses[n] = loss;
    }
    let mean = losses.iter().sum::<f64>() / batch as f64;
    CrossEntropy {
        probs,
        losses,
        mean,
        grad,
    }
}
