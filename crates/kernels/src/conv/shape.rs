//! [`Conv2dShape`]: the dimensions of a batched convolution, their validation, and the
//! sizes of its tensors.

use super::padding::DIRECT_ROW_SLACK;
use super::BATCH_CHUNK;
use crate::shape::{check_sizes, ShapeError, MAX_VALUES};

/// The shape of a batched 2-D convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dShape {
    pub batch: usize,
    pub in_c: usize,
    pub h: usize,
    pub w: usize,
    pub out_c: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Conv2dShape {
    /// Checks that the shape describes a convolution with a non-empty output.
    pub fn validate(&self) -> Result<(), ShapeError> {
        let dims = [
            ("batch", self.batch),
            ("in_c", self.in_c),
            ("h", self.h),
            ("w", self.w),
            ("out_c", self.out_c),
            ("kh", self.kh),
            ("kw", self.kw),
            ("stride", self.stride),
        ];
        for (name, v) in dims {
            if v == 0 {
                return Err(ShapeError::Zero {
                    what: "conv2d",
                    field: name,
                });
            }
        }
        // Every size below is a product of at most 5 dimensions, each checked first, so
        // the usize arithmetic of the kernels cannot wrap.
        let (hp, wp) = (
            self.h as u128 + 2 * self.pad as u128,
            self.w as u128 + 2 * self.pad as u128,
        );
        if hp > MAX_VALUES || wp > MAX_VALUES {
            return Err(ShapeError::TooLarge {
                what: "conv2d",
                quantity: "the padded input side",
                values: hp.max(wp),
            });
        }
        if hp < self.kh as u128 || wp < self.kw as u128 {
            return Err(ShapeError::KernelTooLarge {
                what: "conv2d (input size includes padding)",
                kernel: (self.kh, self.kw),
                input: (hp as usize, wp as usize),
            });
        }
        let (oh, ow) = (self.out_h(), self.out_w());
        let (b, ic, oc, h, w) = (self.batch, self.in_c, self.out_c, self.h, self.w);
        let (kh, kw) = (self.kh, self.kw);
        check_sizes(
            "conv2d",
            &[
                ("the input", &[b, ic, h, w]),
                ("the output", &[b, oc, oh, ow]),
                ("the weight", &[oc, ic, kh, kw]),
                ("the im2col matrix", &[b, ic, kh, kw, oh, ow]),
                (
                    "the padded input",
                    &[b, ic, hp as usize, wp as usize + DIRECT_ROW_SLACK],
                ),
            ],
        )
    }

    pub(crate) fn check(&self) {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
    }

    /// Output height, `(h + 2 pad - kh) / stride + 1`.
    #[inline]
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.pad - self.kh) / self.stride + 1
    }
    /// Output width, `(w + 2 pad - kw) / stride + 1`.
    #[inline]
    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pad - self.kw) / self.stride + 1
    }
    /// Values in one input image, `in_c · h · w`.
    #[inline]
    pub fn in_image_len(&self) -> usize {
        self.in_c * self.h * self.w
    }
    /// Values in one output image, `out_c · oh · ow`.
    #[inline]
    pub fn out_image_len(&self) -> usize {
        self.out_c * self.out_h() * self.out_w()
    }
    /// Values in the input, `batch · in_c · h · w`.
    #[inline]
    pub fn input_len(&self) -> usize {
        self.batch * self.in_image_len()
    }
    /// Values in the output, `batch · out_c · oh · ow`.
    #[inline]
    pub fn output_len(&self) -> usize {
        self.batch * self.out_image_len()
    }
    /// Values in the weight, `out_c · in_c · kh · kw`.
    #[inline]
    pub fn weight_len(&self) -> usize {
        self.out_c * self.col_rows()
    }
    /// Rows of one image's im2col matrix, `in_c · kh · kw`.
    #[inline]
    pub fn col_rows(&self) -> usize {
        self.in_c * self.kh * self.kw
    }
    /// Values in one image's im2col matrix, `in_c · kh · kw · oh · ow`.
    #[inline]
    pub fn col_len(&self) -> usize {
        self.col_rows() * self.out_h() * self.out_w()
    }
    /// Number of [`BATCH_CHUNK`]-image tasks the batch is split into.
    #[inline]
    pub fn chunks(&self) -> usize {
        self.batch.div_ceil(BATCH_CHUNK)
    }
    /// Nominal FLOPs of the forward pass (multiply-adds count 2, padded taps included).
    pub fn forward_flops(&self) -> u64 {
        2 * (self.output_len() as u64) * (self.col_rows() as u64)
    }
    /// Scratch values [`conv2d_forward`](super::conv2d_forward) needs: those of
    /// [`Conv2dShape::forward_path`].
    pub fn forward_scratch_len(&self) -> usize {
        self.forward_path().scratch_len(self)
    }
    /// Scratch values [`conv2d_backward_weights`](super::conv2d_backward_weights) needs:
    /// those of [`Conv2dShape::weight_grad_path`].
    pub fn backward_weights_scratch_len(&self) -> usize {
        self.weight_grad_path().scratch_len(self)
    }
    /// Scratch values [`conv2d_backward_input`](super::conv2d_backward_input) needs: those
    /// of [`Conv2dShape::input_grad_path`].
    pub fn backward_input_scratch_len(&self) -> usize {
        self.input_grad_path().scratch_len(self)
    }
    /// Scratch values that serve all three conv kernels.
    pub fn scratch_len(&self) -> usize {
        self.scratch_len_for(super::ConvAlgo::Direct)
    }
    /// Scratch values that serve all three conv kernels with the stride-1 3x3 algorithm
    /// `algo` (`conv2d_*_algo`).
    pub fn scratch_len_for(&self, algo: super::ConvAlgo) -> usize {
        let f = self.forward_path_for(algo).scratch_len(self);
        let w = self.weight_grad_path_for(algo).scratch_len(self);
        let i = self.input_grad_path_for(algo).scratch_len(self);
        f.max(w).max(i)
    }
}
