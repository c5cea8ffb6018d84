//! Command-line interface: argument types and the command implementations.

use crate::bench::bench;
use crate::data::{
    class_folders, decode_file, load_image_folder, training_class_folders, write_chw, Dataset, MAX_SIDE,
};
use crate::error::TrainerError;
use crate::report::{thousands, EpochMetrics};
use crate::synth::{self, SynthConfig, CLASSES};
use crate::train::{self, Outcome, Progress, RunConfig, Start};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use petal_model::{gradcheck, load_checkpoint, GradCheckOptions, InputShape, Network, Normalization};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Train convolutional networks on the CPU, fast. With no command, trains the seed's
/// network (seednet) on the built-in synthetic flowers.
#[derive(Parser, Debug)]
#[command(name = "trainer", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub train: TrainArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a network on an image folder or the synthetic flowers (the default command).
    Train(TrainArgs),
    /// Accuracy, per-class precision/recall and confusion matrix of a checkpoint on a folder.
    Eval(EvalArgs),
    /// Top classes with probabilities for each image.
    Predict(PredictArgs),
    /// Training and inference images/s on random data.
    Bench(BenchArgs),
    /// Finite-difference check of every layer's gradients.
    Gradcheck(GradcheckArgs),
    /// Write the synthetic flowers as PNG class folders.
    Synth(SynthArgs),
}

/// Network and input shape options shared by several commands.
#[derive(Args, Debug, Clone)]
pub struct ArchArgs {
    /// `seednet`, `flowernet` (presets: their last layer, `dense:N`, is sized to the
    /// data's N classes) or a spec such as `conv3x3:8,maxpool2,dense:5` (README: grammar),
    /// which must end in as many outputs as the data has classes.
    #[arg(long, default_value = "seednet")]
    pub arch: String,
    /// Input side in pixels (default: 50 for seednet, 64 otherwise).
    #[arg(long)]
    pub size: Option<usize>,
    /// One input channel (default for seednet).
    #[arg(long, conflicts_with = "rgb")]
    pub grayscale: bool,
    /// Three input channels (default for flowernet and specs).
    #[arg(long)]
    pub rgb: bool,
}

impl ArchArgs {
    /// The input shape the options describe.
    pub fn input(&self) -> InputShape {
        let seed = self.arch.trim() == "seednet";
        let size = self.size.unwrap_or(if seed { 50 } else { 64 });
        let c = if self.grayscale {
            1
        } else if self.rgb || !seed {
            3
        } else {
            1
        };
        InputShape { c, h: size, w: size }
    }
}

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Image folder, one sub-folder per class (default: the built-in synthetic flowers).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Separate validation image folder (instead of --val-split).
    #[arg(long)]
    pub val: Option<PathBuf>,
    #[command(flatten)]
    pub arch: ArchArgs,
    /// Epochs to train (default 5; with --resume: the run's own, or more).
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.02)]
    pub lr: f32,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    /// Fraction of each class held out for validation (without --val).
    #[arg(long, default_value_t = 0.2)]
    pub val_split: f64,
    /// Synthetic flowers per class, training and validation together (without --data).
    #[arg(long, default_value_t = 500)]
    pub synth_per_class: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run folder (default: `runs/<timestamp>-<arch>`); must be new or empty.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this folder from its last checkpoint (its config.json holds
    /// the options; --epochs may raise the total).
    #[arg(long, conflicts_with_all = ["data", "val", "out"])]
    pub resume: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Image files.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Classes shown per image.
    #[arg(long, default_value_t = 3)]
    pub top: usize,
    /// Print JSON (one array of results) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub arch: ArchArgs,
    /// Classes: a preset's last layer is sized to it, a spec must end in it (default: 5
    /// for a preset, any for a spec).
    #[arg(long)]
    pub classes: Option<usize>,
    /// Batch sizes to measure (repeat or comma-separate).
    #[arg(long, value_delimiter = ',', default_values_t = [32])]
    pub batch_size: Vec<usize>,
    /// Thread counts to measure (default: all cores).
    #[arg(long, value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Seconds of measurement per configuration.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// One JSON object per configuration, one per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct GradcheckArgs {
    #[command(flatten)]
    pub arch: ArchArgs,
    /// Classes: a preset's last layer is sized to it, a spec must end in it (default: 5
    /// for a preset, any for a spec).
    #[arg(long)]
    pub classes: Option<usize>,
    #[arg(long, default_value_t = 2)]
    pub batch_size: usize,
    /// Largest accepted relative error.
    #[arg(long, default_value_t = 1e-3)]
    pub tolerance: f64,
    /// Entries probed per tensor.
    #[arg(long, default_value_t = 16)]
    pub samples: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Args, Debug)]
pub struct SynthArgs {
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 100)]
    pub per_class: usize,
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Grayscale images (default: RGB).
    #[arg(long)]
    pub grayscale: bool,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Largest side of a synthetic flower (`trainer synth --size`).
pub const MAX_SYNTH_SIDE: usize = 4096;

/// Largest batch `trainer bench` and `trainer gradcheck` build (their inputs are random,
/// so nothing bounds them but this).
pub const MAX_BENCH_BATCH: usize = 1 << 16;

/// How a command ended, for the exit code.
pub enum Exit {
    Ok,
    /// Ctrl-C: the checkpoint was written; exit code 130 as for any interrupted program.
    Interrupted,
    /// The command ran but its check failed (gradcheck over tolerance, an image that did
    /// not decode in predict).
    Failed,
}

pub fn run(cli: Cli) -> Result<Exit, TrainerError> {
    match cli.command {
        None => cmd_train(cli.train),
        Some(Command::Train(a)) => cmd_train(a),
        Some(Command::Eval(a)) => cmd_eval(a),
        Some(Command::Predict(a)) => cmd_predict(a),
        Some(Command::Bench(a)) => cmd_bench(a),
        Some(Command::Gradcheck(a)) => cmd_gradcheck(a),
        Some(Command::Synth(a)) => cmd_synth(a),
    }
}

/// Refuses an input of more than [`crate::data::MAX_SIDE`] pixels a side or more values
/// than a network accepts (before anything is allocated for it).
fn check_size(input: InputShape) -> Result<(), TrainerError> {
    if input.h > MAX_SIDE as usize || input.w > MAX_SIDE as usize {
        return Err(TrainerError::Usage(format!(
            "--size {} is over the limit of {MAX_SIDE} pixels",
            input.h.max(input.w)
        )));
    }
    petal_model::limits::check_input(input)?;
    Ok(())
}

/// [`Network::for_classes`] (a preset sized to `classes`, a spec checked against it), or
/// without `classes` [`Network::from_spec`] (a preset for 5 classes, a spec as it is);
/// then refuses a network whose convolution scratch buffers could not be allocated
/// (`petal_model::limits::check_buffers`). `data` names where the classes were counted, for
/// the error of a spec whose output count differs.
fn network(
    arch: &str,
    input: InputShape,
    classes: Option<usize>,
    data: &str,
    seed: u64,
) -> Result<Network, TrainerError> {
    let net = match classes {
        Some(n) => Network::for_classes(arch, input, n, seed),
        None => Network::from_spec(arch, input, seed),
    };
    let net = net.map_err(|e| match e {
        petal_model::ModelError::ClassCount {
            last,
            outputs,
            classes,
            ..
        } => petal_model::ModelError::ClassCount {
            last,
            outputs,
            data: data.to_string(),
            classes,
        },
        e => e,
    })?;
    petal_model::limits::check_buffers(&net)?;
    Ok(net)
}

/// The classes of a run's data, in label order, and what they were counted in (for
/// messages), found before any image is decoded: the synthetic flowers' five, or the class
/// folders of `--data`. A `--val` folder must hold the same classes or some of them (its
/// images take the label of the training class of the same name); one with a class the
/// training folder lacks is refused here.
fn data_classes(cfg: &RunConfig) -> Result<(Vec<String>, String), TrainerError> {
    let Some(dir) = &cfg.data else {
        let names = CLASSES.iter().map(|s| s.to_string()).collect();
        return Ok((names, "the synthetic flower set".into()));
    };
    let names: Vec<String> = training_class_folders(dir)?.into_iter().map(|(n, _)| n).collect();
    if let Some(vdir) = &cfg.val {
        let val: Vec<String> = class_folders(vdir)?.into_iter().map(|(n, _)| n).collect();
        let extra: Vec<&String> = val.iter().filter(|n| !names.contains(n)).collect();
        if !extra.is_empty() {
            return Err(TrainerError::data(
                vdir,
                format!(
                    "has class folders that the training folder {} lacks: {extra:?} (training classes: {names:?})",
                    dir.display()
                ),
            ));
        }
        let missing: Vec<&String> = names.iter().filter(|n| !val.contains(n)).collect();
        if !missing.is_empty() {
            eprintln!(
                "note: validation folder {} has no images of {missing:?}; its {} classes keep the training folder's labels",
                vdir.display(),
                val.len()
            );
        }
    }
    Ok((names, dir.display().to_string()))
}

fn set_threads(threads: Option<usize>) -> Result<(), TrainerError> {
    if let Some(n) = threads {
        if n == 0 {
            return Err(TrainerError::Usage("--threads must be at least 1".into()));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| TrainerError::Usage(format!("cannot start {n} threads: {e}")))?;
    }
    Ok(())
}

/// `YYYYMMDD-HHMMSS` in UTC.
fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn arch_slug(arch: &str) -> String {
    match arch.trim() {
        "seednet" | "flowernet" => arch.trim().to_string(),
        _ => "custom".to_string(),
    }
}

/// Loads the training and validation sets a run configuration names.
/// `classes` are the training folder's, from [`data_classes`].
fn load_data(cfg: &RunConfig, classes: &[String]) -> Result<(Dataset, Dataset), TrainerError> {
    let shape = InputShape {
        c: cfg.input[0],
        h: cfg.input[1],
        w: cfg.input[2],
    };
    let t = Instant::now();
    match &cfg.data {
        None => {
            let sc = SynthConfig {
                size: shape.h,
                rgb: shape.c == 3,
                seed: cfg.seed,
            };
            if shape.h != shape.w {
                return Err(TrainerError::Usage("synthetic flowers are square".into()));
            }
            if !(8..=MAX_SYNTH_SIDE).contains(&shape.h) {
                return Err(TrainerError::Usage(format!(
                    "synthetic flowers are drawn at --size 8 to {MAX_SYNTH_SIDE}, not {} (or give --data)",
                    shape.h
                )));
            }
            // Refuse a data set that cannot be allocated before drawing it.
            let values = (cfg.synth_per_class as u128) * CLASSES.len() as u128 * shape.len() as u128;
            if usize::try_from(values)
                .ok()
                .and_then(|v| Vec::<f32>::new().try_reserve_exact(v).ok())
                .is_none()
            {
                return Err(TrainerError::Usage(format!(
                    "{} synthetic flowers of {shape} ({values} values) do not fit in memory: lower --synth-per-class or --size",
                    cfg.synth_per_class as u128 * CLASSES.len() as u128
                )));
            }
            let (images, labels) = synth::dataset(&sc, cfg.synth_per_class, 0);
            let all = Dataset {
                images,
                labels,
                classes: CLASSES.iter().map(|s| s.to_string()).collect(),
                shape,
                paths: Vec::new(),
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
            Ok((tr, va))
        }
        Some(dir) => {
            let (all, report) = load_image_folder(dir, shape, Some(classes))?;
            print_load(dir, &all, &report, t);
            let (tr, va) = match &cfg.val {
                Some(vdir) => {
                    let t = Instant::now();
                    let (va, r) = load_image_folder(vdir, shape, Some(&all.classes))?;
                    print_load(vdir, &va, &r, t);
                    (all, va)
                }
                None => all.split(cfg.val_split, cfg.seed),
            };
            Ok((tr, va))
        }
    }
}

fn print_load(dir: &Path, data: &Dataset, report: &crate::data::LoadReport, t: Instant) {
    for (p, why) in &report.skipped {
        eprintln!("skipped {}: {why}", p.display());
    }
    let counts: Vec<String> = data
        .classes
        .iter()
        .zip(data.class_counts())
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    println!(
        "{}: {} images in {} classes ({}), {} skipped, {} ignored ({:.1} s)",
        dir.display(),
        data.len(),
        data.classes.len(),
        counts.join(", "),
        report.skipped.len(),
        report.ignored,
        t.elapsed().as_secs_f64()
    );
}

/// Terminal bar on a TTY, one line per epoch otherwise.
struct Console {
    bar: Option<ProgressBar>,
    tty: bool,
    /// Test hook (`PETAL_INTERRUPT_AFTER_STEPS=N`): acts as a Ctrl-C after N steps of this
    /// process, so tests can interrupt at an exact step.
    interrupt_after: Option<(u64, Arc<AtomicBool>)>,
    steps: u64,
}

impl Progress for Console {
    fn epoch_start(&mut self, epoch: usize, epochs: usize, steps: usize) {
        if self.tty {
            let bar = ProgressBar::new(steps as u64);
            bar.set_style(
                ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg}")
                    .expect("template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(format!("{epoch}/{epochs}"));
            self.bar = Some(bar);
        }
    }
    fn step(&mut self, batch: usize, loss: f64, ips: f64) {
        self.steps += 1;
        if let Some((n, flag)) = &self.interrupt_after {
            if self.steps >= *n {
                flag.store(true, Ordering::SeqCst);
            }
        }
        if let Some(bar) = &self.bar {
            bar.set_position(batch as u64);
            bar.set_message(format!("loss {loss:.4}  {} img/s", thousands(ips)));
        }
    }
    fn epoch_end(&mut self, m: &EpochMetrics, epochs: usize) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        println!("{}", m.human(epochs));
    }
}

fn cmd_train(a: TrainArgs) -> Result<Exit, TrainerError> {
    set_threads(a.threads)?;
    let (cfg, dir, resuming) = match &a.resume {
        Some(dir) => {
            let mut cfg = train::read_config(dir)?;
            cfg.epochs = cfg.epochs.max(a.epochs.unwrap_or(0));
            (cfg, dir.clone(), true)
        }
        None => {
            let input = a.arch.input();
            let cfg = RunConfig {
                arch: a.arch.arch.clone(),
                spec: None,
                input: [input.c, input.h, input.w],
                epochs: a.epochs.unwrap_or(5),
                batch_size: a.batch_size,
                lr: a.lr,
                momentum: a.momentum,
                weight_decay: a.weight_decay,
                seed: a.seed,
                data: a.data.clone(),
                val: a.val.clone(),
                val_split: a.val_split,
                synth_per_class: a.synth_per_class,
            };
            let dir = a.out.clone().unwrap_or_else(|| {
                PathBuf::from("runs").join(format!("{}-{}", timestamp(), arch_slug(&cfg.arch)))
            });
            (cfg, dir, false)
        }
    };
    if cfg.batch_size == 0 || cfg.epochs == 0 {
        return Err(TrainerError::Usage(
            "--batch-size and --epochs must be at least 1".into(),
        ));
    }
    if !(0.0..1.0).contains(&cfg.val_split) {
        return Err(TrainerError::Usage(format!(
            "--val-split {} is not in [0, 1)",
            cfg.val_split
        )));
    }
    for (name, v) in [
        ("--lr", cfg.lr),
        ("--momentum", cfg.momentum),
        ("--weight-decay", cfg.weight_decay),
    ] {
        if !v.is_finite() || v < 0.0 {
            return Err(TrainerError::Usage(format!(
                "{name} {v} must be a finite number, at least 0"
            )));
        }
    }
    let input = InputShape {
        c: cfg.input[0],
        h: cfg.input[1],
        w: cfg.input[2],
    };
    check_size(input)?;
    // A spec that does not parse fails at once; then, from the class folders' names alone
    // (nothing decoded yet), the network is sized to the data or a spec that does not end
    // in its class count is refused.
    petal_model::parse_spec(&petal_model::spec::resolve_arch(&cfg.arch, CLASSES.len()))
        .map_err(petal_model::ModelError::from)?;
    let (classes, data_name) = data_classes(&cfg)?;
    let fresh = network(&cfg.arch, input, Some(classes.len()), &data_name, cfg.seed)?;
    // A resumed run's config.json records the network its arch resolved to: the two agree
    // unless the file was edited.
    if let Some(spec) = cfg.spec.as_deref().filter(|s| *s != fresh.spec()) {
        return Err(TrainerError::data(
            dir.join(train::CONFIG_FILE),
            format!(
                "`arch` {:?} gives `{}` for {} classes, but `spec` is `{spec}`",
                cfg.arch,
                fresh.spec(),
                classes.len()
            ),
        ));
    }
    let cfg = RunConfig {
        spec: Some(fresh.spec()),
        ..cfg
    };
    let (tr, va) = load_data(&cfg, &classes)?;
    if tr.is_empty() {
        return Err(TrainerError::Usage(
            "no training images left after the validation split".into(),
        ));
    }
    let start = if resuming {
        let s = train::resume(&dir, &tr.classes, fresh)?;
        match s.checkpoint {
            Some(_) => println!(
                "resuming {} at epoch {}, step {}",
                dir.display(),
                s.epoch + 1,
                s.step
            ),
            None => println!(
                "resuming {}: no checkpoint yet (stopped during epoch 1), starting from the beginning",
                dir.display()
            ),
        }
        s
    } else {
        train::create_run_dir(&dir)?;
        train::write_config(&dir, &cfg)?;
        Start::fresh(fresh)
    };
    println!(
        "training {} ({} parameters) on {} threads: {} epochs, batch {}, lr {}, momentum {}",
        start.net.spec(),
        thousands(start.net.param_count() as f64),
        rayon::current_num_threads(),
        cfg.epochs,
        cfg.batch_size,
        cfg.lr,
        cfg.momentum
    );
    let interrupt = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupt.clone();
        // A second Ctrl-C exits at once; the last checkpoint on disk stays valid.
        let _ = ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!(
                "\ninterrupt: finishing the step and writing the checkpoint (Ctrl-C again to quit now)"
            );
        });
    }
    let interrupt_after = std::env::var("PETAL_INTERRUPT_AFTER_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(|n| (n, interrupt.clone()));
    let mut console = Console {
        bar: None,
        tty: std::io::stderr().is_terminal(),
        interrupt_after,
        steps: 0,
    };
    let t = Instant::now();
    let (_, _, outcome) = train::train(&cfg, start, &tr, &va, &dir, &interrupt, &mut console)?;
    match outcome {
        Outcome::Interrupted { epoch, step } => {
            println!(
                "interrupted at epoch {}, step {step}: checkpoint written; continue with\n  trainer train --resume {}",
                epoch + 1,
                dir.display()
            );
            Ok(Exit::Interrupted)
        }
        Outcome::Finished { confusion } => {
            let set = if va.is_empty() { "training" } else { "validation" };
            println!("\n{set} confusion matrix:\n{}", confusion.table());
            println!(
                "\ndone in {:.1} s; run written to {}",
                t.elapsed().as_secs_f64(),
                dir.display()
            );
            Ok(Exit::Ok)
        }
    }
}

fn cmd_eval(a: EvalArgs) -> Result<Exit, TrainerError> {
    let (mut net, meta) = load_checkpoint(&a.checkpoint)?;
    let shape = net.input_shape();
    let t = Instant::now();
    let (mut data, report) = load_image_folder(&a.data, shape, Some(&meta.classes))?;
    if !a.json {
        print_load(&a.data, &data, &report, t);
    }
    for img in data.images.chunks_mut(shape.len()) {
        normalize_image(img, shape, &meta.normalization);
    }
    let (loss, confusion) = train::evaluate(&mut net, &data, a.batch_size.max(1))?;
    if a.json {
        let v = serde_json::json!({
            "checkpoint": a.checkpoint.to_string_lossy(),
            "data": a.data.to_string_lossy(),
            "images": data.len(),
            "skipped": report.skipped.iter().map(|(p, r)| serde_json::json!({"path": p.to_string_lossy(), "reason": r})).collect::<Vec<_>>(),
            "loss": loss,
            "accuracy": confusion.accuracy(),
            "classes": confusion.classes,
            "counts": confusion.counts,
            "scores": confusion.scores(),
        });
        println!("{v}");
    } else {
        println!("loss {loss:.4}\n{}", confusion.table());
    }
    Ok(Exit::Ok)
}

/// Applies a checkpoint's normalization to one `[c, h, w]` image in `[0, 1]`.
fn normalize_image(img: &mut [f32], shape: InputShape, n: &Normalization) {
    let k = 255.0 * n.scale;
    for (c, plane) in img.chunks_mut(shape.h * shape.w).enumerate() {
        let (m, s) = (
            n.mean.get(c).copied().unwrap_or(0.0),
            n.std.get(c).copied().unwrap_or(1.0),
        );
        if k == 1.0 && m == 0.0 && s == 1.0 {
            continue;
        }
        for v in plane {
            *v = (*v * k - m) / s;
        }
    }
}

fn cmd_predict(a: PredictArgs) -> Result<Exit, TrainerError> {
    let (mut net, meta) = load_checkpoint(&a.checkpoint)?;
    let shape = net.input_shape();
    let mut x = vec![0.0f32; shape.len()];
    let mut results = Vec::new();
    let mut failed = false;
    for path in &a.images {
        match decode_file(path) {
            Err(why) => {
                failed = true;
                if a.json {
                    results.push(serde_json::json!({"path": path.to_string_lossy(), "error": why}));
                } else {
                    eprintln!("{}: cannot read: {why}", path.display());
                }
            }
            Ok(img) => {
                write_chw(&img, shape, &mut x);
                normalize_image(&mut x, shape, &meta.normalization);
                let probs = net.predict(&x)?.to_vec();
                let mut order: Vec<usize> = (0..probs.len()).collect();
                order.sort_by(|&i, &j| probs[j].total_cmp(&probs[i]));
                order.truncate(a.top.max(1));
                if a.json {
                    let preds: Vec<_> = order
                        .iter()
                        .map(|&i| serde_json::json!({"class": meta.classes[i], "probability": probs[i]}))
                        .collect();
                    results.push(serde_json::json!({"path": path.to_string_lossy(), "predictions": preds}));
                } else {
                    let s: Vec<String> = order
                        .iter()
                        .map(|&i| format!("{} {:.1} %", meta.classes[i], 100.0 * probs[i]))
                        .collect();
                    println!("{}: {}", path.display(), s.join(", "));
                }
            }
        }
    }
    if a.json {
        println!("{}", serde_json::Value::Array(results));
    }
    Ok(if failed { Exit::Failed } else { Exit::Ok })
}

fn cmd_bench(a: BenchArgs) -> Result<Exit, TrainerError> {
    let input = a.arch.input();
    let threads = if a.threads.is_empty() {
        vec![rayon::current_num_threads()]
    } else {
        a.threads.clone()
    };
    if threads.contains(&0) || a.batch_size.contains(&0) {
        return Err(TrainerError::Usage(
            "--threads and --batch-size must be at least 1".into(),
        ));
    }
    if let Some(b) = a.batch_size.iter().find(|&&b| b > MAX_BENCH_BATCH) {
        return Err(TrainerError::Usage(format!(
            "--batch-size {b} is over the limit of {MAX_BENCH_BATCH}"
        )));
    }
    // Refuse a bad spec before measuring anything.
    check_size(input)?;
    let net = network(&a.arch.arch, input, a.classes, "--classes", 0)?;
    let spec = net.spec();
    if !a.json {
        println!(
            "{} on {input} ({:.2} MFLOP per training image), {:.1} s per configuration",
            net.spec(),
            net.train_flops_per_sample() as f64 / 1e6,
            a.seconds
        );
        println!(
            "{:>6} {:>8} {:>14} {:>14} {:>12}",
            "batch", "threads", "train img/s", "infer img/s", "train GFLOP/s"
        );
    }
    for &t in &threads {
        for &b in &a.batch_size {
            let r = bench(&a.arch.arch, &spec, input, b, t, a.seconds)?;
            if a.json {
                println!("{}", serde_json::to_string(&r).expect("bench result"));
            } else {
                println!(
                    "{:>6} {:>8} {:>14} {:>14} {:>12.1}",
                    b,
                    t,
                    thousands(r.train_images_per_sec),
                    thousands(r.infer_images_per_sec),
                    r.train_gflops
                );
            }
        }
    }
    Ok(Exit::Ok)
}

fn cmd_gradcheck(a: GradcheckArgs) -> Result<Exit, TrainerError> {
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

fn cmd_synth(a: SynthArgs) -> Result<Exit, TrainerError> {
    if !(8..=MAX_SYNTH_SIDE).contains(&a.size) {
        return Err(TrainerError::Usage(format!(
            "--size must be between 8 and {MAX_SYNTH_SIDE}"
        )));
    }
    train::create_run_dir(&a.out).map_err(|e| match e {
        TrainerError::RunExists(p) => TrainerError::data(p, "is not empty: choose a new --out"),
        e => e,
    })?;
    let cfg = SynthConfig {
        size: a.size,
        rgb: !a.grayscale,
        seed: a.seed,
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
