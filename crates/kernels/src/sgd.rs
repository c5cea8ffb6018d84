//! Stochastic gradient descent with momentum and weight decay (PyTorch's `SGD` rule).
//!
//! For each parameter `w` with gradient `g` and velocity `v` (zero at the start):
//! `d = g + weight_decay · w`; `v = momentum · v + d`; `w = w - lr · v`.
//! With `momentum == 0` and an empty velocity slice this is `w = w - lr · d`; a velocity
//! slice, if given, is still updated by the rule (it then holds `d`).

use crate::simd::{fma, LANES};
use crate::vector::Vector;
use rayon::prelude::*;
use wide::f32x8;

/// Values per rayon task; element-wise, so the grouping never changes results.
const BLOCK: usize = 1 << 14;

/// SGD hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
}

/// One SGD step over a flat parameter tensor (module docs give the rule).
///
/// `params`, `grads` and `velocity` have the same length; `velocity` may be empty when
/// `momentum == 0`.
pub fn sgd_step(cfg: &SgdConfig, params: &mut [f32], grads: &[f32], velocity: &mut [f32]) {
    assert!(
        params.len() == grads.len(),
        "sgd_step: params has {} values, grads has {}",
        params.len(),
        grads.len()
    );
    let SgdConfig {
        lr,
        momentum,
        weight_decay: wd,
    } = *cfg;
    if momentum == 0.0 && velocity.is_empty() {
        params
            .par_chunks_mut(BLOCK)
            .zip(grads.par_chunks(BLOCK))
            .for_each(|(p, g)| {
                let (lrv, wdv) = (f32x8::splat(-lr), f32x8::splat(wd));
                let mut pc = p.chunks_exact_mut(LANES);
                let mut gc = g.chunks_exact(LANES);
                for (pv, gv) in (&mut pc).zip(&mut gc) {
                    let w = f32x8::load(pv);
                    let d = w.mul_add(wdv, f32x8::load(gv));
                    d.mul_add(lrv, w).store(pv);
                }
                for (pv, &gv) in pc.into_remainder().iter_mut().zip(gc.remainder()) {
                    let d = fma(*pv, wd, gv);
                    *pv = fma(d, -lr, *pv);
                }
            });
        return;
    }
    momentum_step::<false>("sgd_step", cfg, params, grads, velocity);
}

/// One SGD step with Nesterov momentum (PyTorch's `SGD(nesterov=True)`): as [`sgd_step`]
/// with momentum, but stepping along `d + μ·v` instead of `v`: `d = g + weight_decay · w`;
/// `v = μ·v + d`; `w = w − lr · (d + μ·v)`. (PyTorch's first step sets `v = d`, which
/// `μ·0 + d` is exactly.) `params`, `grads` and `velocity` have the same length.
pub fn sgd_nesterov_step(cfg: &SgdConfig, params: &mut [f32], grads: &[f32], velocity: &mut [f32]) {
    assert!(
        params.len() == grads.len(),
        "sgd_nesterov_step: params has {} values, grads has {}",
        params.len(),
        grads.len()
    );
    momentum_step::<true>("sgd_nesterov_step", cfg, params, grads, velocity);
}

/// The momentum update of [`sgd_step`] (`NESTEROV` false: step along `v`) and
/// [`sgd_nesterov_step`] (true: along `d + μ·v`), element-wise in blocks of [`BLOCK`].
fn momentum_step<const NESTEROV: bool>(
    name: &str,
    cfg: &SgdConfig,
    params: &mut [f32],
    grads: &[f32],
    velocity: &mut [f32],
) {
    let SgdConfig {
        lr,
        momentum,
        weight_decay: wd,
    } = *cfg;
    assert!(
        velocity.len() == params.len(),
        "{name}: velocity has {} values, params has {} (momentum {momentum})",
        velocity.len(),
        params.len()
    );
    params
        .par_chunks_mut(BLOCK)
        .zip(grads.par_chunks(BLOCK))
        .zip(velocity.par_chunks_mut(BLOCK))
        .for_each(|((p, g), v)| {
            let (lrv, wdv, mv) = (f32x8::splat(-lr), f32x8::splat(wd), f32x8::splat(momentum));
            let mut pc = p.chunks_exact_mut(LANES);
            let mut gc = g.chunks_exact(LANES);
            let mut vc = v.chunks_exact_mut(LANES);
            for ((pv, gv), vv) in (&mut pc).zip(&mut gc).zip(&mut vc) {
                let w = f32x8::load(pv);
                let d = w.mul_add(wdv, f32x8::load(gv));
                let nv = f32x8::load(vv).mul_add(mv, d);
                nv.store(vv);
                let step = if NESTEROV { nv.mul_add(mv, d) } else { nv };
                step.mul_add(lrv, w).store(pv);
            }
            for ((pv, &gv), vv) in pc
                .into_remainder()
                .iter_mut()
                .zip(gc.remainder())
                .zip(vc.into_remainder())
            {
                let d = fma(*pv, wd, gv);
                *vv = fma(*vv, momentum, d);
                let step = if NESTEROV { fma(*vv, momentum, d) } else { *vv };
                *pv = fma(step, -lr, *pv);
            }
        });
}
