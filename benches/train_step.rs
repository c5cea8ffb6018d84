//! Criterion benches of a whole training step (forward, mean softmax cross-entropy,
//! backward, plain SGD with lr 0.005) and of inference, for seednet and flowernet at batch
//! 1, 32 and 128 and the ResNets (3x32x32) at batch 32 and 128, on rayon's default pool;
//! `Throughput` is images. `trainer bench` measures the
//! same step outside criterion, for any spec and thread count.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use petal::kernels::SgdConfig;
use petal::model::{InputShape, Network};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use std::time::Duration;

fn step(c: &mut Criterion) {
    let sgd = SgdConfig {
        lr: 0.005,
        momentum: 0.0,
        weight_decay: 0.0,
    };
    let resnet = |name: &'static str| {
        move |seed| Network::from_spec(name, InputShape { c: 3, h: 32, w: 32 }, seed).expect("preset")
    };
    type Build = Box<dyn Fn(u64) -> Network>;
    let nets: [(&str, Build, &[usize]); 4] = [
        ("seednet", Box::new(Network::seednet), &[1, 32, 128]),
        ("flowernet", Box::new(Network::flowernet), &[1, 32, 128]),
        ("resnet8", Box::new(resnet("resnet8")), &[32, 128]),
        ("resnet20", Box::new(resnet("resnet20")), &[32, 128]),
    ];
    for (name, make, batches) in nets {
        let mut group = c.benchmark_group(format!("train_step/{name}"));
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(2))
            .warm_up_time(Duration::from_millis(500));
        for &batch in batches {
            let mut net = make(0);
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            let x: Vec<f32> = (0..batch * net.input_shape().len())
                .map(|_| rng.random())
                .collect();
            let y: Vec<usize> = (0..batch).map(|_| rng.random_range(0..net.classes())).collect();
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(BenchmarkId::new("train", batch), |b| {
                b.iter(|| black_box(net.train_step(black_box(&x), &y, &sgd).expect("step")))
            });
            group.bench_function(BenchmarkId::new("infer", batch), |b| {
                b.iter(|| black_box(net.predict(black_box(&x)).expect("predict")[0]))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, step);
criterion_main!(benches);
