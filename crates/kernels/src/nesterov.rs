//! SGD with Nesterov momentum (PyTorch's `SGD(nesterov=True)` rule).
//!
//! For each parameter `w` with gradient `g` and velocity `v` (zero at the start):
//! `d = g + weight_decay · w`; `v = momentum · v + d`; `d = d + momentum · v`;
//! `w = w − lr · d`. (PyTorch's first step sets `v = d`, which `momentum · 0 + d` is
//! exactly.) Plain momentum SGD is [`crate::sgd_step`]; this differs only in stepping along
//! `d + μ·v` instead of `v`.

use crate::sgd::SgdConfig;
use crate::simd::{fma, load, store, LANES};
use rayon::prelude::*;
use wide::f32x8;

/// Values per rayon task; element-wise, so the grouping never changes results.
const BLOCK: usize = 1 << 14;

/// One Nesterov SGD step over a flat parameter tensor (module docs give the rule).
///
/// `params`, `grads` and `velocity` have the same length.
pub fn sgd_nesterov_step(cfg: &SgdConfig, params: &mut [f32], grads: &[f32], velocity: &mut [f32]) {
    assert!(
        params.len() == grads.len() && velocity.len() == params.len(),
        "sgd_nesterov_step: params has {} values, grads {}, velocity {}",
        params.len(),
        grads.len(),
        velocity.len()
    );
    let SgdConfig {
        lr,
        momentum,
        weight_decay: wd,
    } = *cfg;
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
                let w = load(pv);
                let d = w.mul_add(wdv, load(gv));
                let nv = load(vv).mul_add(mv, d);
                store(vv, nv);
                let step = nv.mul_add(mv, d);
                store(pv, step.mul_add(lrv, w));
            }
            for ((pv, &gv), vv) in pc
                .into_remainder()
                .iter_mut()
                .zip(gc.remainder())
                .zip(vc.into_remainder())
            {
                let d = fma(*pv, wd, gv);
                *vv = fma(*vv, momentum, d);
                let step = fma(*vv, momentum, d);
                *pv = fma(step, -lr, *pv);
            }
        });
}
