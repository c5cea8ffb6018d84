//! Hashing and value noise: every random number of a pixel is a pure function of a seed
//! and the pixel's position.

#[inline]
pub(super) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform in [0, 1) from the high 24 bits of a hash.
#[inline]
pub(super) fn unit(h: u64) -> f32 {
    (h >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
}

/// Uniform in [0, 1) for the integer `i` under `seed`.
#[inline]
pub(super) fn hash01(seed: u64, i: u64) -> f32 {
    unit(mix64(seed ^ mix64(i)))
}

/// Smooth value noise in [-1, 1] with one random value per integer lattice point.
#[inline]
pub(super) fn vnoise(seed: u64, x: f32, y: f32) -> f32 {
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
