//! `trainer gradcheck`: every layer's gradients against central differences of a float64
//! reference.

use super::args::GradcheckArgs;
use super::network::{check_size, network};
use super::{Exit, MAX_BENCH_BATCH};
use crate::error::TrainerError;
use petal_model::{gradcheck, GradCheckOptions, Layer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

pub(super) fn run(a: GradcheckArgs) -> Result<Exit, TrainerError> {
    let input = a.arch.input();
    check_size(input)?;
    let mut net = network(&a.arch.arch, input, a.classes, "--classes", a.seed, a.conv_algo)?;
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    if !(1..=MAX_BENCH_BATCH).contains(&a.batch_size) {
        return Err(TrainerError::Usage(format!(
            "--batch-size must be between 1 and {MAX_BENCH_BATCH}"
        )));
    }
    let n = a.batch_size;
    if n < net.min_train_batch() {
        return Err(TrainerError::Usage(format!(
            "--batch-size {n}: a batch norm of this network sees one value per channel and image, it needs a batch of at least {}",
            net.min_train_batch()
        )));
    }
    let x: Vec<f32> = (0..n * input.len()).map(|_| rng.random()).collect();
    let y: Vec<usize> = (0..n).map(|_| rng.random_range(0..net.classes())).collect();
    // Weights before a batch norm have gradients that are sums with cancellation (its
    // backward subtracts the batch means), exact in f32 to about 1e-7 of their tensor's
    // largest on the direct kernels: entries below 1e-4 of it are compared absolutely.
    // Winograd's rounding is about 100 times larger (up to 1.7e-5 of the largest value on
    // F(4x4) tiles, `petal_kernels::conv::winograd`), which such a sum carries the same way:
    // with Winograd layers the floor is 1e-3.
    let layers = net.layers();
    let has_bn = layers.iter().any(|l| matches!(l, Layer::BatchNorm(_)));
    let winograd = layers
        .iter()
        .any(|l| matches!(l, Layer::Conv2d(c) if c.prepared_len() > 0));
    let relative_floor = match (has_bn, winograd) {
        (false, _) => 0.0,
        (true, false) => 1e-4,
        (true, true) => 1e-3,
    };
    let opts = GradCheckOptions {
        tolerance: a.tolerance,
        relative_floor,
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
    let wide = report
        .tensors
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(0)
        .max(10);
    println!(
        "{:>wide$}  {:>12}  {:>8}  {:>8}",
        "tensor", "worst rel err", "checked", "skipped"
    );
    for tc in &report.tensors {
        let flag = if tc.worst_rel_err > report.tolerance {
            "  FAIL"
        } else {
            ""
        };
        println!(
            "{:>wide$}  {:>12.2e}  {:>8}  {:>8}{flag}",
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
