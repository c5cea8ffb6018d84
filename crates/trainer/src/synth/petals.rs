//! Petal rings and flower discs: the parts of the daisy and the sunflower.

use super::primitives::{cover, lerp3, over, scale, smoothstep, uni, Rgb3};
use rand_chacha::ChaCha8Rng;
use std::f32::consts::{PI, TAU};

/// Most petals a ring holds.
const MAX_PETALS: usize = 40;

#[derive(Clone, Copy, Default)]
struct Petal {
    /// Unit direction of the petal axis.
    dx: f32,
    dy: f32,
    /// Radius of the tip.
    len: f32,
    /// Brightness factor of the petal.
    shade: f32,
}

/// A ring of petals radiating from the centre.
pub(super) struct PetalRing {
    n: usize,
    petals: [Petal; MAX_PETALS],
    /// Angular offset of petal 0, in units of the petal spacing.
    offset: f32,
    /// Radius of the petal bases.
    r0: f32,
    /// Largest half-width of a petal.
    half_width: f32,
    /// Pointed tips (sunflower) instead of rounded ones (daisy).
    pointed: bool,
    color: Rgb3,
}

impl PetalRing {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        rng: &mut ChaCha8Rng,
        n: usize,
        offset: f32,
        r0: f32,
        len: (f32, f32),
        width: f32,
        pointed: bool,
        color: Rgb3,
        shade: (f32, f32),
    ) -> Self {
        let n = n.min(MAX_PETALS);
        let mut petals = [Petal::default(); MAX_PETALS];
        let spacing = TAU / n as f32;
        for (k, p) in petals.iter_mut().take(n).enumerate() {
            let a = (k as f32 + offset + uni(rng, -0.15, 0.15)) * spacing;
            p.dx = a.cos();
            p.dy = a.sin();
            p.len = uni(rng, len.0, len.1);
            p.shade = uni(rng, shade.0, shade.1);
        }
        let r_mid = 0.5 * (r0 + 0.5 * (len.0 + len.1));
        PetalRing {
            n,
            petals,
            offset,
            r0,
            half_width: width * PI * r_mid / n as f32,
            pointed,
            color,
        }
    }

    /// Paints the ring at polar position `(u, v)` (`theta` = atan2(v, u)).
    #[inline]
    pub(super) fn paint(&self, u: f32, v: f32, theta: f32, aa: f32, col: &mut Rgb3) {
        let nf = self.n as f32;
        let kf = (theta * nf / TAU - self.offset).round() as i64;
        for dk in -1..=1i64 {
            let k = (kf + dk).rem_euclid(self.n as i64) as usize;
            let p = &self.petals[k];
            let along = u * p.dx + v * p.dy;
            let across = (v * p.dx - u * p.dy).abs();
            let t = (along - self.r0) / (p.len - self.r0);
            if !(-0.2..=1.2).contains(&t) {
                continue;
            }
            let tc = t.clamp(0.0, 1.0);
            let profile = if self.pointed {
                // Widest at a third of the length, straight to a point at the tip.
                2.6 * tc.sqrt() * (1.0 - tc)
            } else {
                // Rounded (elliptic) tip, narrow base.
                (4.0 * tc * (1.0 - tc)).sqrt()
            };
            let h = self.half_width * profile.max(0.15);
            let sd = (across - h).max(self.r0 - along).max(along - p.len);
            let a = cover(sd, aa);
            if a > 0.0 {
                // Darker towards the base and along the edges; a faint midrib.
                let edge = (across / h).min(1.0);
                let shade = p.shade
                    * (0.72 + 0.28 * smoothstep(0.0, 0.45, tc))
                    * (1.0 - 0.18 * edge * edge)
                    * (1.0 - 0.08 * (-(edge * 6.0).powi(2)).exp());
                over(col, scale(self.color, shade), a);
            }
        }
    }
}

pub(super) enum Disc {
    /// Daisy: yellow, bumpy florets.
    Daisy { radius: f32, color: Rgb3 },
    /// Sunflower: dark seeds in crossing Fibonacci spirals, a lighter rim.
    Sunflower { radius: f32, color: Rgb3, rim: Rgb3 },
}

impl Disc {
    #[inline]
    pub(super) fn paint(&self, u: f32, v: f32, r: f32, theta: f32, aa: f32, col: &mut Rgb3) {
        match *self {
            Disc::Daisy { radius, color } => {
                let a = cover(r - radius, aa);
                if a > 0.0 {
                    let bumps = (u * 70.0).cos() * (v * 70.0).cos();
                    let dome = 1.0 - 0.35 * (r / radius).powi(2);
                    let shade = dome * (0.9 + 0.1 * bumps);
                    over(col, scale(color, shade), a);
                }
            }
            Disc::Sunflower { radius, color, rim } => {
                let a = cover(r - radius, aa);
                if a > 0.0 {
                    let lr = 9.0 * (r / radius).max(1e-3).ln();
                    let seeds = (13.0 * theta + 2.0 * lr).cos() * (21.0 * theta - 2.0 * lr).cos();
                    let rel = r / radius;
                    let base = lerp3(color, rim, smoothstep(0.55, 1.0, rel));
                    let shade = 0.85 + 0.25 * seeds * smoothstep(0.1, 0.4, rel);
                    over(col, scale(base, shade), a);
                }
            }
        }
    }
}
