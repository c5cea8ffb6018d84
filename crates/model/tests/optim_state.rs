//! Optimizer state (`src/optim/`, `src/checkpoint/optimizer.rs`): each optimizer keeps its
//! own slots in the parameters, AdamW's moments and step count round-trip bit for bit, a
//! resumed AdamW or Nesterov run continues exactly as the uninterrupted one, and a file of
//! the other optimizer is refused naming the file.

use petal_kernels::{AdamWConfig, SgdConfig};
use petal_model::{
    load_optimizer_state, save_optimizer_state, Network, Optimizer, OptimizerKind, Sgd, TrainConfig,
};

fn batch() -> (Vec<f32>, Vec<usize>) {
    let x: Vec<f32> = (0..4 * 2500).map(|i| ((i * 37 % 101) as f32) / 101.0).collect();
    (x, vec![0, 1, 2, 4])
}

fn optimizers() -> [TrainConfig; 2] {
    [
        TrainConfig {
            optimizer: Optimizer::AdamW(AdamWConfig {
                lr: 0.01,
                ..AdamWConfig::torch_default()
            }),
            label_smoothing: 0.1,
        },
        TrainConfig {
            optimizer: Optimizer::Sgd(Sgd {
                cfg: SgdConfig {
                    lr: 0.05,
                    momentum: 0.9,
                    weight_decay: 1e-4,
                },
                nesterov: true,
            }),
            label_smoothing: 0.0,
        },
    ]
}

#[test]
fn resume_through_the_optimizer_file_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = batch();
    for cfg in optimizers() {
        let mut a = Network::seednet(3);
        for _ in 0..2 {
            a.train_step_with(&x, &y, &cfg).unwrap();
        }
        let path = dir.path().join("opt.safetensors");
        save_optimizer_state(&path, &a).unwrap();
        let mut b = Network::seednet(3);
        for (pb, pa) in b.params_mut().zip(a.params()) {
            pb.value = pa.value.clone();
        }
        b.set_optimizer_state(cfg.optimizer.rule().kind(), 0);
        load_optimizer_state(&path, &mut b).unwrap();
        if cfg.optimizer.rule().kind() == OptimizerKind::AdamW {
            assert_eq!(b.optimizer_steps(), 2, "t comes from the file");
        }
        for _ in 0..2 {
            a.train_step_with(&x, &y, &cfg).unwrap();
            b.train_step_with(&x, &y, &cfg).unwrap();
        }
        for (pa, pb) in a.params().zip(b.params()) {
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&pa.value),
                bits(&pb.value),
                "{:?} {}",
                cfg.optimizer,
                pa.name
            );
            for (sa, sb) in pa.state.iter().zip(&pb.state) {
                assert_eq!(bits(sa), bits(sb), "{}", pa.name);
            }
            assert_eq!(pa.state.len(), pb.state.len(), "{}", pa.name);
        }
    }
}

#[test]
fn each_optimizer_allocates_its_own_state_on_its_first_step() {
    let (x, y) = batch();
    let [adamw, nesterov] = optimizers();
    let mut net = Network::seednet(1);
    assert!(net.params().all(|p| p.state.is_empty()));
    let slots = |net: &Network, n: usize| {
        net.params()
            .all(|p| p.state.len() == n && p.state.iter().all(|s| s.len() == p.value.len()))
    };
    net.train_step_with(&x, &y, &nesterov).unwrap();
    assert!(slots(&net, 1), "SGD: a velocity");
    assert_eq!(net.optimizer_kind(), OptimizerKind::Sgd);
    net.train_step_with(&x, &y, &adamw).unwrap();
    assert!(slots(&net, 2), "AdamW: two moments");
    assert_eq!(net.optimizer_kind(), OptimizerKind::AdamW);
    assert_eq!(net.optimizer_steps(), 2);
    net.init(1);
    assert!(net.params().all(|p| p.state.is_empty()));
    assert_eq!(net.optimizer_steps(), 0);
}

#[test]
fn a_file_of_the_other_optimizer_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = batch();
    let [adamw, nesterov] = optimizers();
    let mut a = Network::seednet(1);
    a.train_step_with(&x, &y, &adamw).unwrap();
    let adam_file = dir.path().join("adam.safetensors");
    save_optimizer_state(&adam_file, &a).unwrap();
    let mut s = Network::seednet(1);
    s.train_step_with(&x, &y, &nesterov).unwrap();
    let sgd_file = dir.path().join("sgd.safetensors");
    save_optimizer_state(&sgd_file, &s).unwrap();

    let before: Vec<Vec<Vec<f32>>> = s.params().map(|p| p.state.clone()).collect();
    let e = load_optimizer_state(&adam_file, &mut s).unwrap_err().to_string();
    assert!(
        e.contains("adam.safetensors") && e.contains("holds AdamW optimizer state"),
        "{e}"
    );
    assert!(e.contains("this run's optimizer is SGD"), "{e}");
    assert_eq!(before, s.params().map(|p| p.state.clone()).collect::<Vec<_>>());

    let e = load_optimizer_state(&sgd_file, &mut a).unwrap_err().to_string();
    assert!(
        e.contains("sgd.safetensors") && e.contains("holds SGD optimizer state"),
        "{e}"
    );
}
