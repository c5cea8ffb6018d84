//! Results must be bit-identical on any number of threads (lib docs: work is split into
//! fixed chunks and reductions over the batch are summed in a fixed order). Each kernel
//! runs on the same random data inside rayon pools of 1, 2, 3 and 7 threads, and every
//! output and gradient is compared with `f32::to_bits` against the 1-thread run.
//! Batches 13 (not a multiple of `BATCH_CHUNK` = 4) and 32, both conv paths.

mod common;

use common::*;
use petal_kernels::*;

const THREADS: [usize; 4] = [1, 2, 3, 7];

/// Runs `f` in a pool of each size and asserts every returned tensor is bit-identical.
fn assert_thread_independent(what: &str, f: impl Fn() -> Vec<Vec<f32>> + Sync) {
    let mut first: Option<Vec<Vec<u32>>> = None;
    for n in THREADS {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap();
        let out = pool.install(&f);
        let bits: Vec<Vec<u32>> = out
            .iter()
            .map(|t| t.iter().map(|v| v.to_bits()).collect())
            .collect();
        assert!(bits.iter().all(|t| !t.is_empty()));
        match &first {
            None => first = Some(bits),
            Some(want) => {
                for (k, (got, want)) in bits.iter().zip(want).enumerate() {
                    assert!(
                        got == want,
                        "{what}: output {k} differs between 1 and {n} threads"
                    );
                }
            }
        }
    }
}

#[test]
fn conv_is_bit_identical_across_thread_counts() {
    for batch in [13, 32] {
        for s in [
            conv(batch, 3, 20, 21, 8, 3, 3, 1, 1), // direct (3x3 weight gradient)
            conv(batch, 6, 14, 13, 8, 3, 3, 1, 1), // direct 3x3, in_c 6
            conv(batch, 5, 9, 23, 7, 3, 3, 1, 2),  // direct 3x3, odd out_c, partial strip
            conv(batch, 1, 18, 18, 3, 3, 3, 1, 0), // direct 3x3 reading x unpadded
            conv(batch, 2, 11, 13, 4, 2, 3, 1, 1), // direct (other kernel sizes)
            conv(batch, 6, 14, 13, 8, 3, 2, 1, 1), // GEMM
            conv(batch, 2, 19, 17, 5, 3, 2, 2, 1), // GEMM via stride 2
        ] {
            let mut r = rng(batch as u64 * 100 + s.in_c as u64);
            let x = rand_vec(&mut r, s.input_len());
            let w = rand_vec(&mut r, s.weight_len());
            let b = rand_vec(&mut r, s.out_c);
            let dy = rand_vec(&mut r, s.output_len());
            assert_thread_independent(&format!("conv {s:?}"), || {
                let mut scratch = vec![0.0; s.scratch_len()];
                let mut y = vec![0.0; s.output_len()];
                conv2d_forward(&s, &x, &w, Some(&b), &mut y, &mut scratch);
                let mut gw = vec![0.0; s.weight_len()];
                let mut gb = vec![0.0; s.out_c];
                conv2d_backward_weights(&s, &x, &dy, &mut gw, Some(&mut gb), &mut scratch);
                let mut gx = vec![0.0; s.input_len()];
                conv2d_backward_input(&s, &w, &dy, &mut gx, &mut scratch);
                vec![y, gw, gb, gx]
            });
        }
    }
}
