//! A whole image: where the flower stands, the background (smooth noise with grass-like
//! streaks) and the camera (gain, white balance, illumination gradient, pixel noise).

use super::flowers::Flower;
use super::noise::{mix64, unit, vnoise};
use super::primitives::{cover, hsv, lerp3, over, scale, smoothstep, uni, Rgb3};
use super::{Difficulty, SynthConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::f32::consts::TAU;

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

/// The hard set's flower radius (half-image units: 17-30 % of the side), centre jitter
/// (±22 %) and noise range.
const HARD_RADIUS: (f32, f32) = (0.35, 0.6);
const HARD_JITTER: f32 = 0.45;
const HARD_NOISE: (f32, f32) = (0.03, 0.12);
const HARD_GAIN: (f32, f32) = (0.5, 1.3);

/// A flower placed in the image: centre and the map from image to flower units.
struct Placement {
    cx: f32,
    cy: f32,
    cos: f32,
    sin: f32,
    inv_r: f32,
    flower: Flower,
}

/// A leaf-coloured ellipse painted over the flower (hard set).
struct Blob {
    cx: f32,
    cy: f32,
    inv_a: f32,
    inv_b: f32,
    colour: Rgb3,
}

/// Everything random about one image, drawn from its `(seed, class, index)`.
pub(super) struct Scene {
    /// Hard set: a flower of another class behind the main one, and blobs over it.
    behind: Option<Placement>,
    blobs: [Option<Blob>; 2],
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
    pub(super) fn new(cfg: &SynthConfig, class: usize, index: u64) -> Scene {
        let key = mix64(mix64(mix64(cfg.seed) ^ class as u64) ^ index);
        let mut rng = ChaCha8Rng::seed_from_u64(key);
        let upright = Flower::upright(class);
        let angle = if upright {
            uni(&mut rng, -0.3, 0.3)
        } else {
            uni(&mut rng, 0.0, TAU)
        };
        let hard = cfg.difficulty == Difficulty::Hard;
        // The hard set draws the same numbers over other ranges, so the easy set's
        // images stay exactly as they were.
        let (radius, jitter) = if hard {
            (HARD_RADIUS, HARD_JITTER)
        } else {
            (RADIUS, CENTRE_JITTER)
        };
        let radius = uni(&mut rng, radius.0, radius.1);
        let cx = uni(&mut rng, -jitter, jitter);
        let mut cy = uni(&mut rng, -jitter, jitter);
        if upright {
            // The cup sits above the middle, leaving room for the stem.
            cy -= 0.25 * radius;
        }
        let squash = if upright { 1.0 } else { uni(&mut rng, 0.78, 1.0) };
        let flower = Flower::new(class, &mut rng);
        let bg_a = background_colour(&mut rng);
        let bg_b = background_colour(&mut rng);
        let wb = WHITE_BALANCE;
        let g = if hard {
            uni(&mut rng, HARD_GAIN.0, HARD_GAIN.1)
        } else {
            uni(&mut rng, GAIN.0, GAIN.1)
        };
        let gain = [
            g * uni(&mut rng, 1.0 - wb, 1.0 + wb),
            g * uni(&mut rng, 1.0 - wb, 1.0 + wb),
            g * uni(&mut rng, 1.0 - wb, 1.0 + wb),
        ];
        let light = uni(&mut rng, LIGHT.0, LIGHT.1);
        let light_dir = uni(&mut rng, 0.0, TAU);
        // In the order the easy set has always drawn them.
        let bg_seed = rng.random();
        let bg_freq = uni(&mut rng, 1.0, 2.5);
        let grass = uni(&mut rng, 0.05, 0.3);
        let grass_freq = uni(&mut rng, 6.0, 14.0);
        let grass_slant = uni(&mut rng, -0.4, 0.4);
        let offset = uni(&mut rng, OFFSET.0, OFFSET.1);
        let noise = if hard {
            uni(&mut rng, HARD_NOISE.0, HARD_NOISE.1)
        } else {
            uni(&mut rng, NOISE.0, NOISE.1)
        };
        let noise_seed = rng.random();
        // Hard set only, drawn after everything else.
        let (behind, blobs) = if hard {
            clutter(&mut rng, class, cx, cy, radius)
        } else {
            (None, [None, None])
        };
        Scene {
            behind,
            blobs,
            cx,
            cy,
            cos: angle.cos(),
            sin: angle.sin(),
            inv_r: 1.0 / radius,
            inv_squash: 1.0 / squash,
            flower,
            bg_a,
            bg_b,
            bg_seed,
            bg_freq,
            grass,
            grass_freq,
            grass_slant,
            gain,
            offset,
            light_x: light * light_dir.cos(),
            light_y: light * light_dir.sin(),
            noise,
            noise_seed,
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
    pub(super) fn pixel(&self, px: usize, py: usize, size: usize) -> Rgb3 {
        let inv = 2.0 / size as f32;
        let x = (px as f32 + 0.5) * inv - 1.0;
        let y = (py as f32 + 0.5) * inv - 1.0;
        let mut col = self.background(x, y);
        let (dx, dy) = (x - self.cx, y - self.cy);
        let u = (dx * self.cos + dy * self.sin) * self.inv_r;
        let v = (dy * self.cos - dx * self.sin) * self.inv_r * self.inv_squash;
        let pix_seed = mix64(self.noise_seed ^ ((py * size + px) as u64));
        if let Some(b) = &self.behind {
            let (dx, dy) = (x - b.cx, y - b.cy);
            let (u, v) = (
                (dx * b.cos + dy * b.sin) * b.inv_r,
                (dy * b.cos - dx * b.sin) * b.inv_r,
            );
            b.flower.paint(u, v, inv * b.inv_r, pix_seed, &mut col);
        }
        self.flower.paint(u, v, inv * self.inv_r, pix_seed, &mut col);
        for b in self.blobs.iter().flatten() {
            let (du, dv) = ((x - b.cx) * b.inv_a, (y - b.cy) * b.inv_b);
            // Signed distance to the ellipse's edge, roughly in image units.
            let sd = ((du * du + dv * dv).sqrt() - 1.0) / b.inv_a.max(b.inv_b);
            over(&mut col, b.colour, cover(sd, inv));
        }
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

/// The hard set's clutter around a flower of `class` at `(cx, cy)` with radius `radius`: a
/// smaller flower of another class behind it, off its centre, and one or two leaf-coloured
/// blobs over its edge.
fn clutter(
    rng: &mut ChaCha8Rng,
    class: usize,
    cx: f32,
    cy: f32,
    radius: f32,
) -> (Option<Placement>, [Option<Blob>; 2]) {
    let other = (class + 1 + rng.random_range(0..4)) % 5;
    let angle = uni(rng, 0.0, TAU);
    let dist = uni(rng, 0.6, 1.0);
    let r = radius * uni(rng, 0.45, 0.7);
    let turn = uni(rng, 0.0, TAU);
    let flower = Flower::new(other, rng);
    let behind = Placement {
        cx: cx + dist * angle.cos(),
        cy: cy + dist * angle.sin(),
        cos: turn.cos(),
        sin: turn.sin(),
        inv_r: 1.0 / r,
        flower,
    };
    let count = 1 + (rng.random::<f32>() < 0.5) as usize;
    let mut blobs = [None, None];
    for b in blobs.iter_mut().take(count) {
        let a = uni(rng, 0.0, TAU);
        let d = radius * uni(rng, 0.5, 1.0);
        *b = Some(Blob {
            cx: cx + d * a.cos(),
            cy: cy + d * a.sin(),
            inv_a: 1.0 / (radius * uni(rng, 0.25, 0.45)),
            inv_b: 1.0 / (radius * uni(rng, 0.15, 0.3)),
            colour: background_colour(rng),
        });
    }
    (Some(behind), blobs)
}
