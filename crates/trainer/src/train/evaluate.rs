//! Loss, accuracy and confusion of a network on a data set, split over the ranks of a
//! run: each evaluates its share of the samples, and every rank adds up every sample's
//! result in sample order, so the figures do not depend on the number of ranks or the
//! batch size.

use crate::data::Dataset;
use crate::dist::World;
use crate::error::TrainerError;
use crate::report::Confusion;
use petal_model::Network;

/// Mean loss and confusion of `net` on `data`, in batches of `batch`, on one process.
pub fn evaluate(net: &mut Network, data: &Dataset, batch: usize) -> Result<(f64, Confusion), TrainerError> {
    evaluate_on(net, data, batch, &World::single())
}

/// [`evaluate`] with the samples shared among `world`'s ranks (every rank gets the
/// result). A sample's loss is `ln Σ exp(logits) − logit(label)` in f64, its prediction
/// the most probable class (the first of equals); the mean is their sum in sample order
/// over the set's size.
pub fn evaluate_on(
    net: &mut Network,
    data: &Dataset,
    batch: usize,
    world: &World,
) -> Result<(f64, Confusion), TrainerError> {
    let (ranks, rank) = (world.ranks(), world.rank());
    let n = data.len();
    let share = |r: usize| r * n / ranks..(r + 1) * n / ranks;
    let mine = share(rank);
    let per = data.shape.len();
    // A batch larger than the share is the whole share (and allocates no more).
    let batch = batch.clamp(1, mine.len().max(1));
    // Per sample: (loss, predicted class).
    let mut local = Vec::with_capacity(2 * mine.len());
    let images = &data.images[mine.start * per..mine.end * per];
    let labels = &data.labels[mine.clone()];
    for (x, y) in images.chunks(batch * per).zip(labels.chunks(batch)) {
        let k = net.classes();
        net.predict(x)?;
        for ((p, l), &t) in net
            .probs()
            .chunks_exact(k)
            .zip(net.logits().chunks_exact(k))
            .zip(y)
        {
            let best = (0..k).fold(0, |b, i| if p[i] > p[b] { i } else { b });
            let max = l.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let lse = max + l.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
            local.push(lse - l[t] as f64);
            local.push(best as f64);
        }
    }
    let all = match world.collective() {
        None => local,
        Some(comm) => {
            let counts: Vec<usize> = (0..ranks).map(|r| 2 * share(r).len()).collect();
            let mut all = vec![0.0; 2 * n];
            comm.all_gather_f64(&local, &counts, &mut all);
            all
        }
    };
    let mut confusion = Confusion::new(&data.classes);
    let mut loss = 0.0;
    for (r, &t) in all.chunks_exact(2).zip(&data.labels) {
        loss += r[0];
        confusion.add(t, r[1] as usize);
    }
    Ok((loss / n.max(1) as f64, confusion))
}
