//! Loading a run's data, with the console's report of it: the synthetic flowers, split,
//! or an image folder, split or with its `--val` folder.

use super::console::print_load;
use crate::data::{load_image_folder, Dataset};
use crate::error::TrainerError;
use crate::synth::{self, SynthConfig, CLASSES};
use crate::train::RunConfig;
use std::time::Instant;

/// The training and validation sets of a checked run configuration. `classes` are the
/// training folder's, found by the checks. Refuses a split that leaves no training image.
pub(super) fn load_data(cfg: &RunConfig, classes: &[String]) -> Result<(Dataset, Dataset), TrainerError> {
    let shape = cfg.input_shape();
    let t = Instant::now();
    let (tr, va) = match &cfg.data {
        None => {
            let sc = SynthConfig {
                size: shape.h,
                rgb: shape.c == 3,
                seed: cfg.seed,
                difficulty: cfg.synth_difficulty,
            };
            let (images, labels) = synth::dataset(&sc, cfg.synth_per_class, 0);
            let all = Dataset {
                images,
                labels,
                classes: CLASSES.iter().map(|s| s.to_string()).collect(),
                shape,
                paths: Vec::new(),
                mean_std: None,
            };
            let (tr, va) = all.split(cfg.val_split, cfg.seed);
            println!(
                "synthetic flowers: {} training and {} validation images of {}x{}x{} ({:.1} s)",
                tr.len(),
                va.len(),
                shape.c,
                shape.h,
                shape.w,
                t.elapsed().as_secs_f64()
            );
            (tr, va)
        }
        Some(dir) => {
            let (all, report) = load_image_folder(dir, shape, Some(classes))?;
            print_load(dir, &all, &report, t);
            match &cfg.val {
                Some(vdir) => {
                    let t = Instant::now();
                    let (va, r) = load_image_folder(vdir, shape, Some(&all.classes))?;
                    print_load(vdir, &va, &r, t);
                    (all, va)
                }
                None => all.split(cfg.val_split, cfg.seed),
            }
        }
    };
    if tr.is_empty() {
        return Err(TrainerError::Usage(
            "no training images left after the validation split".into(),
        ));
    }
    Ok((tr, va))
}
