//! [`SharedMut`]: one `&mut [f32]` handed to several rayon tasks, each of which writes its
//! own disjoint part of it.

use std::marker::PhantomData;

/// A mutable buffer shared by rayon tasks that write disjoint ranges of it: each task
/// takes its ranges with [`SharedMut::range`].
///
/// # Safety contract
///
/// Made from a `&mut [f32]`, it borrows the buffer mutably for `'a`, so nothing else reads
/// or writes it meanwhile. What the borrow checker cannot see, the caller of
/// [`SharedMut::range`] promises: no two ranges taken from one `SharedMut` and alive at
/// the same time overlap, across all tasks. The kernels that use it split the buffer by
/// their task's index (channels, columns), so the ranges of different tasks are disjoint
/// by construction, and a task takes each of its own ranges once.
pub(crate) struct SharedMut<'a> {
    ptr: *mut f32,
    len: usize,
    _buf: PhantomData<&'a mut [f32]>,
}

// SAFETY: a `SharedMut` only hands out `&mut [f32]` ranges that, by its contract, no
// other task holds; `f32` is `Send`, so writing them from other threads is sound.
unsafe impl Sync for SharedMut<'_> {}

impl<'a> SharedMut<'a> {
    pub(crate) fn new(buf: &'a mut [f32]) -> Self {
        Self {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
            _buf: PhantomData,
        }
    }

    /// The `len` values from `start`. Panics unless they lie in the buffer.
    ///
    /// # Safety
    ///
    /// No other range of this `SharedMut` alive while this one is may overlap it (the
    /// type's contract).
    #[inline]
    pub(crate) unsafe fn range(&self, start: usize, len: usize) -> &'a mut [f32] {
        assert!(
            start <= self.len && len <= self.len - start,
            "SharedMut: values {start} .. {start} + {len} of a buffer of {}",
            self.len
        );
        // SAFETY: the range lies in the buffer (asserted), which `'a` keeps borrowed for
        // this `SharedMut` alone; the caller guarantees no other live range overlaps it.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}
