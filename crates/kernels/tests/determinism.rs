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
fn dense_is_bit_identical_across_thread_counts() {
    for batch in [13, 32, 50] {
        let s = DenseShape {
            batch,
            inputs: 300,
            outputs: 10,
        };
        let mut r = rng(batch as u64);
        let x = rand_vec(&mut r, batch * s.inputs);
        let w = rand_vec(&mut r, s.outputs * s.inputs);
        let b = rand_vec(&mut r, s.outputs);
        let dy = rand_vec(&mut r, batch * s.outputs);
        assert_thread_independent(&format!("dense {s:?}"), || {
            let mut y = vec![0.0; batch * s.outputs];
            dense_forward(&s, &x, &w, Some(&b), &mut y);
            let mut gw = vec![0.0; w.len()];
            let mut gb = vec![0.0; s.outputs];
            let mut gx = vec![0.0; x.len()];
            dense_backward(&s, &x, &w, &dy, &mut gw, Some(&mut gb), Some(&mut gx));
            vec![y, gw, gb, gx]
        });
    }
}

#[test]
fn pool_is_bit_identical_across_thread_counts() {
    for batch in [13, 32] {
        for s in [pool(batch, 8, 24, 24, 2, 2), pool(batch, 5, 15, 17, 3, 2)] {
            let mut r = rng(batch as u64 + 7);
            let x = rand_ties(&mut r, s.input_len());
            let dy = rand_vec(&mut r, s.output_len());
            assert_thread_independent(&format!("pool {s:?}"), || {
                let mut y = vec![0.0; s.output_len()];
                let mut am = vec![0u32; s.output_len()];
                max_pool2d_forward(&s, &x, &mut y, &mut am);
                let mut dx = vec![0.0; s.input_len()];
                max_pool2d_backward(&s, &dy, &am, &mut dx);
                let am_bits = am.iter().map(|&a| f32::from_bits(a)).collect();
                vec![y, am_bits, dx]
            });
        }
    }
}

/// The element-wise kernels over several rayon blocks (2^14 values each).
#[test]
fn elementwise_kernels_are_bit_identical_across_thread_counts() {
    let n = 3 * (1 << 14) + 5;
    let mut r = rng(99);
    let x = rand_vec(&mut r, n);
    let g = rand_vec(&mut r, n);
    assert_thread_independent("relu and sgd", || {
        let mut y = vec![0.0; n];
        relu_forward(&x, &mut y);
        let mut dx = vec![0.0; n];
        relu_backward(&y, &g, &mut dx);
        let mut w = x.clone();
        let mut v = g.clone();
        let cfg = SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 1e-3,
        };
        sgd_step(&cfg, &mut w, &g, &mut v);
        vec![y, dx, w, v]
    });
}
