//! 2-D pooling with a square `k x k` window, stride and no padding, forward and backward:
//! [`max`] (with argmax indices) and [`avg`] (and global average pooling), around one
//! shape, [`Pool2dShape`], and its validation.
//!
//! Shapes: input `x` `[batch, c, h, w]`, output `y` `[batch, c, oh, ow]` with
//! `oh = (h - k) / stride + 1`, `ow = (w - k) / stride + 1` (floor mode, as PyTorch's
//! `MaxPool2d(k, stride)` and `AvgPool2d(k, stride)`).

pub mod avg;
pub mod max;
mod vector;

use crate::shape::{check_sizes, ShapeError};

/// The shape of a batched 2-D pooling with a square `k x k` window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pool2dShape {
    pub batch: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
}

/// Which pooling kernel a [`Pool2dShape`] is checked for ([`Pool2dShape::validate_for`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolKind {
    /// Max pooling ([`max`]): its argmax indices are `u32` positions within a plane.
    Max,
    /// Average pooling ([`avg`]).
    Avg,
}

impl PoolKind {
    /// The name its shape errors carry: `max_pool2d`, `avg_pool2d`.
    pub fn name(self) -> &'static str {
        match self {
            PoolKind::Max => "max_pool2d",
            PoolKind::Avg => "avg_pool2d",
        }
    }
}

impl Pool2dShape {
    /// [`Pool2dShape::validate_for`] max pooling: the errors name `max_pool2d`.
    pub fn validate(&self) -> Result<(), ShapeError> {
        self.validate_for(PoolKind::Max)
    }

    /// Checks the shape for `kind`'s kernels: no size is zero, the window fits the input,
    /// the input is not too large for memory, and for max pooling one plane's positions
    /// fit the `u32` argmax. The errors name the kernel ([`PoolKind::name`]).
    pub fn validate_for(&self, kind: PoolKind) -> Result<(), ShapeError> {
        let what = kind.name();
        for (field, v) in [
            ("batch", self.batch),
            ("c", self.c),
            ("h", self.h),
            ("w", self.w),
            ("k", self.k),
            ("stride", self.stride),
        ] {
            if v == 0 {
                return Err(ShapeError::Zero { what, field });
            }
        }
        if self.k > self.h || self.k > self.w {
            return Err(ShapeError::KernelTooLarge {
                what,
                kernel: (self.k, self.k),
                input: (self.h, self.w),
            });
        }
        let plane = self.h as u128 * self.w as u128;
        if kind == PoolKind::Max && plane > u32::MAX as u128 {
            return Err(ShapeError::TooLarge {
                what,
                quantity: "one plane",
                values: plane,
            });
        }
        check_sizes(what, &[("the input", &[self.batch, self.c, self.h, self.w])])
    }

    /// Panics with [`Pool2dShape::validate_for`]'s error, if any.
    #[track_caller]
    fn check(&self, kind: PoolKind) {
        if let Err(e) = self.validate_for(kind) {
            panic!("{e}");
        }
    }

    /// Output height, `(h - k) / stride + 1`.
    pub fn out_h(&self) -> usize {
        (self.h - self.k) / self.stride + 1
    }
    /// Output width, `(w - k) / stride + 1`.
    pub fn out_w(&self) -> usize {
        (self.w - self.k) / self.stride + 1
    }
    /// Values in the input, `batch · c · h · w`.
    pub fn input_len(&self) -> usize {
        self.batch * self.c * self.h * self.w
    }
    /// Values in the output (and in max pooling's `argmax`), `batch · c · oh · ow`.
    pub fn output_len(&self) -> usize {
        self.batch * self.c * self.out_h() * self.out_w()
    }
}
