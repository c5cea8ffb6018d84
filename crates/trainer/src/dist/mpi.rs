//! The MPI transport (the `mpi` crate over the system's MPICH or Open MPI): the world
//! communicator of a job started by `mpirun`/`mpiexec`/`srun`.
//!
//! Calls come from one thread at a time (the thread running the step, then the main
//! thread), never at once: MPI is initialised with `MPI_THREAD_SERIALIZED`.

use super::Transport;
use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Threading;
use petal_model::Collective;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// An initialised MPI job; finalised when dropped.
pub struct Mpi {
    world: SimpleCommunicator,
    /// Bytes this rank has contributed to collectives (each value it sends counted once),
    /// and nanoseconds spent in them (waiting for the other ranks included).
    sent: AtomicU64,
    nanos: AtomicU64,
    rank: usize,
    ranks: usize,
    // Dropped last: finalises MPI.
    _universe: mpi::environment::Universe,
}

// SAFETY: MPI is initialised with MPI_THREAD_SERIALIZED (checked in `from_launcher`), which
// allows calls from any thread as long as no two run at once; the trainer makes its calls
// from one thread at a time (the step's collectives run on the thread running the step,
// which the main thread waits for).
unsafe impl Sync for Mpi {}
// SAFETY: as above; the handles are plain values valid on any thread.
unsafe impl Send for Mpi {}

/// Whether an MPI launcher started this process (MPICH's Hydra, Open MPI, PMIx, Slurm's
/// PMI): a trainer built with the feature but started by hand runs as one process without
/// touching MPI.
fn launched() -> bool {
    ["PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

impl Mpi {
    /// The job this process belongs to, when an MPI launcher started it.
    pub fn from_launcher() -> Option<Mpi> {
        if !launched() {
            return None;
        }
        let (universe, threading) = mpi::initialize_with_threading(Threading::Serialized)?;
        if threading < Threading::Serialized {
            eprintln!("error: this MPI library does not allow calls from more than one thread (MPI_THREAD_SERIALIZED)");
            universe.world().abort(1);
        }
        let world = universe.world();
        Some(Mpi {
            sent: AtomicU64::new(0),
            nanos: AtomicU64::new(0),
            rank: world.rank() as usize,
            ranks: world.size() as usize,
            world,
            _universe: universe,
        })
    }

    fn gather<T: Equivalence + Copy>(&self, local: &[T], counts: &[usize], all: &mut [T]) {
        assert_eq!(counts.len(), self.ranks, "a count per rank");
        assert_eq!(
            local.len(),
            counts[self.rank],
            "rank {} sends its count",
            self.rank
        );
        let c: Vec<mpi::Count> = counts
            .iter()
            .map(|&n| mpi::Count::try_from(n).expect("a gather of fewer than 2^31 values"))
            .collect();
        let displs: Vec<mpi::Count> = c
            .iter()
            .scan(0, |at, &n| {
                let d = *at;
                *at += n;
                Some(d)
            })
            .collect();
        self.count(std::mem::size_of_val(local));
        let mut part = PartitionMut::new(all, c, displs);
        let t = Instant::now();
        self.world.all_gather_varcount_into(local, &mut part);
        self.timed(t);
    }
}

impl Mpi {
    fn count(&self, bytes: usize) {
        self.sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    fn timed(&self, since: Instant) {
        self.nanos
            .fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

impl Collective for Mpi {
    fn ranks(&self) -> usize {
        self.ranks
    }
    fn rank(&self) -> usize {
        self.rank
    }
    fn all_gather_f32(&self, local: &[f32], counts: &[usize], all: &mut [f32]) {
        self.gather(local, counts, all);
    }
    fn all_gather_f64(&self, local: &[f64], counts: &[usize], all: &mut [f64]) {
        self.gather(local, counts, all);
    }
}

impl Transport for Mpi {
    fn collective(&self) -> &dyn Collective {
        self
    }
    fn any(&self, flag: bool) -> bool {
        self.count(4);
        let mut out = 0i32;
        let t = Instant::now();
        self.world
            .all_reduce_into(&(flag as i32), &mut out, SystemOperation::max());
        self.timed(t);
        out != 0
    }
    fn broadcast(&self, bytes: &mut Vec<u8>) {
        let root = self.world.process_at_rank(0);
        let mut len = bytes.len() as u64;
        root.broadcast_into(&mut len);
        if self.rank == 0 {
            self.count(8 + bytes.len());
        }
        bytes.resize(len as usize, 0);
        // In pieces: MPI counts are ints (a resumed AdamW state can pass 2 GiB).
        for piece in bytes.chunks_mut(1 << 30) {
            root.broadcast_into(piece);
        }
    }
    fn all_gather_u64(&self, local: &[u64]) -> Vec<u64> {
        self.count(8 * local.len());
        let mut all = vec![0u64; local.len() * self.ranks];
        self.world.all_gather_into(local, &mut all[..]);
        all
    }
    fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
    fn seconds_in_collectives(&self) -> f64 {
        self.nanos.load(Ordering::Relaxed) as f64 * 1e-9
    }
}
