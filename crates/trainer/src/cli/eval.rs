//! `trainer eval`: a checkpoint's loss, accuracy, per-class scores and confusion matrix on
//! an image folder.

use super::args::EvalArgs;
use super::console::print_load;
use super::Exit;
use crate::data::load_image_folder;
use crate::error::TrainerError;
use crate::train;
use petal_model::{load_checkpoint, InputShape, Normalization};
use std::time::Instant;

pub(super) fn run(a: EvalArgs) -> Result<Exit, TrainerError> {
    let (mut net, meta) = load_checkpoint(&a.checkpoint)?;
    net.set_conv_algo(a.conv_algo);
    petal_model::limits::check_buffers(&net)?;
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
pub(super) fn normalize_image(img: &mut [f32], shape: InputShape, n: &Normalization) {
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
