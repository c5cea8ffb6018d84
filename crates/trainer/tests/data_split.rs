//! `Dataset::split` moves the training images to the front of the set's own buffer: the
//! same images, labels and paths, in the same order, as copying both parts out would give.

use petal_model::InputShape;
use petal_trainer::data::Dataset;
use std::path::PathBuf;

#[test]
fn split_in_place_equals_the_two_subsets() {
    for (n, classes, fraction, paths) in [
        (50, 5, 0.2, true),
        (7, 2, 0.5, false),
        (13, 3, 0.0, true),
        (1, 1, 0.3, false),
    ] {
        let shape = InputShape { c: 2, h: 3, w: 1 };
        let set = Dataset {
            images: (0..n * shape.len()).map(|v| v as f32).collect(),
            labels: (0..n).map(|i| (i * 7 + i / 3) % classes).collect(),
            classes: (0..classes).map(|c| format!("c{c}")).collect(),
            shape,
            paths: if paths {
                (0..n).map(|i| PathBuf::from(format!("{i}.png"))).collect()
            } else {
                Vec::new()
            },
            mean_std: None,
        };
        let (train, val) = set.clone().split(fraction, 9);
        // Every image once: the training images are the set's, less the validation ones,
        // in order.
        let is_val = |img: &[f32]| val.images.chunks_exact(shape.len()).any(|v| v == img);
        let keep: Vec<usize> = (0..n).filter(|&i| !is_val(set.image(i))).collect();
        assert_eq!(train.len() + val.len(), n);
        assert_eq!(train, set.subset(&keep), "n {n}, fraction {fraction}");
        assert_eq!(train.images.capacity(), train.images.len());
        assert!(fraction == 0.0 || n < 2 || !val.is_empty());
    }
}
