//! A training step: forward, loss, backward in parallel regions over chunks
//! ([`CHUNK`](crate::plan::CHUNK) images) of the batch,
//! the batch norms' statistics between them, and the gradient's reduction; on one process
//! or on one shard of a batch split over several ([`Network::train_step_shard`]).

use super::{count_correct, on_pool, Network, StepStats};
use crate::buffers::Chunk;
use crate::error::ModelError;
use crate::layers::dropout_seed;
use crate::optim::TrainConfig;
use crate::shard::{Collective, Shard};
use crate::step::{exchange, finish_batch_norm, reduce_gradients, ChunkStep};
use petal_kernels as k;

impl Network {
    /// One parallel region: `task` once per [`CHUNK`] images of `x` (this process's
    /// samples of `shard`, buffers sized for them), with `labels` in training.
    pub(super) fn region<F>(&mut self, x: &[f32], shard: Shard, labels: Option<&[usize]>, task: F)
    where
        F: Fn(&ChunkStep<'_>, &mut Chunk<'_>) + Sync,
    {
        if x.is_empty() {
            return; // a shard with no chunk of this batch
        }
        let Network {
            layers,
            plan,
            bufs,
            bn_work,
            folded,
            prepared,
            input_grad,
            last_step_seed,
            label_smoothing,
            ..
        } = self;
        let step = ChunkStep {
            layers,
            plan,
            bn: bn_work,
            folded: if labels.is_some() { &[] } else { folded },
            prepared,
            input_grad: *input_grad,
            grad_scale: 1.0 / shard.batch as f32,
            train: labels.is_some(),
            seed: *last_step_seed,
            label_smoothing: *label_smoothing,
            sample_offset: shard.samples().start,
        };
        bufs.for_each_chunk(plan, x, labels, |mut c| task(&step, &mut c));
    }

    /// A training pass over `x` (this process's samples of `shard`) with `labels`:
    /// forward, loss and backward through every layer, in one parallel region without
    /// batch norms, else in `2m + 1` regions with each batch norm's statistics (over the
    /// whole batch, gathered through `comm`) between them (`step`).
    fn run_training(&mut self, x: &[f32], shard: Shard, labels: &[usize], comm: Option<&dyn Collective>) {
        let n = self.layers.len();
        let m = self.plan.bns.len();
        self.prepare_convs(false);
        if m == 0 {
            self.region(x, shard, Some(labels), |step, c| {
                step.forward(c, 0..n);
                step.loss(c);
                step.backward(c, 0..n);
            });
            return;
        }
        let mut lo = 0;
        for j in 0..m {
            let b = self.plan.bns[j];
            self.region(x, shard, Some(labels), |step, c| {
                step.forward(c, lo..b);
                step.bn_sums(c, j);
            });
            self.finish_bn(j, shard, comm, true);
            lo = b;
        }
        self.region(x, shard, Some(labels), |step, c| {
            step.forward(c, lo..n);
            step.loss(c);
            step.backward(c, lo + 1..n);
            step.bn_backward_sums(c, m - 1);
        });
        for j in (0..m).rev() {
            self.finish_bn(j, shard, comm, false);
            let (lo, hi) = (if j > 0 { self.plan.bns[j - 1] + 1 } else { 0 }, self.plan.bns[j]);
            self.region(x, shard, Some(labels), |step, c| {
                step.bn_backward_input(c, j);
                step.backward(c, lo..hi);
                if j > 0 {
                    step.bn_backward_sums(c, j - 1);
                }
            });
        }
    }

    /// Batch norm `j`'s statistics over the batch from its chunks' sums (`step`):
    /// forward (mean, variance, running statistics) or backward (dγ, dβ and the means of
    /// the input gradient).
    fn finish_bn(&mut self, j: usize, shard: Shard, comm: Option<&dyn Collective>, forward: bool) {
        let Network {
            layers,
            plan,
            bufs,
            bn_work,
            shard_work,
            ..
        } = self;
        finish_batch_norm(
            layers,
            plan,
            &bufs.stats,
            bn_work,
            j,
            shard,
            comm,
            shard_work,
            forward,
        );
    }

    /// Per-sample losses of the last [`Network::forward_backward`], `[batch]` (of a
    /// [`Network::train_step_shard`], this process's samples).
    pub fn losses(&self) -> &[f32] {
        &self.bufs.losses[..self.last_train_batch.min(self.bufs.losses.len())]
    }

    /// Forward and backward over one batch: `x` is `[batch, c, h, w]`, `labels` `[batch]`.
    /// Fills every parameter's `grad` with the gradient of the mean softmax cross-entropy
    /// and returns that mean loss. The first trainable layer computes no input gradient
    /// (unless [`Network::set_input_grad`] is on).
    pub fn forward_backward(&mut self, x: &[f32], labels: &[usize]) -> Result<f32, ModelError> {
        let shard = Shard::whole(self.batch_of(x)?);
        on_pool(|| self.forward_backward_shard(x, labels, shard, None)).map(|(loss, _)| loss)
    }

    /// [`Network::forward_backward`] of this process's samples `x` of `shard` (the
    /// gradient, the batch norms' statistics and the loss those of the whole batch, the
    /// other shards' parts gathered through `comm`); returns the batch's mean loss and
    /// correct count.
    fn forward_backward_shard(
        &mut self,
        x: &[f32],
        labels: &[usize],
        shard: Shard,
        comm: Option<&dyn Collective>,
    ) -> Result<(f32, usize), ModelError> {
        let local = shard.samples().len();
        if x.len() != local * self.input.len() {
            return Err(ModelError::BatchShape {
                got: x.len(),
                per_image: self.input.len(),
                shape: format!("{} ({local} samples of the batch's {})", self.input, shard.batch),
            });
        }
        self.check_labels(local, labels)?;
        self.check_batch_norm_batch(shard.batch)?;
        self.bufs.ensure(&self.plan, local, self.input_grad);
        self.last_batch = local;
        self.last_train_batch = local;
        self.last_step_seed = dropout_seed(self.seed, self.steps as usize);
        self.steps += 1;
        self.run_training(x, shard, labels, comm);
        let (layers, plan, bufs) = (&mut self.layers, &self.plan, &self.bufs);
        reduce_gradients(layers, plan, bufs, x, shard, comm, &mut self.shard_work);
        let classes = self.classes();
        let correct = count_correct(&self.bufs.probs[..local * classes], labels, classes);
        let losses = &self.bufs.losses[..local];
        Ok(match comm.filter(|c| c.ranks() > 1) {
            None => (k::mean_loss(losses), correct),
            Some(comm) => exchange::gather_loss(comm, &mut self.shard_work, shard, losses, correct),
        })
    }

    /// Forward, backward and a plain SGD step on one batch; returns its loss and correct
    /// count. ([`Network::train_step_with`] with this SGD and no label smoothing.)
    pub fn train_step(
        &mut self,
        x: &[f32],
        labels: &[usize],
        cfg: &k::SgdConfig,
    ) -> Result<StepStats, ModelError> {
        self.train_step_with(x, labels, &TrainConfig::from(*cfg))
    }

    /// Forward, backward (with `cfg`'s label smoothing) and a step of `cfg`'s optimizer on
    /// one batch; returns its loss (label-smoothed when ε > 0) and correct count.
    pub fn train_step_with(
        &mut self,
        x: &[f32],
        labels: &[usize],
        cfg: &TrainConfig,
    ) -> Result<StepStats, ModelError> {
        let shard = Shard::whole(self.batch_of(x)?);
        self.step_shard(x, labels, cfg, shard, None)
    }

    /// [`Network::train_step_with`] on one shard of a batch split over processes
    /// (data-parallel training): `x` and `labels` are this process's samples of the
    /// global batch (`shard.samples()`, from [`Shard::split`] of the global batch size,
    /// the number of processes and this one's rank), `comm` reaches the other processes.
    /// Every process must make the same call with its own shard. The returned loss and
    /// correct count are the global batch's, and every process ends the step with the
    /// same weights, bit for bit the weights one process gets from
    /// [`Network::train_step_with`] on the whole batch (`shard.rs` says why).
    pub fn train_step_shard(
        &mut self,
        x: &[f32],
        labels: &[usize],
        cfg: &TrainConfig,
        shard: Shard,
        comm: &dyn Collective,
    ) -> Result<StepStats, ModelError> {
        assert!(
            shard == Shard::split(shard.batch, comm.ranks(), comm.rank()),
            "train_step_shard: {shard:?} is not rank {}'s of {} ranks",
            comm.rank(),
            comm.ranks()
        );
        self.step_shard(x, labels, cfg, shard, Some(comm))
    }

    fn step_shard(
        &mut self,
        x: &[f32],
        labels: &[usize],
        cfg: &TrainConfig,
        shard: Shard,
        comm: Option<&dyn Collective>,
    ) -> Result<StepStats, ModelError> {
        self.label_smoothing = cfg.label_smoothing;
        let opt = cfg.optimizer;
        on_pool(|| {
            let (loss, correct) = self.forward_backward_shard(x, labels, shard, comm)?;
            self.optimizer_step(&opt);
            Ok(StepStats {
                loss,
                correct,
                batch: shard.batch,
            })
        })
    }

    /// Values every process receives per step of a batch of `batch` samples split over
    /// `ranks` processes ([`Network::train_step_shard`]): every rank's subtree sums of the
    /// gradient. (MPI counts them in an `int`.)
    pub fn shard_exchange_len(&self, batch: usize, ranks: usize) -> usize {
        let n = batch.div_ceil(crate::plan::CHUNK);
        let mut nodes = Vec::new();
        for r in 0..ranks {
            crate::shard::subtrees(n, Shard::split(batch, ranks, r).chunks(), &mut nodes);
        }
        nodes.len() * self.plan.grad_len
    }

    /// Refuses a training batch of `batch` samples a layer cannot train on (a batch norm
    /// that would see one value per channel: PyTorch refuses it too).
    fn check_batch_norm_batch(&self, batch: usize) -> Result<(), ModelError> {
        self.layers
            .iter()
            .try_for_each(|l| l.kind().check_train_batch(batch))
    }
}
