//! On-the-fly data augmentation of training images (`--augment flip,crop:N`).
//!
//! Each training image is transformed as its batch is assembled, straight from the data
//! set into the batch slot (no allocation per image); validation images never are.
//!
//! - `flip`: a horizontal flip with probability 0.5 (PyTorch's `RandomHorizontalFlip()`).
//! - `crop` / `crop:N`: the image padded by `N` zeros on each side (default 4), then a
//!   random window of the original size (PyTorch's `RandomCrop(size, padding=N)`). Images
//!   hold pixel values before the network's normalization, so the padding is black, as in
//!   PyTorch's transform on the image before `Normalize`.
//!
//! With both, the crop comes first, then the flip (the order of the usual CIFAR recipe).
//!
//! **Reproducibility:** the random draws of an image are a pure function of the run seed,
//! the epoch and the image's index in the training set ([`Draw::new`], a splitmix64 hash),
//! not of a generator's state: runs are bit-identical on any thread count, and a run
//! interrupted and resumed mid-epoch draws exactly what the uninterrupted run drew.

use crate::error::TrainerError;
use serde::{Deserialize, Serialize};

/// The default padding of `crop` without `:N`.
pub const DEFAULT_CROP_PADDING: usize = 4;

/// The augmentation of a run (`config.json`'s `augment`; the default, none, is what a
/// configuration from before augmentation resumes with).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Augment {
    /// Horizontal flip with probability 0.5.
    #[serde(default)]
    pub flip: bool,
    /// Random crop with this zero padding on each side.
    #[serde(default)]
    pub crop: Option<usize>,
}

/// The random choices for one image: whether it is flipped, and the top-left corner
/// `(dy, dx)` of its window in the padded image (each in `0..=2N`; `(N, N)` is the
/// original image).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Draw {
    pub flip: bool,
    pub dy: usize,
    pub dx: usize,
}

/// splitmix64's finalizer: a bijective mix of 64 bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// A uniform draw in `0..n` from the high 32 bits of `r` (multiply-shift; `n` ≤ 2³²).
fn below(r: u64, n: usize) -> usize {
    (((r >> 32) * n as u64) >> 32) as usize
}

impl Draw {
    /// The draw of training image `index` in `epoch` (0-based) of a run seeded `seed`,
    /// with crop padding `pad` (0: no crop, the window is the image): a pure function of
    /// its arguments.
    pub fn new(seed: u64, epoch: usize, index: usize, pad: usize) -> Draw {
        let key =
            mix(mix(mix(seed ^ 0xA076_1D64_78BD_642F).wrapping_add(epoch as u64)).wrapping_add(index as u64));
        let r_flip = mix(key.wrapping_add(GOLDEN));
        let r_y = mix(key.wrapping_add(GOLDEN.wrapping_mul(2)));
        let r_x = mix(key.wrapping_add(GOLDEN.wrapping_mul(3)));
        Draw {
            flip: r_flip >> 63 == 1,
            dy: below(r_y, 2 * pad + 1),
            dx: below(r_x, 2 * pad + 1),
        }
    }
}

impl Augment {
    /// Whether any transform is on.
    pub fn is_on(&self) -> bool {
        self.flip || self.crop.is_some()
    }

    /// Parses `--augment`: a comma list of `flip`, `crop` and `crop:N`, each at most once.
    pub fn parse(list: &str) -> Result<Augment, TrainerError> {
        let bad = |item: &str| {
            TrainerError::Usage(format!(
                "--augment `{item}` is not one of flip, crop, crop:N (e.g. --augment flip,crop:4)"
            ))
        };
        let mut a = Augment::default();
        for item in list.split(',').map(str::trim) {
            let twice = || TrainerError::Usage(format!("--augment `{list}` names `{item}` twice"));
            if item == "flip" {
                if a.flip {
                    return Err(twice());
                }
                a.flip = true;
            } else if item == "crop" || item.starts_with("crop:") {
                if a.crop.is_some() {
                    return Err(twice());
                }
                let pad = match item.strip_prefix("crop:") {
                    None => DEFAULT_CROP_PADDING,
                    Some(n) => n.parse().map_err(|_| bad(item))?,
                };
                a.crop = Some(pad);
            } else {
                return Err(bad(item));
            }
        }
        Ok(a)
    }

    /// Refuses a crop padding of 0 or above the image's smaller side (`[c, h, w]`).
    pub fn check(&self, input: [usize; 3]) -> Result<(), TrainerError> {
        let side = input[1].min(input[2]);
        match self.crop {
            Some(n) if n == 0 || n > side => Err(TrainerError::Usage(format!(
                "--augment crop:{n}: the padding must be 1 to the image side ({side})"
            ))),
            _ => Ok(()),
        }
    }

    /// `flip,crop:4`, or `none`: for the console and messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.flip {
            parts.push("flip".to_string());
        }
        if let Some(n) = self.crop {
            parts.push(format!("crop:{n}"));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(",")
        }
    }

    /// The draw of image `index` in `epoch` of a run seeded `seed` (flip forced off when
    /// `flip` is not on).
    pub fn draw(&self, seed: u64, epoch: usize, index: usize) -> Draw {
        let d = Draw::new(seed, epoch, index, self.crop.unwrap_or(0));
        Draw {
            flip: d.flip && self.flip,
            ..d
        }
    }

    /// Writes image `src` (`[c, h, w]` in `shape`) transformed by `draw` into `dst` (the
    /// same length): the window at `(dy, dx)` of the image padded by this crop's padding,
    /// then mirrored left-right when `draw.flip`.
    pub fn apply(&self, draw: Draw, src: &[f32], dst: &mut [f32], shape: [usize; 3]) {
        let [c, h, w] = shape;
        assert_eq!(src.len(), c * h * w, "source image of shape {shape:?}");
        assert_eq!(dst.len(), src.len(), "batch slot of shape {shape:?}");
        let pad = self.crop.unwrap_or(0);
        // Output (y, x) reads the source at (y + dy - pad, x + dx - pad), 0 outside.
        let oy = draw.dy as isize - pad as isize;
        let ox = draw.dx as isize - pad as isize;
        // The output columns whose source column is inside the image.
        let x0 = (-ox).clamp(0, w as isize) as usize;
        let x1 = (w as isize - ox).clamp(0, w as isize) as usize;
        for ch in 0..c {
            for y in 0..h {
                let out = &mut dst[(ch * h + y) * w..(ch * h + y + 1) * w];
                let sy = y as isize + oy;
                if sy < 0 || sy >= h as isize || x0 >= x1 {
                    out.fill(0.0);
                    continue;
                }
                let row = &src[(ch * h + sy as usize) * w..(ch * h + sy as usize + 1) * w];
                let from = &row[(x0 as isize + ox) as usize..(x1 as isize + ox) as usize];
                out[..x0].fill(0.0);
                out[x0..x1].copy_from_slice(from);
                out[x1..].fill(0.0);
                if draw.flip {
                    out.reverse();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
