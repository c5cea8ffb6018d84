//! `trainer gradcheck`: every layer's gradients against central differences of a float64
//! reference.

use super::args::GradcheckArgs;
use super::network::{check_size, network};
use super::{Exit, MAX_BENCH_BATCH};
use crate::error::TrainerError;
use petal_model::{gradcheck, GradCheckOptions};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

pub(super) fn run(a: GradcheckArgs) -> Result<Exit, TrainerError> {
    let input = a.arch.input();
    check_size(input)?;
    let mut net = network(&a.arch.arch, input, a.classes, "--classes", a.seed)?;
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    if !(1..=MAX_BENCH_BATCH).contains(&a.batch_size) {
        return Err(TrainerError::Usage(format!(
            "--batch-size must be between 1 and {MAX_BENCH_BATCH}"
        )));
    }
    let n = a.batch_size;
    let x: Vec<f32> = (0..n * input.len()).map(|_| rng.random()).collect();
    let y: Vec<usize> = (0..n).map(|_| rng.random_range(0..net.classes())).collect();
    let opts = GradCheckOptions {
        tolerance: a.tolerance,
        samples_per_tensor: a.samples,
        seed: a.seed,
        ..Default::default()
    };
    let t = Instant::now();
    let report = gradcheck(&mut net, &x, &y, &opts)?;
    println!(
        "{} on {input}, batch {n}: central differences (eps {:e}) of a float64 reference",
        net.spec(),
        opts.eps
    );
    println!(
        "{:>10}  {:>12}  {:>8}  {:>8}",
        "tensor", "worst rel err", "checked", "skipped"
    );
    for tc in &report.tensors {
        let flag = if tc.worst_rel_err > report.tolerance {
            "  FAIL"
        } else {
            ""
        };
        println!(
            "{:>10}  {:>12.2e}  {:>8}  {:>8}{flag}",
            tc.name, tc.worst_rel_err, tc.checked, tc.skipped
        );
    }
    let ok = report.passed();
    println!(
        "{} (worst {:.2e}, tolerance {:.0e}, {:.1} s)",
        if ok { "passed" } else { "FAILED" },
        report.worst(),
        report.tolerance,
        t.elapsed().as_secs_f64()
    );
    Ok(if ok { Exit::Ok } else { Exit::Failed })
}
