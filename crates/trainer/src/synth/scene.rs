//! A whole image: where the flower stands, the background (smooth noise with grass-like
//! streaks) and the camera (gain, white balance, illumination gradient, pixel noise).

use super::flowers::Flower;
use super::noise::{mix64, unit, vnoise};
use super::primitives::{hsv, lerp3, scale, smoothstep, uni, Rgb3};
use super::SynthConfig;
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

/// Everything random about one image, drawn from its `(seed, class, index)`.
pub(super) struct Scene {
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
    pub(super) fn pixel(&self, px: usize, py: usize, size: usize) -> Rgb3 {
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
