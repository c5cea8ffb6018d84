//! The training loop: epochs of shuffled batches, each step on this rank's share of the
//! batch, validation and the run folder's files at each epoch's end, and the stops
//! (`--patience`, Ctrl-C, divergence).

use super::folder::{
    append_metrics, best_accuracy, check_finite, checkpoint_meta, patience_stop, root, save, write_confusion,
};
use super::{
    epoch_order, evaluate_on, CheckpointEvery, Control, Outcome, Progress, RunConfig, RunState, Start,
    BEST_FILE, CURVES_FILE,
};
use crate::data::Dataset;
use crate::dist::World;
use crate::error::TrainerError;
use crate::report::{plot_curves, EpochMetrics};
use crate::schedule::Schedule;
use petal_model::{save_checkpoint, Network, Shard, TrainConfig};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Trains `start.net` on `train` for the configured epochs, validating on `val` (may be
/// empty) after each, writing the run folder `dir` as the module docs describe. Stops
/// after the current step when `control.interrupt` is set (on any rank), with a checkpoint.
pub fn train<'a>(
    cfg: &'a RunConfig,
    start: Start,
    train: &'a Dataset,
    val: &'a Dataset,
    dir: &'a Path,
    control: Control<'a>,
) -> Result<(Network, Vec<EpochMetrics>, Outcome), TrainerError> {
    let first_epoch = start.epoch;
    let mut run = Run::new(cfg, start, train, val, dir, control)?;
    let mut early = None;
    for epoch in first_epoch..cfg.epochs {
        // A resumed run that had stopped early stops again at once.
        if let Some(why) = patience_stop(cfg.patience, &run.history) {
            early = Some(why);
            break;
        }
        if let Some(step) = run.epoch(epoch)? {
            return Ok((run.net, run.history, Outcome::Interrupted { epoch, step }));
        }
        run.end_epoch(epoch)?;
        if let Some(why) = patience_stop(cfg.patience, &run.history).filter(|_| epoch + 1 < cfg.epochs) {
            early = Some(why);
            break;
        }
        if run.interrupted() && epoch + 1 < cfg.epochs {
            let step = run.step;
            return Ok((
                run.net,
                run.history,
                Outcome::Interrupted {
                    epoch: epoch + 1,
                    step,
                },
            ));
        }
    }
    run.finish(early)
}

/// A run in progress: the network, where training stands, and what each step needs.
struct Run<'a> {
    cfg: &'a RunConfig,
    train: &'a Dataset,
    val: &'a Dataset,
    dir: &'a Path,
    interrupt: &'a AtomicBool,
    progress: &'a mut dyn Progress,
    world: &'a World,
    net: Network,
    /// Completed steps.
    step: u64,
    state: RunState,
    history: Vec<EpochMetrics>,
    /// The last checkpoint in the folder, (epoch, step).
    last: Option<(u64, u64)>,
    /// The step and time of the last checkpoint this process wrote or resumed from, for
    /// `--checkpoint-every`.
    saved: (u64, Instant),
    /// Images per batch (a batch larger than the training set is the whole set) and
    /// batches per epoch.
    batch: usize,
    steps: usize,
    /// The rate of each step, a pure function of its place in the run, and the step's
    /// configuration (built once, its rate set at each step).
    schedule: Schedule,
    step_cfg: TrainConfig,
    /// The rate of the last step.
    lr: f64,
    /// This rank's batch: inputs and labels.
    x: Vec<f32>,
    y: Vec<usize>,
    /// The title of the curves' plot.
    title: String,
}

impl<'a> Run<'a> {
    fn new(
        cfg: &'a RunConfig,
        start: Start,
        train: &'a Dataset,
        val: &'a Dataset,
        dir: &'a Path,
        control: Control<'a>,
    ) -> Result<Self, TrainerError> {
        let Control {
            interrupt,
            progress,
            world,
        } = control;
        // A batch larger than the training set is the whole set: the same batches, without
        // buffers sized for images that do not exist.
        let batch = cfg.batch_size.clamp(1, train.len().max(1));
        let steps = train.len().div_ceil(batch);
        if world.ranks() > 1 {
            check_exchange(&start.net, train.len(), batch, world.ranks())?;
        }
        let schedule = cfg.recipe.schedule(cfg.epochs, steps);
        let lr = schedule.lr_at(start.epoch * steps + start.state.batch_in_epoch.saturating_sub(1));
        let title = format!("{} on {} images", start.net.spec(), train.len());
        Ok(Run {
            cfg,
            train,
            val,
            dir,
            interrupt,
            progress,
            world,
            step_cfg: cfg.recipe.train_config(),
            x: vec![0.0; batch * train.shape.len()],
            y: vec![0; batch],
            saved: (start.step, Instant::now()),
            net: start.net,
            step: start.step,
            state: start.state,
            history: start.history,
            last: start.checkpoint,
            batch,
            steps,
            schedule,
            lr,
            title,
        })
    }

    /// Whether any rank was interrupted (every rank gets the same answer).
    fn interrupted(&self) -> bool {
        self.world.any(self.interrupt.load(Ordering::SeqCst))
    }

    /// The steps of `epoch` (0-based), from where the run stands in it. Returns the step
    /// after which an interrupt stopped it (its checkpoint written), if one did.
    fn epoch(&mut self, epoch: usize) -> Result<Option<u64>, TrainerError> {
        let order = epoch_order(self.cfg.seed, epoch, self.train.len());
        self.progress.epoch_start(epoch + 1, self.cfg.epochs, self.steps);
        for (bi, batch) in order
            .chunks(self.batch)
            .enumerate()
            .skip(self.state.batch_in_epoch)
        {
            if batch.len() < self.net.min_train_batch() {
                // A last batch of one image where a batch norm sees one value per channel
                // (PyTorch refuses it too): skipped, as `drop_last` would.
                continue;
            }
            self.step(epoch, bi, batch)?;
            if self.state.batch_in_epoch == self.steps {
                // The epoch's end checkpoints anyway.
                continue;
            }
            // Every rank stops after the same step when any was interrupted.
            if self.interrupted() {
                self.save_in_epoch(epoch)?;
                return Ok(Some(self.step));
            }
            if self.checkpoint_due() {
                self.save_in_epoch(epoch)?;
            }
        }
        Ok(None)
    }

    /// Whether `--checkpoint-every` asks for a checkpoint after this step (on any rank: a
    /// wall-time interval is each rank's own clock).
    fn checkpoint_due(&self) -> bool {
        match self.cfg.checkpoint_every {
            None => false,
            Some(CheckpointEvery::Steps(n)) => self.step - self.saved.0 >= n,
            Some(CheckpointEvery::Seconds(s)) => {
                let due = self.saved.1.elapsed().as_secs_f64() >= s as f64;
                self.world.any(due)
            }
        }
    }

    /// The checkpoint of a step within `epoch` (0-based): the weights checked finite, then
    /// the optimizer file and the checkpoint with where the epoch stands (rank 0).
    fn save_in_epoch(&mut self, epoch: usize) -> Result<(), TrainerError> {
        check_finite(&self.net, epoch + 1, self.step, self.dir, self.last)?;
        let (dir, net, train, state, step) = (self.dir, &self.net, self.train, &self.state, self.step);
        let saved = root(self.world, || {
            save(dir, net, train, epoch, step, state, &mut self.last)
        });
        self.world.agree(saved)?;
        self.last = Some((epoch as u64, step));
        self.saved = (step, Instant::now());
        Ok(())
    }

    /// Step `bi` of `epoch`, on `batch` (indices of training images): this rank's share
    /// of it assembled (augmented when asked), one training step, the epoch's sums.
    fn step(&mut self, epoch: usize, bi: usize, batch: &[usize]) -> Result<(), TrainerError> {
        let t0 = Instant::now();
        let (cfg, per, n) = (self.cfg, self.train.shape.len(), batch.len());
        // This rank's samples of the batch (all of it in one process).
        let shard = Shard::split(n, self.world.ranks(), self.world.rank());
        let idx = &batch[shard.samples()];
        for (k, &i) in idx.iter().enumerate() {
            let slot = &mut self.x[k * per..(k + 1) * per];
            if cfg.augment.is_on() {
                // Drawn from (seed, epoch, image index) alone: see `augment`.
                let draw = cfg.augment.draw(cfg.seed, epoch, i);
                cfg.augment.apply(draw, self.train.image(i), slot, cfg.input);
            } else {
                slot.copy_from_slice(self.train.image(i));
            }
            self.y[k] = self.train.labels[i];
        }
        let m = idx.len();
        self.lr = self.schedule.lr_at(epoch * self.steps + bi);
        self.step_cfg.set_lr(self.lr as f32);
        let (x, y) = (&self.x[..m * per], &self.y[..m]);
        // The loss and correct count are the whole batch's either way.
        let s = match self.world.collective() {
            Some(comm) => self.net.train_step_shard(x, y, &self.step_cfg, shard, comm)?,
            None => self.net.train_step_with(x, y, &self.step_cfg)?,
        };
        if !s.loss.is_finite() {
            return Err(TrainerError::Diverged {
                epoch: epoch + 1,
                step: self.step + 1,
                what: format!("the loss is {}", s.loss),
                dir: self.dir.into(),
                last: self.last,
            });
        }
        self.step += 1;
        let st = &mut self.state;
        st.batch_in_epoch = bi + 1;
        st.loss_sum += s.loss as f64 * n as f64;
        st.correct += s.correct;
        st.seen += n;
        st.seconds += t0.elapsed().as_secs_f64();
        let (loss, rate) = (
            st.loss_sum / st.seen as f64,
            st.seen as f64 / st.seconds.max(1e-9),
        );
        self.progress.step(bi + 1, loss, rate);
        Ok(())
    }

    /// The end of `epoch` (0-based): validation, the epoch's metrics, the weights checked
    /// equal on every rank, then (rank 0) the metrics line, the checkpoint, the best
    /// epoch's checkpoint when it improved, and the curves.
    fn end_epoch(&mut self, epoch: usize) -> Result<(), TrainerError> {
        let (cfg, world) = (self.cfg, self.world);
        check_finite(&self.net, epoch + 1, self.step, self.dir, self.last)?;
        let (val_loss, val_acc) = if self.val.is_empty() {
            (None, None)
        } else {
            let (l, c) = evaluate_on(&mut self.net, self.val, cfg.batch_size, world)?;
            (Some(l), Some(c.accuracy()))
        };
        let st = &self.state;
        let m = EpochMetrics {
            epoch: epoch + 1,
            train_loss: st.loss_sum / st.seen.max(1) as f64,
            train_accuracy: st.correct as f64 / st.seen.max(1) as f64,
            val_loss,
            val_accuracy: val_acc,
            images_per_sec: st.seen as f64 / st.seconds.max(1e-9),
            seconds: st.seconds,
            step: self.step,
            lr: Some(self.lr),
        };
        // Every rank must hold the same weights now (they do unless the ranks run builds
        // whose kernels round differently): refused before rank 0 checkpoints them.
        world.check_same(
            "weights",
            [crate::dist::weights_fingerprint(&self.net), self.step, 0],
            |v| format!("fingerprint {:016x} at step {}", v[0], v[1]),
            "every rank must run the same build of the trainer (the same SIMD level)",
        )?;
        self.state = RunState::default();
        let improved = match (val_acc, best_accuracy(&self.history)) {
            (Some(a), Some((_, b))) => a > b,
            (Some(_), None) => true,
            (None, _) => false,
        };
        self.history.push(m.clone());
        let (dir, net, train, step) = (self.dir, &self.net, self.train, self.step);
        let (state, history, title) = (&self.state, &self.history, &self.title);
        let written = root(world, || {
            append_metrics(dir, &m)?;
            save(dir, net, train, epoch + 1, step, state, &mut self.last)?;
            // After the run's own checkpoint: a failure here leaves the run resumable.
            if improved {
                let meta = checkpoint_meta(train, epoch + 1, step, None);
                save_checkpoint(&dir.join(BEST_FILE), net, &meta)?;
            }
            plot_curves(&dir.join(CURVES_FILE), history, title)
        });
        world.agree(written)?;
        // The other ranks track the checkpoint rank 0 wrote.
        self.last = Some((epoch as u64 + 1, self.step));
        self.saved = (self.step, Instant::now());
        self.progress.epoch_end(&m, cfg.epochs);
        Ok(())
    }

    /// The end of the run: the confusion matrix of the validation set (or the training set
    /// without one), written to the folder.
    fn finish(
        mut self,
        early: Option<String>,
    ) -> Result<(Network, Vec<EpochMetrics>, Outcome), TrainerError> {
        let (set, data) = if self.val.is_empty() {
            ("train", self.train)
        } else {
            ("validation", self.val)
        };
        let (_, confusion) = evaluate_on(&mut self.net, data, self.cfg.batch_size, self.world)?;
        let written = root(self.world, || write_confusion(self.dir, &confusion, set));
        self.world.agree(written)?;
        Ok((self.net, self.history, Outcome::Finished { confusion, early }))
    }
}

/// MPI counts a gather's values in an `int`: a run whose gradient exchange (of a batch of
/// `batch`, or the last one of a set of `images`) would pass it is refused before any work.
fn check_exchange(net: &Network, images: usize, batch: usize, ranks: usize) -> Result<(), TrainerError> {
    let last = images % batch;
    let most = [batch, last].map(|n| {
        if n > 0 {
            net.shard_exchange_len(n, ranks)
        } else {
            0
        }
    });
    match most.iter().find(|&&v| v > i32::MAX as usize) {
        Some(&v) => Err(TrainerError::Usage(format!(
            "{ranks} ranks would gather {v} gradient values per step, more than MPI's limit of {}: use fewer ranks or a smaller network",
            i32::MAX
        ))),
        None => Ok(()),
    }
}
