//! Data-parallel steps without MPI: K "ranks" are threads of this process (each with its
//! own rayon pool) exchanging through shared memory, and their weights after a few steps
//! must be those of one process trained on the whole batches, bit for bit, for any K, any
//! batch size (last chunks partial, fewer chunks than ranks), with batch norms, dropout,
//! residual blocks and every optimizer.

mod common;

use common::shape;
use petal_kernels::ConvAlgo;
use petal_model::{
    AdamWConfig, Collective, InputShape, Network, Optimizer, Sgd, SgdConfig, Shard, TrainConfig,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Ranks that are threads: each gather posts its values, waits for every rank's, reads
/// them in rank order, and waits again before the slots are reused.
struct Threads {
    rank: usize,
    ranks: usize,
    shared: Arc<Shared>,
}

struct Shared {
    barrier: TimedBarrier,
    slots: Mutex<Vec<Vec<f64>>>,
    /// Values gathered, across all ranks (the bytes a real transport would move).
    gathered: Mutex<usize>,
}

impl Threads {
    fn gather(&self, local: Vec<f64>, counts: &[usize]) -> Vec<f64> {
        assert_eq!(
            local.len(),
            counts[self.rank],
            "rank {} sends its count",
            self.rank
        );
        self.shared.slots.lock().unwrap()[self.rank] = local;
        self.shared.barrier.wait();
        let all: Vec<f64> = self.shared.slots.lock().unwrap().concat();
        if self.rank == 0 {
            *self.shared.gathered.lock().unwrap() += all.len();
        }
        self.shared.barrier.wait();
        all
    }
}

impl Collective for Threads {
    fn ranks(&self) -> usize {
        self.ranks
    }
    fn rank(&self) -> usize {
        self.rank
    }
    fn all_gather_f32(&self, local: &[f32], counts: &[usize], all: &mut [f32]) {
        let got = self.gather(local.iter().map(|&v| v as f64).collect(), counts);
        assert_eq!(got.len(), all.len());
        for (a, g) in all.iter_mut().zip(got) {
            *a = g as f32; // f32 -> f64 -> f32 is exact
        }
    }
    fn all_gather_f64(&self, local: &[f64], counts: &[usize], all: &mut [f64]) {
        let got = self.gather(local.to_vec(), counts);
        assert_eq!(got.len(), all.len());
        all.copy_from_slice(&got);
    }
}

/// A barrier that fails the test instead of waiting forever when a rank never arrives
/// (a rank that panicked, or a gather one rank skipped).
struct TimedBarrier {
    ranks: usize,
    /// Ranks arrived in the current round, and the round.
    state: Mutex<(usize, u64)>,
    turn: Condvar,
}

impl TimedBarrier {
    fn new(ranks: usize) -> Self {
        TimedBarrier {
            ranks,
            state: Mutex::new((0, 0)),
            turn: Condvar::new(),
        }
    }

    fn wait(&self) {
        let mut st = self.state.lock().unwrap();
        let round = st.1;
        st.0 += 1;
        if st.0 == self.ranks {
            *st = (0, round + 1);
            self.turn.notify_all();
            return;
        }
        let (st, timeout) = self
            .turn
            .wait_timeout_while(st, Duration::from_secs(60), |s| s.1 == round)
            .unwrap();
        assert!(
            !timeout.timed_out() || st.1 != round,
            "a rank never reached the gather: another rank failed or skipped it"
        );
    }
}

/// Batches of random images and labels.
fn batches(input: InputShape, classes: usize, sizes: &[usize], seed: u64) -> Vec<(Vec<f32>, Vec<usize>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    sizes
        .iter()
        .map(|&b| {
            let x = (0..b * input.len()).map(|_| rng.random::<f32>() - 0.5).collect();
            let y = (0..b).map(|_| rng.random_range(0..classes)).collect();
            (x, y)
        })
        .collect()
}

/// Every parameter's value bits and every batch norm's running statistics.
fn state(net: &Network) -> Vec<u32> {
    let mut bits: Vec<u32> = net
        .params()
        .flat_map(|p| p.value.iter().map(|v| v.to_bits()))
        .collect();
    for l in net.layers() {
        if let petal_model::Layer::BatchNorm(bn) = l {
            bits.extend(bn.running_mean.iter().chain(&bn.running_var).map(|v| v.to_bits()));
        }
    }
    bits
}

/// A rank's network after training and its steps' (loss bits, correct count).
type RankResult = (Network, Vec<(u32, usize)>);

/// Trains `net` on `data` split over `ranks` thread ranks; returns each rank's network
/// and per-step (loss, correct) and the values gathered by all ranks.
fn train_sharded(
    net: &Network,
    data: &[(Vec<f32>, Vec<usize>)],
    cfg: &TrainConfig,
    ranks: usize,
) -> (Vec<RankResult>, usize) {
    let shared = Arc::new(Shared {
        barrier: TimedBarrier::new(ranks),
        slots: Mutex::new(vec![Vec::new(); ranks]),
        gathered: Mutex::new(0),
    });
    let per = net.input_shape().len();
    let results = std::thread::scope(|s| {
        let handles: Vec<_> = (0..ranks)
            .map(|rank| {
                let comm = Threads {
                    rank,
                    ranks,
                    shared: shared.clone(),
                };
                let mut net = net.clone();
                s.spawn(move || {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(1 + rank % 2)
                        .build()
                        .unwrap();
                    let mut stats = Vec::new();
                    for (x, y) in data {
                        let shard = Shard::split(y.len(), ranks, rank);
                        let r = shard.samples();
                        let s = pool
                            .install(|| {
                                net.train_step_shard(
                                    &x[r.start * per..r.end * per],
                                    &y[r.clone()],
                                    cfg,
                                    shard,
                                    &comm,
                                )
                            })
                            .unwrap();
                        assert_eq!(s.batch, y.len());
                        stats.push((s.loss.to_bits(), s.correct));
                    }
                    (net, stats)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let gathered = *shared.gathered.lock().unwrap();
    (results, gathered)
}

#[test]
fn any_number_of_ranks_trains_the_weights_of_one_process_bit_for_bit() {
    let sgd = TrainConfig {
        optimizer: Optimizer::Sgd(Sgd {
            cfg: SgdConfig {
                lr: 0.05,
                momentum: 0.9,
                weight_decay: 1e-3,
            },
            nesterov: false,
        }),
        label_smoothing: 0.1,
    };
    let adamw = TrainConfig::from(Optimizer::AdamW(AdamWConfig::torch_default()));
    let cases: Vec<(&str, InputShape, usize, TrainConfig, Vec<usize>)> = vec![
        // Batches of 32 (8 chunks), 13 (a partial chunk), 3 (fewer chunks than ranks).
        ("seednet", shape(1, 50, 50), 5, sgd, vec![32, 13, 3, 32]),
        (
            "conv3x3:4/p1,relu,maxpool2,conv3x3:6/nobias,relu,dense:12,relu,dense:7",
            shape(3, 11, 9),
            7,
            adamw,
            vec![20, 9, 36],
        ),
        // A dense layer above `DENSE_PART_MAX` weights (75,600: its gradient deferred
        // to after the chunk tasks) and a small one.
        (
            "conv3x3:4/p1,relu,dense:300,relu,dense:3",
            shape(3, 9, 7),
            3,
            sgd,
            vec![22, 7, 3],
        ),
        // Batch norms (statistics over the whole batch), dropout (masks by global sample
        // index), residual blocks with projection and identity shortcuts.
        (
            "conv3x3:8/p1/nobias,bn,relu,res(conv3x3:8/s2/p1/nobias,bn,relu,conv3x3:8/p1/nobias,bn),relu,dropout:0.3,res(conv3x3:8/p1,bn,relu,conv3x3:8/p1),gap,dense:3",
            shape(2, 9, 7),
            3,
            sgd,
            vec![24, 10, 2, 17],
        ),
    ];
    for (spec, input, classes, cfg, sizes) in cases {
        let net = Network::for_classes(spec, input, classes, 5).unwrap();
        let data = batches(input, classes, &sizes, 9);
        ranks_train_the_weights_of_one_process(spec, &net, &data, &cfg);
    }
}

/// Trains `net` on `data` in one process and split over 1 to 4 thread ranks (each on 1 or
/// 2 threads); returns the one process's weights and batch-norm statistics after asserting
/// every rank's equal to them, bit for bit, with the same losses and correct counts.
fn ranks_train_the_weights_of_one_process(
    what: &str,
    net: &Network,
    data: &[(Vec<f32>, Vec<usize>)],
    cfg: &TrainConfig,
) -> Vec<u32> {
    let mut one = net.clone();
    let mut want_stats = Vec::new();
    for (x, y) in data {
        let s = one.train_step_with(x, y, cfg).unwrap();
        want_stats.push((s.loss.to_bits(), s.correct));
    }
    let want = state(&one);
    assert_ne!(want, state(net), "{what}: training changed the weights");
    for ranks in [1, 2, 3, 4] {
        let (results, _) = train_sharded(net, data, cfg, ranks);
        for (rank, (net, stats)) in results.iter().enumerate() {
            assert!(
                state(net) == want,
                "{what}: rank {rank} of {ranks}: weights differ from one process's"
            );
            assert_eq!(
                stats, &want_stats,
                "{what}: rank {rank} of {ranks}: losses or correct counts"
            );
        }
    }
    want
}

/// Winograd's convolutions (both tiles: 12x12 maps take F(4x4), 6x6 F(2x2)) keep the
/// identity: any split over ranks and threads trains one process's bits. They round
/// otherwise than the direct kernels: the weights differ from the direct run's, slightly.
#[test]
fn winograd_trains_the_same_bits_on_any_number_of_ranks() {
    let spec = "conv3x3:16/p1/nobias,bn,relu,res(conv3x3:16/p1/nobias,bn,relu,conv3x3:16/p1/nobias,bn),relu,\
                res(conv3x3:32/s2/p1/nobias,bn,relu,conv3x3:32/p1/nobias,bn),relu,gap,dense:4";
    let input = shape(3, 12, 12);
    let cfg = TrainConfig::from(Optimizer::AdamW(AdamWConfig::torch_default()));
    let data = batches(input, 4, &[20, 9, 3], 19);
    let mut runs = Vec::new();
    for algo in [ConvAlgo::Direct, ConvAlgo::Winograd, ConvAlgo::Auto] {
        let mut net = Network::for_classes(spec, input, 4, 6).unwrap();
        net.set_conv_algo(algo);
        runs.push(ranks_train_the_weights_of_one_process(
            &format!("{algo:?}"),
            &net,
            &data,
            &cfg,
        ));
    }
    let params: usize = Network::for_classes(spec, input, 4, 6).unwrap().param_count();
    let value = |bits: &[u32], i: usize| f32::from_bits(bits[i]);
    for (algo, run) in [("winograd", &runs[1]), ("auto", &runs[2])] {
        assert_ne!(run, &runs[0], "{algo}: the same bits as the direct kernels");
        let worst = (0..params)
            .map(|i| (value(run, i) - value(&runs[0], i)).abs())
            .fold(0.0, f32::max);
        assert!(
            worst < 1e-4,
            "{algo}: a weight {worst:e} off the direct run's after 3 steps"
        );
    }
}

#[test]
fn two_ranks_exchange_the_subtree_sums_and_the_batch_statistics() {
    // seednet's gradient is 23,125 values; at batch 32 (8 chunks), each of 2 ranks sends
    // one subtree sum, plus 32 losses and a correct count: no batch norms.
    let net = Network::seednet(1);
    let data = batches(net.input_shape(), 5, &[32], 3);
    let cfg = TrainConfig::from(SgdConfig {
        lr: 0.01,
        momentum: 0.0,
        weight_decay: 0.0,
    });
    let (_, gathered) = train_sharded(&net, &data, &cfg, 2);
    assert_eq!(gathered, 2 * net.param_count() + 32 + 2);
    // What the trainer checks against MPI's int counts: one subtree per rank on 2 ranks;
    // on 3 ranks the 8 chunks split 2 / 3 / 3, into 1 + 2 + 2 subtrees.
    assert_eq!(net.shard_exchange_len(32, 2), 2 * net.param_count());
    assert_eq!(net.shard_exchange_len(32, 3), 5 * net.param_count());
    assert_eq!(net.shard_exchange_len(32, 1), net.param_count());
}

#[test]
fn a_shard_of_the_wrong_size_is_an_error() {
    let mut net = Network::seednet(1);
    let data = batches(net.input_shape(), 5, &[8], 3);
    let (x, y) = &data[0];
    // Rank 0 of 2 holds samples 0..4 of 8; passing all 8 names the shard's size.
    struct Two;
    impl Collective for Two {
        fn ranks(&self) -> usize {
            2
        }
        fn rank(&self) -> usize {
            0
        }
        fn all_gather_f32(&self, _: &[f32], _: &[usize], _: &mut [f32]) {
            unreachable!("refused before any exchange")
        }
        fn all_gather_f64(&self, _: &[f64], _: &[usize], _: &mut [f64]) {
            unreachable!("refused before any exchange")
        }
    }
    let cfg = TrainConfig::from(SgdConfig {
        lr: 0.01,
        momentum: 0.0,
        weight_decay: 0.0,
    });
    let err = net
        .train_step_shard(x, y, &cfg, Shard::split(8, 2, 0), &Two)
        .unwrap_err()
        .to_string();
    assert!(err.contains("4 samples of the batch's 8"), "{err}");
}
