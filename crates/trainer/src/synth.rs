//! Synthetic flowers: the built-in data set, drawn procedurally from a seed.
//!
//! Five classes that look like their names (design §7):
//!
//! | label | class | what is drawn |
//! | --- | --- | --- |
//! | 0 | `daisy` | many thin light petals around a small yellow centre |
//! | 1 | `dandelion` | a dense fuzzy yellow disc of fine radial strands with a ragged edge |
//! | 2 | `rose` | a layered spiral of red / pink petals with a scalloped outline |
//! | 3 | `sunflower` | a large dark seed disc with short, pointed, bright yellow petals |
//! | 4 | `tulip` | a closed cup (red, pink, yellow, purple, orange) on a green stem with a leaf |
//!
//! Every image gets its own random position (centre within ±10 % of the image from the
//! middle), radius (30-45 % of the image), rotation, squash, colour jitter, a background
//! of smooth green / brown noise with grass-like streaks, an illumination gradient, a
//! per-image gain, offset and white balance, and pixel noise. Shapes are evaluated per
//! pixel with analytic signed distances and polar functions, anti-aliased over one pixel,
//! so the drawing works at any size (8 and up) and is fast: about 6,000 grayscale 50x50 or
//! 3,500 RGB 64x64 images per second on one core.
//! Grayscale images are the luminance (Rec. 601) of the RGB drawing.
//!
//! Everything is a pure function of `(seed, class, index)`: the parameters of a sample
//! come from a `ChaCha8Rng` seeded with a hash of the three, and the pixel noise from a
//! hash of the pixel position, so [`dataset`] gives the same bytes on any thread count.

use image::{DynamicImage, GrayImage, Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::f32::consts::{PI, TAU};

/// The five classes, in label order (sorted, as an image folder's classes are).
pub const CLASSES: [&str; 5] = ["daisy", "dandelion", "rose", "sunflower", "tulip"];

/// What to draw: image side `size` (square), RGB or grayscale, and the data set seed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SynthConfig {
    /// Side of the square images in pixels (at least 8).
    pub size: usize,
    /// Three channels (RGB) when true, one (luminance) when false.
    pub rgb: bool,
    /// Seed of the data set: every image is a pure function of `(seed, class, index)`.
    pub seed: u64,
}

impl SynthConfig {
    /// Channels per image: 3 for RGB, 1 for grayscale.
    pub fn channels(&self) -> usize {
        if self.rgb {
            3
        } else {
            1
        }
    }

    /// Values per image, `channels · size · size`.
    pub fn sample_len(&self) -> usize {
        self.channels() * self.size * self.size
    }
}

// ---------------------------------------------------------------------------------------
// Parameters of the generator (the tuning knobs; see `examples/synth_tune.rs`).

/// Largest offset of the flower centre from the image centre, in half-image units
/// (0.2 = 10 % of the image side).
const CENTRE_JITTER: f32 = 0.2;
/// Flower radius range, in half-image units (0.6-0.9 = 30-45 % of the image side).
const RADIUS: (f32, f32) = (0.6, 0.9);
/// Per-image gain range (multiplies the whole drawing).
const GAIN: (f32, f32) = (0.7, 1.2);
/// Per-image offset range (added to the whole drawing).
const OFFSET: (f32, f32) = (-0.08, 0.08);
/// Per-channel white-balance jitter (± around 1).
const WHITE_BALANCE: f32 = 0.08;
/// Strength range of the linear illumination gradient across the image.
const LIGHT: (f32, f32) = (0.0, 0.3);
/// Range of the standard deviation of the pixel noise.
const NOISE: (f32, f32) = (0.01, 0.06);

const MAX_PETALS: usize = 40;

// ---------------------------------------------------------------------------------------
// Hashing and noise.

#[inline]
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform in [0, 1) from the high 24 bits of a hash.
#[inline]
fn unit(h: u64) -> f32 {
    (h >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
}

/// Uniform in [0, 1) for the integer `i` under `seed`.
#[inline]
fn hash01(seed: u64, i: u64) -> f32 {
    unit(mix64(seed ^ mix64(i)))
}

/// Smooth value noise in [-1, 1] with one random value per integer lattice point.
#[inline]
fn vnoise(seed: u64, x: f32, y: f32) -> f32 {
    let (xf, yf) = (x.floor(), y.floor());
    let (fx, fy) = (x - xf, y - yf);
    let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
    let (ix, iy) = (xf as i64 as u64, yf as i64 as u64);
    let h = |i: u64, j: u64| {
        unit(mix64(
            seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ j.wrapping_mul(0xC2B2_AE3D_27D4_EB4F),
        ))
    };
    let a = h(ix, iy) + (h(ix.wrapping_add(1), iy) - h(ix, iy)) * sx;
    let b = h(ix, iy.wrapping_add(1))
        + (h(ix.wrapping_add(1), iy.wrapping_add(1)) - h(ix, iy.wrapping_add(1))) * sx;
    (a + (b - a) * sy) * 2.0 - 1.0
}

// ---------------------------------------------------------------------------------------
// Small colour and geometry helpers.

type Rgb3 = [f32; 3];

fn uni(rng: &mut ChaCha8Rng, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * rng.random::<f32>()
}

/// HSV (hue in degrees, saturation and value in [0, 1]) to RGB.
fn hsv(h: f32, s: f32, v: f32) -> Rgb3 {
    let h = h.rem_euclid(360.0) / 60.0;
    let c = v * s;
    let x = c * (1.0 - ((h % 2.0) - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [r + m, g + m, b + m]
}

#[inline]
fn scale(c: Rgb3, k: f32) -> Rgb3 {
    [c[0] * k, c[1] * k, c[2] * k]
}

#[inline]
fn lerp3(a: Rgb3, b: Rgb3, t: f32) -> Rgb3 {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

/// Paints `src` over `dst` with coverage `a`.
#[inline]
fn over(dst: &mut Rgb3, src: Rgb3, a: f32) {
    *dst = lerp3(*dst, src, a);
}

/// Coverage of a pixel by a shape at signed distance `sd` (negative inside) when a pixel
/// is `aa` wide: a linear ramp over one pixel.
#[inline]
fn cover(sd: f32, aa: f32) -> f32 {
    (0.5 - sd / aa).clamp(0.0, 1.0)
}

#[inline]
fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

// ---------------------------------------------------------------------------------------
// Flowers.

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
struct PetalRing {
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
    fn new(
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
    fn paint(&self, u: f32, v: f32, theta: f32, aa: f32, col: &mut Rgb3) {
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

enum Disc {
    /// Daisy: yellow, bumpy florets.
    Daisy { radius: f32, color: Rgb3 },
    /// Sunflower: dark seeds in crossing Fibonacci spirals, a lighter rim.
    Sunflower { radius: f32, color: Rgb3, rim: Rgb3 },
}

impl Disc {
    #[inline]
    fn paint(&self, u: f32, v: f32, r: f32, theta: f32, aa: f32, col: &mut Rgb3) {
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

struct Dandelion {
    strands: f32,
    seed: u64,
    color: Rgb3,
    core: Rgb3,
    /// Ragged edge: strand lengths in [1 - ragged, 1].
    ragged: f32,
}

struct Rose {
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

struct Tulip {
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
enum Flower {
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
    fn new(class: usize, rng: &mut ChaCha8Rng) -> Flower {
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
    fn upright(class: usize) -> bool {
        class == 4
    }

    /// Paints the flower at `(u, v)` in flower units (radius 1), `aa` = one pixel in those
    /// units, over `col`.
    #[inline]
    fn paint(&self, u: f32, v: f32, aa: f32, px_seed: u64, col: &mut Rgb3) {
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

// ---------------------------------------------------------------------------------------
// A whole image.

struct Scene {
    /// Flower centre in image units ([-1, 1] across the image).
    cx: f32,
    cy: f32,
    /// Image units to flower units: rotation and scale (and squash along v).
    cos: f32,
    sin: f32,
    inv_r: f32,
    inv_squash: f32,
    flower: Flower,
    // Background.
    bg_a: Rgb3,
    bg_b: Rgb3,
    bg_seed: u64,
    bg_freq: f32,
    grass: f32,
    grass_freq: f32,
    grass_slant: f32,
    // Camera.
    gain: Rgb3,
    offset: f32,
    light_x: f32,
    light_y: f32,
    noise: f32,
    noise_seed: u64,
}

fn background_colour(rng: &mut ChaCha8Rng) -> Rgb3 {
    if rng.random::<f32>() < 0.65 {
        hsv(uni(rng, 65.0, 135.0), uni(rng, 0.3, 0.75), uni(rng, 0.15, 0.6))
    } else {
        hsv(uni(rng, 20.0, 45.0), uni(rng, 0.25, 0.6), uni(rng, 0.15, 0.55))
    }
}

impl Scene {
    fn new(cfg: &SynthConfig, class: usize, index: u64) -> Scene {
        let key = mix64(mix64(mix64(cfg.seed) ^ class as u64) ^ index);
        let mut rng = ChaCha8Rng::seed_from_u64(key);
        let upright = Flower::upright(class);
        let angle = if upright {
            uni(&mut rng, -0.3, 0.3)
        } else {
            uni(&mut rng, 0.0, TAU)
        };
        let radius = uni(&mut rng, RADIUS.0, RADIUS.1);
        let cx = uni(&mut rng, -CENTRE_JITTER, CENTRE_JITTER);
        let mut cy = uni(&mut rng, -CENTRE_JITTER, CENTRE_JITTER);
        if upright {
            // The cup sits above the middle, leaving room for the stem.
            cy -= 0.25 * radius;
        }
        let squash = if upright { 1.0 } else { uni(&mut rng, 0.78, 1.0) };
        let flower = Flower::new(class, &mut rng);
        let bg_a = background_colour(&mut rng);
        let bg_b = background_colour(&mut rng);
        let wb = WHITE_BALANCE;
        let g = uni(&mut rng, GAIN.0, GAIN.1);
        let gain = [
            g * uni(&mut rng, 1.0 - wb, 1.0 + wb),
            g * uni(&mut rng, 1.0 - wb, 1.0 + wb),
            g * uni(&mut rng, 1.0 - wb, 1.0 + wb),
        ];
        let light = uni(&mut rng, LIGHT.0, LIGHT.1);
        let light_dir = uni(&mut rng, 0.0, TAU);
        Scene {
            cx,
            cy,
            cos: angle.cos(),
            sin: angle.sin(),
            inv_r: 1.0 / radius,
            inv_squash: 1.0 / squash,
            flower,
            bg_a,
            bg_b,
            bg_seed: rng.random(),
            bg_freq: uni(&mut rng, 1.0, 2.5),
            grass: uni(&mut rng, 0.05, 0.3),
            grass_freq: uni(&mut rng, 6.0, 14.0),
            grass_slant: uni(&mut rng, -0.4, 0.4),
            gain,
            offset: uni(&mut rng, OFFSET.0, OFFSET.1),
            light_x: light * light_dir.cos(),
            light_y: light * light_dir.sin(),
            noise: uni(&mut rng, NOISE.0, NOISE.1),
            noise_seed: rng.random(),
        }
    }

    #[inline]
    fn background(&self, x: f32, y: f32) -> Rgb3 {
        let f = self.bg_freq;
        let t = 0.5 + 0.5 * vnoise(self.bg_seed, (x + 1.0) * f, (y + 1.0) * f);
        let base = lerp3(self.bg_a, self.bg_b, smoothstep(0.2, 0.8, t));
        let streaks = vnoise(
            self.bg_seed ^ 0xA5A5,
            (x + self.grass_slant * y + 2.0) * self.grass_freq,
            (y + 1.0) * 1.5,
        );
        let blotch = vnoise(self.bg_seed ^ 0x5A5A, (x + 1.0) * 2.0 * f, (y + 1.0) * 2.0 * f);
        scale(base, 1.0 + self.grass * streaks + 0.15 * blotch)
    }

    /// The RGB value of pixel `(px, py)` of a `size`-sided image, in [0, 1].
    #[inline]
    fn pixel(&self, px: usize, py: usize, size: usize) -> Rgb3 {
        let inv = 2.0 / size as f32;
        let x = (px as f32 + 0.5) * inv - 1.0;
        let y = (py as f32 + 0.5) * inv - 1.0;
        let mut col = self.background(x, y);
        let (dx, dy) = (x - self.cx, y - self.cy);
        let u = (dx * self.cos + dy * self.sin) * self.inv_r;
        let v = (dy * self.cos - dx * self.sin) * self.inv_r * self.inv_squash;
        let pix_seed = mix64(self.noise_seed ^ ((py * size + px) as u64));
        self.flower.paint(u, v, inv * self.inv_r, pix_seed, &mut col);
        let light = 1.0 + self.light_x * x + self.light_y * y;
        let mut out = [0.0; 3];
        for (c, o) in out.iter_mut().enumerate() {
            let h = mix64(pix_seed.wrapping_add(c as u64 + 1));
            // Triangular noise with standard deviation `noise` (sum of two uniforms).
            let n = (unit(h) + unit(h << 24) - 1.0) * self.noise * 2.449_49;
            *o = (col[c] * self.gain[c] * light + self.offset + n).clamp(0.0, 1.0);
        }
        out
    }
}

/// Draws sample `index` of `class` into `out` (`[c, size, size]`, CHW, values in [0, 1]);
/// deterministic in `(seed, class, index)`, independent of threads.
///
/// # Panics
/// If `class >= 5`, `cfg.size < 8`, or `out.len() != channels · size · size`.
pub fn draw(cfg: &SynthConfig, class: usize, index: u64, out: &mut [f32]) {
    assert!(
        class < CLASSES.len(),
        "synth::draw: class {class} out of range (5 classes)"
    );
    assert!(
        cfg.size >= 8,
        "synth::draw: size {} is below the minimum of 8",
        cfg.size
    );
    let s = cfg.size;
    assert_eq!(
        out.len(),
        cfg.sample_len(),
        "synth::draw: `out` holds {} values but a {}x{s}x{s} image needs {}",
        out.len(),
        cfg.channels(),
        cfg.sample_len()
    );
    let scene = Scene::new(cfg, class, index);
    let plane = s * s;
    for py in 0..s {
        for px in 0..s {
            let c = scene.pixel(px, py, s);
            let i = py * s + px;
            if cfg.rgb {
                out[i] = c[0];
                out[plane + i] = c[1];
                out[2 * plane + i] = c[2];
            } else {
                out[i] = (0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]).clamp(0.0, 1.0);
            }
        }
    }
}

/// `per_class` samples of every class, interleaved: sample `j` has label `j % 5` and is
/// [`draw`]n with index `first_index + j / 5`. Drawn in parallel with rayon; the result
/// does not depend on the thread count. Returns `(images [n, c, size, size], labels [n])`
/// with `n = 5 · per_class`. Give a validation set a `first_index` far from the training
/// set's (e.g. training `0`, validation `1 << 32`) so the two share no image.
pub fn dataset(cfg: &SynthConfig, per_class: usize, first_index: u64) -> (Vec<f32>, Vec<usize>) {
    let k = CLASSES.len();
    let n = per_class * k;
    let len = cfg.sample_len();
    let mut images = vec![0.0f32; n * len];
    images
        .par_chunks_mut(len.max(1))
        .enumerate()
        .for_each(|(j, out)| draw(cfg, j % k, first_index + (j / k) as u64, out));
    let labels = (0..n).map(|j| j % k).collect();
    (images, labels)
}

/// Converts one CHW [0, 1] image to an 8-bit `image::DynamicImage` (`Luma8` for
/// grayscale, `Rgb8` for RGB) for saving as PNG.
///
/// # Panics
/// If `chw.len() != channels · size · size`.
pub fn to_image(cfg: &SynthConfig, chw: &[f32]) -> DynamicImage {
    let s = cfg.size;
    assert_eq!(
        chw.len(),
        cfg.sample_len(),
        "synth::to_image: got {} values for a {}x{s}x{s} image",
        chw.len(),
        cfg.channels()
    );
    let q = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    let plane = s * s;
    if cfg.rgb {
        DynamicImage::ImageRgb8(RgbImage::from_fn(s as u32, s as u32, |x, y| {
            let i = y as usize * s + x as usize;
            Rgb([q(chw[i]), q(chw[plane + i]), q(chw[2 * plane + i])])
        }))
    } else {
        DynamicImage::ImageLuma8(GrayImage::from_fn(s as u32, s as u32, |x, y| {
            image::Luma([q(chw[y as usize * s + x as usize])])
        }))
    }
}

/// A contact sheet: `rows` samples (indices `0..rows`) of each class side by side, one
/// column per class in label order, as RGB (grayscale images are replicated to three
/// channels). The sheet is `5 · size` pixels wide and `rows · size` high.
pub fn contact_sheet(cfg: &SynthConfig, rows: usize) -> RgbImage {
    let s = cfg.size;
    let k = CLASSES.len();
    let len = cfg.sample_len();
    let mut cells = vec![0.0f32; rows * k * len];
    cells
        .par_chunks_mut(len.max(1))
        .enumerate()
        .for_each(|(j, out)| draw(cfg, j % k, (j / k) as u64, out));
    let plane = s * s;
    let q = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    RgbImage::from_fn((k * s) as u32, (rows * s) as u32, |x, y| {
        let (x, y) = (x as usize, y as usize);
        let j = (y / s) * k + x / s;
        let cell = &cells[j * len..(j + 1) * len];
        let i = (y % s) * s + x % s;
        if cfg.rgb {
            Rgb([q(cell[i]), q(cell[plane + i]), q(cell[2 * plane + i])])
        } else {
            let g = q(cell[i]);
            Rgb([g, g, g])
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(size: usize, rgb: bool) -> SynthConfig {
        SynthConfig { size, rgb, seed: 7 }
    }

    fn drawn(cfg: &SynthConfig, class: usize, index: u64) -> Vec<f32> {
        let mut out = vec![f32::NAN; cfg.sample_len()];
        draw(cfg, class, index, &mut out);
        out
    }

    #[test]
    fn deterministic_per_seed_class_and_index() {
        for rgb in [false, true] {
            let c = cfg(50, rgb);
            for class in 0..5 {
                let a = drawn(&c, class, 3);
                let b = drawn(&c, class, 3);
                assert_eq!(
                    a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                );
                assert_ne!(a, drawn(&c, class, 4), "class {class}: index changes the image");
                let other_seed = SynthConfig { seed: 8, ..c };
                assert_ne!(
                    a,
                    drawn(&other_seed, class, 3),
                    "class {class}: seed changes the image"
                );
            }
            assert_ne!(drawn(&c, 0, 3), drawn(&c, 1, 3));
        }
    }

    #[test]
    fn values_finite_in_unit_range_at_any_size() {
        for size in [8, 33, 50, 64, 97] {
            for rgb in [false, true] {
                let c = cfg(size, rgb);
                assert_eq!(c.sample_len(), c.channels() * size * size);
                for class in 0..5 {
                    for index in [0u64, 1, 1 << 40] {
                        let img = drawn(&c, class, index);
                        assert!(
                            img.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)),
                            "size {size} rgb {rgb} class {class} index {index}"
                        );
                        // Not a flat image.
                        let (lo, hi) = img
                            .iter()
                            .fold((1.0f32, 0.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                        assert!(hi - lo > 0.1);
                    }
                }
            }
        }
    }

    #[test]
    fn to_image_shapes() {
        let g = cfg(33, false);
        let img = to_image(&g, &drawn(&g, 2, 0));
        assert!(matches!(img, DynamicImage::ImageLuma8(_)));
        assert_eq!((img.width(), img.height()), (33, 33));
        let c = cfg(64, true);
        let chw = drawn(&c, 3, 0);
        let img = to_image(&c, &chw);
        let rgb = img.as_rgb8().expect("rgb8");
        assert_eq!((rgb.width(), rgb.height()), (64, 64));
        let p = rgb.get_pixel(5, 9);
        let i = 9 * 64 + 5;
        assert_eq!(p[1], (chw[64 * 64 + i] * 255.0).round() as u8);
    }

    #[test]
    fn dataset_balanced_and_equal_to_sequential_draws() {
        let c = cfg(33, true);
        let (x, y) = dataset(&c, 4, 100);
        assert_eq!(y.len(), 20);
        assert_eq!(x.len(), 20 * c.sample_len());
        for class in 0..5 {
            assert_eq!(y.iter().filter(|&&l| l == class).count(), 4);
        }
        for (j, img) in x.chunks_exact(c.sample_len()).enumerate() {
            assert_eq!(y[j], j % 5);
            assert_eq!(img, &drawn(&c, j % 5, 100 + (j / 5) as u64)[..]);
        }
        // Same result on one thread.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let (x1, y1) = pool.install(|| dataset(&c, 4, 100));
        assert_eq!((x1, y1), (x, y));
        let (x0, y0) = dataset(&c, 0, 0);
        assert!(x0.is_empty() && y0.is_empty());
    }

    #[test]
    fn contact_sheet_dimensions() {
        let sheet = contact_sheet(&cfg(50, false), 3);
        assert_eq!((sheet.width(), sheet.height()), (250, 150));
        let px = sheet.get_pixel(10, 60);
        assert!(px[0] == px[1] && px[1] == px[2], "grayscale replicated");
        let sheet = contact_sheet(&cfg(64, true), 2);
        assert_eq!((sheet.width(), sheet.height()), (320, 128));
    }

    #[test]
    #[should_panic(expected = "class 5 out of range")]
    fn bad_class_panics() {
        let c = cfg(16, false);
        draw(&c, 5, 0, &mut vec![0.0; c.sample_len()]);
    }

    #[test]
    #[should_panic(expected = "needs")]
    fn bad_length_panics() {
        draw(&cfg(16, true), 0, 0, &mut [0.0; 16 * 16]);
    }

    #[test]
    #[should_panic(expected = "minimum of 8")]
    fn small_size_panics() {
        draw(&cfg(7, false), 0, 0, &mut [0.0; 49]);
    }
}
