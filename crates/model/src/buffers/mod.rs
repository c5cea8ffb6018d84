//! The network's working memory, and all of the crate's `unsafe` code.
//!
//! - [`Buffers`]: batch buffers sized for the largest batch seen so far (smaller batches
//!   use their prefixes), for the values that outlive a chunk's task.
//! - Arenas: each running chunk task's own buffers for the values that live only within it.
//! - [`Buffers::for_each_chunk`] runs one task per [`CHUNK`] images in parallel; a task
//!   reaches its rows of every layer buffer through [`ChunkBufs`], whose methods return
//!   ordinary borrow-checked slices.
//!
//! The invariant everything here rests on: the [`ChunkBufs`] of two tasks that run at once
//! cover disjoint memory (each its own `CHUNK` rows of the batch buffers, its own arena),
//! and that memory is borrowed by nothing else while the tasks run. Within one task, the
//! methods that hand out a `&mut` slice take `&mut self` and never return it with another
//! slice of the same buffer (asserted where the caller names the buffers). Layers may
//! share a gradient buffer (batch buffers only): the plan gives two layers one only when
//! their gradients are never live at once, so the gradients a method hands out together
//! (a layer's and its input's) are always different memory (asserted).

use crate::plan::{Dx, Plan, Storage, CHUNK};
use rayon::prelude::*;
use std::sync::Mutex;

/// Buffers sized for the largest batch seen so far; smaller batches use their prefixes.
#[derive(Clone, Debug, Default)]
pub(crate) struct Buffers {
    /// Samples the buffers hold (0: not sized yet, or to be re-sized).
    pub capacity: usize,
    /// The layers stored in batch buffers ([`Storage::Batch`]).
    pub layers: LayerBufs,
    /// Arenas not in use (working memory of the chunk tasks).
    arenas: Arenas,
    /// Per chunk: the convolution layers' weight and bias gradients of that chunk's images
    /// (`Plan::part_len` values, at each layer's `part_offset`).
    pub parts: Vec<f32>,
    /// Per chunk: the batch norms' partial sums of that chunk's images (`Plan::stats_len`
    /// values, at each batch norm's offset), forward (Σx, Σx²) then backward (Σdy, Σdy·x̂).
    pub stats: Vec<f64>,
    pub probs: Vec<f32>,
    pub losses: Vec<f32>,
    /// Gradient with respect to the network input (only with the input gradient on).
    pub input_grad: Vec<f32>,
    /// Where chunk tasks find the batch buffers above; refilled (no allocation once it
    /// has its capacity) before every parallel region, stale otherwise.
    views: Vec<Views>,
}

/// One chunk task's share of a step: its images, labels and rows of the batch results
/// (with no labels, a forward pass only, `labels`, `probs`, `losses` and `part` are
/// empty), its arena's convolution scratch, and its rows of every layer buffer.
pub(crate) struct Chunk<'a> {
    /// Index of the chunk's first image in the batch.
    pub first: usize,
    pub labels: &'a [usize],
    pub probs: &'a mut [f32],
    pub losses: &'a mut [f32],
    /// The chunk's partial convolution gradients (`Plan::part_len` values).
    pub part: &'a mut [f32],
    /// The chunk's batch-norm partial sums (`Plan::stats_len` values).
    pub stats: &'a mut [f64],
    pub scratch: &'a mut [f32],
    pub bufs: ChunkBufs<'a>,
}

impl Buffers {
    /// Grows the buffers to hold `batch` samples of the network `plan` describes (with
    /// the input gradient when `input_grad`); does nothing when they already do.
    pub fn ensure(&mut self, plan: &Plan, batch: usize, input_grad: bool) {
        if batch <= self.capacity {
            return;
        }
        self.capacity = batch;
        self.layers = LayerBufs::new(plan, Storage::Batch, batch);
        self.parts = vec![0.0; batch.div_ceil(CHUNK) * plan.part_len];
        self.stats = vec![0.0; batch.div_ceil(CHUNK) * plan.stats_len];
        self.views = Vec::with_capacity(plan.layers.len());
        self.probs = vec![0.0; batch * plan.classes()];
        self.losses = vec![0.0; batch];
        self.input_grad = if input_grad {
            vec![0.0; batch * plan.input_len]
        } else {
            Vec::new()
        };
    }

    /// Runs `task` once per chunk of [`CHUNK`] images of the batch `x`, in parallel, after
    /// [`Buffers::ensure`] for that batch. With `labels` (a training step), each task also
    /// gets its labels, its rows of `probs` and `losses` and its partial gradients.
    pub fn for_each_chunk<F>(&mut self, plan: &Plan, x: &[f32], labels: Option<&[usize]>, task: F)
    where
        F: Fn(Chunk<'_>) + Sync,
    {
        let il = plan.input_len;
        let batch = x.len() / il;
        assert!(
            batch <= self.capacity,
            "buffers for {} samples, batch of {batch}",
            self.capacity
        );
        let Buffers {
            layers,
            arenas,
            parts,
            stats,
            probs,
            losses,
            input_grad,
            views,
            ..
        } = self;
        // The batch buffers are reached only through these views until the loop ends.
        layers.views(views);
        let input_grad = Rows::new(input_grad);
        let (views, arenas) = (&*views, &*arenas);
        let run = |c: usize,
                   x: &[f32],
                   labels: &[usize],
                   probs: &mut [f32],
                   losses: &mut [f32],
                   (part, stats): (&mut [f32], &mut [f64])| {
            let first = c * CHUNK;
            let mut arena = arenas.take(|| Arena::new(plan));
            arena.fill_views(plan, views, first);
            let Arena {
                views,
                scratch,
                dx_tmp,
                ..
            } = &mut arena;
            let bufs = ChunkBufs {
                views,
                images: x.len() / il,
                x,
                input_grad: input_grad.range(first * il, CHUNK * il),
                tmp: Rows::new(dx_tmp),
            };
            task(Chunk {
                first,
                labels,
                probs,
                losses,
                part,
                stats,
                scratch,
                bufs,
            });
            arenas.put(arena);
        };
        // Each chunk index c runs once, on rows c·CHUNK .. (c + 1)·CHUNK: the tasks' rows
        // are disjoint.
        match labels {
            None => x
                .par_chunks(CHUNK * il)
                .enumerate()
                .for_each(|(c, xc)| run(c, xc, &[], &mut [], &mut [], (&mut [], &mut []))),
            Some(labels) => {
                let (classes, pl, chunks) = (plan.classes(), plan.part_len, batch.div_ceil(CHUNK));
                let sl = plan.stats_len;
                x.par_chunks(CHUNK * il)
                    .zip(labels.par_chunks(CHUNK))
                    .zip(probs[..batch * classes].par_chunks_mut(CHUNK * classes))
                    .zip(losses[..batch].par_chunks_mut(CHUNK))
                    .zip(parts[..chunks * pl].par_chunks_mut(pl))
                    .zip(stats[..chunks * sl].par_chunks_mut(sl))
                    .enumerate()
                    .for_each(|(c, (((((xc, yc), pc), lc), part), st))| run(c, xc, yc, pc, lc, (part, st)));
            }
        }
    }
}

/// The output, gradient and argmax of the layers stored in one place, indexed by layer
/// (empty for the layers stored elsewhere, and argmax for all but max pools).
///
/// Gradients in batch buffers are shared: a layer's gradient lives only from its first
/// reader's backward to its own, so layers whose gradients are never live at once share
/// one buffer (`LayerPlan::grad_buf`, `Plan::grad_bufs`); `grads` is indexed by that
/// buffer. In arenas (`CHUNK` images) each layer has its own.
#[derive(Clone, Debug, Default)]
pub(crate) struct LayerBufs {
    pub outs: Vec<Vec<f32>>,
    grads: Vec<Vec<f32>>,
    argmax: Vec<Vec<u32>>,
    /// Per layer, its index in `grads`.
    grad_of: Vec<Option<usize>>,
}

impl LayerBufs {
    /// Buffers for `images` samples of every layer the plan stores in `storage`.
    fn new(plan: &Plan, storage: Storage, images: usize) -> Self {
        let mut b = LayerBufs::default();
        let shared = storage == Storage::Batch;
        if shared {
            b.grads = plan.grad_bufs.iter().map(|len| vec![0.0; images * len]).collect();
        }
        for (i, l) in plan.layers.iter().enumerate() {
            let n = if l.storage == storage {
                images * l.out_len
            } else {
                0
            };
            b.outs.push(vec![0.0; n]);
            b.argmax.push(if l.argmax { vec![0; n] } else { Vec::new() });
            if shared {
                b.grad_of.push(l.grad_buf.filter(|_| n > 0));
            } else {
                b.grads.push(vec![0.0; n]);
                b.grad_of.push(Some(i));
            }
        }
        b
    }

    /// The gradient of layer `j`'s output (all of its buffer).
    pub fn grad(&self, j: usize) -> &[f32] {
        self.grad_of[j].map_or(&[], |g| &self.grads[g])
    }

    /// Refills `views` with each layer's view (no allocation once `views` has the
    /// capacity). Layers sharing a gradient buffer get views of the same memory: the plan
    /// gives them one only when their gradients are never live at once.
    fn views(&mut self, views: &mut Vec<Views>) {
        views.clear();
        let grads = &mut self.grads;
        let bufs = self.outs.iter_mut().zip(&self.grad_of).zip(&mut self.argmax);
        views.extend(bufs.map(|((out, g), argmax)| Views {
            out: Rows::new(out),
            grad: g.map_or(Rows::empty(), |g| Rows::new(&mut grads[g])),
            argmax: Rows::new(argmax),
        }));
    }
}

/// The buffers of one running chunk task: the values of the layers stored in arenas
/// ([`Storage::Arena`], `CHUNK` images each), the convolution scratch, and the views the
/// task reads (the batch buffers' rows for [`Storage::Batch`] layers).
#[derive(Debug, Default)]
struct Arena {
    layers: LayerBufs,
    scratch: Vec<f32>,
    /// An input gradient to be added to another ([`Dx::Add`]): `CHUNK` images.
    dx_tmp: Vec<f32>,
    views: Vec<Views>,
}

impl Arena {
    /// A new arena: `CHUNK` images of every layer stored in arenas.
    fn new(plan: &Plan) -> Arena {
        Arena {
            layers: LayerBufs::new(plan, Storage::Arena, CHUNK),
            scratch: vec![0.0; plan.scratch_len],
            dx_tmp: vec![0.0; CHUNK * plan.dx_tmp_len],
            views: Vec::with_capacity(plan.layers.len()),
        }
    }

    /// Points `views` at rows `first .. first + CHUNK` of the batch buffers (`batch`) for
    /// the layers stored there and at the arena's own buffers for the others (no
    /// allocation: the views' capacity is kept).
    fn fill_views(&mut self, plan: &Plan, batch: &[Views], first: usize) {
        self.layers.views(&mut self.views);
        for ((v, l), b) in self.views.iter_mut().zip(&plan.layers).zip(batch) {
            if l.storage == Storage::Batch {
                let (at, len) = (first * l.out_len, CHUNK * l.out_len);
                // A shared gradient buffer is laid out with its largest user's rows, so
                // that two chunks' rows never overlap whichever layers use it meanwhile
                // (the chunk tasks of a region run at their own pace).
                let stride = l.grad_buf.map_or(l.out_len, |g| plan.grad_bufs[g]);
                *v = Views {
                    out: b.out.range(at, len),
                    grad: b.grad.range(first * stride, len),
                    argmax: b.argmax.range(at, len),
                };
            }
        }
    }
}

/// Arenas not in use. A task takes one and gives it back, so a thread reuses the same
/// arena (in cache) from chunk to chunk; a new one is allocated only when more tasks run
/// at once than ever before (more threads, or a task stolen while another waits).
#[derive(Debug, Default)]
struct Arenas(Mutex<Vec<Arena>>);

impl Clone for Arenas {
    /// A clone starts with none: arenas are only working memory.
    fn clone(&self) -> Self {
        Arenas::default()
    }
}

impl Arenas {
    fn take(&self, make: impl FnOnce() -> Arena) -> Arena {
        let free = self.0.lock().unwrap_or_else(|e| e.into_inner()).pop();
        free.unwrap_or_else(make)
    }
    fn put(&self, arena: Arena) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(arena);
    }
}

/// One layer's buffers as one chunk task sees them.
#[derive(Clone, Copy, Debug)]
struct Views {
    out: Rows<f32>,
    grad: Rows<f32>,
    argmax: Rows<u32>,
}

/// Values of a buffer that one chunk task uses while others use other values of it.
#[derive(Clone, Copy, Debug)]
struct Rows<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: a `Rows` is only dereferenced (`Rows::slice`, `Rows::slice_mut`) by the one
// task whose rows it covers ([`Buffers::for_each_chunk`] gives each task disjoint ranges
// of buffers that outlive the tasks and that nothing else borrows meanwhile), so sending
// it to another thread sends only the right to use those rows.
unsafe impl<T: Send> Send for Rows<T> {}
// SAFETY: sharing a `Rows` between threads shares only the pointer: as for `Send`.
unsafe impl<T: Send> Sync for Rows<T> {}

impl<T> Rows<T> {
    fn new(v: &mut [T]) -> Self {
        Rows {
            ptr: v.as_mut_ptr(),
            len: v.len(),
        }
    }

    /// No values.
    fn empty() -> Self {
        Rows {
            ptr: std::ptr::NonNull::dangling().as_ptr(),
            len: 0,
        }
    }

    /// Values `start .. start + len`, clamped to the buffer's end (empty past it).
    fn range(self, start: usize, len: usize) -> Self {
        let start = start.min(self.len);
        Rows {
            // SAFETY: `start <= self.len`: at most one past the end of the buffer.
            ptr: unsafe { self.ptr.add(start) },
            len: len.min(self.len - start),
        }
    }

    /// The first `len` values (bounds checked).
    fn prefix(self, len: usize) -> Self {
        assert!(len <= self.len, "{len} values of a {}-value buffer", self.len);
        Rows { len, ..self }
    }

    /// As [`Rows::prefix`], but empty when the buffer is (a layer that keeps no argmax).
    fn prefix_or_empty(self, len: usize) -> Self {
        if self.len == 0 {
            self
        } else {
            self.prefix(len)
        }
    }

    /// The values, to read.
    ///
    /// # Safety
    /// The buffer must stay alive for `'b`, and no `&mut` slice overlapping these values
    /// may be alive meanwhile.
    unsafe fn slice<'b>(self) -> &'b [T] {
        // SAFETY: `ptr .. ptr + len` lies in one buffer (`new`, `range` and `prefix` only
        // shrink it); liveness and the absence of writers are the caller's contract.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The values, to write.
    ///
    /// # Safety
    /// The buffer must stay alive for `'b`, and no other slice overlapping these values
    /// may be alive meanwhile.
    unsafe fn slice_mut<'b>(self) -> &'b mut [T] {
        // SAFETY: as in `slice`; exclusivity is the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

/// One chunk task's rows of every layer buffer (`images` samples of each), of the network
/// input and of its gradient. Buffers are named by slot: the index of the layer that owns
/// them (`Some(j)`), or `None` for the network input. Every slice is `images` rows of the
/// per-sample length the caller gives, and lies within the task's own rows (checked).
pub(crate) struct ChunkBufs<'a> {
    views: &'a [Views],
    images: usize,
    x: &'a [f32],
    input_grad: Rows<f32>,
    /// The arena's buffer for input gradients to be added ([`Dx::Add`]).
    tmp: Rows<f32>,
}

/// A layer's buffers for its backward pass ([`ChunkBufs::backward_io`]).
pub(crate) struct LayerGrads<'b> {
    /// The layer's input.
    pub input: &'b [f32],
    /// The layer's output.
    pub y: &'b [f32],
    /// The gradient of the loss with respect to the layer's output (writable: a layer may
    /// mask it in place with a fused ReLU).
    pub dy: &'b mut [f32],
    /// The layer's argmax indices (empty unless it keeps them).
    pub argmax: &'b [u32],
    /// The gradient with respect to the layer's input, when asked for.
    pub dx: Option<&'b mut [f32]>,
}

impl ChunkBufs<'_> {
    /// Samples in the chunk.
    pub fn images(&self) -> usize {
        self.images
    }

    /// Buffer `slot`'s output rows (`len` values per sample) or, for `None`, the network
    /// input, to read.
    pub fn input(&self, slot: Option<usize>, len: usize) -> &[f32] {
        self.read(slot, len)
    }

    /// Buffer `slot`'s output rows (`len` values per sample) or, for `None`, the network input.
    fn read(&self, slot: Option<usize>, len: usize) -> &[f32] {
        match slot {
            // SAFETY: this task's rows (module invariant), alive while `self` is; `&self`
            // borrowed: no `&mut` from this `ChunkBufs` is alive, as every method handing
            // one out takes `&mut self`.
            Some(j) => unsafe { self.views[j].out.prefix(self.images * len).slice() },
            None => self.x,
        }
    }

    /// A layer's input (`from`, `in_len` values per sample) to read, and the output and
    /// argmax (empty unless it keeps one) of its own buffer `slot` to write.
    pub fn forward_io(
        &mut self,
        from: Option<usize>,
        in_len: usize,
        slot: usize,
        out_len: usize,
    ) -> (&[f32], &mut [f32], &mut [u32]) {
        assert_ne!(
            from,
            Some(slot),
            "a layer's input and output are different buffers"
        );
        let n = self.images * out_len;
        let v = &self.views[slot];
        // SAFETY: this task's rows (module invariant), `&mut self` borrowed for the three
        // slices, which are three different buffers: `slot`'s output and argmax, and the
        // output of `from != slot` or the network input.
        unsafe {
            (
                self.read(from, in_len),
                v.out.prefix(n).slice_mut(),
                v.argmax.prefix_or_empty(n).slice_mut(),
            )
        }
    }

    /// Buffer `slot`'s output to read and its gradient to write (`len` values per sample).
    pub fn out_and_grad(&mut self, slot: usize, len: usize) -> (&[f32], &mut [f32]) {
        let (v, n) = (&self.views[slot], self.images * len);
        // SAFETY: this task's rows (module invariant), `&mut self` borrowed for both
        // slices; two different buffers, the output only read.
        unsafe { (v.out.prefix(n).slice(), v.grad.prefix(n).slice_mut()) }
    }

    /// A layer's buffers for its backward pass: its own buffer `slot` (`out_len` values
    /// per sample) and its input `from` (`in_len` values per sample), with, when `dx`, the
    /// gradient of that input to write (the network input's for `None`, which must have
    /// been allocated).
    pub fn backward_io(
        &mut self,
        from: Option<usize>,
        in_len: usize,
        slot: usize,
        out_len: usize,
        dx: Dx,
    ) -> LayerGrads<'_> {
        assert_ne!(
            from,
            Some(slot),
            "a layer's input and output are different buffers"
        );
        let (v, n, nin) = (&self.views[slot], self.images * out_len, self.images * in_len);
        if let (Dx::Write, Some(j)) = (dx, from) {
            assert!(
                self.views[j].grad.ptr != v.grad.ptr || v.grad.len == 0,
                "a layer's gradient and its input's are different buffers"
            );
        }
        // SAFETY: this task's rows (module invariant), `&mut self` borrowed for all the
        // slices. Those written are dy, the gradient of `slot`, and dx, the gradient of
        // `from != slot` (or of the network input, or the arena's tmp: buffers of their
        // own); the others are only read.
        unsafe {
            let dx = match dx {
                Dx::Skip => None,
                Dx::Write => Some(self.grad_of(from, nin)),
                Dx::Add => Some(self.tmp.prefix(nin).slice_mut()),
            };
            LayerGrads {
                input: self.read(from, in_len),
                y: v.out.prefix(n).slice(),
                dy: v.grad.prefix(n).slice_mut(),
                argmax: v.argmax.prefix_or_empty(n).slice(),
                dx,
            }
        }
    }

    /// The gradient of buffer `from` (`len` values), or of the network input for `None`.
    ///
    /// # Safety
    /// As [`Rows::slice_mut`]: no other slice of that gradient may be alive.
    unsafe fn grad_of<'b>(&self, from: Option<usize>, len: usize) -> &'b mut [f32] {
        // SAFETY: this task's rows (module invariant); exclusivity is the caller's.
        unsafe {
            match from {
                Some(j) => self.views[j].grad.prefix(len).slice_mut(),
                None => self.input_grad.prefix(len).slice_mut(),
            }
        }
    }

    /// Adds the input gradient a layer wrote to the arena's tmp ([`Dx::Add`], `in_len`
    /// values per sample) to the gradient of its input `from`.
    pub fn add_tmp_into(&mut self, from: Option<usize>, in_len: usize) {
        let n = self.images * in_len;
        // SAFETY: this task's rows (module invariant), `&mut self` borrowed for both: the
        // arena's tmp (read) and the gradient of `from` (written), different buffers.
        let (tmp, g) = unsafe { (self.tmp.prefix(n).slice(), self.grad_of(from, n)) };
        petal_kernels::simd::add_assign(g, tmp);
    }

    /// The two inputs `a`, `b` of an add (`len` values per sample) to read, and its own
    /// buffer `slot` to write.
    pub fn add_io(
        &mut self,
        a: Option<usize>,
        b: Option<usize>,
        slot: usize,
        len: usize,
    ) -> (&[f32], &[f32], &mut [f32]) {
        assert!(
            a != Some(slot) && b != Some(slot),
            "an add's inputs and output are different buffers"
        );
        let n = self.images * len;
        // SAFETY: this task's rows (module invariant), `&mut self` borrowed for the three
        // slices: `slot`'s output (written) and two inputs (read, possibly the same
        // buffer), none of them `slot`.
        unsafe {
            (
                self.read(a, len),
                self.read(b, len),
                self.views[slot].out.prefix(n).slice_mut(),
            )
        }
    }
}

#[cfg(test)]
mod tests;
