//! Slow, obviously-correct `f64` references of every kernel, for tests and gradient checks.
//!
//! Each function is a straight nested loop over the kernel's defining equation, in `f64`,
//! allocating and returning its outputs. They share no code with the `f32` kernels: only
//! the shape structs are borrowed, and output sizes are recomputed here from the formulas
//! (so a wrong `out_h` in a shape method is caught by a test, not copied). Never use them
//! for speed: they are written to be read.
//!
//! Users: the kernel tests (`tests/common/reference.rs` re-exports this module) compare
//! every kernel against these; `petal-model`'s gradient checker differentiates a float64
//! forward pass built from them.
//!
//! Conventions as in the kernels: NCHW, batch first, contiguous; conv weight
//! `[out_c, in_c, kh, kw]`; dense weight `[out, in]`; argmax indices are positions
//! `row · w + col` within one `h x w` plane.
//!
//! | function | shapes | equation |
//! | --- | --- | --- |
//! | [`conv2d_forward`] | `x [n, in_c, h, w]` → `y [n, out_c, oh, ow]`, [`conv_out_hw`] | `y = b[o] + Σ_{c,u,v} W[o,c,u,v] x[n, c, i·s+u-p, j·s+v-p]` (padding reads 0) |
//! | [`conv2d_backward_weights`] | `x`, `dy` → `dW [out_c, in_c, kh, kw]`, `db [out_c]` | `dW = Σ_{n,i,j} dy · x[..]`, `db = Σ_{n,i,j} dy` |
//! | [`conv2d_backward_input`] | `W`, `dy` → `dx [n, in_c, h, w]` | `dx[n, c, i·s+u-p, j·s+v-p] += W · dy` |
//! | [`im2col`], [`col2im`] | one image `[in_c, h, w]` ↔ `[in_c·kh·kw, oh·ow]` | the conv's lowering and its adjoint |
//! | [`max_pool2d_forward`] | `x [n, c, h, w]` → `y`, `argmax [n, c, oh, ow]`, [`pool_out_hw`] | window max; first NaN, else first maximum in row-major order |
//! | [`max_pool2d_backward`] | `dy`, `argmax` → `dx [n, c, h, w]` | `dx[argmax] += dy` |
//! | [`dense_forward`] | `x [n, in]` → `y [n, out]` | `y = b[o] + Σ_i W[o, i] x[n, i]` |
//! | [`dense_backward`] | `x`, `W`, `dy` → `dW`, `db`, `dx` | `dW = dyᵀ x`, `db = Σ_n dy`, `dx = dy W` |
//! | [`relu_forward`], [`relu_backward`] | element-wise | `max(x, 0)` (NaN kept); `dy · [y > 0]` |
//! | [`softmax`] | `t [n, classes]` | `p = exp(t - m) / Σ exp(t - m)`, `m` the row max |
//! | [`softmax_cross_entropy`] | `t [n, classes]`, labels `[n]` → [`CrossEntropy`] | `L_n = log Σ exp(t - m) - (t[c_n] - m)`, mean, `dL/dt = (p - onehot) / n` |
//! | [`sgd_step`] | `w`, `g`, velocity | PyTorch's SGD: `d = g + wd·w; v = m·v + d; w -= lr·v` |
//! | [`sgd_nesterov_step`] | `w`, `g`, velocity | `d = g + wd·w; v = m·v + d; w -= lr·(d + m·v)` |
//! | [`adamw_step`] | `w`, `g`, `m`, `v`, step `t` | `w ·= 1 − lr·wd; m = β1 m + (1−β1) g; v = β2 v + (1−β2) g²; w −= lr·m̂/(√v̂ + eps)` |
//! | [`smoothed_cross_entropy`] | `t [n, classes]`, labels, ε | `q = (1−ε)·onehot + ε/K`; `L_n = −Σ_k q_k log p_k`; `dL/dt = (p − q) / n` |
//! | [`batch_norm_train`] | `x [n, c, hw]` → `y`, `mean [c]`, `var [c]` | `y = γ (x − mean) / sqrt(var + eps) + β`, batch statistics, `var` biased |
//! | [`batch_norm_eval`] | `x [n, c, hw]` → `y` | the same with running statistics |
//! | [`batch_norm_backward`] | `x`, `dy` → `dx`, `dγ`, `dβ` | `dx = γ/(N σ) (N dy − Σdy − x̂ Σ dy·x̂)` |
//! | [`avg_pool2d_forward`], [`avg_pool2d_backward`] | as max pooling | window mean; `dx += dy / k²` over each window |
//! | [`global_avg_pool_forward`], [`global_avg_pool_backward`] | `x [n, c, hw]` ↔ `y [n, c]` | plane mean; `dx = dy / hw` |
//! | [`dropout_forward`], [`dropout_backward`] | element-wise | `x / (1 − p)` where [`dropout_keep`](crate::dropout_keep), else 0 |
//! | [`add_forward`] | element-wise | `a + b`, then ReLU when `relu` |
#![allow(clippy::needless_range_loop)]

mod recipe;
pub use recipe::{adamw_step, sgd_nesterov_step, smoothed_cross_entropy};

use crate::{Conv2dShape, DenseShape, Pool2dShape};

// ---------------------------------------------------------------- convolution

/// `(oh, ow) = ((h + 2 pad - kh) / stride + 1, (w + 2 pad - kw) / stride + 1)`.
pub fn conv_out_hw(s: &Conv2dShape) -> (usize, usize) {
    (
        (s.h + 2 * s.pad - s.kh) / s.stride + 1,
        (s.w + 2 * s.pad - s.kw) / s.stride + 1,
    )
}

/// The input coordinate read by output coordinate `i` at tap `u`, or `None` in the padding.
fn src(i: usize, u: usize, stride: usize, pad: usize, len: usize) -> Option<usize> {
    let p = (i * stride + u) as isize - pad as isize;
    if p >= 0 && (p as usize) < len {
        Some(p as usize)
    } else {
        None
    }
}

/// Every tap of the convolution of one image with one output channel that reads inside the
/// image, in `(i, j, c, u, v)` order: `(q, r, p)` with `q = i·ow + j` the output position,
/// `r = (c·kh + u)·kw + v` the tap's index in `W[o]` (and its `im2col` row), and
/// `p = (c·h + iy)·w + ix` the input position it reads, `iy = i·s + u - pad`,
/// `ix = j·s + v - pad`. Taps in the padding read 0 and are left out.
fn taps(s: &Conv2dShape) -> Vec<(usize, usize, usize)> {
    let (oh, ow) = conv_out_hw(s);
    let mut out = Vec::new();
    for i in 0..oh {
        for j in 0..ow {
            for c in 0..s.in_c {
                for u in 0..s.kh {
                    for v in 0..s.kw {
                        if let (Some(iy), Some(ix)) =
                            (src(i, u, s.stride, s.pad, s.h), src(j, v, s.stride, s.pad, s.w))
                        {
                            out.push((i * ow + j, (c * s.kh + u) * s.kw + v, (c * s.h + iy) * s.w + ix));
                        }
                    }
                }
            }
        }
    }
    out
}

/// Values per output plane, per weight row `W[o]` and per input image.
fn conv_sizes(s: &Conv2dShape) -> (usize, usize, usize) {
    let (oh, ow) = conv_out_hw(s);
    (oh * ow, s.in_c * s.kh * s.kw, s.in_c * s.h * s.w)
}

/// `y[n, o, i, j] = b[o] + Σ_{c,u,v} W[o, c, u, v] · x[n, c, i·s + u - pad, j·s + v - pad]`,
/// summed from the bias in `(c, u, v)` order.
pub fn conv2d_forward(s: &Conv2dShape, x: &[f64], w: &[f64], b: Option<&[f64]>) -> Vec<f64> {
    let ((plane, k, image), taps) = (conv_sizes(s), taps(s));
    let mut y = vec![0.0; s.batch * s.out_c * plane];
    for n in 0..s.batch {
        for o in 0..s.out_c {
            let y = &mut y[(n * s.out_c + o) * plane..][..plane];
            y.fill(b.map_or(0.0, |b| b[o]));
            for &(q, r, p) in &taps {
                y[q] += w[o * k + r] * x[n * image + p];
            }
        }
    }
    y
}

/// `dW[o, c, u, v] = Σ_{n,i,j} dy[n, o, i, j] · x[n, c, i·s + u - pad, j·s + v - pad]` and
/// `db[o] = Σ_{n,i,j} dy[n, o, i, j]`.
pub fn conv2d_backward_weights(s: &Conv2dShape, x: &[f64], dy: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let ((plane, k, image), taps) = (conv_sizes(s), taps(s));
    let mut dw = vec![0.0; s.out_c * k];
    let mut db = vec![0.0; s.out_c];
    for n in 0..s.batch {
        for o in 0..s.out_c {
            let dy = &dy[(n * s.out_c + o) * plane..][..plane];
            for &g in dy {
                db[o] += g;
            }
            for &(q, r, p) in &taps {
                dw[o * k + r] += dy[q] * x[n * image + p];
            }
        }
    }
    (dw, db)
}

/// `dx[n, c, i·s + u - pad, j·s + v - pad] += W[o, c, u, v] · dy[n, o, i, j]` over all
/// `n, o, i, j, c, u, v` whose input position lies inside the image.
pub fn conv2d_backward_input(s: &Conv2dShape, w: &[f64], dy: &[f64]) -> Vec<f64> {
    let ((plane, k, image), taps) = (conv_sizes(s), taps(s));
    let mut dx = vec![0.0; s.batch * image];
    for n in 0..s.batch {
        for o in 0..s.out_c {
            for &(q, r, p) in &taps {
                dx[n * image + p] += dy[(n * s.out_c + o) * plane + q] * w[o * k + r];
            }
        }
    }
    dx
}

/// One image `[in_c, h, w]` to `col[(c·kh + u)·kw + v, i·ow + j]` (`[in_c·kh·kw, oh·ow]`),
/// zero where the tap reads padding.
pub fn im2col(s: &Conv2dShape, x: &[f64]) -> Vec<f64> {
    let (plane, k, _) = conv_sizes(s);
    let mut col = vec![0.0; k * plane];
    for (q, r, p) in taps(s) {
        col[r * plane + q] = x[p];
    }
    col
}

/// The adjoint of [`im2col`]: every `dcol` entry is added at the input position it read.
pub fn col2im(s: &Conv2dShape, dcol: &[f64]) -> Vec<f64> {
    let (plane, _, image) = conv_sizes(s);
    let mut dx = vec![0.0; image];
    for (q, r, p) in taps(s) {
        dx[p] += dcol[r * plane + q];
    }
    dx
}

// ---------------------------------------------------------------- max pooling

/// `(oh, ow) = ((h - k) / stride + 1, (w - k) / stride + 1)`.
pub fn pool_out_hw(s: &Pool2dShape) -> (usize, usize) {
    ((s.h - s.k) / s.stride + 1, (s.w - s.k) / s.stride + 1)
}

/// Max over each `k x k` window and the in-plane index `row · w + col` of the winner: the
/// first NaN of the window if it has one (NaN propagates), else the first position, in
/// row-major window order, that holds the window's maximum.
pub fn max_pool2d_forward(s: &Pool2dShape, x: &[f64]) -> (Vec<f64>, Vec<u32>) {
    let (oh, ow) = pool_out_hw(s);
    let mut y = vec![0.0; s.batch * s.c * oh * ow];
    let mut am = vec![0u32; y.len()];
    for p in 0..s.batch * s.c {
        let plane = &x[p * s.h * s.w..(p + 1) * s.h * s.w];
        for i in 0..oh {
            for j in 0..ow {
                // The window's in-plane positions, in row-major order.
                let window = || {
                    (0..s.k)
                        .flat_map(move |u| (0..s.k).map(move |v| (i * s.stride + u) * s.w + j * s.stride + v))
                };
                let winner = match window().find(|&idx| plane[idx].is_nan()) {
                    Some(idx) => idx,
                    None => {
                        let m = window().map(|idx| plane[idx]).fold(f64::NEG_INFINITY, f64::max);
                        window()
                            .find(|&idx| plane[idx] == m)
                            .expect("max is in the window")
                    }
                };
                y[(p * oh + i) * ow + j] = plane[winner];
                am[(p * oh + i) * ow + j] = winner as u32;
            }
        }
    }
    (y, am)
}

/// `dx[n, c, argmax[n, c, i, j]] += dy[n, c, i, j]`, zero elsewhere.
pub fn max_pool2d_backward(s: &Pool2dShape, dy: &[f64], argmax: &[u32]) -> Vec<f64> {
    let (oh, ow) = pool_out_hw(s);
    let mut dx = vec![0.0; s.batch * s.c * s.h * s.w];
    for p in 0..s.batch * s.c {
        for q in 0..oh * ow {
            dx[p * s.h * s.w + argmax[p * oh * ow + q] as usize] += dy[p * oh * ow + q];
        }
    }
    dx
}

// ---------------------------------------------------------------- dense

/// `y[n, o] = b[o] + Σ_i W[o, i] · x[n, i]` (the dot product summed in `i` order, then
/// the bias added).
pub fn dense_forward(s: &DenseShape, x: &[f64], w: &[f64], b: Option<&[f64]>) -> Vec<f64> {
    let mut y = vec![0.0; s.batch * s.outputs];
    for n in 0..s.batch {
        for o in 0..s.outputs {
            let dot: f64 = (0..s.inputs)
                .map(|i| w[o * s.inputs + i] * x[n * s.inputs + i])
                .sum();
            y[n * s.outputs + o] = b.map_or(0.0, |b| b[o]) + dot;
        }
    }
    y
}

/// `(dW, db, dx)`: `dW[o, i] = Σ_n dy[n, o] x[n, i]`, `db[o] = Σ_n dy[n, o]`,
/// `dx[n, i] = Σ_o dy[n, o] W[o, i]`.
pub fn dense_backward(s: &DenseShape, x: &[f64], w: &[f64], dy: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut dw = vec![0.0; s.outputs * s.inputs];
    let mut db = vec![0.0; s.outputs];
    let mut dx = vec![0.0; s.batch * s.inputs];
    for n in 0..s.batch {
        for o in 0..s.outputs {
            let g = dy[n * s.outputs + o];
            db[o] += g;
            for i in 0..s.inputs {
                dw[o * s.inputs + i] += g * x[n * s.inputs + i];
                dx[n * s.inputs + i] += g * w[o * s.inputs + i];
            }
        }
    }
    (dw, db, dx)
}

// ---------------------------------------------------------------- ReLU

/// `max(x, 0)`, NaN kept.
pub fn relu_forward(x: &[f64]) -> Vec<f64> {
    x.iter()
        .map(|&v| if v.is_nan() || v > 0.0 { v } else { 0.0 })
        .collect()
}

/// `dy` where `y > 0`, else 0 (derivative 0 at the kink, and where `y` is NaN).
pub fn relu_backward(y: &[f64], dy: &[f64]) -> Vec<f64> {
    y.iter()
        .zip(dy)
        .map(|(&y, &g)| if y > 0.0 { g } else { 0.0 })
        .collect()
}

// ---------------------------------------------------------------- softmax

/// Row-wise `p_i = exp(t_i - m) / Σ_k exp(t_k - m)`, `m` the row max.
pub fn softmax(t: &[f64], classes: usize) -> Vec<f64> {
    let mut p = vec![0.0; t.len()];
    for n in 0..t.len() / classes {
        let row = &t[n * classes..(n + 1) * classes];
        let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|&v| (v - m).exp()).sum();
        for i in 0..classes {
            p[n * classes + i] = (row[i] - m).exp() / sum;
        }
    }
    p
}

/// Softmax cross-entropy, everything the fused kernel writes.
#[derive(Clone, Debug, PartialEq)]
pub struct CrossEntropy {
    /// [`softmax`] of the logits.
    pub probs: Vec<f64>,
    /// `L_n = -log p[n, c_n] = log Σ_k exp(t[n, k] - m) - (t[n, c_n] - m)`.
    pub losses: Vec<f64>,
    /// `(1/B) Σ_n L_n`.
    pub mean: f64,
    /// `(p[n, i] - [i == c_n]) / B`.
    pub grad: Vec<f64>,
}

/// Probabilities, per-row losses, their mean and `dL/dt` of the mean loss for logits `t`
/// (`[labels.len(), classes]`) and the class index of each row.
pub fn softmax_cross_entropy(t: &[f64], labels: &[usize], classes: usize) -> CrossEntropy {
    let batch = labels.len();
    assert_eq!(t.len(), batch * classes);
    let probs = softmax(t, classes);
    let mut losses = vec![0.0; batch];
    let mut grad = vec![0.0; t.len()];
    for n in 0..batch {
        let row = &t[n * classes..(n + 1) * classes];
        let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse: f64 = row.iter().map(|&v| (v - m).exp()).sum::<f64>().ln();
        losses[n] = lse - (row[labels[n]] - m);
        for i in 0..classes {
            let onehot = if i == labels[n] { 1.0 } else { 0.0 };
            grad[n * classes + i] = (probs[n * classes + i] - onehot) / batch as f64;
        }
    }
    let mean = losses.iter().sum::<f64>() / batch as f64;
    CrossEntropy {
        probs,
        losses,
        mean,
        grad,
    }
}

// ---------------------------------------------------------------- SGD

/// PyTorch's SGD step: `d = g + wd·w; v = m·v + d; w -= lr·v`. `velocity: None` means no
/// momentum buffer (`momentum` must be 0 then): `w -= lr·d`. Returns the new `(w, v)`.
pub fn sgd_step(
    lr: f64,
    momentum: f64,
    weight_decay: f64,
    w: &[f64],
    g: &[f64],
    velocity: Option<&[f64]>,
) -> (Vec<f64>, Option<Vec<f64>>) {
    let mut w2 = w.to_vec();
    match velocity {
        None => {
            assert_eq!(momentum, 0.0, "no velocity needs momentum 0");
            for i in 0..w.len() {
                let d = g[i] + weight_decay * w[i];
                w2[i] = w[i] - lr * d;
            }
            (w2, None)
        }
        Some(v) => {
            let mut v2 = v.to_vec();
            for i in 0..w.len() {
                let d = g[i] + weight_decay * w[i];
                v2[i] = momentum * v[i] + d;
                w2[i] = w[i] - lr * v2[i];
            }
            (w2, Some(v2))
        }
    }
}

// ---------------------------------------------------------------- batch norm

/// Per-channel mean and biased variance of `x [batch, c, hw]` (two passes).
fn channel_stats(x: &[f64], batch: usize, c: usize, hw: usize) -> (Vec<f64>, Vec<f64>) {
    let count = (batch * hw) as f64;
    let mut mean = vec![0.0; c];
    let mut var = vec![0.0; c];
    for ch in 0..c {
        let values = || (0..batch).flat_map(move |n| (0..hw).map(move |i| x[(n * c + ch) * hw + i]));
        mean[ch] = values().sum::<f64>() / count;
        var[ch] = values().map(|v| (v - mean[ch]) * (v - mean[ch])).sum::<f64>() / count;
    }
    (mean, var)
}

/// `y[n, ch, i] = γ[ch] (x − mean[ch]) / sqrt(var[ch] + eps) + β[ch]`.
#[allow(clippy::too_many_arguments)]
fn batch_norm_with(
    x: &[f64],
    batch: usize,
    c: usize,
    hw: usize,
    gamma: &[f64],
    beta: &[f64],
    mean: &[f64],
    var: &[f64],
    eps: f64,
) -> Vec<f64> {
    let mut y = vec![0.0; batch * c * hw];
    for n in 0..batch {
        for ch in 0..c {
            for i in 0..hw {
                let p = (n * c + ch) * hw + i;
                y[p] = gamma[ch] * (x[p] - mean[ch]) / (var[ch] + eps).sqrt() + beta[ch];
            }
        }
    }
    y
}

/// Training-mode batch norm of `x [batch, c, hw]`: returns `(y, mean, var)` with the batch
/// statistics (`var` biased, `Σ (x − mean)² / N`, `N = batch · hw`) and
/// `y = γ (x − mean) / sqrt(var + eps) + β`.
pub fn batch_norm_train(
    x: &[f64],
    batch: usize,
    c: usize,
    hw: usize,
    gamma: &[f64],
    beta: &[f64],
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mean, var) = channel_stats(x, batch, c, hw);
    let y = batch_norm_with(x, batch, c, hw, gamma, beta, &mean, &var, eps);
    (y, mean, var)
}

/// Inference-mode batch norm: `y = γ (x − running_mean) / sqrt(running_var + eps) + β`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_eval(
    x: &[f64],
    batch: usize,
    c: usize,
    hw: usize,
    gamma: &[f64],
    beta: &[f64],
    running_mean: &[f64],
    running_var: &[f64],
    eps: f64,
) -> Vec<f64> {
    batch_norm_with(x, batch, c, hw, gamma, beta, running_mean, running_var, eps)
}

/// Training-mode batch norm backward (batch statistics, which depend on `x`): returns
/// `(dx, dγ, dβ)` with `σ = sqrt(var + eps)`, `x̂ = (x − mean) / σ`, `dβ = Σ dy`,
/// `dγ = Σ dy·x̂` and `dx = γ / (N σ) · (N dy − Σ dy − x̂ Σ dy·x̂)`.
pub fn batch_norm_backward(
    x: &[f64],
    batch: usize,
    c: usize,
    hw: usize,
    gamma: &[f64],
    eps: f64,
    dy: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mean, var) = channel_stats(x, batch, c, hw);
    let count = (batch * hw) as f64;
    let mut dx = vec![0.0; x.len()];
    let mut dgamma = vec![0.0; c];
    let mut dbeta = vec![0.0; c];
    for ch in 0..c {
        let sigma = (var[ch] + eps).sqrt();
        let idx = || (0..batch).flat_map(move |n| (0..hw).map(move |i| (n * c + ch) * hw + i));
        for p in idx() {
            dbeta[ch] += dy[p];
            dgamma[ch] += dy[p] * (x[p] - mean[ch]) / sigma;
        }
        for p in idx() {
            let xhat = (x[p] - mean[ch]) / sigma;
            dx[p] = gamma[ch] / (count * sigma) * (count * dy[p] - dbeta[ch] - xhat * dgamma[ch]);
        }
    }
    (dx, dgamma, dbeta)
}

// ---------------------------------------------------------------- average pooling

/// `y[n, c, i, j] = Σ_{u, v < k} x[n, c, i·s + u, j·s + v] / k²`.
pub fn avg_pool2d_forward(s: &Pool2dShape, x: &[f64]) -> Vec<f64> {
    let (oh, ow) = pool_out_hw(s);
    let mut y = vec![0.0; s.batch * s.c * oh * ow];
    for p in 0..s.batch * s.c {
        for i in 0..oh {
            for j in 0..ow {
                let mut acc = 0.0;
                for u in 0..s.k {
                    for v in 0..s.k {
                        acc += x[(p * s.h + i * s.stride + u) * s.w + j * s.stride + v];
                    }
                }
                y[(p * oh + i) * ow + j] = acc / (s.k * s.k) as f64;
            }
        }
    }
    y
}

/// `dx[n, c, i·s + u, j·s + v] += dy[n, c, i, j] / k²` over every window; 0 elsewhere.
pub fn avg_pool2d_backward(s: &Pool2dShape, dy: &[f64]) -> Vec<f64> {
    let (oh, ow) = pool_out_hw(s);
    let mut dx = vec![0.0; s.batch * s.c * s.h * s.w];
    for p in 0..s.batch * s.c {
        for i in 0..oh {
            for j in 0..ow {
                for u in 0..s.k {
                    for v in 0..s.k {
                        dx[(p * s.h + i * s.stride + u) * s.w + j * s.stride + v] +=
                            dy[(p * oh + i) * ow + j] / (s.k * s.k) as f64;
                    }
                }
            }
        }
    }
    dx
}

/// `y[n, c] = Σ_i x[n, c, i] / hw`.
pub fn global_avg_pool_forward(batch: usize, c: usize, hw: usize, x: &[f64]) -> Vec<f64> {
    (0..batch * c)
        .map(|p| x[p * hw..(p + 1) * hw].iter().sum::<f64>() / hw as f64)
        .collect()
}

/// `dx[n, c, i] = dy[n, c] / hw`.
pub fn global_avg_pool_backward(batch: usize, c: usize, hw: usize, dy: &[f64]) -> Vec<f64> {
    (0..batch * c * hw).map(|q| dy[q / hw] / hw as f64).collect()
}

// ---------------------------------------------------------------- dropout, residual add

/// `y[i] = x[i] / (1 − p)` where `dropout_keep(seed, first + i, p)`, else 0.
pub fn dropout_forward(seed: u64, p: f32, first: u64, x: &[f64]) -> Vec<f64> {
    (0..x.len())
        .map(|i| {
            if crate::dropout_keep(seed, first.wrapping_add(i as u64), p) {
                x[i] / (1.0 - p as f64)
            } else {
                0.0
            }
        })
        .collect()
}

/// `dx[i] = dy[i] / (1 − p)` where kept, else 0: the forward's mask.
pub fn dropout_backward(seed: u64, p: f32, first: u64, dy: &[f64]) -> Vec<f64> {
    dropout_forward(seed, p, first, dy)
}

/// `a + b`, then `max(·, 0)` (NaN kept) when `relu`.
pub fn add_forward(a: &[f64], b: &[f64], relu: bool) -> Vec<f64> {
    let sum: Vec<f64> = a.iter().zip(b).map(|(x, y)| x + y).collect();
    if relu {
        relu_forward(&sum)
    } else {
        sum
    }
}
