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
//!
//! Files: `primitives` (colours, blending, coverage), `noise` (hashing and value
//! noise), `petals` (petal rings and discs), `flowers` (the five flowers), `scene`
//! (placement, background, camera); this one holds the configuration and turns scenes
//! into images and data sets.

mod flowers;
mod noise;
mod petals;
mod primitives;
mod scene;
#[cfg(test)]
mod tests;

use image::{DynamicImage, GrayImage, Rgb, RgbImage};
use rayon::prelude::*;
use scene::Scene;

/// The five classes, in label order (sorted, as an image folder's classes are).
pub const CLASSES: [&str; 5] = ["daisy", "dandelion", "rose", "sunflower", "tulip"];

/// What to draw: image side `size` (square), RGB or grayscale, and the data set seed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SynthConfig {
    /// Easy (the default set) or hard ([`Difficulty`]).
    pub difficulty: Difficulty,
    /// Side of the square images in pixels (at least 8).
    pub size: usize,
    /// Three channels (RGB) when true, one (luminance) when false.
    pub rgb: bool,
    /// Seed of the data set: every image is a pure function of `(seed, class, index)`.
    pub seed: u64,
}

/// How hard the synthetic set is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Difficulty {
    /// The default set: one large flower (30-45 % of the side) near the middle.
    #[default]
    Easy,
    /// Smaller flowers (17-30 % of the side) anywhere within ±22 % of the middle, a smaller
    /// flower of another class behind it, one or two leaf-coloured blobs over it, a wider
    /// gain range and up to twice the pixel noise. The same `(seed, class, index)` draws
    /// the same flower as the easy set, then adds these.
    Hard,
}

impl Difficulty {
    /// The names `--difficulty` and `--synth-difficulty` take.
    pub const NAMES: [&'static str; 2] = ["easy", "hard"];
    /// Parses a name of [`Difficulty::NAMES`].
    pub fn parse(name: &str) -> Option<Difficulty> {
        match name.trim() {
            "easy" => Some(Difficulty::Easy),
            "hard" => Some(Difficulty::Hard),
            _ => None,
        }
    }
    /// Its name in [`Difficulty::NAMES`].
    pub fn name(self) -> &'static str {
        match self {
            Difficulty::Easy => "easy",
            Difficulty::Hard => "hard",
        }
    }
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

/// A value in [0, 1] as 8 bits.
fn quantize(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// Pixel `i` (row-major) of a CHW image as 8-bit RGB (a grayscale value in all three).
fn rgb8(cfg: &SynthConfig, chw: &[f32], i: usize) -> Rgb<u8> {
    let plane = cfg.size * cfg.size;
    if cfg.rgb {
        Rgb([
            quantize(chw[i]),
            quantize(chw[plane + i]),
            quantize(chw[2 * plane + i]),
        ])
    } else {
        let g = quantize(chw[i]);
        Rgb([g, g, g])
    }
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
    if cfg.rgb {
        DynamicImage::ImageRgb8(RgbImage::from_fn(s as u32, s as u32, |x, y| {
            rgb8(cfg, chw, y as usize * s + x as usize)
        }))
    } else {
        DynamicImage::ImageLuma8(GrayImage::from_fn(s as u32, s as u32, |x, y| {
            image::Luma([quantize(chw[y as usize * s + x as usize])])
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
    // Cell `j` (row `j / 5`, column `j % 5`) is sample `j` of the data set.
    let (cells, _) = dataset(cfg, rows, 0);
    RgbImage::from_fn((k * s) as u32, (rows * s) as u32, |x, y| {
        let (x, y) = (x as usize, y as usize);
        let j = (y / s) * k + x / s;
        rgb8(cfg, &cells[j * len..(j + 1) * len], (y % s) * s + x % s)
    })
}
