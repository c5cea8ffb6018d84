//! `trainer predict`: a checkpoint's top classes for each image.

use super::args::PredictArgs;
use super::eval::normalize_image;
use super::Exit;
use crate::data::{decode_file, write_chw};
use crate::error::TrainerError;
use petal_model::load_checkpoint;

pub(super) fn run(a: PredictArgs) -> Result<Exit, TrainerError> {
    let (mut net, meta) = load_checkpoint(&a.checkpoint)?;
    net.set_conv_algo(a.conv_algo);
    petal_model::limits::check_buffers(&net)?;
    let shape = net.input_shape();
    let mut x = vec![0.0f32; shape.len()];
    let mut results = Vec::new();
    let mut failed = false;
    for path in &a.images {
        match decode_file(path) {
            Err(why) => {
                failed = true;
                if a.json {
                    results.push(serde_json::json!({"path": path.to_string_lossy(), "error": why}));
                } else {
                    eprintln!("{}: cannot read: {why}", path.display());
                }
            }
            Ok(img) => {
                write_chw(&img, shape, &mut x);
                normalize_image(&mut x, shape, &meta.normalization);
                let probs = net.predict(&x)?.to_vec();
                let mut order: Vec<usize> = (0..probs.len()).collect();
                order.sort_by(|&i, &j| probs[j].total_cmp(&probs[i]));
                order.truncate(a.top.max(1));
                if a.json {
                    let preds: Vec<_> = order
                        .iter()
                        .map(|&i| serde_json::json!({"class": meta.classes[i], "probability": probs[i]}))
                        .collect();
                    results.push(serde_json::json!({"path": path.to_string_lossy(), "predictions": preds}));
                } else {
                    let s: Vec<String> = order
                        .iter()
                        .map(|&i| format!("{} {:.1} %", meta.classes[i], 100.0 * probs[i]))
                        .collect();
                    println!("{}: {}", path.display(), s.join(", "));
                }
            }
        }
    }
    if a.json {
        println!("{}", serde_json::Value::Array(results));
    }
    Ok(if failed { Exit::Failed } else { Exit::Ok })
}
