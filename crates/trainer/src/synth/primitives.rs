//! Drawing primitives: colours, blending and anti-aliased coverage.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// An RGB colour, each channel nominally in [0, 1].
pub(super) type Rgb3 = [f32; 3];

/// Uniform in [`lo`, `hi`).
pub(super) fn uni(rng: &mut ChaCha8Rng, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * rng.random::<f32>()
}

/// HSV (hue in degrees, saturation and value in [0, 1]) to RGB.
pub(super) fn hsv(h: f32, s: f32, v: f32) -> Rgb3 {
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
pub(super) fn scale(c: Rgb3, k: f32) -> Rgb3 {
    [c[0] * k, c[1] * k, c[2] * k]
}

#[inline]
pub(super) fn lerp3(a: Rgb3, b: Rgb3, t: f32) -> Rgb3 {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

/// Paints `src` over `dst` with coverage `a`.
#[inline]
pub(super) fn over(dst: &mut Rgb3, src: Rgb3, a: f32) {
    *dst = lerp3(*dst, src, a);
}

/// Coverage of a pixel by a shape at signed distance `sd` (negative inside) when a pixel
/// is `aa` wide: a linear ramp over one pixel.
#[inline]
pub(super) fn cover(sd: f32, aa: f32) -> f32 {
    (0.5 - sd / aa).clamp(0.0, 1.0)
}

#[inline]
pub(super) fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}
