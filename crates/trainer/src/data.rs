//! Image folders: one sub-folder per class (`DIR/daisy/*.jpg`), the layout of the Kaggle
//! flowers data set and of torchvision's `ImageFolder`.
//!
//! Classes are the sub-folder names in sorted order (label `i` is the `i`-th name). Every
//! file with an image extension under a class folder (recursively, following symlinks but
//! never a folder twice) is decoded in parallel with `image`, resized to the network input
//! (`resize_exact`, triangle filter), converted to grayscale (luminance) or RGB, and scaled
//! to `[0, 1]`. A file that does not decode is reported with its path and the reason, and
//! skipped. Decoding limits refuse images larger than [`MAX_SIDE`] pixels on a side or
//! needing more than [`MAX_DECODE_BYTES`], so a decompression bomb is an error, not an
//! out-of-memory kill.

use crate::error::TrainerError;
use image::{imageops::FilterType, DynamicImage, ImageFormat, ImageReader, Limits};
use petal_model::{InputShape, Normalization};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::collections::HashSet;
use std::io::Cursor;
use std::path::{Path, PathBuf};

/// Largest accepted image side, in pixels.
pub const MAX_SIDE: u32 = 16_384;
/// Largest allocation one decode may make (bytes).
pub const MAX_DECODE_BYTES: u64 = 512 << 20;
/// Largest accepted image file (bytes).
pub const MAX_FILE_BYTES: u64 = 256 << 20;
/// File extensions read as images (case-insensitive), as torchvision's `IMG_EXTENSIONS`.
pub const IMAGE_EXTENSIONS: [&str; 9] = ["jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff", "pgm"];

/// Decoded images and their labels.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dataset {
    /// `[n, c, h, w]`, values in `[0, 1]`.
    pub images: Vec<f32>,
    /// `[n]`, indices into `classes`.
    pub labels: Vec<usize>,
    /// Class names in label order.
    pub classes: Vec<String>,
    pub shape: InputShape,
    /// Source of each image (empty for generated data).
    pub paths: Vec<PathBuf>,
    /// The per-channel mean and deviation the images were normalised with
    /// ([`Dataset::normalize`]); `None`: values as decoded, in `[0, 1]`.
    pub mean_std: Option<(Vec<f32>, Vec<f32>)>,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Image `i`, `[c, h, w]`.
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.shape.len();
        &self.images[i * n..(i + 1) * n]
    }
    /// Images per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &l in &self.labels {
            counts[l] += 1;
        }
        counts
    }
    /// The checkpoint `normalization` of these images: `[0, 1]` values, then the mean and
    /// deviation they were normalised with, if any.
    pub fn normalization(&self) -> Normalization {
        let mut n = Normalization::unit(self.shape.c);
        if let Some((mean, std)) = &self.mean_std {
            n.mean.clone_from(mean);
            n.std.clone_from(std);
        }
        n
    }

    /// Per-channel mean and standard deviation (population) of the images' values, summed
    /// in f64 image by image: what `--normalize` subtracts and divides by. A constant
    /// channel gets a deviation of 1 (nothing to scale).
    pub fn channel_stats(&self) -> (Vec<f32>, Vec<f32>) {
        let (c, plane) = (self.shape.c, self.shape.h * self.shape.w);
        let mut sums = vec![(0.0f64, 0.0f64); c];
        for img in self.images.chunks_exact(self.shape.len().max(1)) {
            for (ch, p) in img.chunks_exact(plane.max(1)).enumerate() {
                let (s, ss) = p
                    .iter()
                    .fold((0.0, 0.0), |(s, ss), &v| (s + v as f64, ss + (v as f64).powi(2)));
                sums[ch].0 += s;
                sums[ch].1 += ss;
            }
        }
        let n = (self.len() * plane).max(1) as f64;
        sums.iter()
            .map(|&(s, ss)| {
                let mean = s / n;
                let sd = (ss / n - mean * mean).max(0.0).sqrt();
                (mean as f32, if sd > 1e-12 { sd as f32 } else { 1.0 })
            })
            .unzip()
    }

    /// Normalises every image in place, per channel: `(x − mean) / std` (the transform
    /// `eval` and `predict` apply from a checkpoint's `normalization`).
    pub fn normalize(&mut self, mean: &[f32], std: &[f32]) {
        self.mean_std = Some((mean.to_vec(), std.to_vec()));
        let plane = self.shape.h * self.shape.w;
        for img in self.images.chunks_exact_mut(self.shape.len().max(1)) {
            for (ch, p) in img.chunks_exact_mut(plane.max(1)).enumerate() {
                for v in p {
                    *v = (*v - mean[ch]) / std[ch];
                }
            }
        }
    }

    /// The images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let mut images = Vec::with_capacity(indices.len() * self.shape.len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        Dataset {
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            classes: self.classes.clone(),
            shape: self.shape,
            paths: if self.paths.is_empty() {
                Vec::new()
            } else {
                indices.iter().map(|&i| self.paths[i].clone()).collect()
            },
            mean_std: self.mean_std.clone(),
        }
    }
    /// Splits off a validation set: `fraction` of every class (at least one image of each
    /// class with two or more), chosen by a shuffle seeded with `seed`. Returns (train, val),
    /// each in the set's order. The validation images are copied out; the training images
    /// stay in the set's own buffer, moved to its front, which then shrinks (no second copy
    /// of the set).
    pub fn split(mut self, fraction: f64, seed: u64) -> (Dataset, Dataset) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_0005_9117);
        let (mut train, mut val) = (Vec::new(), Vec::new());
        for c in 0..self.classes.len() {
            let mut idx: Vec<usize> = (0..self.len()).filter(|&i| self.labels[i] == c).collect();
            idx.shuffle(&mut rng);
            let mut n_val = (idx.len() as f64 * fraction).round() as usize;
            if fraction > 0.0 && n_val == 0 && idx.len() >= 2 {
                n_val = 1;
            }
            val.extend_from_slice(&idx[..n_val]);
            train.extend_from_slice(&idx[n_val..]);
        }
        train.sort_unstable();
        val.sort_unstable();
        let val = self.subset(&val);
        // Each training image moves down to its place (`k <= i`, in order), over images
        // already moved or not training ones.
        let per = self.shape.len();
        for (k, &i) in train.iter().enumerate() {
            self.images.copy_within(i * per..(i + 1) * per, k * per);
            self.labels[k] = self.labels[i];
            if !self.paths.is_empty() {
                self.paths.swap(k, i);
            }
        }
        self.images.truncate(train.len() * per);
        self.images.shrink_to_fit();
        self.labels.truncate(train.len());
        self.paths
            .truncate(if self.paths.is_empty() { 0 } else { train.len() });
        (self, val)
    }
}

/// What loading a folder found besides the images.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadReport {
    /// Files that did not decode, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// Files ignored for their extension.
    pub ignored: usize,
}

/// Class folders of `dir` (at least one), sorted by name, with their names.
pub fn class_folders(dir: &Path) -> Result<Vec<(String, PathBuf)>, TrainerError> {
    let meta = std::fs::metadata(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => TrainerError::data(dir, "does not exist"),
        _ => TrainerError::io(dir, e),
    })?;
    if !meta.is_dir() {
        return Err(TrainerError::data(
            dir,
            "is not a folder (expected DIR/<class>/<image>)",
        ));
    }
    let mut classes = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| TrainerError::io(dir, e))? {
        let entry = entry.map_err(|e| TrainerError::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !path.is_dir() {
            continue;
        }
        classes.push((name.into_owned(), path));
    }
    classes.sort();
    // Names that are not UTF-8 are read with U+FFFD in place of the bad bytes; two such
    // folders could then share a name, and with it a label.
    if let Some(w) = classes.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(TrainerError::data(
            dir,
            format!(
                "class folders {} and {} have the same name `{}` once read as UTF-8: rename one",
                w[0].1.display(),
                w[1].1.display(),
                w[0].0
            ),
        ));
    }
    if classes.is_empty() {
        return Err(TrainerError::data(
            dir,
            "has no class folders (expected DIR/<class>/<image>)",
        ));
    }
    Ok(classes)
}

/// [`class_folders`] of a training folder: at least two.
pub fn training_class_folders(dir: &Path) -> Result<Vec<(String, PathBuf)>, TrainerError> {
    let classes = class_folders(dir)?;
    if classes.len() == 1 {
        return Err(TrainerError::data(
            dir,
            format!(
                "has only one class folder (`{}`): a classifier needs at least two",
                classes[0].0
            ),
        ));
    }
    Ok(classes)
}

/// The image files of the class folders of `dir` (those [`load_image_folder`] would load
/// and decode), counted without reading them.
pub fn count_images(dir: &Path) -> Result<usize, TrainerError> {
    class_folders(dir)?
        .iter()
        .map(|(_, path)| list_images(path).map(|(files, _)| files.len()))
        .sum()
}

/// Image files under `dir` (recursively, sorted), and how many files were ignored.
fn list_images(dir: &Path) -> Result<(Vec<PathBuf>, usize), TrainerError> {
    let mut files = Vec::new();
    let mut ignored = 0;
    let mut seen = HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        // A symlink loop or a folder linked twice is walked once.
        let real = std::fs::canonicalize(&d).map_err(|e| TrainerError::io(&d, e))?;
        if !seen.insert(real) {
            continue;
        }
        for entry in std::fs::read_dir(&d).map_err(|e| TrainerError::io(&d, e))? {
            let entry = entry.map_err(|e| TrainerError::io(&d, e))?;
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if has_image_extension(&path) {
                files.push(path);
            } else {
                ignored += 1;
            }
        }
    }
    files.sort();
    Ok((files, ignored))
}

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}

/// Loads an image folder for inputs of `shape` (1 channel: grayscale, 3: RGB). With
/// `classes` given (a checkpoint's, or the training folder's for a validation folder), the
/// folder's class names must be among them and keep their labels (one class is enough);
/// otherwise the sorted folder names, at least two, are the classes.
pub fn load_image_folder(
    dir: &Path,
    shape: InputShape,
    classes: Option<&[String]>,
) -> Result<(Dataset, LoadReport), TrainerError> {
    if shape.c != 1 && shape.c != 3 {
        return Err(TrainerError::Usage(format!(
            "images load as 1 (grayscale) or 3 (RGB) channels, not {}",
            shape.c
        )));
    }
    let folders = match classes {
        Some(_) => class_folders(dir)?,
        None => training_class_folders(dir)?,
    };
    let names: Vec<String> = match classes {
        Some(c) => c.to_vec(),
        None => folders.iter().map(|(n, _)| n.clone()).collect(),
    };
    let mut files = Vec::new();
    let mut labels = Vec::new();
    let mut report = LoadReport::default();
    for (name, path) in &folders {
        let label = names.iter().position(|n| n == name).ok_or_else(|| {
            TrainerError::data(
                dir,
                format!("class folder `{name}` is not one of the checkpoint's classes {names:?}"),
            )
        })?;
        let (f, ignored) = list_images(path)?;
        report.ignored += ignored;
        if f.is_empty() {
            return Err(TrainerError::data(
                path,
                format!(
                    "class `{name}` has no image files ({})",
                    IMAGE_EXTENSIONS.join(", ")
                ),
            ));
        }
        labels.extend(std::iter::repeat_n(label, f.len()));
        files.extend(f);
    }
    // Decode straight into the final buffer (memory stays one image per file), then drop
    // the slots of the files that failed.
    let per = shape.len();
    let values = files.len() as u128 * per as u128;
    let mut images = Vec::new();
    if usize::try_from(values)
        .ok()
        .and_then(|v| images.try_reserve_exact(v).ok())
        .is_none()
    {
        return Err(TrainerError::data(
            dir,
            format!(
                "{} images of {shape} ({values} values) do not fit in memory: lower --size",
                files.len()
            ),
        ));
    }
    images.resize(files.len() * per, 0.0f32);
    let results: Vec<Result<(), String>> = images
        .par_chunks_mut(per)
        .zip(files.par_iter())
        .map(|(out, path)| decode_into(path, shape, out))
        .collect();
    let mut keep = 0;
    let mut kept_labels = Vec::with_capacity(files.len());
    let mut kept_paths = Vec::with_capacity(files.len());
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(()) => {
                if keep != i {
                    images.copy_within(i * per..(i + 1) * per, keep * per);
                }
                kept_labels.push(labels[i]);
                kept_paths.push(files[i].clone());
                keep += 1;
            }
            Err(reason) => report.skipped.push((files[i].clone(), reason)),
        }
    }
    images.truncate(keep * per);
    let data = Dataset {
        images,
        labels: kept_labels,
        classes: names,
        shape,
        paths: kept_paths,
        mean_std: None,
    };
    for (c, (name, path)) in folders.iter().enumerate() {
        let label = data.classes.iter().position(|n| n == name).unwrap_or(c);
        if !data.labels.contains(&label) {
            return Err(TrainerError::data(
                path,
                format!("class `{name}` has no image that decodes"),
            ));
        }
    }
    Ok((data, report))
}

/// Decodes one file into `out` (`[c, h, w]`), or says why it cannot.
pub fn decode_into(path: &Path, shape: InputShape, out: &mut [f32]) -> Result<(), String> {
    let img = decode_file(path)?;
    write_chw(&img, shape, out);
    Ok(())
}

/// Decodes one image file with the decoding limits.
pub fn decode_file(path: &Path) -> Result<DynamicImage, String> {
    decode_bytes(&read_image_file(path)?)
}

/// Reads an image file's bytes: a regular file (a FIFO, a device or a folder is refused
/// before it is opened, so it can neither block nor stream forever), not empty, at most
/// [`MAX_FILE_BYTES`] (checked again while reading, in case it grows).
pub fn read_image_file(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            "a folder"
        } else {
            "a FIFO, socket or device"
        };
        return Err(format!("not a regular file ({kind})"));
    }
    let len = meta.len();
    if len == 0 {
        return Err("empty file".into());
    }
    if len > MAX_FILE_BYTES {
        return Err(format!("{len} bytes, over the {MAX_FILE_BYTES}-byte limit"));
    }
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("over the {MAX_FILE_BYTES}-byte limit"));
    }
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    Ok(bytes)
}

/// Decodes an image held in memory with the decoding limits.
pub fn decode_bytes(bytes: &[u8]) -> Result<DynamicImage, String> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    match reader.format() {
        None => return Err("not an image (unknown format)".into()),
        Some(ImageFormat::Jpeg) if !jpeg_is_complete(bytes) => {
            // The JPEG decoder fills what is missing with gray: refuse, as PIL does.
            return Err("truncated JPEG (no end-of-image marker after its last scan)".into());
        }
        Some(_) => {}
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    reader.decode().map_err(|e| e.to_string())
}

/// Whether a JPEG's last scan is followed by its end-of-image marker (`FF D9`). Inside a
/// scan's entropy-coded data every `FF` byte is followed by `00` or a restart marker, so
/// the last start-of-scan marker (`FF DA`) is the real one, even with an EXIF thumbnail
/// (a JPEG of its own) earlier in the file.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let Some(sos) = bytes.windows(2).rposition(|m| m == [0xFF, 0xDA]) else {
        return false;
    };
    bytes[sos..].windows(2).any(|m| m == [0xFF, 0xD9])
}

/// Resizes `img` to the shape and writes it as `[c, h, w]` in `[0, 1]` (a NaN sample of a
/// floating-point image becomes 0).
pub fn write_chw(img: &DynamicImage, shape: InputShape, out: &mut [f32]) {
    let (h, w) = (shape.h, shape.w);
    let img = if img.width() as usize == w && img.height() as usize == h {
        img.clone()
    } else {
        img.resize_exact(w as u32, h as u32, FilterType::Triangle)
    };
    if shape.c == 1 {
        for (o, p) in out.iter_mut().zip(img.to_luma32f().pixels()) {
            *o = unit(p.0[0]);
        }
    } else {
        let rgb = img.to_rgb32f();
        let plane = h * w;
        for (i, p) in rgb.pixels().enumerate() {
            for c in 0..3 {
                out[c * plane + i] = unit(p.0[c]);
            }
        }
    }
}

/// `v` clamped to `[0, 1]`, NaN to 0.
fn unit(v: f32) -> f32 {
    if v.is_nan() {
        0.0
    } else {
        v.clamp(0.0, 1.0)
    }
}
