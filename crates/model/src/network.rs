//! A sequential network: layers built from a spec, buffers reused across steps, training
//! (forward, backward, SGD) and inference.

use crate::error::{ModelError, SpecError};
use crate::layer::{Layer, Param, Shape};
use crate::spec::{format_spec, parse_spec, LayerSpec};
use petal_kernels as k;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Most parameters a network may have (refused before allocating): 2^28 values, 1 GiB.
pub const MAX_PARAMS: u128 = 1 << 28;
/// Most activation values one sample may produce across all layers: 2^28.
pub const MAX_ACTIVATIONS_PER_SAMPLE: u128 = 1 << 28;

/// The input of a network, one sample: `[c, h, w]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InputShape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl InputShape {
    /// Values per sample, `c · h · w`.
    pub fn len(&self) -> usize {
        self.c * self.h * self.w
    }
    /// Whether any dimension is zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Display for InputShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}", self.c, self.h, self.w)
    }
}

/// Loss and correct predictions of one training batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// Mean softmax cross-entropy over the batch.
    pub loss: f32,
    /// Samples whose most probable class is their label.
    pub correct: usize,
    /// Samples in the batch.
    pub batch: usize,
}

/// Images per task. A training step (or a forward pass) runs each chunk of this many
/// images through every layer, forward and back, as one rayon task: one parallel region
/// per step instead of one per kernel call, and a chunk's activations stay in cache from
/// layer to layer. Convolution weight gradients are summed per chunk, then in chunk order
/// (the kernels' own order: `petal_kernels::conv`), and dense weight gradients over the
/// whole batch after the chunks, so results do not depend on the thread count.
pub const CHUNK: usize = k::conv::BATCH_CHUNK;

/// Buffers sized for the largest batch seen so far; smaller batches use their prefixes.
#[derive(Clone, Debug, Default)]
pub(crate) struct Buffers {
    pub capacity: usize,
    /// Output of each layer that outlives its chunk's task ([`Network::keeps`]; the
    /// others', `Flatten`'s and a ReLU-before-pool's stay empty).
    pub outs: Vec<Vec<f32>>,
    /// Gradient of the loss with respect to each layer's output (same layout as `outs`).
    pub grads: Vec<Vec<f32>>,
    /// Argmax indices of each kept max-pool layer (empty for the others).
    pub argmax: Vec<Vec<u32>>,
    /// Each running chunk task's own buffers for the layers that live only within it.
    arenas: Arenas,
    /// Per chunk: the convolution layers' weight and bias gradients of that chunk's images
    /// (`part_len` values, at each layer's `part_offset`).
    pub parts: Vec<f32>,
    pub part_len: usize,
    pub probs: Vec<f32>,
    pub losses: Vec<f32>,
    /// Gradient with respect to the network input (only with `input_grad` on).
    pub input_grad: Vec<f32>,
    /// Where chunk tasks find the batch buffers above; refilled (no allocation once it
    /// has its capacity) before every parallel region, stale otherwise.
    views: Vec<Views>,
}

/// The buffers of one running chunk task: the output, gradient and argmax of every layer
/// whose values live only within the task (`CHUNK` images each), the convolution
/// scratch, and the views the task reads (the batch buffers' rows for kept layers).
#[derive(Debug, Default)]
struct Arena {
    outs: Vec<Vec<f32>>,
    grads: Vec<Vec<f32>>,
    argmax: Vec<Vec<u32>>,
    scratch: Vec<f32>,
    views: Vec<Views>,
}

/// Arenas not in use. A task takes one and gives it back, so a thread reuses the same
/// arena (in cache) from chunk to chunk; a new one is allocated only when more tasks run
/// at once than ever before (more threads, or a task stolen while another waits).
#[derive(Debug, Default)]
struct Arenas(std::sync::Mutex<Vec<Arena>>);

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

/// One layer's batch buffers as seen by the chunk tasks, each of which uses only its own
/// rows.
#[derive(Clone, Copy, Debug)]
struct Views {
    out: Rows<f32>,
    grad: Rows<f32>,
    argmax: Rows<u32>,
}

/// A batch buffer whose disjoint row ranges several chunk tasks use at once.
#[derive(Clone, Copy, Debug)]
struct Rows<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: a `Rows` is only dereferenced through `Rows::get`, whose callers (the chunk
// tasks of one parallel region) use disjoint ranges of a buffer that outlives the region.
unsafe impl<T: Send> Send for Rows<T> {}
unsafe impl<T: Send> Sync for Rows<T> {}

impl<T> Rows<T> {
    fn new(v: &mut [T]) -> Self {
        Rows {
            ptr: v.as_mut_ptr(),
            len: v.len(),
        }
    }

    /// The same buffer from value `start` on (clamped to its end, where it is empty).
    fn from(self, start: usize) -> Self {
        let start = start.min(self.len);
        Rows {
            // SAFETY: `start <= len`: at most one past the end of the buffer.
            ptr: unsafe { self.ptr.add(start) },
            len: self.len - start,
        }
    }

    /// Values `start .. start + len` (bounds checked).
    ///
    /// # Safety
    /// The buffer must stay alive and not otherwise borrowed for `'a`, and no other live
    /// slice from this `Rows` may overlap the range.
    #[allow(clippy::mut_from_ref)]
    unsafe fn get<'a>(&self, start: usize, len: usize) -> &'a mut [T] {
        assert!(
            start.checked_add(len).is_some_and(|end| end <= self.len),
            "rows {start}..+{len} of a {}-value buffer",
            self.len
        );
        // SAFETY: in bounds (checked above); exclusivity is the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

/// A sequential network of [`Layer`]s ending in logits, trained with the fused softmax
/// cross-entropy loss.
#[derive(Clone, Debug)]
pub struct Network {
    layers: Vec<Layer>,
    specs: Vec<LayerSpec>,
    shapes: Vec<Shape>,
    input: InputShape,
    /// `slot[i]`: index of the buffer holding layer `i`'s output (`None`: the input).
    slot: Vec<Option<usize>>,
    /// Whether layer `i` must compute its input gradient (a trainable layer comes before).
    needs_dx: Vec<bool>,
    /// Offset of conv layer `i`'s weight (then bias) gradient in a chunk's partial sums.
    part_offset: Vec<usize>,
    /// Whether layer `i` is a ReLU followed by a max pool. Max and ReLU commute
    /// (`max(relu(x)) = relu(max(x))`, the same window position winning wherever the
    /// maximum is positive, and the gradient 0 elsewhere either way), so such a ReLU runs
    /// on the pool's output and gradient, a quarter of the values for 2x2 windows, in
    /// place; it has no buffers of its own (its slot is its input's).
    relu_before_pool: Vec<bool>,
    /// Whether layer `i`'s output (and gradient) must outlive its chunk's task, in batch
    /// buffers: the logits, and a dense layer's input and output (its weight gradient is
    /// computed over the whole batch after the tasks). The others live in the tasks'
    /// arenas, a few chunks' worth of memory however large the batch.
    keeps: Vec<bool>,
    /// Convolution scratch per arena (the largest layer's, for `CHUNK` images).
    scratch_len: usize,
    pub(crate) bufs: Buffers,
    pub(crate) input_grad: bool,
    /// Samples in the last forward pass.
    last_batch: usize,
    /// Samples in the last [`Network::forward_backward`].
    last_train_batch: usize,
}

impl Network {
    /// Builds a network from a spec string or preset name for inputs of shape `input`,
    /// with weights initialised from `seed` (see [`Network::init`]).
    pub fn from_spec(spec: &str, input: InputShape, seed: u64) -> Result<Self, ModelError> {
        let mut net = Self::from_layers(&parse_spec(spec)?, input)?;
        net.init(seed);
        Ok(net)
    }

    /// Builds `arch`, a preset name or a spec, as a classifier of `classes` classes with
    /// weights from `seed`: a preset ends in `dense:classes` ([`crate::spec::preset_spec`]),
    /// a spec must end in `classes` outputs ([`Network::check_classes`]).
    pub fn for_classes(arch: &str, input: InputShape, classes: usize, seed: u64) -> Result<Self, ModelError> {
        let net = Self::from_spec(&crate::spec::resolve_arch(arch, classes), input, seed)?;
        net.check_classes(classes)?;
        Ok(net)
    }

    /// Refuses a network whose output count (the logits) is not `classes`, with
    /// [`ModelError::ClassCount`] naming both and the fix.
    pub fn check_classes(&self, classes: usize) -> Result<(), ModelError> {
        if self.classes() == classes {
            return Ok(());
        }
        Err(ModelError::ClassCount {
            last: self.specs.last().map_or_else(String::new, |l| l.to_string()),
            outputs: self.classes(),
            data: "the data".into(),
            classes,
        })
    }

    /// The seed's network (`conv3x3:8,maxpool2,dense:5`) on 1x50x50 inputs.
    pub fn seednet(seed: u64) -> Self {
        Self::from_spec("seednet", InputShape { c: 1, h: 50, w: 50 }, seed).expect("seednet preset is valid")
    }

    /// The RGB flower network on 3x64x64 inputs.
    pub fn flowernet(seed: u64) -> Self {
        Self::from_spec("flowernet", InputShape { c: 3, h: 64, w: 64 }, seed)
            .expect("flowernet preset is valid")
    }

    /// Builds a network with zero weights from parsed layer specs, inferring every shape
    /// from `input` and inserting a `flatten` before a `dense` that follows spatial layers.
    pub fn from_layers(specs: &[LayerSpec], input: InputShape) -> Result<Self, ModelError> {
        // Zero sizes and inputs too large for memory, refused before anything is built.
        crate::spec::check_input(input)?;
        let mut layers = Vec::new();
        let mut expanded = Vec::new();
        let mut shapes = Vec::new();
        let mut shape = Shape::Spatial {
            c: input.c,
            h: input.h,
            w: input.w,
        };
        let (mut n_params, mut n_acts) = (0u128, 0u128);
        for (pos, spec) in specs.iter().enumerate() {
            let mut todo = vec![*spec];
            if matches!(spec, LayerSpec::Dense { .. }) && matches!(shape, Shape::Spatial { .. }) {
                todo.insert(0, LayerSpec::Flatten);
            }
            for s in todo {
                // Refuse sizes that cannot fit before building (and allocating) the layer.
                check_size(&s, shape, pos + 1, &mut n_params)?;
                let (layer, out) = Layer::build(&s, layers.len(), pos + 1, shape)?;
                n_acts += out.len() as u128;
                if n_acts > MAX_ACTIVATIONS_PER_SAMPLE {
                    return Err(ModelError::TooLarge {
                        what: format!("the activations of one sample (up to layer {} `{s}`)", pos + 1),
                        values: n_acts,
                        limit: MAX_ACTIVATIONS_PER_SAMPLE,
                    });
                }
                layers.push(layer);
                expanded.push(s);
                shapes.push(out);
                shape = out;
            }
        }
        if let Shape::Spatial { .. } = shape {
            return Err(SpecError {
                position: specs.len(),
                layer: specs.last().map(|s| s.to_string()).unwrap_or_default(),
                reason: format!(
                    "the network must end in logits (a dense layer), but outputs {shape} feature maps"
                ),
            }
            .into());
        }
        let relu_before_pool: Vec<bool> = (0..layers.len())
            .map(|i| {
                matches!(layers[i], Layer::Relu) && matches!(layers.get(i + 1), Some(Layer::MaxPool2d { .. }))
            })
            .collect();
        let mut slot: Vec<Option<usize>> = Vec::with_capacity(layers.len());
        for (i, l) in layers.iter().enumerate() {
            let s = if matches!(l, Layer::Flatten) || relu_before_pool[i] {
                // A view of its input's buffer (or of the network input).
                i.checked_sub(1).and_then(|j| slot[j])
            } else {
                Some(i)
            };
            slot.push(s);
        }
        if slot.last().copied().flatten().is_none() {
            // Only flattens: nothing computes, so there is no output to train.
            return Err(SpecError {
                position: specs.len().max(1),
                layer: specs.last().map(|s| s.to_string()).unwrap_or_default(),
                reason: "the network needs at least one conv, maxpool, relu or dense layer".into(),
            }
            .into());
        }
        let needs_dx = (0..layers.len())
            .map(|i| layers[..i].iter().any(Layer::has_params))
            .collect();
        let last_slot = slot.last().copied().flatten();
        let mut keeps = vec![false; layers.len()];
        for (i, l) in layers.iter().enumerate() {
            if let Layer::Dense { .. } = l {
                keeps[i] = true;
                if let Some(j) = i.checked_sub(1).and_then(|j| slot[j]) {
                    keeps[j] = true;
                }
            }
        }
        if let Some(j) = last_slot {
            keeps[j] = true;
        }
        let scratch_len = layers
            .iter()
            .filter_map(|l| match l {
                Layer::Conv2d { shape, .. } => Some(
                    k::Conv2dShape {
                        batch: CHUNK,
                        ..*shape
                    }
                    .scratch_len(),
                ),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let mut part_offset = Vec::with_capacity(layers.len());
        let mut offset = 0;
        for l in &layers {
            part_offset.push(offset);
            if let Layer::Conv2d { .. } = l {
                offset += l.params().map(|p| p.value.len()).sum::<usize>();
            }
        }
        let net = Network {
            layers,
            specs: expanded,
            shapes,
            input,
            slot,
            needs_dx,
            part_offset,
            relu_before_pool,
            keeps,
            scratch_len,
            bufs: Buffers::default(),
            input_grad: false,
            last_batch: 0,
            last_train_batch: 0,
        };
        // Convolution scratch too large for memory is refused here, not when the first
        // batch allocates it.
        crate::spec::check_buffers(&net)?;
        Ok(net)
    }

    /// Initialises every parameter like PyTorch's defaults for `Conv2d` and `Linear`
    /// (Kaiming-uniform with `a = √5`): weights and biases uniform in `[-1/√fan_in, 1/√fan_in]`,
    /// `fan_in = in_c · kh · kw` or `in`. Values come from `ChaCha8Rng::seed_from_u64(seed)`
    /// as `(2u - 1) · bound` with `u` uniform in `[0, 1)`, layer by layer, weight then bias:
    /// the same seed gives the same network on any machine and thread count. Velocities
    /// are reset to zero.
    pub fn init(&mut self, seed: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for layer in &mut self.layers {
            let fan_in = match layer {
                Layer::Conv2d { shape, .. } => shape.col_rows(),
                Layer::Dense { shape, .. } => shape.inputs,
                _ => continue,
            };
            let bound = 1.0 / (fan_in as f32).sqrt();
            for p in layer.params_mut() {
                for v in &mut p.value {
                    *v = (2.0 * rng.random::<f32>() - 1.0) * bound;
                }
                p.velocity.fill(0.0);
            }
        }
    }

    /// The layers, in order (including implied `flatten`s).
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }
    /// The spec of each layer, in order (implied flattens written out).
    pub fn layer_specs(&self) -> &[LayerSpec] {
        &self.specs
    }
    /// Output shape of each layer, per sample.
    pub fn shapes(&self) -> &[Shape] {
        &self.shapes
    }
    /// The input shape, per sample.
    pub fn input_shape(&self) -> InputShape {
        self.input
    }
    /// Number of classes (length of the logits).
    pub fn classes(&self) -> usize {
        self.shapes.last().map_or(0, Shape::len)
    }
    /// The canonical spec string (implied flattens written out), which rebuilds this network.
    pub fn spec(&self) -> String {
        format_spec(&self.specs)
    }
    /// Every parameter, in layer order (weight, then bias).
    pub fn params(&self) -> impl Iterator<Item = &Param> {
        self.layers.iter().flat_map(Layer::params)
    }
    /// Every parameter, mutably.
    pub fn params_mut(&mut self) -> impl Iterator<Item = &mut Param> {
        self.layers.iter_mut().flat_map(Layer::params_mut)
    }
    /// Total trainable values.
    pub fn param_count(&self) -> usize {
        self.params().map(|p| p.value.len()).sum()
    }
    /// Training FLOPs per sample of the conv and dense layers (forward + backward, multiply-adds
    /// counted as 2; the first trainable layer computes no input gradient).
    pub fn train_flops_per_sample(&self) -> u64 {
        let mut total = 0;
        for (i, l) in self.layers.iter().enumerate() {
            let f = match l {
                Layer::Conv2d { shape, .. } => shape.forward_flops(),
                Layer::Dense { shape, .. } => shape.forward_flops(),
                _ => continue,
            };
            total += if self.needs_dx[i] { 3 * f } else { 2 * f };
        }
        total
    }

    /// Makes backward also compute the gradient with respect to the network input (off by
    /// default: training never needs it). Read it with [`Network::input_grad`].
    pub fn set_input_grad(&mut self, on: bool) {
        self.input_grad = on;
        self.bufs.capacity = 0; // re-size buffers on the next call
    }

    /// Gradient of the loss with respect to the input of the last
    /// [`Network::forward_backward`] batch, when [`Network::set_input_grad`] is on.
    pub fn input_grad(&self) -> &[f32] {
        let n = self.last_train_batch * self.input.len();
        &self.bufs.input_grad[..n.min(self.bufs.input_grad.len())]
    }

    fn batch_of(&self, x: &[f32]) -> Result<usize, ModelError> {
        let per = self.input.len();
        if x.is_empty() || x.len() % per != 0 {
            return Err(ModelError::BatchShape {
                got: x.len(),
                per_image: per,
                shape: self.input.to_string(),
            });
        }
        Ok(x.len() / per)
    }

    /// Grows the buffers to hold `batch` samples; does nothing when they already do.
    fn ensure_buffers(&mut self, batch: usize) {
        if batch <= self.bufs.capacity {
            return;
        }
        let b = &mut self.bufs;
        b.capacity = batch;
        b.outs.clear();
        b.grads.clear();
        b.argmax.clear();
        let mut part_len = 0;
        for (i, (l, s)) in self.layers.iter().zip(&self.shapes).enumerate() {
            let n = if self.slot[i] == Some(i) && self.keeps[i] {
                batch * s.len()
            } else {
                0
            };
            b.outs.push(vec![0.0; n]);
            b.grads.push(vec![0.0; n]);
            match l {
                Layer::MaxPool2d { .. } => b.argmax.push(vec![0; n]),
                Layer::Conv2d { .. } => {
                    part_len += l.params().map(|p| p.value.len()).sum::<usize>();
                    b.argmax.push(Vec::new());
                }
                _ => b.argmax.push(Vec::new()),
            }
        }
        let chunks = batch.div_ceil(CHUNK);
        // At least one value per chunk, so the per-chunk splits below are never empty.
        b.part_len = part_len.max(1);
        b.parts = vec![0.0; chunks * b.part_len];
        b.views = Vec::with_capacity(self.layers.len());
        let classes = self.shapes.last().map_or(0, Shape::len);
        b.probs = vec![0.0; batch * classes];
        b.losses = vec![0.0; batch];
        b.input_grad = if self.input_grad {
            vec![0.0; batch * self.input.len()]
        } else {
            Vec::new()
        };
    }

    /// Refills `bufs.views` from the batch buffers (no allocation: its capacity is kept).
    fn refresh_views(&mut self) {
        let b = &mut self.bufs;
        b.views.clear();
        for ((out, grad), argmax) in b.outs.iter_mut().zip(&mut b.grads).zip(&mut b.argmax) {
            b.views.push(Views {
                out: Rows::new(out),
                grad: Rows::new(grad),
                argmax: Rows::new(argmax),
            });
        }
    }

    /// Forward pass over a batch `x` (`[batch, c, h, w]`), keeping what backward needs: one
    /// task per [`CHUNK`] images through every layer.
    fn forward(&mut self, x: &[f32], batch: usize) {
        self.ensure_buffers(batch);
        self.refresh_views();
        self.last_batch = batch;
        let il = self.input.len();
        // Taken out for the step (no allocation), so the tasks can share `self` read-only.
        let bufs = std::mem::take(&mut self.bufs);
        let step = self.chunk_step(&bufs.views);
        let arenas = &bufs.arenas;
        x.par_chunks(CHUNK * il).enumerate().for_each(|(c, xc)| {
            let mut a = arenas.take(|| step.arena());
            step.fill_views(&mut a, c * CHUNK);
            // SAFETY: chunk c uses rows c·CHUNK .. of the batch buffers, disjoint from the
            // other chunks' rows, and its own arena; the buffers outlive this loop and
            // nothing else borrows them meanwhile.
            unsafe { step.forward(&a.views, xc, &mut a.scratch) };
            arenas.put(a);
        });
        self.bufs = bufs;
    }

    /// What a chunk task reads: the layers and where the batch buffers are.
    fn chunk_step<'a>(&'a self, views: &'a [Views]) -> ChunkStep<'a> {
        ChunkStep {
            layers: &self.layers,
            shapes: &self.shapes,
            slot: &self.slot,
            needs_dx: &self.needs_dx,
            part_offset: &self.part_offset,
            relu_before_pool: &self.relu_before_pool,
            keeps: &self.keeps,
            scratch_len: self.scratch_len,
            input_len: self.input.len(),
            input_grad: self.input_grad,
            views,
        }
    }

    /// The logits of the last forward pass (training or inference), `[batch, classes]`.
    pub fn logits(&self) -> &[f32] {
        match self.slot.last().copied().flatten() {
            Some(j) if self.last_batch > 0 => &self.bufs.outs[j][..self.last_batch * self.classes()],
            _ => &[],
        }
    }

    /// The class probabilities of the last forward pass, `[batch, classes]`.
    pub fn probs(&self) -> &[f32] {
        &self.bufs.probs[..self.last_batch * self.classes()]
    }

    /// Per-sample losses of the last [`Network::forward_backward`], `[batch]`.
    pub fn losses(&self) -> &[f32] {
        &self.bufs.losses[..self.last_train_batch.min(self.bufs.losses.len())]
    }

    /// Forward and backward over one batch: `x` is `[batch, c, h, w]`, `labels` `[batch]`.
    /// Fills every parameter's `grad` with the gradient of the mean softmax cross-entropy
    /// and returns that mean loss. The first trainable layer computes no input gradient
    /// (unless [`Network::set_input_grad`] is on).
    pub fn forward_backward(&mut self, x: &[f32], labels: &[usize]) -> Result<f32, ModelError> {
        on_pool(|| self.forward_backward_here(x, labels))
    }

    fn forward_backward_here(&mut self, x: &[f32], labels: &[usize]) -> Result<f32, ModelError> {
        let batch = self.batch_of(x)?;
        self.check_labels(batch, labels)?;
        self.ensure_buffers(batch);
        self.refresh_views();
        self.last_batch = batch;
        self.last_train_batch = batch;
        let classes = self.classes();
        let chunks = batch.div_ceil(CHUNK);
        let il = self.input.len();
        let grad_scale = 1.0 / batch as f32;
        let input_grad = Rows::new(&mut self.bufs.input_grad);
        // Taken out for the step (no allocation), so the tasks can share `self` read-only.
        let mut bufs = std::mem::take(&mut self.bufs);
        let Buffers {
            arenas,
            parts,
            part_len,
            probs,
            losses,
            views,
            ..
        } = &mut bufs;
        let step = self.chunk_step(views);
        let arenas = &*arenas;
        x.par_chunks(CHUNK * il)
            .zip(labels.par_chunks(CHUNK))
            .zip(probs[..batch * classes].par_chunks_mut(CHUNK * classes))
            .zip(losses[..batch].par_chunks_mut(CHUNK))
            .zip(parts[..chunks * *part_len].par_chunks_mut(*part_len))
            .enumerate()
            .for_each(|(c, ((((xc, yc), pc), lc), part))| {
                let mut a = arenas.take(|| step.arena());
                step.fill_views(&mut a, c * CHUNK);
                let Arena { views, scratch, .. } = &mut a;
                // SAFETY: as in `forward`: chunk c uses only its own rows of the batch
                // buffers (and of the input gradient) and its own arena.
                unsafe {
                    step.forward(views, xc, scratch);
                    step.backward(
                        views,
                        c * CHUNK,
                        xc,
                        yc,
                        grad_scale,
                        pc,
                        lc,
                        scratch,
                        part,
                        input_grad,
                    );
                }
                arenas.put(a);
            });
        self.bufs = bufs;
        self.reduce_gradients(x, batch);
        Ok(k::mean_loss(&self.bufs.losses[..batch]))
    }

    /// Sums the convolutions' per-chunk gradients in chunk order into their parameters,
    /// and computes the dense layers' weight gradients over the whole batch.
    fn reduce_gradients(&mut self, x: &[f32], batch: usize) {
        const BLOCK: usize = 4096;
        let chunks = batch.div_ceil(CHUNK);
        let Buffers {
            outs,
            grads,
            parts,
            part_len,
            ..
        } = &mut self.bufs;
        let (first, rest) = parts[..chunks * *part_len].split_at_mut(*part_len);
        let rest = &*rest;
        let pl = *part_len;
        first.par_chunks_mut(BLOCK).enumerate().for_each(|(b, sum)| {
            for c in 0..chunks - 1 {
                let at = c * pl + b * BLOCK;
                k::simd::add_assign(sum, &rest[at..at + sum.len()]);
            }
        });
        for (i, layer) in self.layers.iter_mut().enumerate() {
            match layer {
                Layer::Conv2d { weight, bias, .. } => {
                    let mut at = self.part_offset[i];
                    for p in std::iter::once(weight).chain(bias.as_mut()) {
                        let n = p.grad.len();
                        p.grad.copy_from_slice(&first[at..at + n]);
                        at += n;
                    }
                }
                Layer::Dense { shape, weight, bias } => {
                    let s = k::DenseShape { batch, ..*shape };
                    let input: &[f32] = match i.checked_sub(1).and_then(|j| self.slot[j]) {
                        Some(j) => &outs[j][..batch * shape.inputs],
                        None => x,
                    };
                    let oi = self.slot[i].expect("a dense layer has a buffer");
                    k::dense_backward_weights(
                        &s,
                        input,
                        &grads[oi][..batch * shape.outputs],
                        &mut weight.grad,
                        bias.as_mut().map(|b| &mut b.grad[..]),
                    );
                }
                _ => {}
            }
        }
    }

    /// One SGD step on every parameter from the gradients of the last
    /// [`Network::forward_backward`] (PyTorch's rule: see `petal_kernels::sgd`).
    pub fn sgd_step(&mut self, cfg: &k::SgdConfig) {
        for p in self.params_mut() {
            let v: &mut [f32] = if cfg.momentum == 0.0 {
                &mut []
            } else {
                &mut p.velocity
            };
            k::sgd_step(cfg, &mut p.value, &p.grad, v);
        }
    }

    /// Forward, backward and SGD step on one batch; returns its loss and correct count.
    pub fn train_step(
        &mut self,
        x: &[f32],
        labels: &[usize],
        cfg: &k::SgdConfig,
    ) -> Result<StepStats, ModelError> {
        on_pool(|| {
            let loss = self.forward_backward_here(x, labels)?;
            let correct = count_correct(
                &self.bufs.probs[..labels.len() * self.classes()],
                labels,
                self.classes(),
            );
            self.sgd_step(cfg);
            Ok(StepStats {
                loss,
                correct,
                batch: labels.len(),
            })
        })
    }

    /// Class probabilities `[batch, classes]` of the samples in `x` (`[batch, c, h, w]`).
    pub fn predict(&mut self, x: &[f32]) -> Result<&[f32], ModelError> {
        let batch = self.batch_of(x)?;
        on_pool(|| self.forward(x, batch));
        let classes = self.classes();
        let last_slot = self.slot[self.layers.len() - 1].expect("last layer has a buffer");
        let Buffers { outs, probs, .. } = &mut self.bufs;
        k::softmax_forward(
            &outs[last_slot][..batch * classes],
            classes,
            &mut probs[..batch * classes],
        );
        Ok(&self.bufs.probs[..batch * classes])
    }

    /// Mean loss and correct count of a batch, forward only (for validation); leaves the
    /// gradients as they were.
    pub fn evaluate(&mut self, x: &[f32], labels: &[usize]) -> Result<StepStats, ModelError> {
        let batch = self.batch_of(x)?;
        self.check_labels(batch, labels)?;
        on_pool(|| self.forward(x, batch));
        let classes = self.classes();
        let last_slot = self.slot[self.layers.len() - 1].expect("last layer has a buffer");
        let Buffers { outs, probs, .. } = &mut self.bufs;
        let probs = &mut probs[..batch * classes];
        let loss =
            k::softmax_cross_entropy_loss(&outs[last_slot][..batch * classes], labels, classes, probs)?;
        Ok(StepStats {
            loss,
            correct: count_correct(probs, labels, classes),
            batch,
        })
    }

    fn check_labels(&self, batch: usize, labels: &[usize]) -> Result<(), ModelError> {
        if labels.len() != batch {
            return Err(ModelError::LabelCount {
                images: batch,
                labels: labels.len(),
            });
        }
        let classes = self.classes();
        if let Some((sample, &label)) = labels.iter().enumerate().find(|(_, &l)| l >= classes) {
            return Err(k::LabelError {
                sample,
                label,
                classes,
            }
            .into());
        }
        Ok(())
    }
}

/// What one chunk task needs: the layers (read only) and the batch buffers' views.
struct ChunkStep<'a> {
    layers: &'a [Layer],
    shapes: &'a [Shape],
    slot: &'a [Option<usize>],
    needs_dx: &'a [bool],
    part_offset: &'a [usize],
    relu_before_pool: &'a [bool],
    keeps: &'a [bool],
    scratch_len: usize,
    input_len: usize,
    input_grad: bool,
    views: &'a [Views],
}

impl ChunkStep<'_> {
    /// A new arena: `CHUNK` images of every layer that is not kept in batch buffers.
    fn arena(&self) -> Arena {
        let mut a = Arena::default();
        for (i, (l, s)) in self.layers.iter().zip(self.shapes).enumerate() {
            let n = if self.slot[i] == Some(i) && !self.keeps[i] {
                CHUNK * s.len()
            } else {
                0
            };
            a.outs.push(vec![0.0; n]);
            a.grads.push(vec![0.0; n]);
            a.argmax.push(if matches!(l, Layer::MaxPool2d { .. }) {
                vec![0; n]
            } else {
                Vec::new()
            });
        }
        a.scratch = vec![0.0; self.scratch_len];
        a.views = Vec::with_capacity(self.layers.len());
        a
    }

    /// Points `a.views` at the rows of chunk `r0 ..` for kept layers and at the arena's
    /// own buffers for the others (no allocation: the views' capacity is kept).
    fn fill_views(&self, a: &mut Arena, r0: usize) {
        a.views.clear();
        for (i, s) in self.shapes.iter().enumerate() {
            let at = r0 * s.len();
            let v = if self.keeps[i] {
                let b = &self.views[i];
                Views {
                    out: b.out.from(at),
                    grad: b.grad.from(at),
                    argmax: b.argmax.from(at),
                }
            } else {
                Views {
                    out: Rows::new(&mut a.outs[i]),
                    grad: Rows::new(&mut a.grads[i]),
                    argmax: Rows::new(&mut a.argmax[i]),
                }
            };
            a.views.push(v);
        }
    }

    /// Values per sample of layer `i`'s input.
    fn in_len(&self, i: usize) -> usize {
        match i {
            0 => self.input_len,
            _ => self.shapes[i - 1].len(),
        }
    }

    /// Rows `r0 .. r0 + n` of layer `i`'s input (`x`: the chunk's network input).
    ///
    /// # Safety
    /// As [`Rows::get`]: no live mutable slice of the same rows.
    unsafe fn input<'x>(&self, v: &[Views], i: usize, n: usize, x: &'x [f32]) -> &'x [f32] {
        match i.checked_sub(1).and_then(|j| self.slot[j]) {
            // SAFETY: the caller's contract.
            Some(j) => unsafe { v[j].out.get(0, n * self.in_len(i)) },
            None => x,
        }
    }

    /// Forward pass of rows `r0 .. r0 + n` of the batch, `x` being their input.
    ///
    /// # Safety
    /// No other task may use rows `r0 .. r0 + n` of the batch buffers meanwhile.
    unsafe fn forward(&self, v: &[Views], x: &[f32], scratch: &mut [f32]) {
        let n = x.len() / self.input_len;
        for (i, layer) in self.layers.iter().enumerate() {
            if matches!(layer, Layer::Flatten) || self.relu_before_pool[i] {
                continue;
            }
            let ol = self.shapes[i].len();
            // SAFETY: this chunk's rows; layer i's output and input are different buffers.
            let (input, out) = unsafe { (self.input(v, i, n, x), v[i].out.get(0, n * ol)) };
            match layer {
                Layer::Conv2d { shape, weight, bias } => {
                    let s = k::Conv2dShape { batch: n, ..*shape };
                    let bias = bias.as_ref().map(|b| &b.value[..]);
                    k::conv2d_forward(&s, input, &weight.value, bias, out, scratch);
                }
                Layer::MaxPool2d { shape } => {
                    let s = k::Pool2dShape { batch: n, ..*shape };
                    // SAFETY: this chunk's rows of the layer's own argmax buffer.
                    let argmax = unsafe { v[i].argmax.get(0, n * ol) };
                    k::max_pool2d_forward(&s, input, out, argmax);
                    if i > 0 && self.relu_before_pool[i - 1] {
                        k::relu_forward_inplace(out);
                    }
                }
                Layer::Relu => k::relu_forward(input, out),
                Layer::Dense { shape, weight, bias } => {
                    let s = k::DenseShape { batch: n, ..*shape };
                    k::dense_forward(&s, input, &weight.value, bias.as_ref().map(|b| &b.value[..]), out);
                }
                Layer::Flatten => unreachable!("skipped above"),
            }
        }
    }

    /// Loss and backward pass of rows `r0 .. r0 + n` after [`ChunkStep::forward`]: their
    /// probabilities and losses into `probs` and `losses`, every layer's output gradient,
    /// the convolutions' weight gradients of these images into `part` (the dense layers'
    /// are computed over the whole batch afterwards) and, when on, the input gradient.
    ///
    /// # Safety
    /// As [`ChunkStep::forward`].
    #[allow(clippy::too_many_arguments)]
    unsafe fn backward(
        &self,
        v: &[Views],
        r0: usize,
        x: &[f32],
        labels: &[usize],
        grad_scale: f32,
        probs: &mut [f32],
        losses: &mut [f32],
        scratch: &mut [f32],
        part: &mut [f32],
        input_grad: Rows<f32>,
    ) {
        let n = labels.len();
        let last = self.layers.len() - 1;
        let last_slot = self.slot[last].expect("last layer has a buffer");
        let classes = self.shapes[last].len();
        // SAFETY: this chunk's rows of the logits and of their gradient (two buffers).
        let (logits, dlogits) = unsafe {
            let v = &v[last_slot];
            (v.out.get(0, n * classes), v.grad.get(0, n * classes))
        };
        k::softmax_cross_entropy_rows(logits, labels, classes, grad_scale, probs, losses, dlogits)
            .expect("labels are checked before the step");
        for i in (0..self.layers.len()).rev() {
            let Some(oi) = self.slot[i] else { continue };
            if matches!(self.layers[i], Layer::Flatten) || self.relu_before_pool[i] {
                continue;
            }
            if i > 0 && self.relu_before_pool[i - 1] {
                // The ReLU before this pool, on the pool's output gradient, in place.
                // SAFETY: this chunk's rows of the pool's output and output gradient.
                let (y, g) = unsafe {
                    let (ol, v) = (self.shapes[i].len(), &v[oi]);
                    (&*v.out.get(0, n * ol), v.grad.get(0, n * ol))
                };
                k::relu_backward_inplace(y, g);
            }
            let (ol, il) = (self.shapes[i].len(), self.in_len(i));
            let in_slot = i.checked_sub(1).and_then(|j| self.slot[j]);
            // SAFETY: this chunk's rows; dy (layer i's output gradient) and dx (its input's
            // gradient, a lower slot or the network input's) are different buffers, and
            // the input and output activations are only read here.
            let (dy, input) = unsafe { (&*v[oi].grad.get(0, n * ol), self.input(v, i, n, x)) };
            let dx: Option<&mut [f32]> = if !(self.needs_dx[i] || self.input_grad) {
                None
            } else {
                match in_slot {
                    // SAFETY: as above.
                    Some(j) => Some(unsafe { v[j].grad.get(0, n * il) }),
                    None if self.input_grad => Some(unsafe { input_grad.get(r0 * il, n * il) }),
                    None => None,
                }
            };
            match &self.layers[i] {
                Layer::Conv2d { shape, weight, bias } => {
                    let s = k::Conv2dShape { batch: n, ..*shape };
                    let (wl, at) = (weight.value.len(), self.part_offset[i]);
                    let (gw, gb) =
                        part[at..at + wl + bias.as_ref().map_or(0, |b| b.value.len())].split_at_mut(wl);
                    let gb = bias.as_ref().map(|_| gb);
                    k::conv2d_backward_weights(&s, input, dy, gw, gb, scratch);
                    if let Some(dx) = dx {
                        k::conv2d_backward_input(&s, &weight.value, dy, dx, scratch);
                    }
                }
                Layer::MaxPool2d { shape } => {
                    if let Some(dx) = dx {
                        let s = k::Pool2dShape { batch: n, ..*shape };
                        // SAFETY: this chunk's rows, only read.
                        let argmax = unsafe { &*v[i].argmax.get(0, n * ol) };
                        k::max_pool2d_backward(&s, dy, argmax, dx);
                    }
                }
                Layer::Relu => {
                    if let Some(dx) = dx {
                        // SAFETY: this chunk's rows of the layer's output, only read.
                        let y = unsafe { &*v[oi].out.get(0, n * ol) };
                        k::relu_backward(y, dy, dx);
                    }
                }
                Layer::Dense { shape, weight, .. } => {
                    if let Some(dx) = dx {
                        let s = k::DenseShape { batch: n, ..*shape };
                        k::dense_backward_input(&s, &weight.value, dy, dx);
                    }
                }
                Layer::Flatten => {}
            }
        }
    }
}

/// Runs `f` on a thread of rayon's current pool. Called from outside the pool (a plain
/// `main`), every parallel loop of a step would otherwise be handed to the pool and waited
/// for separately (a thread wake-up per kernel call: a third of seednet's step time when
/// measured); this hands over the whole step once. On a pool thread it runs `f` inline.
fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

fn count_correct(probs: &[f32], labels: &[usize], classes: usize) -> usize {
    probs
        .chunks_exact(classes)
        .zip(labels)
        .filter(|(p, &c)| {
            // A row with a NaN (a diverged network) counts as wrong, not as class 0.
            let best = p
                .iter()
                .enumerate()
                .fold(0, |b, (i, &v)| if v > p[b] { i } else { b });
            best == c && !p.iter().any(|v| v.is_nan())
        })
        .count()
}

/// Adds the parameters `spec` would create on `input` to `n_params`, refusing sizes past
/// [`MAX_PARAMS`] before anything is allocated.
fn check_size(
    spec: &LayerSpec,
    input: Shape,
    position: usize,
    n_params: &mut u128,
) -> Result<(), ModelError> {
    let add = match (*spec, input) {
        (LayerSpec::Conv2d { out_c, kh, kw, .. }, Shape::Spatial { c, .. }) => {
            out_c as u128 * c as u128 * kh as u128 * kw as u128 + out_c as u128
        }
        (LayerSpec::Dense { out, .. }, s) => out as u128 * s.len() as u128 + out as u128,
        _ => 0,
    };
    *n_params += add;
    if *n_params > MAX_PARAMS {
        return Err(ModelError::TooLarge {
            what: format!("the parameters (up to spec layer {position} `{spec}`)"),
            values: *n_params,
            limit: MAX_PARAMS,
        });
    }
    Ok(())
}
