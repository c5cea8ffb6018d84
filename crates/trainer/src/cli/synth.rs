//! `trainer synth`: writes the synthetic flowers as PNG class folders.

use super::args::SynthArgs;
use super::{Exit, MAX_SYNTH_SIDE};
use crate::error::TrainerError;
use crate::synth::{self, Difficulty, SynthConfig, CLASSES};
use crate::train;
use std::time::Instant;

pub(super) fn run(a: SynthArgs) -> Result<Exit, TrainerError> {
    if !(8..=MAX_SYNTH_SIDE).contains(&a.size) {
        return Err(TrainerError::Usage(format!(
            "--size must be between 8 and {MAX_SYNTH_SIDE}"
        )));
    }
    train::create_run_dir(&a.out).map_err(|e| match e {
        TrainerError::RunExists(p) => TrainerError::data(p, "is not empty: choose a new --out"),
        e => e,
    })?;
    let difficulty = Difficulty::parse(&a.difficulty).ok_or_else(|| {
        TrainerError::Usage(format!(
            "--difficulty `{}` is not one of {}",
            a.difficulty,
            Difficulty::NAMES.join(", ")
        ))
    })?;
    let cfg = SynthConfig {
        size: a.size,
        rgb: !a.grayscale,
        seed: a.seed,
        difficulty,
    };
    let t = Instant::now();
    let c = cfg.channels();
    let mut buf = vec![0.0f32; c * a.size * a.size];
    for (class, name) in CLASSES.iter().enumerate() {
        let dir = a.out.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| TrainerError::io(&dir, e))?;
        for i in 0..a.per_class {
            synth::draw(&cfg, class, i as u64, &mut buf);
            let p = dir.join(format!("{name}_{i:05}.png"));
            synth::to_image(&cfg, &buf)
                .save(&p)
                .map_err(|e| TrainerError::io(&p, std::io::Error::other(e)))?;
        }
    }
    println!(
        "wrote {} images ({} per class, {}x{} {}) to {} in {:.1} s",
        a.per_class * CLASSES.len(),
        a.per_class,
        a.size,
        a.size,
        if a.grayscale { "grayscale" } else { "RGB" },
        a.out.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(Exit::Ok)
}
