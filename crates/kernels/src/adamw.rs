//! AdamW (PyTorch's `torch.optim.AdamW`, `amsgrad=False`): Adam with decoupled weight decay.
//!
//! At step `t` (1 for the first step), for each parameter `w` with gradient `g`, first
//! moment `m` and second moment `v` (both zero at the start):
//!
//! - `w = w · (1 − lr · weight_decay)` (decoupled decay, before the Adam step),
//! - `m = β1 · m + (1 − β1) · g` (PyTorch's `lerp(m, g, 1 − β1)`: `m + (1 − β1)(g − m)`),
//! - `v = β2 · v + (1 − β2) · g²`,
//! - `m̂ = m / (1 − β1ᵗ)`, `v̂ = v / (1 − β2ᵗ)`,
//! - `w = w − lr · m̂ / (√v̂ + eps)`.
//!
//! As in PyTorch's single-tensor path, the bias corrections are computed once per step in
//! f64 and applied as `step_size = lr / (1 − β1ᵗ)` and
//! `denom = √v / √(1 − β2ᵗ) + eps`, so `w = w − step_size · m / denom`.

use crate::simd::{fma, LANES};
use crate::vector::Vector;
use rayon::prelude::*;
use wide::f32x8;

/// Values per rayon task; element-wise, so the grouping never changes results.
const BLOCK: usize = 1 << 14;

/// AdamW hyper-parameters. [`AdamWConfig::torch_default`] gives PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl AdamWConfig {
    /// PyTorch's defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.01.
    pub fn torch_default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// One AdamW step `t` (1-based) over a flat parameter tensor (module docs give the rule).
///
/// `params`, `grads`, `exp_avg` (`m`) and `exp_avg_sq` (`v`) have the same length.
pub fn adamw_step(
    cfg: &AdamWConfig,
    t: u64,
    params: &mut [f32],
    grads: &[f32],
    exp_avg: &mut [f32],
    exp_avg_sq: &mut [f32],
) {
    let n = params.len();
    assert!(
        grads.len() == n && exp_avg.len() == n && exp_avg_sq.len() == n,
        "adamw_step: params has {n} values, grads {}, exp_avg {}, exp_avg_sq {}",
        grads.len(),
        exp_avg.len(),
        exp_avg_sq.len()
    );
    assert!(t >= 1, "adamw_step: steps count from 1");
    let (lr, b1, b2) = (cfg.lr as f64, cfg.beta1 as f64, cfg.beta2 as f64);
    let ti = i32::try_from(t).unwrap_or(i32::MAX);
    let decay = (1.0 - lr * cfg.weight_decay as f64) as f32;
    let step_size = (lr / (1.0 - b1.powi(ti))) as f32;
    let inv_bc2_sqrt = (1.0 / (1.0 - b2.powi(ti)).sqrt()) as f32;
    let (one_m_b1, one_m_b2, beta2, eps) = ((1.0 - b1) as f32, (1.0 - b2) as f32, cfg.beta2, cfg.eps);
    params
        .par_chunks_mut(BLOCK)
        .zip(grads.par_chunks(BLOCK))
        .zip(exp_avg.par_chunks_mut(BLOCK))
        .zip(exp_avg_sq.par_chunks_mut(BLOCK))
        .for_each(|(((p, g), m), v)| {
            let (decv, ssv, ibv) = (
                f32x8::splat(decay),
                f32x8::splat(-step_size),
                f32x8::splat(inv_bc2_sqrt),
            );
            let (a1, a2, b2v, epsv) = (
                f32x8::splat(one_m_b1),
                f32x8::splat(one_m_b2),
                f32x8::splat(beta2),
                f32x8::splat(eps),
            );
            let mut pc = p.chunks_exact_mut(LANES);
            let mut gc = g.chunks_exact(LANES);
            let mut mc = m.chunks_exact_mut(LANES);
            let mut vc = v.chunks_exact_mut(LANES);
            for (((pv, gv), mv), vv) in (&mut pc).zip(&mut gc).zip(&mut mc).zip(&mut vc) {
                let w = f32x8::load(pv) * decv;
                let gr = f32x8::load(gv);
                let m0 = f32x8::load(mv);
                let m1 = (gr - m0).mul_add(a1, m0);
                let v1 = (gr * gr).mul_add(a2, f32x8::load(vv) * b2v);
                m1.store(mv);
                v1.store(vv);
                let denom = v1.sqrt().mul_add(ibv, epsv);
                (m1 / denom).mul_add(ssv, w).store(pv);
            }
            for (((pv, &gr), mv), vv) in pc
                .into_remainder()
                .iter_mut()
                .zip(gc.remainder())
                .zip(mc.into_remainder())
                .zip(vc.into_remainder())
            {
                let w = *pv * decay;
                *mv = fma(gr - *mv, one_m_b1, *mv);
                *vv = fma(gr * gr, one_m_b2, *vv * beta2);
                let denom = fma(vv.sqrt(), inv_bc2_sqrt, eps);
                *pv = fma(*mv / denom, -step_size, w);
            }
        });
}
