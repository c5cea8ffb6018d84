//! The criterion groups of the kernels other than conv: max-pool, dense, ReLU, softmax
//! with cross-entropy, SGD.

use super::*;

pub(super) fn bench_pool(c: &mut Criterion) {
    let shapes: Vec<(String, Pool2dShape)> = POOL_SHAPES
        .iter()
        .flat_map(|&(net, ch, side)| {
            BATCHES_32_128.map(move |batch| {
                (
                    format!("{net}_{ch}x{side}x{side}_b{batch}"),
                    Pool2dShape {
                        batch,
                        c: ch,
                        h: side,
                        w: side,
                        k: 2,
                        stride: 2,
                    },
                )
            })
        })
        .collect();
    let mut fwd = c.benchmark_group("max_pool2d_forward");
    for (id, s) in &shapes {
        let x = random_vec(s.input_len(), 11);
        let (mut y, mut argmax) = (vec![0.0f32; s.output_len()], vec![0u32; s.output_len()]);
        set_images(&mut fwd, s.batch);
        fwd.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.iter(|| max_pool2d_forward(s, black_box(&x), black_box(&mut y), black_box(&mut argmax)))
        });
    }
    fwd.finish();
    let mut bwd = c.benchmark_group("max_pool2d_backward");
    for (id, s) in &shapes {
        let x = random_vec(s.input_len(), 11);
        let (mut y, mut argmax) = (vec![0.0f32; s.output_len()], vec![0u32; s.output_len()]);
        max_pool2d_forward(s, &x, &mut y, &mut argmax);
        let dy = random_vec(s.output_len(), 12);
        let mut dx = vec![0.0f32; s.input_len()];
        set_images(&mut bwd, s.batch);
        bwd.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.iter(|| max_pool2d_backward(s, black_box(&dy), black_box(&argmax), black_box(&mut dx)))
        });
    }
    bwd.finish();
}

pub(super) fn bench_dense(c: &mut Criterion) {
    let shapes: Vec<(String, DenseShape)> = [("seednet", 4608usize), ("flowernet", 4096)]
        .iter()
        .flat_map(|&(net, inputs)| {
            BATCHES_32_128.map(move |batch| {
                (
                    format!("{net}_{inputs}to5_b{batch}"),
                    DenseShape {
                        batch,
                        inputs,
                        outputs: 5,
                    },
                )
            })
        })
        .collect();
    let mut fwd = c.benchmark_group("dense_forward");
    for (id, s) in &shapes {
        let x = random_vec(s.batch * s.inputs, 21);
        let w = random_vec(s.outputs * s.inputs, 22);
        let bias = random_vec(s.outputs, 23);
        let mut y = vec![0.0f32; s.batch * s.outputs];
        set_images(&mut fwd, s.batch);
        fwd.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.iter(|| {
                dense_forward(
                    s,
                    black_box(&x),
                    black_box(&w),
                    Some(black_box(&bias)),
                    black_box(&mut y),
                )
            })
        });
    }
    fwd.finish();
    let mut bwd = c.benchmark_group("dense_backward");
    for (id, s) in &shapes {
        let x = random_vec(s.batch * s.inputs, 21);
        let w = random_vec(s.outputs * s.inputs, 22);
        let dy = random_vec(s.batch * s.outputs, 24);
        let (mut gw, mut gb) = (vec![0.0f32; s.outputs * s.inputs], vec![0.0f32; s.outputs]);
        let mut gx = vec![0.0f32; s.batch * s.inputs];
        set_images(&mut bwd, s.batch);
        bwd.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.iter(|| {
                dense_backward(
                    s,
                    black_box(&x),
                    black_box(&w),
                    black_box(&dy),
                    black_box(&mut gw),
                    Some(black_box(&mut gb)),
                    Some(black_box(&mut gx)),
                )
            })
        });
    }
    bwd.finish();
}

/// flowernet's three conv outputs (the ReLU inputs), batch 128.
pub(super) const RELU_SHAPES: [(usize, usize); 3] = [(16, 64), (32, 32), (64, 16)];
pub(super) const RELU_BATCH: usize = 128;

pub(super) fn bench_relu(c: &mut Criterion) {
    let mut fwd = c.benchmark_group("relu_forward");
    for (ch, side) in RELU_SHAPES {
        let n = RELU_BATCH * ch * side * side;
        let x = random_vec(n, 31);
        let mut y = vec![0.0f32; n];
        fwd.throughput(Throughput::Elements(n as u64));
        fwd.bench_function(
            BenchmarkId::from_parameter(format!("flowernet_{ch}x{side}x{side}_b{RELU_BATCH}")),
            |b| b.iter(|| relu_forward(black_box(&x), black_box(&mut y))),
        );
    }
    fwd.finish();
    let mut bwd = c.benchmark_group("relu_backward");
    for (ch, side) in RELU_SHAPES {
        let n = RELU_BATCH * ch * side * side;
        // A ReLU output (about half zeros), as `relu_backward` sees in training.
        let mut y = random_vec(n, 31);
        relu_forward_inplace(&mut y);
        let dy = random_vec(n, 32);
        let mut dx = vec![0.0f32; n];
        bwd.throughput(Throughput::Elements(n as u64));
        bwd.bench_function(
            BenchmarkId::from_parameter(format!("flowernet_{ch}x{side}x{side}_b{RELU_BATCH}")),
            |b| b.iter(|| relu_backward(black_box(&y), black_box(&dy), black_box(&mut dx))),
        );
    }
    bwd.finish();
}

pub(super) fn bench_softmax(c: &mut Criterion) {
    let (batch, classes) = (128usize, 5usize);
    let logits = random_vec(batch * classes, 41);
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let labels: Vec<usize> = (0..batch).map(|_| rng.random_range(0..classes)).collect();
    let mut probs = vec![0.0f32; batch * classes];
    let mut losses = vec![0.0f32; batch];
    let mut grad = vec![0.0f32; batch * classes];
    let mut group = c.benchmark_group("softmax_cross_entropy");
    set_images(&mut group, batch);
    group.bench_function(BenchmarkId::from_parameter(format!("b{batch}x{classes}")), |b| {
        b.iter(|| {
            softmax_cross_entropy(
                black_box(&logits),
                black_box(&labels),
                classes,
                black_box(&mut probs),
                black_box(&mut losses),
                black_box(&mut grad),
            )
            .expect("labels are in range")
        })
    });
    group.finish();
}

/// Trainable parameters of seednet (conv 8·1·3·3 + 8, dense 5·4608 + 5) and flowernet
/// (convs 3→16→32→64 with biases, dense 5·4096 + 5).
pub(super) const SEEDNET_PARAMS: usize = 8 * 9 + 8 + 5 * 4608 + 5;
pub(super) const FLOWERNET_PARAMS: usize =
    (16 * 3 * 9 + 16) + (32 * 16 * 9 + 32) + (64 * 32 * 9 + 64) + (5 * 4096 + 5);

pub(super) fn bench_sgd(c: &mut Criterion) {
    let mut group = c.benchmark_group("sgd_step");
    for (net, n) in [("seednet", SEEDNET_PARAMS), ("flowernet", FLOWERNET_PARAMS)] {
        for momentum in [0.0f32, 0.9] {
            let cfg = SgdConfig {
                lr: 0.01,
                momentum,
                weight_decay: 5e-4,
            };
            let mut params = random_vec(n, 51);
            let grads = random_vec(n, 52);
            let mut velocity = if momentum == 0.0 {
                Vec::new()
            } else {
                vec![0.0f32; n]
            };
            let label = if momentum == 0.0 { "plain" } else { "momentum" };
            group.throughput(Throughput::Elements(n as u64));
            group.bench_function(BenchmarkId::from_parameter(format!("{net}_{n}_{label}")), |b| {
                b.iter(|| {
                    sgd_step(
                        &cfg,
                        black_box(&mut params),
                        black_box(&grads),
                        black_box(&mut velocity),
                    )
                })
            });
        }
    }
    group.finish();
}
