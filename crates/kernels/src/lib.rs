//! # petal-kernels
//!
//! The CPU kernels under Petal: pure `f32` functions over slices, with no I/O and no model
//! state. Each forward kernel has its backward twin:
//!
//! | module | forward | backward |
//! | --- | --- | --- |
//! | [`conv`] | [`conv2d_forward`] (direct SIMD on a padded copy for stride 1, im2col + GEMM otherwise) | [`conv2d_backward_weights`], [`conv2d_backward_input`] |
//! | [`pool::max`] | [`max_pool2d_forward`] (with argmax) | [`max_pool2d_backward`] |
//! | [`pool::avg`] | [`avg_pool2d_forward`], [`global_avg_pool_forward`] | [`avg_pool2d_backward`], [`global_avg_pool_backward`] |
//! | [`norm`] | [`batch_norm_sums`] (batch statistics), [`batch_norm_apply`] (with fused ReLU) | [`batch_norm_backward_sums`] (`dβ`, `dγ`), [`batch_norm_backward_input`] |
//! | [`dropout`] | [`dropout_forward`] (counter-based mask, [`dropout_keep`]) | [`dropout_backward`] |
//! | [`add`] | [`add_forward`] (residual join, fused ReLU) | (the gradient passes through) |
//! | [`dense`] | [`dense_forward`] | [`dense_backward`] ([`dense_backward_weights`], [`dense_backward_input`]) |
//! | [`activation`] | [`relu_forward`] | [`relu_backward`] |
//! | [`softmax`] | [`softmax_forward`] | [`softmax_cross_entropy`] (loss and `dL/dlogits`, fused) |
//! | [`sgd`] | [`sgd_step`] (momentum, weight decay) | |
//! | [`sgd`] | [`sgd_nesterov_step`] (Nesterov momentum, the same loop as `sgd_step`) | |
//! | [`adamw`] | [`adamw_step`] (AdamW, decoupled weight decay) | |
//!
//! [`reference`](mod@reference) holds slow `f64` twins of every kernel (straight loops over the same
//! equations), for tests and gradient checks. Both pooling kernels take a [`Pool2dShape`]
//! ([`pool`]).
//!
//! Conventions: NCHW, batch first, contiguous; conv weight `[out_c, in_c, kh, kw]`, dense
//! weight `[out, in]` (PyTorch's layouts). Kernels never allocate: callers pass output
//! buffers and the scratch space each shape struct sizes (`Conv2dShape::scratch_len`).
//! A shape contract violation panics with a message naming the mismatch; data from
//! outside (labels) is checked and returned as an error.
//!
//! Threads: rayon's current pool, over fixed chunks of the batch. Reductions over the
//! batch are done in a fixed order, so every result is bit-identical on any number of
//! threads. SIMD: `wide::f32x8` and `f32x16`, through one vector trait (`vector.rs`) and
//! the slice helpers of [`simd`]; build with `-C target-cpu=native` (or at least
//! `-C target-feature=+avx2,+fma`) so it compiles to AVX2/AVX-512 with fused multiply-add.
//! [`arch`] holds everything that depends on the instruction set: the build's
//! [`SimdLevel`], the vector width its kernels run ([`Lanes::BUILD`](arch::Lanes::BUILD))
//! and their register tiles, one file per instruction set.
//!
//! ```
//! use petal_kernels::{conv2d_forward, max_pool2d_forward, Conv2dShape, Pool2dShape};
//!
//! // The seed's first two layers on one 50x50 grayscale image.
//! let conv = Conv2dShape { batch: 1, in_c: 1, h: 50, w: 50, out_c: 8, kh: 3, kw: 3, stride: 1, pad: 0 };
//! let x = vec![0.5f32; conv.input_len()];
//! let weight = vec![0.1f32; conv.weight_len()];
//! let bias = vec![0.0f32; conv.out_c];
//! let mut y = vec![0.0f32; conv.output_len()];
//! let mut scratch = vec![0.0f32; conv.scratch_len()];
//! conv2d_forward(&conv, &x, &weight, Some(&bias), &mut y, &mut scratch);
//! assert!((y[0] - 0.45).abs() < 1e-6); // 9 taps of 0.5 · 0.1
//!
//! let pool = Pool2dShape { batch: 1, c: 8, h: 48, w: 48, k: 2, stride: 2 };
//! let mut pooled = vec![0.0f32; pool.output_len()];
//! let mut argmax = vec![0u32; pool.output_len()];
//! max_pool2d_forward(&pool, &y, &mut pooled, &mut argmax);
//! assert_eq!(pooled.len(), 8 * 24 * 24); // 4608 values, flattened for the dense layer
//! ```

pub mod activation;
pub mod adamw;
pub mod add;
pub mod arch;
pub mod conv;
pub mod dense;
pub mod dropout;
mod gemm;
pub mod norm;
pub mod pool;
pub mod reference;
pub mod sgd;
pub mod shape;
mod shared_mut;
pub mod simd;
pub mod softmax;
mod vector;

pub use activation::{relu_backward, relu_backward_inplace, relu_forward, relu_forward_inplace};
pub use adamw::{adamw_step, AdamWConfig};
pub use add::{add_forward, add_forward_inplace};
pub use arch::{simd_warning, SimdLevel};
pub use conv::{
    col2im, conv2d_backward_input, conv2d_backward_input_algo, conv2d_backward_input_prepared,
    conv2d_backward_weights, conv2d_backward_weights_algo, conv2d_forward, conv2d_forward_algo,
    conv2d_forward_prepared, conv2d_prepare, conv2d_prepare_forward, im2col, Conv2dShape, ConvAlgo,
};
pub use dense::{
    dense_backward, dense_backward_bias, dense_backward_input, dense_backward_weights, dense_forward,
    DenseShape,
};
pub use dropout::{dropout_backward, dropout_forward, dropout_keep};
pub use gemm::gemm_calls;
pub use norm::{
    batch_norm_apply, batch_norm_apply_inplace, batch_norm_backward_input, batch_norm_backward_sums,
    batch_norm_sums, BatchNormShape,
};
pub use pool::avg::{
    avg_pool2d_backward, avg_pool2d_forward, global_avg_pool_backward, global_avg_pool_forward,
};
pub use pool::max::{max_pool2d_backward, max_pool2d_forward};
pub use pool::{Pool2dShape, PoolKind};
pub use sgd::sgd_nesterov_step;
pub use sgd::{sgd_step, SgdConfig};
pub use shape::ShapeError;
pub use softmax::{
    mean_loss, smoothed_cross_entropy_rows, softmax_cross_entropy, softmax_cross_entropy_loss,
    softmax_cross_entropy_rows, softmax_forward, LabelError,
};
