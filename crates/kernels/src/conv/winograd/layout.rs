//! The channels-last layouts Winograd's transforms read and write, vectorised over
//! channels: a plane set `[images, channels, h, w]` staged as `[image][c / L][rows][cols]
//! [L]` (blocks of `L` channels, the vector width), and back.

use crate::vector::Vector;
use wide::f32x8;

/// Stages `channels` planes of `h x w` values per image (`src`, `[images, channels, h,
/// w]`) channels-last in blocks of `lanes` channels (a multiple of 8), at offset (`pad`,
/// `pad`) of `rows x cols` zeros: `dst` `[image][c / lanes][rows][cols][lanes]`,
/// channels padded with zero planes to `padded` (a multiple of `lanes`). Eight channels
/// by eight columns at a time, transposed in registers.
#[allow(clippy::too_many_arguments)]
pub(super) fn stage<V: Vector>(
    src: &[f32],
    channels: usize,
    (h, w): (usize, usize),
    pad: usize,
    padded: usize,
    (rows, cols): (usize, usize),
    dst: &mut [f32],
) {
    let lanes = V::LANES;
    assert!(lanes % 8 == 0 && padded % lanes == 0 && rows >= h + pad && cols >= w + pad);
    let image = padded * rows * cols;
    let block = rows * cols * lanes;
    let plane = h * w;
    for (di, si) in dst
        .chunks_exact_mut(image)
        .zip(src.chunks_exact(channels * plane))
    {
        for db in di.chunks_exact_mut(block) {
            // The border: whole rows above and below, columns left and right.
            db[..pad * cols * lanes].fill(0.0);
            db[(pad + h) * cols * lanes..].fill(0.0);
            for i in pad..pad + h {
                let row = &mut db[i * cols * lanes..][..cols * lanes];
                row[..pad * lanes].fill(0.0);
                row[(pad + w) * lanes..].fill(0.0);
            }
        }
        for c0 in (0..padded).step_by(8) {
            let (cb, lo) = (c0 / lanes, c0 % lanes);
            let db = &mut di[cb * block..][..block];
            if c0 + 8 <= channels {
                stage_8(&si[c0 * plane..][..8 * plane], (h, w), pad, cols, (lanes, lo), db);
                continue;
            }
            let zero = [0.0f32; 8];
            for i in 0..h {
                let plane_row = |c: usize| match c0 + c < channels {
                    true => &si[(c0 + c) * plane + i * w..][..w],
                    false => &zero[..0],
                };
                let srows: [&[f32]; 8] = std::array::from_fn(plane_row);
                let out = &mut db[((i + pad) * cols + pad) * lanes..][..w * lanes];
                let mut j = 0;
                while j + 8 <= w {
                    let v: [f32x8; 8] = std::array::from_fn(|c| match srows[c].len() {
                        0 => f32x8::ZERO,
                        _ => f32x8::new(srows[c][j..j + 8].try_into().expect("8 values")),
                    });
                    for (jj, t) in f32x8::transpose(v).iter().enumerate() {
                        out[(j + jj) * lanes + lo..][..8].copy_from_slice(&t.to_array());
                    }
                    j += 8;
                }
                for j in j..w {
                    for (c, r) in srows.iter().enumerate() {
                        out[j * lanes + lo + c] = r.get(j).copied().unwrap_or(0.0);
                    }
                }
            }
        }
    }
}

/// Eight whole channels of [`stage`]: the planes `planes` (`[8][h][w]`) into lanes `lo..lo
/// + 8` of one block `db` (`[rows][cols][lanes]`) at offset (`pad`, `pad`). Its bounds
/// are checked once, up front (as [`unstage_8`]'s).
fn stage_8(
    planes: &[f32],
    (h, w): (usize, usize),
    pad: usize,
    cols: usize,
    (lanes, lo): (usize, usize),
    db: &mut [f32],
) {
    let plane = h * w;
    assert!(lo + 8 <= lanes && pad + w <= cols && planes.len() == 8 * plane);
    // The last value written, lane `lo + 7` of row `pad + h - 1`, column `pad + w - 1`.
    assert!(h == 0 || w == 0 || ((pad + h - 1) * cols + pad + w - 1) * lanes + lo + 8 <= db.len());
    for i in 0..h {
        let mut j = 0;
        while j + 8 <= w {
            // SAFETY: `c·plane + i·w + j + 8 <= 7·plane + (h-1)·w + w = planes.len()`, as
            // `c < 8`, `i < h` and `j + 8 <= w`.
            let v: [f32x8; 8] =
                std::array::from_fn(|c| unsafe { f32x8::load_at(planes, c * plane + i * w + j) });
            let at = ((i + pad) * cols + pad + j) * lanes + lo;
            for (jj, t) in f32x8::transpose(v).into_iter().enumerate() {
                // SAFETY: `at + jj·lanes + 8 = ((i+pad)·cols + pad + j + jj)·lanes + lo + 8
                // <= ((pad+h-1)·cols + pad + w-1)·lanes + lo + 8 <= db.len()` (asserted),
                // as `i < h` and `j + jj < w`.
                unsafe { t.store_at(db, at + jj * lanes) };
            }
            j += 8;
        }
        for j in j..w {
            for c in 0..8 {
                db[((i + pad) * cols + pad + j) * lanes + lo + c] = planes[c * plane + i * w + j];
            }
        }
    }
}

/// The inverse of [`stage`] without padding: `dst` `[images, channels, h, w]` from `src`
/// `[image][c / lanes][rows][cols][lanes]` (`rows >= h`, `cols >= w`; the rest dropped).
pub(super) fn unstage<V: Vector>(
    src: &[f32],
    padded: usize,
    (rows, cols): (usize, usize),
    channels: usize,
    (h, w): (usize, usize),
    dst: &mut [f32],
) {
    let lanes = V::LANES;
    assert!(lanes % 8 == 0 && rows >= h && cols >= w);
    let image = padded * rows * cols;
    let block = rows * cols * lanes;
    let plane = h * w;
    for (si, di) in src
        .chunks_exact(image)
        .zip(dst.chunks_exact_mut(channels * plane))
    {
        for c0 in (0..channels).step_by(8) {
            let (cb, lo) = (c0 / lanes, c0 % lanes);
            let n = (channels - c0).min(8);
            let sb = &si[cb * block..][..block];
            let dg = &mut di[c0 * plane..][..n * plane];
            if n == 8 {
                unstage_8(sb, lanes, lo, cols, (h, w), dg);
                continue;
            }
            for i in 0..h {
                let from = &sb[i * cols * lanes..][..w * lanes];
                let mut j = 0;
                while j + 8 <= w {
                    let cols8 = &from[j * lanes + lo..][..7 * lanes + 8];
                    let v: [f32x8; 8] = std::array::from_fn(|jj| {
                        f32x8::new(cols8[jj * lanes..][..8].try_into().expect("8 values"))
                    });
                    for (c, t) in f32x8::transpose(v).iter().take(n).enumerate() {
                        dg[c * plane + i * w + j..][..8].copy_from_slice(&t.to_array());
                    }
                    j += 8;
                }
                for j in j..w {
                    for c in 0..n {
                        dg[c * plane + i * w + j] = from[j * lanes + lo + c];
                    }
                }
            }
        }
    }
}

/// Eight whole channels of [`unstage`]: lanes `lo..lo + 8` of one block `sb` (`[rows]
/// [cols][lanes]`) into the planes `dg` (`[8][h][w]`). Its bounds are checked once, up
/// front: the loop's indexing cost more than its transposes when checked per access.
fn unstage_8(sb: &[f32], lanes: usize, lo: usize, cols: usize, (h, w): (usize, usize), dg: &mut [f32]) {
    let plane = h * w;
    assert!(lo + 8 <= lanes && w <= cols && dg.len() == 8 * plane);
    // The last value read, lane `lo + 7` of row `h - 1`, column `w - 1`, is in `sb`.
    assert!(h == 0 || w == 0 || ((h - 1) * cols + w - 1) * lanes + lo + 8 <= sb.len());
    for i in 0..h {
        let mut j = 0;
        while j + 8 <= w {
            let at = (i * cols + j) * lanes + lo;
            // SAFETY: the furthest read is `at + 7·lanes + 8 = ((i·cols + j + 7)·lanes + lo +
            // 8) <= (((h-1)·cols + w-1)·lanes + lo + 8) <= sb.len()` (asserted), as `i < h`
            // and `j + 7 < w`.
            let v: [f32x8; 8] = std::array::from_fn(|jj| unsafe { f32x8::load_at(sb, at + jj * lanes) });
            for (c, t) in f32x8::transpose(v).into_iter().enumerate() {
                // SAFETY: `c·plane + i·w + j + 8 <= 7·plane + (h-1)·w + w = 8·plane =
                // dg.len()`, as `j + 8 <= w`.
                unsafe { t.store_at(dg, c * plane + i * w + j) };
            }
            j += 8;
        }
        for j in j..w {
            for c in 0..8 {
                dg[c * plane + i * w + j] = sb[(i * cols + j) * lanes + lo + c];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wide::f32x16;

    #[test]
    fn stage_places_each_value_and_unstage_takes_it_back() {
        // 2 images, 11 channels (a partial second block of 8), 3 x 10 planes (a whole
        // vector of columns and 2 more), padded by 1 into 6 x 13; and blocks of 16, where
        // 19 channels make a whole group of 8 in the upper half of a vector.
        check::<f32x8>(16, 11);
        check::<f32x16>(16, 11);
        check::<f32x8>(24, 11);
        check::<f32x16>(32, 19);
    }

    fn check<V: Vector>(padded: usize, channels: usize) {
        let lanes = V::LANES;
        let (h, w, rows, cols) = (3, 10, 6, 13);
        let src: Vec<f32> = (0..2 * channels * h * w).map(|i| i as f32 + 1.0).collect();
        let mut staged = vec![f32::NAN; 2 * padded * rows * cols];
        stage::<V>(&src, channels, (h, w), 1, padded, (rows, cols), &mut staged);
        for (at, &v) in staged.iter().enumerate() {
            let (lane, rest) = (at % lanes, at / lanes);
            let (col, rest) = (rest % cols, rest / cols);
            let (row, rest) = (rest % rows, rest / rows);
            let (block, image) = (rest % (padded / lanes), rest / (padded / lanes));
            let c = block * lanes + lane;
            let inside = c < channels && (1..=h).contains(&row) && (1..=w).contains(&col);
            let want = if inside {
                src[((image * channels + c) * h + row - 1) * w + col - 1]
            } else {
                0.0
            };
            assert_eq!(v, want, "image {image} channel {c} row {row} col {col}");
        }
        // Unpadded staging round-trips.
        let mut plain = vec![f32::NAN; 2 * padded * h * (w + 1)];
        stage::<V>(&src, channels, (h, w), 0, padded, (h, w + 1), &mut plain);
        let mut back = vec![f32::NAN; src.len()];
        unstage::<V>(&plain, padded, (h, w + 1), channels, (h, w), &mut back);
        assert_eq!(back, src);
    }
}
