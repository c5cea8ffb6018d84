//! A gradient checker: analytic gradients of the network against central finite
//! differences of its loss.

use crate::error::ModelError;
use crate::layers::{Layer, Reference as LayerReference};
use crate::network::Network;
use petal_kernels::reference;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// How [`gradcheck`] probes the network.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradCheckOptions {
    /// Step of the central difference, `(L(θ + ε) - L(θ - ε)) / 2ε`, taken on a float64
    /// reference forward pass (so ε can be small without drowning in f32 rounding).
    pub eps: f64,
    /// Largest accepted relative error `|a - n| / max(|a|, |n|, floor)`.
    pub tolerance: f64,
    /// Gradients smaller than this are compared absolutely: the f32 analytic gradient
    /// carries rounding error relative to the terms it sums, not to its own (small) value.
    pub floor: f64,
    /// A floor relative to the network: gradients smaller than `relative_floor` times the
    /// largest analytic gradient of any parameter are compared absolutely too. An f32
    /// gradient that is a sum with cancellation (a weight or shift before a batch norm,
    /// whose backward subtracts the batch means) carries rounding error relative to the
    /// terms it sums, which are of the network's gradient scale, not to its own (small)
    /// value. 0 (the default): [`GradCheckOptions::floor`] only.
    pub relative_floor: f64,
    /// Entries probed per tensor (all when the tensor is smaller).
    pub samples_per_tensor: usize,
    /// Seed choosing the probed entries.
    pub seed: u64,
}

impl Default for GradCheckOptions {
    fn default() -> Self {
        GradCheckOptions {
            eps: 1e-6,
            tolerance: 1e-3,
            floor: 1e-6,
            relative_floor: 0.0,
            samples_per_tensor: 24,
            seed: 0,
        }
    }
}

/// The result for one tensor (a parameter or the input).
#[derive(Clone, Debug, PartialEq)]
pub struct TensorCheck {
    /// `"0.weight"`, `"3.bias"`, ... or `"input"`.
    pub name: String,
    /// Largest relative error among the probed entries.
    pub worst_rel_err: f64,
    /// Entries compared.
    pub checked: usize,
    /// Entries skipped because a perturbation crossed a kink (ReLU at 0, max-pool tie).
    pub skipped: usize,
}

/// Every tensor's result.
#[derive(Clone, Debug, PartialEq)]
pub struct GradCheckReport {
    pub tensors: Vec<TensorCheck>,
    pub tolerance: f64,
}

impl GradCheckReport {
    /// Whether every tensor's worst relative error is within the tolerance, and every
    /// tensor had at least one entry compared (not all skipped at kinks).
    pub fn passed(&self) -> bool {
        self.tensors
            .iter()
            .all(|t| t.worst_rel_err <= self.tolerance && t.checked > 0)
    }
    /// The largest relative error over all tensors.
    pub fn worst(&self) -> f64 {
        self.tensors.iter().map(|t| t.worst_rel_err).fold(0.0, f64::max)
    }
}

/// Checks the gradients of the mean softmax cross-entropy of `net` on (`x`, `labels`) with
/// respect to every parameter and to the input: for a sample of entries, compares the
/// analytic gradient (the f32 network's backward pass) to `(L(θ + ε) - L(θ - ε)) / 2ε`
/// evaluated by a float64 forward pass built from [`petal_kernels::reference`], which
/// shares no code with the kernels. An entry whose perturbation changes a
/// max-pool argmax or a ReLU sign (a kink between `θ - ε` and `θ + ε`) is skipped and
/// counted. The network's weights are left as they were.
pub fn gradcheck(
    net: &mut Network,
    x: &[f32],
    labels: &[usize],
    opts: &GradCheckOptions,
) -> Result<GradCheckReport, ModelError> {
    let had_input_grad = net.input_grad_enabled();
    net.set_input_grad(true);
    let result = net.forward_backward(x, labels).map(|_| {
        let analytic: Vec<(String, Vec<f32>)> =
            net.params().map(|p| (p.name.clone(), p.grad.clone())).collect();
        let input_grad = net.input_grad().to_vec();
        compare(net, x, labels, &analytic, &input_grad, opts)
    });
    net.set_input_grad(had_input_grad);
    result
}

/// Compares `analytic` (per parameter, in `Network::params` order) and `input_grad` with
/// central differences of the float64 reference loss.
fn compare(
    net: &Network,
    x: &[f32],
    labels: &[usize],
    analytic: &[(String, Vec<f32>)],
    input_grad: &[f32],
    opts: &GradCheckOptions,
) -> GradCheckReport {
    let reference = Reference::new(net, labels);
    let mut params: Vec<Vec<f64>> = net
        .params()
        .map(|p| p.value.iter().map(|&v| v as f64).collect())
        .collect();
    let mut xd: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    // Activations of the unperturbed network, so a probe of layer l recomputes from l on.
    let mut base = reference.forward(&params, &xd, 0, Cached::default());
    let base_sig = base.signature.clone();
    let owner = reference.param_layers();
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut tensors = Vec::new();
    let eps = opts.eps;
    let largest = analytic
        .iter()
        .flat_map(|(_, g)| g)
        .fold(0.0f64, |m, &g| m.max((g as f64).abs()));

    for (pi, (name, grad)) in analytic.iter().enumerate() {
        let mut t = TensorCheck {
            name: name.clone(),
            worst_rel_err: 0.0,
            checked: 0,
            skipped: 0,
        };
        let layer = owner[pi];
        let opts = &GradCheckOptions {
            floor: opts.floor.max(opts.relative_floor * largest),
            ..*opts
        };
        for i in sample(&mut rng, grad.len(), opts.samples_per_tensor) {
            let orig = params[pi][i];
            params[pi][i] = orig + eps;
            let plus = reference.forward(&params, &xd, layer, base.cache());
            (base.acts, base.kinks) = (plus.acts, plus.kinks);
            params[pi][i] = orig - eps;
            let minus = reference.forward(&params, &xd, layer, base.cache());
            (base.acts, base.kinks) = (minus.acts, minus.kinks);
            params[pi][i] = orig;
            let smooth = plus.signature == base_sig && minus.signature == base_sig;
            record(&mut t, grad[i], plus.loss, minus.loss, 2.0 * eps, smooth, opts);
        }
        tensors.push(t);
        // The cached activations past `layer` now hold the last probe's θ - ε: recompute
        // them at θ before the next tensor starts from a later layer.
        base = reference.forward(&params, &xd, layer, base.cache());
    }
    let mut t = TensorCheck {
        name: "input".into(),
        worst_rel_err: 0.0,
        checked: 0,
        skipped: 0,
    };
    for i in sample(&mut rng, x.len(), opts.samples_per_tensor) {
        let orig = xd[i];
        xd[i] = orig + eps;
        let plus = reference.forward(&params, &xd, 0, base.cache());
        (base.acts, base.kinks) = (plus.acts, plus.kinks);
        xd[i] = orig - eps;
        let minus = reference.forward(&params, &xd, 0, base.cache());
        (base.acts, base.kinks) = (minus.acts, minus.kinks);
        xd[i] = orig;
        let smooth = plus.signature == base_sig && minus.signature == base_sig;
        record(
            &mut t,
            input_grad[i],
            plus.loss,
            minus.loss,
            2.0 * eps,
            smooth,
            opts,
        );
    }
    tensors.push(t);
    GradCheckReport {
        tensors,
        tolerance: opts.tolerance,
    }
}

/// A plain float64 forward pass of a network and its loss, each layer's from its kind's
/// reference (`Kind::reference`, built on [`petal_kernels::reference`]: straight loops
/// sharing no code with the f32 kernels), for finite differences free of f32 rounding.
struct Reference {
    layers: Vec<Layer>,
    /// Each layer's inputs (layer indices, `None` the network input; an add's second).
    inputs: Vec<(Option<usize>, Option<Option<usize>>)>,
    /// Each layer's dropout seed in the step checked.
    seeds: Vec<u64>,
    labels: Vec<usize>,
}

/// Result of a reference forward pass.
struct Pass {
    loss: f64,
    /// Every layer's kinks (max-pool argmax indices, ReLU signs), in layer order: where
    /// the loss is not smooth.
    signature: Vec<u64>,
    /// `acts[0]` is the input, `acts[l + 1]` layer `l`'s output, and `kinks[l]` its kinks;
    /// kept so a later pass can start at a later layer.
    acts: Vec<Vec<f64>>,
    kinks: Vec<Vec<u64>>,
}

impl Reference {
    fn new(net: &Network, labels: &[usize]) -> Self {
        let seeds = (0..net.layers().len())
            .map(|l| net.last_dropout_seed(l))
            .collect();
        Reference {
            layers: net.layers().to_vec(),
            inputs: net.layer_inputs(),
            seeds,
            labels: labels.to_vec(),
        }
    }

    /// For each parameter (in `Network::params` order), the index of its layer.
    fn param_layers(&self) -> Vec<usize> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| l.params().map(move |_| i))
            .collect()
    }

    /// Mean cross-entropy of the batch `x` under `params`, recomputing from layer `from` on
    /// (`cached` must hold the outputs and kinks of the layers before `from` from an
    /// earlier pass unless `from == 0`).
    fn forward(&self, params: &[Vec<f64>], x: &[f64], from: usize, cached: Cached) -> Pass {
        let b = self.labels.len();
        let (mut acts, mut kinks) = cached;
        acts.resize(self.layers.len() + 1, Vec::new());
        kinks.resize(self.layers.len(), Vec::new());
        if from == 0 {
            acts[0] = x.to_vec();
        }
        let mut p = 0;
        let at = |v: Option<usize>| v.map_or(0, |j| j + 1);
        for (li, layer) in self.layers.iter().enumerate() {
            let np = layer.params().count();
            let (w, bias) = (
                params.get(p).filter(|_| np >= 1),
                params.get(p + 1).filter(|_| np == 2),
            );
            p += np;
            if li < from {
                continue;
            }
            let (a, second) = self.inputs[li];
            let (y, k) = layer.kind().reference(LayerReference {
                batch: b,
                x: &acts[at(a)],
                x2: second.map_or(&[][..], |v| &acts[at(v)]),
                weight: w.map(Vec::as_slice),
                bias: bias.map(Vec::as_slice),
                seed: self.seeds[li],
            });
            acts[li + 1] = y;
            kinks[li] = k;
        }
        let logits = &acts[self.layers.len()];
        let classes = logits.len() / b;
        Pass {
            loss: reference::softmax_cross_entropy(logits, &self.labels, classes).mean,
            signature: kinks.concat(),
            acts,
            kinks,
        }
    }
}

/// The cached outputs and kinks of an earlier pass ([`Reference::forward`]).
type Cached = (Vec<Vec<f64>>, Vec<Vec<u64>>);

impl Pass {
    /// Its outputs and kinks, for a pass that starts at a later layer.
    fn cache(&mut self) -> Cached {
        (std::mem::take(&mut self.acts), std::mem::take(&mut self.kinks))
    }
}

/// `n` indices below `len`, or all of them when `len <= n`.
fn sample(rng: &mut ChaCha8Rng, len: usize, n: usize) -> Vec<usize> {
    if len <= n {
        (0..len).collect()
    } else {
        // Distinct entries, in a seeded order.
        rand::seq::index::sample(rng, len, n).into_vec()
    }
}

fn record(
    t: &mut TensorCheck,
    analytic: f32,
    lp: f64,
    lm: f64,
    h: f64,
    smooth: bool,
    opts: &GradCheckOptions,
) {
    if !smooth {
        t.skipped += 1;
        return;
    }
    let numeric = (lp - lm) / h;
    let a = analytic as f64;
    let rel = (a - numeric).abs() / a.abs().max(numeric.abs()).max(opts.floor);
    // A NaN on either side is a failure, not a value `max` may drop.
    let rel = if rel.is_nan() { f64::INFINITY } else { rel };
    t.worst_rel_err = t.worst_rel_err.max(rel);
    t.checked += 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::InputShape;

    #[test]
    fn a_wrong_gradient_fails_the_check() {
        let mut net = Network::from_spec(
            "conv3x3:3/p1,relu,maxpool2,dense:4",
            InputShape { c: 2, h: 6, w: 7 },
            1,
        )
        .unwrap();
        let x: Vec<f32> = (0..2 * 84).map(|i| ((i * 37 % 101) as f32) / 101.0).collect();
        let labels = [1, 3];
        net.set_input_grad(true);
        net.forward_backward(&x, &labels).unwrap();
        let good: Vec<(String, Vec<f32>)> = net.params().map(|p| (p.name.clone(), p.grad.clone())).collect();
        let gx = net.input_grad().to_vec();
        let opts = GradCheckOptions::default();
        assert!(compare(&net, &x, &labels, &good, &gx, &opts).passed());
        // 1 % off in one tensor is caught, and named.
        for k in 0..good.len() {
            let mut bad = good.clone();
            bad[k].1.iter_mut().for_each(|g| *g *= 1.01);
            let r = compare(&net, &x, &labels, &bad, &gx, &opts);
            assert!(!r.passed(), "{} scaled by 1.01 passed", good[k].0);
            let worst = r
                .tensors
                .iter()
                .max_by(|a, b| a.worst_rel_err.total_cmp(&b.worst_rel_err))
                .unwrap();
            assert_eq!(worst.name, good[k].0);
        }
        let bad_x: Vec<f32> = gx.iter().map(|g| -g).collect();
        assert!(!compare(&net, &x, &labels, &good, &bad_x, &opts).passed());
    }
}
