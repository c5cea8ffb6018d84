//! Tests of the synthetic flowers: determinism, value ranges, shapes, data sets.

use super::*;

fn cfg(size: usize, rgb: bool) -> SynthConfig {
    SynthConfig {
        size,
        rgb,
        seed: 7,
        difficulty: Difficulty::Easy,
    }
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
fn contact_sheet_cells_are_the_samples() {
    for c in [cfg(20, true), cfg(17, false)] {
        let sheet = contact_sheet(&c, 2);
        for (j, class, index) in [(0, 0, 0u64), (4, 4, 0), (7, 2, 1)] {
            let cell = to_image(&c, &drawn(&c, class, index)).to_rgb8();
            let (x0, y0) = ((j % 5 * c.size) as u32, (j / 5 * c.size) as u32);
            for (x, y, p) in cell.enumerate_pixels() {
                assert_eq!(sheet.get_pixel(x0 + x, y0 + y), p, "cell {j} at ({x}, {y})");
            }
        }
    }
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

#[test]
fn the_hard_set_adds_clutter_to_the_same_draws_and_stays_deterministic() {
    for rgb in [false, true] {
        let easy = cfg(48, rgb);
        let hard = SynthConfig {
            difficulty: Difficulty::Hard,
            ..easy
        };
        for class in 0..5 {
            let h = drawn(&hard, class, 11);
            assert_eq!(h, drawn(&hard, class, 11), "class {class}: deterministic");
            assert!(h.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)));
            let e = drawn(&easy, class, 11);
            let differ = h.iter().zip(&e).filter(|(a, b)| (*a - *b).abs() > 0.05).count();
            assert!(
                differ > h.len() / 10,
                "class {class}: only {differ} values differ from the easy image"
            );
        }
        // A data set is the same as drawing each image alone (any thread count).
        let (images, labels) = dataset(&hard, 3, 5);
        for (j, img) in images.chunks_exact(hard.sample_len()).enumerate() {
            assert_eq!(img, &drawn(&hard, labels[j], 5 + j as u64 / 5)[..], "sample {j}");
        }
    }
    assert_eq!(Difficulty::parse(" hard "), Some(Difficulty::Hard));
    assert_eq!(Difficulty::parse("easy"), Some(Difficulty::Easy));
    assert_eq!(Difficulty::parse("medium"), None);
}
