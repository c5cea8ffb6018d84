//! The five flowers: their random parameters and how each is painted, in flower units
//! (radius 1) around its centre.

use super::noise::{hash01, unit};
use super::petals::{Disc, PetalRing};
use super::primitives::{cover, hsv, lerp3, over, scale, smoothstep, uni, Rgb3};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::f32::consts::{PI, TAU};

pub(super) struct Dandelion {
    strands: f32,
    seed: u64,
    color: Rgb3,
    core: Rgb3,
    /// Ragged edge: strand lengths in [1 - ragged, 1].
    ragged: f32,
}

pub(super) struct Rose {
    turns: f32,
    lobes: f32,
    lobe_phase: f32,
    lobe_depth: f32,
    /// Radial step between successive petal arcs, in turns.
    arc_step: f32,
    seed: u64,
    color: Rgb3,
    dark: Rgb3,
}

pub(super) struct Tulip {
    /// Half-width of the cup.
    w: f32,
    /// Top of the cup (negative: up).
    top: f32,
    /// Bottom of the cup.
    bottom: f32,
    /// Height of the petal tips above `top`.
    tips: f32,
    color: Rgb3,
    stem: Rgb3,
    stem_w: f32,
    stem_curve: f32,
    /// Leaf: attachment height, side (±1), angle from vertical, length, half-width.
    leaf_y: f32,
    leaf_cos: f32,
    leaf_sin: f32,
    leaf_len: f32,
    leaf_w: f32,
    leaf: Rgb3,
}

// One `Flower` lives on the stack per image being drawn: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Flower {
    Daisy {
        petals: PetalRing,
        disc: Disc,
    },
    Dandelion(Dandelion),
    Rose(Rose),
    Sunflower {
        back: PetalRing,
        front: PetalRing,
        disc: Disc,
    },
    Tulip(Tulip),
}

impl Flower {
    pub(super) fn new(class: usize, rng: &mut ChaCha8Rng) -> Flower {
        match class {
            0 => {
                // Daisy: white (sometimes faintly pink, lilac or cream) thin petals.
                let tint = [0.0, 330.0, 270.0, 50.0][rng.random_range(0..4usize)];
                let sat = if rng.random::<f32>() < 0.6 {
                    uni(rng, 0.0, 0.06)
                } else {
                    uni(rng, 0.08, 0.25)
                };
                let color = hsv(tint + uni(rng, -15.0, 15.0), sat, uni(rng, 0.88, 1.0));
                let rc = uni(rng, 0.13, 0.22);
                let n = rng.random_range(16..=30usize);
                let width = uni(rng, 0.5, 0.8);
                let petals = PetalRing::new(
                    rng,
                    n,
                    0.0,
                    rc * 0.7,
                    (0.8, 1.0),
                    width,
                    false,
                    color,
                    (0.85, 1.0),
                );
                let disc = Disc::Daisy {
                    radius: rc,
                    color: hsv(uni(rng, 38.0, 52.0), uni(rng, 0.8, 1.0), uni(rng, 0.85, 1.0)),
                };
                Flower::Daisy { petals, disc }
            }
            1 => Flower::Dandelion(Dandelion {
                strands: rng.random_range(90..=150u32) as f32,
                seed: rng.random(),
                color: hsv(uni(rng, 42.0, 56.0), uni(rng, 0.75, 0.95), uni(rng, 0.85, 1.0)),
                core: hsv(uni(rng, 32.0, 42.0), uni(rng, 0.85, 1.0), uni(rng, 0.75, 0.9)),
                ragged: uni(rng, 0.12, 0.25),
            }),
            2 => {
                // Rose: red, crimson, pink or coral.
                let (h, s, v) = match rng.random_range(0..4u32) {
                    0 => (uni(rng, -8.0, 6.0), uni(rng, 0.8, 0.95), uni(rng, 0.7, 0.95)),
                    1 => (uni(rng, 340.0, 355.0), uni(rng, 0.8, 0.95), uni(rng, 0.45, 0.65)),
                    2 => (uni(rng, 325.0, 345.0), uni(rng, 0.35, 0.6), uni(rng, 0.85, 1.0)),
                    _ => (uni(rng, 5.0, 18.0), uni(rng, 0.55, 0.75), uni(rng, 0.85, 1.0)),
                };
                let color = hsv(h, s, v);
                Flower::Rose(Rose {
                    turns: uni(rng, 3.0, 4.5),
                    lobes: rng.random_range(5..=7u32) as f32,
                    lobe_phase: uni(rng, 0.0, TAU),
                    lobe_depth: uni(rng, 0.06, 0.12),
                    arc_step: uni(rng, 0.25, 0.4),
                    seed: rng.random(),
                    color,
                    dark: scale(hsv(h - 5.0, (s + 0.1).min(1.0), v), 0.4),
                })
            }
            3 => {
                let yellow = hsv(uni(rng, 38.0, 50.0), uni(rng, 0.85, 1.0), uni(rng, 0.9, 1.0));
                let rc = uni(rng, 0.42, 0.55);
                let n = rng.random_range(18..=28usize);
                let len = (rc + uni(rng, 0.3, 0.38), 1.0);
                let width = uni(rng, 0.8, 1.0);
                let back = PetalRing::new(
                    rng,
                    n,
                    0.5,
                    rc * 0.8,
                    (len.0 * 0.95, len.1 * 0.95),
                    width,
                    true,
                    scale(yellow, 0.8),
                    (0.8, 1.0),
                );
                let front = PetalRing::new(rng, n, 0.0, rc * 0.8, len, width, true, yellow, (0.85, 1.0));
                let brown = hsv(uni(rng, 18.0, 32.0), uni(rng, 0.6, 0.9), uni(rng, 0.12, 0.28));
                let rim = hsv(uni(rng, 25.0, 40.0), uni(rng, 0.7, 0.9), uni(rng, 0.3, 0.45));
                let disc = Disc::Sunflower {
                    radius: rc,
                    color: brown,
                    rim,
                };
                Flower::Sunflower { back, front, disc }
            }
            _ => {
                let (h, s, v) = match rng.random_range(0..5u32) {
                    0 => (uni(rng, -8.0, 6.0), uni(rng, 0.8, 0.95), uni(rng, 0.7, 0.95)),
                    1 => (uni(rng, 325.0, 345.0), uni(rng, 0.45, 0.7), uni(rng, 0.85, 1.0)),
                    2 => (uni(rng, 45.0, 56.0), uni(rng, 0.75, 0.95), uni(rng, 0.9, 1.0)),
                    3 => (uni(rng, 270.0, 295.0), uni(rng, 0.5, 0.8), uni(rng, 0.45, 0.75)),
                    _ => (uni(rng, 18.0, 30.0), uni(rng, 0.8, 0.95), uni(rng, 0.9, 1.0)),
                };
                let w = uni(rng, 0.5, 0.62);
                let top = -uni(rng, 0.55, 0.7);
                let leaf_angle = uni(rng, 0.35, 0.7) * if rng.random::<bool>() { 1.0 } else { -1.0 };
                Flower::Tulip(Tulip {
                    w,
                    top,
                    bottom: uni(rng, 0.45, 0.6),
                    tips: uni(rng, 0.1, 0.2),
                    color: hsv(h, s, v),
                    stem: hsv(uni(rng, 85.0, 120.0), uni(rng, 0.55, 0.8), uni(rng, 0.35, 0.6)),
                    stem_w: uni(rng, 0.035, 0.06),
                    stem_curve: uni(rng, -0.15, 0.15),
                    leaf_y: uni(rng, 0.9, 1.3),
                    leaf_cos: leaf_angle.cos(),
                    leaf_sin: leaf_angle.sin(),
                    leaf_len: uni(rng, 0.6, 0.9),
                    leaf_w: uni(rng, 0.09, 0.14),
                    leaf: hsv(uni(rng, 85.0, 125.0), uni(rng, 0.5, 0.8), uni(rng, 0.4, 0.65)),
                })
            }
        }
    }

    /// Whether a class is drawn upright (tulips: only a small tilt) rather than at any angle.
    pub(super) fn upright(class: usize) -> bool {
        class == 4
    }

    /// Paints the flower at `(u, v)` in flower units (radius 1), `aa` = one pixel in those
    /// units, over `col`.
    #[inline]
    pub(super) fn paint(&self, u: f32, v: f32, aa: f32, px_seed: u64, col: &mut Rgb3) {
        let r2 = u * u + v * v;
        match self {
            Flower::Daisy { petals, disc } => {
                if r2 > 1.1 * 1.1 {
                    return;
                }
                let r = r2.sqrt();
                let theta = v.atan2(u);
                petals.paint(u, v, theta, aa, col);
                disc.paint(u, v, r, theta, aa, col);
            }
            Flower::Sunflower { back, front, disc } => {
                if r2 > 1.1 * 1.1 {
                    return;
                }
                let r = r2.sqrt();
                let theta = v.atan2(u);
                back.paint(u, v, theta, aa, col);
                front.paint(u, v, theta, aa, col);
                disc.paint(u, v, r, theta, aa, col);
            }
            Flower::Dandelion(d) => {
                if r2 > 1.1 * 1.1 {
                    return;
                }
                let r = r2.sqrt();
                let theta = v.atan2(u);
                let sf = (theta + PI) / TAU * d.strands;
                let j = sf.floor();
                let f = sf - j;
                let j = j as u64 % d.strands as u64;
                // Ragged edge: each strand has its own length; soft (fuzzy) boundary.
                let len = 1.0 - d.ragged * hash01(d.seed, j);
                let a = cover(r - len, aa + 0.06);
                if a <= 0.0 {
                    return;
                }
                // Strands: thin radial lines, visible where they are wider than a pixel.
                let strand_px = r * TAU / d.strands / aa;
                let k = smoothstep(0.3, 1.2, strand_px);
                let line = 1.0 - k * 0.35 * (1.0 - (4.0 * f * (1.0 - f)));
                let ring = (r * 9.0 + 0.5 * hash01(d.seed ^ 7, j)).floor() as u64;
                let fleck = hash01(d.seed ^ 0x5555, j * 64 + ring);
                let grain = unit(px_seed);
                let shade = line * (0.78 + 0.14 * fleck + 0.12 * grain) * (0.8 + 0.2 * r / len);
                let base = lerp3(d.core, d.color, smoothstep(0.05, 0.45, r));
                over(col, scale(base, shade), a);
            }
            Flower::Rose(ro) => {
                if r2 > 1.1 * 1.1 {
                    return;
                }
                let r = r2.sqrt();
                let theta = v.atan2(u);
                let edge = 1.0 - ro.lobe_depth * (0.5 + 0.5 * (ro.lobes * theta + ro.lobe_phase).cos());
                let a = cover(r - edge, aa);
                if a <= 0.0 {
                    return;
                }
                // Archimedean spiral of petals: bright at each petal's outer rim, a dark
                // crease where the next (outer) petal starts.
                let rel = r / edge;
                let s = rel * ro.turns + theta / TAU;
                // Each turn is cut into a few petal arcs, each set slightly outwards of the
                // previous one: overlapping petals rather than a clean spiral.
                let ring = s.floor();
                let arcs = 2.0 + ring.max(0.0);
                let saw = theta / TAU * arcs + hash01(ro.seed, ring as i64 as u64);
                let s = s + ro.arc_step * (saw - saw.floor());
                let f = s - s.floor();
                // One pixel in units of `f`: |grad s| = sqrt(turns^2 + (d s / r d theta)^2).
                let ang = (1.0 + ro.arc_step * arcs) / (TAU * r.max(1e-3));
                let df = aa * (ro.turns * ro.turns + ang * ang).sqrt();
                let crease = smoothstep(0.0, df.max(0.08), f);
                let light = 0.55 + 0.45 * f.powf(0.7);
                let shade = crease * light + (1.0 - crease) * 0.35;
                let centre = smoothstep(0.0, 0.35, rel);
                let base = lerp3(ro.dark, ro.color, 0.35 + 0.65 * centre);
                over(col, scale(base, shade), a);
            }
            Flower::Tulip(t) => paint_tulip(t, u, v, aa, col),
        }
    }
}

#[inline]
fn paint_tulip(t: &Tulip, u: f32, v: f32, aa: f32, col: &mut Rgb3) {
    // Stem: from inside the cup down past the bottom of the image, gently curved.
    let stem_top = t.bottom * 0.5;
    let dv = (v - stem_top).max(0.0);
    let stem_x = t.stem_curve * dv * dv;
    // Leaf: a lanceolate blade leaving the stem at `leaf_y`, tilted outwards.
    {
        let ly = t.leaf_y;
        let lx = t.stem_curve * (ly - stem_top).powi(2);
        let (du, dv) = (u - lx, v - ly);
        // Leaf axis points up and outwards: direction (sin, -cos).
        let along = du * t.leaf_sin - dv * t.leaf_cos;
        let across = (du * t.leaf_cos + dv * t.leaf_sin).abs();
        let tl = along / t.leaf_len;
        if (-0.1..=1.1).contains(&tl) {
            let tc = tl.clamp(0.0, 1.0);
            let h = t.leaf_w * 2.6 * tc.sqrt() * (1.0 - tc);
            let sd = (across - h).max(-along).max(along - t.leaf_len);
            let a = cover(sd, aa);
            if a > 0.0 {
                let vein = 1.0 - 0.25 * (-(across / (aa + 0.01)).powi(2)).exp();
                let shade = (0.8 + 0.2 * (across / h.max(1e-3)).min(1.0)) * vein;
                over(col, scale(t.leaf, shade), a);
            }
        }
    }
    if v > stem_top {
        let a = cover((u - stem_x).abs() - t.stem_w, aa);
        if a > 0.0 {
            let shade = 1.0 - 0.35 * ((u - stem_x) / t.stem_w).clamp(-1.0, 1.0);
            over(col, scale(t.stem, shade), a);
        }
    }
    // Cup: straight sides narrowing slightly to the top, rounded bottom, three tips.
    if v < t.top - t.tips - aa || v > t.bottom + aa {
        return;
    }
    let half = if v >= 0.0 {
        t.w * (1.0 - (v / t.bottom).powi(2)).max(0.0).sqrt()
    } else {
        t.w * (1.0 - 0.12 * v / t.top)
    };
    // Three petal tips across the top edge: at x = -w, 0, +w (outer ones half visible).
    let x = (u / t.w).clamp(-1.0, 1.0);
    let tip = 1.0 - (x * PI).sin().abs().powf(0.8); // 1 at x = -1, 0, 1
    let top = t.top - t.tips * (0.5 + 0.5 * tip) + 0.5 * t.tips * x * x;
    let sd = (u.abs() - half).max(top - v);
    let a = cover(sd, aa);
    if a > 0.0 {
        let xr = (u / half.max(1e-3)).clamp(-1.0, 1.0);
        // Rounded cup: lit from one side, darker at the edges and the overlap lines.
        let round = (1.0 - xr * xr).max(0.0).sqrt();
        let overlap = (-((xr.abs() - 0.4) * 9.0).powi(2)).exp();
        let shade = (0.6 + 0.4 * round)
            * (1.0 - 0.25 * overlap)
            * (1.0 - 0.1 * xr)
            * (0.85 + 0.15 * smoothstep(t.bottom, t.top, v));
        over(col, scale(t.color, shade), a);
    }
}
