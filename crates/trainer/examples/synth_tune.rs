//! Tunes and checks the synthetic flowers (`petal_trainer::synth`): generation speed,
//! contact sheets, trivial baselines (mean brightness, [mean, std], best single pixel),
//! and how `seednet` (and optionally `flowernet`) learns them.
//!
//! ```text
//! cargo run --release -p petal-trainer --example synth_tune -- [--epochs 8] [--lr 0.02]
//!     [--train 400] [--val 100] [--seed 1] [--out /tmp] [--flowernet] [--no-seednet] [--center]
//!     [--big-sheet SIZE]
//! ```
//! `--train` / `--val` are images per class. Contact sheets go to `OUT/synth_gray.png`
//! (grayscale 50) and `OUT/synth_rgb.png` (RGB 64), and with `--big-sheet SIZE` an RGB
//! sheet at that size to `OUT/synth_rgb_SIZE.png`.

use petal_kernels::SgdConfig;
use petal_model::Network;
use petal_trainer::synth::{contact_sheet, dataset, SynthConfig, CLASSES};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

struct Args {
    epochs: usize,
    lr: f32,
    train: usize,
    val: usize,
    seed: u64,
    out: String,
    flowernet: bool,
    seednet: bool,
    flower_epochs: usize,
    big: usize,
    center: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        epochs: 8,
        lr: 0.02,
        train: 400,
        val: 100,
        seed: 1,
        out: "/tmp".into(),
        flowernet: false,
        seednet: true,
        flower_epochs: 4,
        big: 0,
        center: false,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let val = || argv.get(i + 1).cloned().expect("missing value");
        match argv[i].as_str() {
            "--epochs" => a.epochs = val().parse().expect("--epochs N"),
            "--lr" => a.lr = val().parse().expect("--lr X"),
            "--train" => a.train = val().parse().expect("--train N"),
            "--val" => a.val = val().parse().expect("--val N"),
            "--seed" => a.seed = val().parse().expect("--seed N"),
            "--out" => a.out = val(),
            "--flower-epochs" => a.flower_epochs = val().parse().expect("--flower-epochs N"),
            "--big-sheet" => a.big = val().parse().expect("--big-sheet SIZE"),
            "--flowernet" => {
                a.flowernet = true;
                i += 1;
                continue;
            }
            "--center" => {
                a.center = true;
                i += 1;
                continue;
            }
            "--no-seednet" => {
                a.seednet = false;
                i += 1;
                continue;
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

fn speed(cfg: &SynthConfig, per_class: usize) {
    let n = per_class * 5;
    // Best of three runs, so page faults of the first allocation and other load count less.
    let best = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t = Instant::now();
            let (x, _) = pool.install(|| dataset(cfg, per_class, 0));
            best = best.min(t.elapsed().as_secs_f64());
            std::hint::black_box(x);
        }
        n as f64 / best
    };
    let all = rayon::current_num_threads();
    println!(
        "speed {}x{}x{}: {:.0} images/s on 1 thread, {:.0} images/s on {all} threads",
        cfg.channels(),
        cfg.size,
        cfg.size,
        best(1),
        best(all),
    );
}

/// Per-image mean and standard deviation.
fn stats(x: &[f32], len: usize) -> Vec<[f32; 2]> {
    x.chunks_exact(len)
        .map(|img| {
            let m = img.iter().sum::<f32>() / len as f32;
            let v = img.iter().map(|p| (p - m) * (p - m)).sum::<f32>() / len as f32;
            [m, v.sqrt()]
        })
        .collect()
}

/// Nearest class mean on a 1-D feature; accuracy on `(fv, yv)`.
fn nearest_mean_1d(ft: &[f32], yt: &[usize], fv: &[f32], yv: &[usize]) -> f32 {
    let mut sum = [0.0f64; 5];
    let mut cnt = [0usize; 5];
    for (&f, &y) in ft.iter().zip(yt) {
        sum[y] += f as f64;
        cnt[y] += 1;
    }
    let means: Vec<f64> = (0..5).map(|c| sum[c] / cnt[c].max(1) as f64).collect();
    let correct = fv
        .iter()
        .zip(yv)
        .filter(|(&f, &y)| {
            let best = (0..5)
                .min_by(|&a, &b| {
                    (f as f64 - means[a])
                        .abs()
                        .total_cmp(&(f as f64 - means[b]).abs())
                })
                .unwrap();
            best == y
        })
        .count();
    correct as f32 / yv.len() as f32
}

/// Softmax regression on standardised features (full-batch gradient descent).
fn logistic(ft: &[Vec<f32>], yt: &[usize], fv: &[Vec<f32>], yv: &[usize]) -> f32 {
    let d = ft[0].len();
    let mut mu = vec![0.0f32; d];
    let mut sd = vec![0.0f32; d];
    for f in ft {
        for k in 0..d {
            mu[k] += f[k] / ft.len() as f32;
        }
    }
    for f in ft {
        for k in 0..d {
            sd[k] += (f[k] - mu[k]).powi(2) / ft.len() as f32;
        }
    }
    let z = |f: &Vec<f32>| -> Vec<f32> {
        let mut v: Vec<f32> = (0..d).map(|k| (f[k] - mu[k]) / sd[k].sqrt().max(1e-6)).collect();
        // Quadratic terms too, so class-conditional bands are separable.
        let lin = v.clone();
        for i in 0..d {
            for j in i..d {
                v.push(lin[i] * lin[j]);
            }
        }
        v.push(1.0);
        v
    };
    let xt: Vec<Vec<f32>> = ft.iter().map(z).collect();
    let xv: Vec<Vec<f32>> = fv.iter().map(z).collect();
    let dd = xt[0].len();
    let mut w = vec![0.0f32; 5 * dd];
    for _ in 0..2000 {
        let mut g = vec![0.0f32; 5 * dd];
        for (x, &y) in xt.iter().zip(yt) {
            let logits: Vec<f32> = (0..5)
                .map(|c| (0..dd).map(|k| w[c * dd + k] * x[k]).sum())
                .collect();
            let m = logits.iter().copied().fold(f32::MIN, f32::max);
            let e: Vec<f32> = logits.iter().map(|l| (l - m).exp()).collect();
            let s: f32 = e.iter().sum();
            for c in 0..5 {
                let p = e[c] / s - if c == y { 1.0 } else { 0.0 };
                for k in 0..dd {
                    g[c * dd + k] += p * x[k] / xt.len() as f32;
                }
            }
        }
        for (wi, gi) in w.iter_mut().zip(&g) {
            *wi -= 0.5 * gi;
        }
    }
    let correct = xv
        .iter()
        .zip(yv)
        .filter(|(x, &y)| {
            let best = (0..5)
                .max_by(|&a, &b| {
                    let la: f32 = (0..dd).map(|k| w[a * dd + k] * x[k]).sum();
                    let lb: f32 = (0..dd).map(|k| w[b * dd + k] * x[k]).sum();
                    la.total_cmp(&lb)
                })
                .unwrap();
            best == y
        })
        .count();
    correct as f32 / yv.len() as f32
}

fn baselines(cfg: &SynthConfig, xt: &[f32], yt: &[usize], xv: &[f32], yv: &[usize]) {
    let len = cfg.sample_len();
    let st = stats(xt, len);
    let sv = stats(xv, len);
    let mean_t: Vec<f32> = st.iter().map(|s| s[0]).collect();
    let mean_v: Vec<f32> = sv.iter().map(|s| s[0]).collect();
    let acc_mean = nearest_mean_1d(&mean_t, yt, &mean_v, yv);
    let ft: Vec<Vec<f32>> = st.iter().map(|s| s.to_vec()).collect();
    let fv: Vec<Vec<f32>> = sv.iter().map(|s| s.to_vec()).collect();
    let acc_ms = logistic(&ft, yt, &fv, yv);
    // Best single pixel (nearest class mean of that pixel's value), chosen on validation.
    let mut best = (0.0f32, 0usize);
    for p in 0..len {
        let pt: Vec<f32> = xt.chunks_exact(len).map(|img| img[p]).collect();
        let pv: Vec<f32> = xv.chunks_exact(len).map(|img| img[p]).collect();
        let a = nearest_mean_1d(&pt, yt, &pv, yv);
        if a > best.0 {
            best = (a, p);
        }
    }
    let mut per_class = [[0.0f32; 2]; 5];
    for (s, &y) in st.iter().zip(yt) {
        per_class[y][0] += s[0] * 5.0 / yt.len() as f32;
        per_class[y][1] += s[1] * 5.0 / yt.len() as f32;
    }
    for (c, name) in CLASSES.iter().enumerate() {
        println!(
            "  {name:>9}: mean brightness {:.3}, mean std {:.3}",
            per_class[c][0], per_class[c][1]
        );
    }
    println!(
        "baselines ({}x{}x{}): nearest class mean of brightness {:.1} %, logistic on [mean, std] (quadratic) {:.1} %, best single pixel {:.1} % (pixel {})",
        cfg.channels(),
        cfg.size,
        cfg.size,
        100.0 * acc_mean,
        100.0 * acc_ms,
        100.0 * best.0,
        best.1
    );
}

#[allow(clippy::too_many_arguments)]
fn train(
    name: &str,
    net: &mut Network,
    len: usize,
    xt: &[f32],
    yt: &[usize],
    xv: &[f32],
    yv: &[usize],
    epochs: usize,
    lr: f32,
    seed: u64,
) {
    let sgd = SgdConfig {
        lr,
        momentum: 0.9,
        weight_decay: 0.0,
    };
    let batch = 32;
    let n = yt.len();
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut bx = vec![0.0f32; batch * len];
    let mut by = vec![0usize; batch];
    for epoch in 1..=epochs {
        let t = Instant::now();
        order.shuffle(&mut rng);
        let (mut loss, mut correct) = (0.0f64, 0usize);
        for chunk in order.chunks(batch) {
            for (k, &i) in chunk.iter().enumerate() {
                bx[k * len..(k + 1) * len].copy_from_slice(&xt[i * len..(i + 1) * len]);
                by[k] = yt[i];
            }
            let b = chunk.len();
            let s = net
                .train_step(&bx[..b * len], &by[..b], &sgd)
                .expect("train step");
            loss += s.loss as f64 * b as f64;
            correct += s.correct;
        }
        let dt = t.elapsed().as_secs_f64();
        let (mut vloss, mut vcorrect) = (0.0f64, 0usize);
        for (xc, yc) in xv.chunks(128 * len).zip(yv.chunks(128)) {
            let s = net.evaluate(xc, yc).expect("evaluate");
            vloss += s.loss as f64 * s.batch as f64;
            vcorrect += s.correct;
        }
        println!(
            "{name} epoch {epoch}: train loss {:.4}, train {:.1} %, val loss {:.4}, val {:.1} %  ({:.1} s, {:.0} images/s)",
            loss / n as f64,
            100.0 * correct as f64 / n as f64,
            vloss / yv.len() as f64,
            100.0 * vcorrect as f64 / yv.len() as f64,
            dt,
            n as f64 / dt
        );
    }
}

/// Standardises both sets with the training set's mean and standard deviation.
fn center(xt: &mut [f32], xv: &mut [f32]) {
    let n = xt.len() as f64;
    let mean = xt.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = xt.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let (m, s) = (mean as f32, var.sqrt() as f32);
    println!("inputs standardised: mean {m:.3}, std {s:.3}");
    for v in xt.iter_mut().chain(xv.iter_mut()) {
        *v = (*v - m) / s;
    }
}

fn main() {
    let args = parse_args();
    let gray = SynthConfig {
        size: 50,
        rgb: false,
        seed: args.seed,
        difficulty: Default::default(),
    };
    let rgb = SynthConfig {
        size: 64,
        rgb: true,
        seed: args.seed,
        difficulty: Default::default(),
    };
    speed(&gray, 1000);
    speed(&rgb, 400);
    for (cfg, file) in [(&gray, "synth_gray.png"), (&rgb, "synth_rgb.png")] {
        let path = format!("{}/{file}", args.out);
        let sheet = contact_sheet(cfg, 6);
        sheet.save(&path).expect("write contact sheet");
        // A 3x nearest-neighbour enlargement, to look at the pixels.
        let (w, h) = (sheet.width() * 3, sheet.height() * 3);
        let zoom = image::imageops::resize(&sheet, w, h, image::imageops::FilterType::Nearest);
        let zpath = path.replace(".png", "_x3.png");
        zoom.save(&zpath).expect("write contact sheet");
        println!("contact sheet: {path} (enlarged: {zpath})");
    }
    if args.big > 0 {
        let big = SynthConfig {
            size: args.big,
            ..rgb
        };
        let path = format!("{}/synth_rgb_{}.png", args.out, args.big);
        contact_sheet(&big, 6).save(&path).expect("write contact sheet");
        println!("contact sheet: {path}");
    }

    if args.seednet {
        let net = Network::seednet(args.seed);
        learn(&args, "seednet", net, &gray, args.train, args.epochs);
    }
    if args.flowernet {
        let net = Network::flowernet(args.seed);
        learn(
            &args,
            "flowernet",
            net,
            &rgb,
            (args.train / 2).max(1),
            args.flower_epochs,
        );
    }
}

/// Baselines and training of `net` on `per_class` training images of `cfg` per class
/// (and `args.val` validation images), centred with `--center`.
fn learn(args: &Args, name: &str, mut net: Network, cfg: &SynthConfig, per_class: usize, epochs: usize) {
    let (mut xt, yt) = dataset(cfg, per_class, 0);
    let (mut xv, yv) = dataset(cfg, args.val, 1 << 32);
    baselines(cfg, &xt, &yt, &xv, &yv);
    if args.center {
        center(&mut xt, &mut xv);
    }
    train(
        name,
        &mut net,
        cfg.sample_len(),
        &xt,
        &yt,
        &xv,
        &yv,
        epochs,
        args.lr,
        args.seed,
    );
}
