//! Training over several processes: the [`World`] a run is part of (one process, or the
//! ranks of an MPI job, `mpi.rs`, behind the `mpi` feature) and what the training loop
//! asks of it besides the gradient's exchange ([`petal_model::Collective`]): agreeing
//! on errors and on stopping, broadcasting rank 0's bytes (its request and a resumed run's
//! state, `train`), and checking that every rank sees the same data.
//!
//! Every rank runs the same program on the same data: each takes its share of every global
//! batch ([`petal_model::Shard`]), the step gathers what it needs in a fixed order, and
//! every rank ends each step with the same weights. Rank 0 alone writes the run folder and
//! prints; the others print only errors. Whatever can fail on one rank and not the others
//! (reading a folder, decoding an image, writing a checkpoint) is followed by
//! [`World::agree`], so every rank stops with an error instead of waiting forever for a
//! rank that has left.

#[cfg(feature = "mpi")]
pub mod mpi;

use crate::error::TrainerError;
use petal_model::{Buffer, Collective};

/// What a multi-process transport offers (MPI's, in `mpi.rs`).
pub trait Transport: Send + Sync {
    /// The gathers of a training step.
    fn collective(&self) -> &dyn Collective;
    /// Whether `flag` is set on any rank (every rank gets the answer).
    fn any(&self, flag: bool) -> bool;
    /// Rank 0's `bytes` on every rank (the others' are replaced).
    fn broadcast(&self, bytes: &mut Vec<u8>);
    /// Every rank's `local` values in rank order (`ranks · local.len()` values; every
    /// rank passes as many).
    fn all_gather_u64(&self, local: &[u64]) -> Vec<u64>;
    /// Bytes this rank has sent into collectives so far (each value it contributes
    /// counted once, whatever the algorithm moves).
    fn bytes_sent(&self) -> u64;
    /// Seconds this rank has spent in the gathers and stop votes of training so far,
    /// waiting for slower ranks included.
    fn seconds_in_collectives(&self) -> f64;
}

/// The processes a run is made of: this one alone, or the ranks of a transport.
#[derive(Default)]
pub struct World {
    transport: Option<Box<dyn Transport>>,
}

impl World {
    /// One process.
    pub fn single() -> Self {
        World::default()
    }

    /// The ranks `transport` connects.
    pub fn new(transport: Box<dyn Transport>) -> Self {
        World {
            transport: Some(transport),
        }
    }

    /// The world this process was launched in: the MPI job's when built with the `mpi`
    /// feature and started by an MPI launcher (`mpirun`, `mpiexec`, `srun`), else one
    /// process.
    pub fn from_launcher() -> Self {
        #[cfg(feature = "mpi")]
        if let Some(m) = mpi::Mpi::from_launcher() {
            return World::new(Box::new(m));
        }
        World::single()
    }

    pub fn ranks(&self) -> usize {
        self.transport.as_ref().map_or(1, |t| t.collective().ranks())
    }
    pub fn rank(&self) -> usize {
        self.transport.as_ref().map_or(0, |t| t.collective().rank())
    }
    /// Whether this process writes the run folder and prints (rank 0).
    pub fn is_root(&self) -> bool {
        self.rank() == 0
    }
    /// The gathers of a training step, with more than one rank.
    pub fn collective(&self) -> Option<&dyn Collective> {
        self.transport
            .as_deref()
            .map(|t| t.collective())
            .filter(|c| c.ranks() > 1)
    }

    /// Bytes this rank has contributed to collectives so far (0 alone).
    pub fn bytes_sent(&self) -> u64 {
        self.transport.as_ref().map_or(0, |t| t.bytes_sent())
    }

    /// Seconds this rank has spent in the step's gathers and stop votes (0 alone).
    pub fn seconds_in_collectives(&self) -> f64 {
        self.transport
            .as_ref()
            .map_or(0.0, |t| t.seconds_in_collectives())
    }

    /// Whether `flag` is set on any rank.
    pub fn any(&self, flag: bool) -> bool {
        match &self.transport {
            Some(t) => t.any(flag),
            None => flag,
        }
    }

    /// `result` where every rank succeeded; otherwise an error on every rank: this rank's
    /// own, or [`TrainerError::OtherRank`] naming the first rank that failed.
    pub fn agree<T>(&self, result: Result<T, TrainerError>) -> Result<T, TrainerError> {
        let Some(t) = &self.transport else {
            return result;
        };
        let failed = t.all_gather_u64(&[result.is_err() as u64]);
        match (result, failed.iter().position(|&f| f == 1)) {
            (Err(e), _) => Err(e),
            (Ok(_), Some(rank)) => Err(TrainerError::OtherRank { rank }),
            (Ok(v), None) => Ok(v),
        }
    }

    /// Rank 0's `bytes` on every rank.
    pub fn broadcast(&self, bytes: &mut Vec<u8>) {
        if let Some(t) = &self.transport {
            t.broadcast(bytes);
        }
    }

    /// Refuses state that differs between ranks: `local` (a fingerprint and counts of this
    /// rank's `what`) must equal rank 0's on every rank; else every rank gets an error
    /// naming the first rank that differs, both ranks' `describe` of it, and `hint`.
    pub fn check_same(
        &self,
        what: &str,
        local: [u64; 3],
        describe: impl Fn(&[u64]) -> String,
        hint: &str,
    ) -> Result<(), TrainerError> {
        let Some(t) = &self.transport else {
            return Ok(());
        };
        let all = t.all_gather_u64(&local);
        let rows: Vec<&[u64]> = all.chunks_exact(local.len()).collect();
        match rows.iter().position(|r| *r != rows[0]) {
            None => Ok(()),
            Some(rank) => Err(TrainerError::Usage(format!(
                "rank {rank}'s {what} differs from rank 0's ({} on rank {rank}, {} on rank 0): {hint}",
                describe(rows[rank]),
                describe(rows[0])
            ))),
        }
    }
}

/// A fingerprint of a network's state: every parameter's bits and every layer's buffers
/// (batch norms' running statistics), in order.
pub fn weights_fingerprint(net: &petal_model::Network) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    for p in net.params() {
        p.value.iter().for_each(|v| v.to_bits().hash(&mut h));
    }
    for b in net.buffers() {
        if let Buffer::Values { values, .. } = b {
            values.iter().for_each(|v| v.to_bits().hash(&mut h));
        }
    }
    h.finish()
}

/// A fingerprint of a data set (its images' bits, labels and class names, in order) and
/// its image count: equal on two ranks when they loaded the same data.
pub fn fingerprint(data: &crate::data::Dataset) -> [u64; 3] {
    use rayon::prelude::*;
    use std::hash::{Hash, Hasher};
    let per = data.shape.len().max(1);
    let images: Vec<u64> = data
        .images
        .par_chunks(per)
        .map(|img| {
            let mut h = std::hash::DefaultHasher::new();
            for v in img {
                v.to_bits().hash(&mut h);
            }
            h.finish()
        })
        .collect();
    let mut h = std::hash::DefaultHasher::new();
    (images, &data.labels, &data.classes).hash(&mut h);
    [h.finish(), data.len() as u64, data.classes.len() as u64]
}
