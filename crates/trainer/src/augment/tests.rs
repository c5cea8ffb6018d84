//! Unit tests of the transforms and their draws.

use super::*;

/// A `[2, 3, 4]` image whose values are `1 + index` (no zeros, so padding shows).
fn small() -> Vec<f32> {
    (0..24).map(|i| 1.0 + i as f32).collect()
}

const SHAPE: [usize; 3] = [2, 3, 4];

fn apply(a: Augment, d: Draw, src: &[f32]) -> Vec<f32> {
    let mut dst = vec![f32::NAN; src.len()];
    a.apply(d, src, &mut dst, SHAPE);
    dst
}

#[test]
fn flipping_twice_is_the_identity() {
    let a = Augment {
        flip: true,
        crop: None,
    };
    let d = Draw {
        flip: true,
        dy: 0,
        dx: 0,
    };
    let img = small();
    let once = apply(a, d, &img);
    assert_ne!(once, img);
    // Row 0 of channel 0 mirrored.
    assert_eq!(&once[..4], &[4.0, 3.0, 2.0, 1.0]);
    assert_eq!(apply(a, d, &once), img);
}

#[test]
fn a_crop_drawn_at_offset_n_is_the_identity() {
    for n in 1..=3 {
        let a = Augment {
            flip: true,
            crop: Some(n),
        };
        let d = Draw {
            flip: false,
            dy: n,
            dx: n,
        };
        assert_eq!(apply(a, d, &small()), small(), "padding {n}");
    }
}

#[test]
fn a_crop_is_the_window_of_the_zero_padded_image() {
    // Padding 2: the padded channel is 7x8; the window at (dy, dx) = (3, 1) reads source
    // rows 1..4 (row 3 is padding) and columns -1..3 (column -1 is padding).
    let a = Augment {
        flip: false,
        crop: Some(2),
    };
    let d = Draw {
        flip: false,
        dy: 3,
        dx: 1,
    };
    #[rustfmt::skip]
    let want = [
        // channel 0: source rows 1, 2 (values 5..8, 9..12), then padding
        0.0, 5.0, 6.0, 7.0,
        0.0, 9.0, 10.0, 11.0,
        0.0, 0.0, 0.0, 0.0,
        // channel 1: values 17..20, 21..24
        0.0, 17.0, 18.0, 19.0,
        0.0, 21.0, 22.0, 23.0,
        0.0, 0.0, 0.0, 0.0,
    ];
    assert_eq!(apply(a, d, &small()), want);
    // The same window flipped: each row mirrored.
    let flipped = apply(a, Draw { flip: true, ..d }, &small());
    assert_eq!(&flipped[..8], &[7.0, 6.0, 5.0, 0.0, 11.0, 10.0, 9.0, 0.0]);
    // A corner window (0, 4): source rows -2..1, columns 2..6.
    let corner = apply(
        a,
        Draw {
            flip: false,
            dy: 0,
            dx: 4,
        },
        &small(),
    );
    #[rustfmt::skip]
    let want0 = [
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        3.0, 4.0, 0.0, 0.0,
    ];
    assert_eq!(&corner[..12], &want0);
    // A window wholly in the padding (padding 4 on a side of 4): all zeros.
    let a4 = Augment {
        flip: false,
        crop: Some(4),
    };
    let zero = apply(
        a4,
        Draw {
            flip: false,
            dy: 0,
            dx: 8,
        },
        &small(),
    );
    assert!(zero.iter().all(|&v| v == 0.0));
}

#[test]
fn draws_are_a_pure_function_of_seed_epoch_and_index() {
    let a = Augment {
        flip: true,
        crop: Some(4),
    };
    for i in 0..100 {
        assert_eq!(a.draw(7, 3, i), a.draw(7, 3, i));
        let d = a.draw(7, 3, i);
        assert!(d.dy <= 8 && d.dx <= 8);
    }
    let differ =
        |f: &dyn Fn(usize) -> Draw, g: &dyn Fn(usize) -> Draw| (0..1000).filter(|&i| f(i) != g(i)).count();
    // Other epochs, other seeds: most of 1000 images drawn differently (81 windows × 2).
    assert!(differ(&|i| a.draw(7, 0, i), &|i| a.draw(7, 1, i)) > 950);
    assert!(differ(&|i| a.draw(7, 0, i), &|i| a.draw(8, 0, i)) > 950);
    // Every window offset is drawn.
    let mut seen = [[false; 9]; 9];
    for i in 0..5000 {
        let d = a.draw(1, 0, i);
        seen[d.dy][d.dx] = true;
    }
    assert!(seen.iter().flatten().all(|&s| s));
}

#[test]
fn about_half_the_images_are_flipped() {
    let a = Augment {
        flip: true,
        crop: None,
    };
    let n = 10_000;
    let flipped = (0..n).filter(|&i| a.draw(3, 2, i).flip).count();
    // Binomial(10000, 0.5): sd 50.
    assert!((4800..=5200).contains(&flipped), "{flipped}");
    // Without flip, nothing is; without crop, the window is the image.
    let none = Augment::default();
    assert!((0..n).all(|i| none.draw(3, 2, i)
        == Draw {
            flip: false,
            dy: 0,
            dx: 0
        }));
}

#[test]
fn the_flag_parses_and_checks() {
    let p = |s: &str| Augment::parse(s).map_err(|e| e.to_string());
    assert_eq!(
        p("flip").unwrap(),
        Augment {
            flip: true,
            crop: None
        }
    );
    assert_eq!(
        p("crop").unwrap(),
        Augment {
            flip: false,
            crop: Some(4)
        }
    );
    assert_eq!(
        p("flip,crop:2").unwrap(),
        Augment {
            flip: true,
            crop: Some(2)
        }
    );
    assert_eq!(p("crop:2,flip").unwrap().describe(), "flip,crop:2");
    assert!(p("rotate")
        .unwrap_err()
        .contains("`rotate` is not one of flip, crop, crop:N"));
    assert!(p("crop:x").unwrap_err().contains("`crop:x` is not one of"));
    assert!(p("flip,flip").unwrap_err().contains("twice"));
    assert!(p("").is_err());
    let crop = |n| Augment {
        flip: false,
        crop: Some(n),
    };
    assert!(crop(0).check([3, 32, 32]).is_err());
    assert!(crop(33).check([3, 32, 32]).is_err());
    assert!(crop(32).check([3, 32, 32]).is_ok());
    assert!(Augment::default().check([1, 8, 8]).is_ok());
}
