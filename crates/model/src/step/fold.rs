//! Inference with each batch norm folded into the convolution before it (where the plan
//! says so, `LayerPlan::fold_into`): one pass over the values instead of two.

use super::ChunkStep;
use crate::buffers::Chunk;
use crate::layers::{BnWork, Layer};
use crate::plan::Plan;

/// Folds each batch norm into the convolution before it where the plan says so
/// (`BatchNorm::fold`, with the norm's inference coefficients `work`), into `out`
/// (indexed by layer; sized once, then only refilled).
pub(crate) fn fold_batch_norms(
    layers: &[Layer],
    plan: &Plan,
    work: &[BnWork],
    out: &mut Vec<Option<(Vec<f32>, Vec<f32>)>>,
) {
    out.resize(layers.len(), None);
    for (i, p) in plan.layers.iter().enumerate() {
        let (Some(j), Layer::Conv2d(conv)) = (p.fold_into, &layers[i]) else {
            continue;
        };
        let Layer::BatchNorm(bn) = &layers[j] else {
            unreachable!("a convolution folds into a batch norm")
        };
        let k = plan.layers[j].bn.expect("a batch norm has an index");
        let (weight, out_c) = (&conv.weight.value, conv.shape.out_c);
        let (w, b) = out[i].get_or_insert_with(|| (vec![0.0; weight.len()], vec![0.0; out_c]));
        let bias = conv.bias.as_ref().map(|b| &b.value[..]);
        bn.fold(&work[k], weight, bias, w, b);
    }
}

impl ChunkStep<'_> {
    /// Inference of layer `i`, a convolution with the batch norm after it folded in (which
    /// writes the norm's output, with the norm's fused ReLU), or that norm (nothing to do).
    pub(super) fn forward_folded(&self, c: &mut Chunk<'_>, i: usize) {
        let p = &self.plan.layers[i];
        let (Some(j), Layer::Conv2d(conv)) = (p.fold_into, &self.layers[i]) else {
            return;
        };
        let (w, b) = self.folded[i].as_ref().expect("folded weights are prepared");
        let norm = &self.plan.layers[j];
        let slot = norm.slot.expect("a batch norm has a buffer");
        let images = c.bufs.images();
        let (input, out, _) = c.bufs.forward_io(p.input, p.in_len, slot, norm.out_len);
        let prepared = self.prepared.get(i).map_or(&[][..], |v| &v[..]);
        conv.forward_with(images, input, w, prepared, Some(b), out, c.scratch);
        if norm.relu_after {
            petal_kernels::relu_forward_inplace(out);
        }
    }
}
