//! `trainer bench`: training and inference images/s of a network on random data.

use crate::error::TrainerError;
use crate::train::memory::{self, Estimate};
use petal_kernels::{ConvAlgo, SgdConfig, SimdLevel};
use petal_model::{InputShape, Network};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::time::Instant;

/// One configuration's figures (the `--json` object).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchResult {
    pub arch: String,
    pub spec: String,
    /// The stride-1 3x3 convolutions' algorithm (`auto`, `winograd`, `direct`).
    pub conv_algo: &'static str,
    pub input: [usize; 3],
    pub batch_size: usize,
    pub threads: usize,
    /// Forward + mean softmax cross-entropy + backward + plain SGD step (lr 0.005).
    pub train_images_per_sec: f64,
    /// Forward + softmax.
    pub infer_images_per_sec: f64,
    /// Conv and dense FLOPs of the training step, per second.
    pub train_gflops: f64,
    /// Timed runs (the figures are their median).
    pub runs: usize,
    /// The estimate of the memory the configuration needs (`train::memory`), in bytes.
    pub memory_bytes: u64,
    /// Vector instructions the kernels were compiled for (`baseline`, `avx2`, `avx512`).
    pub simd: &'static str,
    /// What the CPU that ran the bench supports, by the same names.
    pub cpu_simd: &'static str,
}

/// The memory estimate of benchmarking `net` at `batch` on `threads` threads: its buffers
/// with plain SGD's one slot of optimizer state, and the random batch.
pub fn estimate(net: &Network, batch: usize, threads: usize) -> Estimate {
    memory::estimate(net, batch, threads, 1, 0, 0.0)
}

/// Median images/s of `runs` timed runs of `f`, each about `seconds / runs` long after a
/// warm-up. `f` processes `batch` images per call.
fn rate(batch: usize, seconds: f64, runs: usize, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    let mut calls = 0;
    while calls < 3 || t.elapsed().as_secs_f64() < 0.05 * seconds {
        f();
        calls += 1;
    }
    let per_call = t.elapsed().as_secs_f64() / calls as f64;
    let reps = ((seconds / runs as f64) / per_call).ceil().max(1.0) as usize;
    let mut rates: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            (reps * batch) as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[runs / 2]
}

/// Measures `spec` (named `arch` in the result: a preset name or the spec) with its
/// stride-1 3x3 convolutions on `algo`, on `input` at `batch` images per step on a rayon
/// pool of `threads`.
#[allow(clippy::too_many_arguments)]
pub fn bench(
    arch: &str,
    spec: &str,
    algo: ConvAlgo,
    input: InputShape,
    batch: usize,
    threads: usize,
    seconds: f64,
) -> Result<BenchResult, TrainerError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| TrainerError::Usage(format!("cannot start {threads} threads: {e}")))?;
    pool.install(|| {
        let mut net = Network::from_spec(spec, input, 0)?;
        net.set_conv_algo(algo);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let x: Vec<f32> = (0..batch * input.len()).map(|_| rng.random()).collect();
        let y: Vec<usize> = (0..batch).map(|_| rng.random_range(0..net.classes())).collect();
        let sgd = SgdConfig {
            lr: 0.005,
            momentum: 0.0,
            weight_decay: 0.0,
        };
        let runs = 5;
        let mut failed = None;
        let train = rate(batch, seconds / 2.0, runs, || {
            if let Err(e) = net.train_step(&x, &y, &sgd) {
                failed = Some(e);
            }
        });
        if let Some(e) = failed {
            return Err(e.into());
        }
        let infer = rate(batch, seconds / 2.0, runs, || {
            let _ = net.predict(&x);
        });
        Ok(BenchResult {
            arch: arch.to_string(),
            spec: net.spec(),
            conv_algo: algo.name(),
            input: [input.c, input.h, input.w],
            batch_size: batch,
            threads,
            train_images_per_sec: train,
            infer_images_per_sec: infer,
            train_gflops: train * net.train_flops_per_sample() as f64 / 1e9,
            runs,
            memory_bytes: estimate(&net, batch, threads).total(),
            simd: SimdLevel::COMPILED.name(),
            cpu_simd: SimdLevel::detect().name(),
        })
    })
}
