//! The image-folder loader's decode step on arbitrary bytes: `decode_bytes` (format guess
//! and decoding limits) and, for an image that decodes, `write_chw` into a grayscale and
//! an RGB network input. Errors are fine; panics, hangs and unbounded allocations are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use petal_model::InputShape;
use petal_trainer::data::{decode_bytes, write_chw};

fuzz_target!(|data: &[u8]| {
    if let Ok(img) = decode_bytes(data) {
        for c in [1, 3] {
            let shape = InputShape { c, h: 7, w: 5 };
            let mut out = vec![f32::NAN; shape.len()];
            write_chw(&img, shape, &mut out);
            assert!(out.iter().all(|v| (0.0..=1.0).contains(v)), "{out:?}");
        }
    }
});
