//! A steady-state training step allocates nothing in Petal's code. The one exception is
//! `matrixmultiply`'s packing buffer, one allocation per GEMM call, which
//! `petal_kernels::gemm_calls()` counts so it can be reported apart.

use petal_kernels::{gemm_calls, SgdConfig};
use petal_model::{InputShape, Network};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn steady_state_steps_allocate_only_gemm_packing_buffers() {
    // Training runs inside a rayon pool (as the trainer does): a caller outside it would
    // hand every parallel loop to rayon's injector queue, which allocates a block every
    // 63 jobs. The pool has one thread: with two, work stealing makes crossbeam's deques
    // grow, shrink and defer freeing their buffers now and then (1.5 KB blocks, seen in
    // about one run in three): the scheduler's memory, not Petal's. Petal's code paths
    // are the same on any number of threads (the kernels split work into fixed chunks).
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    pool.install(check_steady_state);
}

fn check_steady_state() {
    let cfg = SgdConfig {
        lr: 0.01,
        momentum: 0.9,
        weight_decay: 1e-4,
    };
    for (name, mut net) in [
        ("seednet", Network::seednet(1)),
        ("flowernet", Network::flowernet(1)),
        (
            "strided",
            Network::from_spec(
                "conv3x3:8/s2/p1,relu,maxpool3/s2,dense:10,relu,dense:5",
                InputShape { c: 4, h: 33, w: 31 },
                1,
            )
            .unwrap(),
        ),
        (
            "resnet8 + dropout",
            Network::from_spec(
                &petal_model::spec::preset_spec("resnet8", 5)
                    .unwrap()
                    .replace("gap,", "gap,dropout:0.2,"),
                InputShape { c: 3, h: 16, w: 16 },
                1,
            )
            .unwrap(),
        ),
        ("resnet8 on Winograd", {
            // 16x16 maps take F(4x4) tiles, 8x8 and 4x4 F(2x2); filters prepared per step.
            let mut net = Network::for_classes("resnet8", InputShape { c: 3, h: 16, w: 16 }, 5, 1).unwrap();
            net.set_conv_algo(petal_kernels::ConvAlgo::Winograd);
            net
        }),
    ] {
        let batch = 16;
        let x: Vec<f32> = (0..batch * net.input_shape().len())
            .map(|i| (i % 97) as f32 / 97.0)
            .collect();
        let y: Vec<usize> = (0..batch).map(|i| i % 5).collect();
        // Warm-up: buffers are sized on the first call, rayon's pool starts.
        for _ in 0..2 {
            net.train_step(&x, &y, &cfg).unwrap();
            net.predict(&x).unwrap();
        }
        let (a0, g0) = (ALLOCS.load(Ordering::SeqCst), gemm_calls());
        let steps = 5;
        for _ in 0..steps {
            net.train_step(&x, &y, &cfg).unwrap();
            net.predict(&x).unwrap();
            // A smaller batch reuses the larger batch's buffers.
            net.train_step(&x[..3 * net.input_shape().len()], &y[..3], &cfg)
                .unwrap();
        }
        let (allocs, gemms) = (ALLOCS.load(Ordering::SeqCst) - a0, gemm_calls() - g0);
        eprintln!(
            "{name}: {allocs} allocations in {steps}x(2 train steps + 1 predict), {gemms} of them matrixmultiply packing buffers"
        );
        // matrixmultiply allocates exactly one packing buffer per call: anything beyond
        // that is Petal's.
        assert_eq!(
            allocs, gemms,
            "{name}: {allocs} allocations for {gemms} GEMM calls"
        );
    }
}
