//! A fixed array of interior-mutable slots (atomics, per-CPU epochs) kept
//! in one [`UnsafeCell`].
//!
//! It behaves exactly like `[T; N]` behind a shared reference: it hands out
//! `&T` and never `&mut T` (except through `&mut self`). The single cell
//! around the whole array only changes what Miri's borrow trackers see:
//! they retag a reference to a struct by visiting every interior-mutable
//! field, so a `[AtomicPtr<_>; 1024]` or `[CpuEpoch; MAX_CPUS]` inside
//! [`IrqCore`](crate::IrqCore) made *every* `&self` method call cost
//! thousands of visits (milliseconds each under Miri); one cell is one
//! visit. Native code is unaffected: the layout is that of `[T; N]`.

use core::cell::UnsafeCell;
use core::ops::{Index, RangeTo};

/// `[T; N]` in one cell; see the module docs.
#[repr(transparent)]
pub(crate) struct CellArray<T, const N: usize>(UnsafeCell<[T; N]>);

// SAFETY: the cell is never used to mutate the array or to hand out `&mut T`
// through `&self`: shared access yields only `&T`, exactly as `&[T; N]`
// would. So the array is as thread-safe as `[T; N]`, which is `Sync` when
// `T` is `Sync` (and `Send` when `T` is `Send`, which `UnsafeCell` already
// propagates).
unsafe impl<T: Sync, const N: usize> Sync for CellArray<T, N> {}

impl<T, const N: usize> CellArray<T, N> {
    /// Wraps `items`.
    pub(crate) const fn new(items: [T; N]) -> Self {
        Self(UnsafeCell::new(items))
    }

    /// The first `len` slots (all of them if `len > N`).
    pub(crate) fn prefix(&self, len: usize) -> &[T] {
        // SAFETY: the cell holds `N` initialised `T`s and `len.min(N)` stays
        // within them; only shared references to them are ever created
        // while `&self` lives (see the `Sync` impl).
        unsafe { core::slice::from_raw_parts(self.0.get().cast::<T>(), len.min(N)) }
    }

    /// Slot `i`, or `None` if `i >= N`.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        if i < N {
            // SAFETY: `i < N`, so the pointer is to an initialised element
            // of the array in the cell; shared access only (see above).
            Some(unsafe { &*self.0.get().cast::<T>().add(i) })
        } else {
            None
        }
    }

    /// Every slot, in order.
    pub(crate) fn iter(&self) -> core::slice::Iter<'_, T> {
        self.prefix(N).iter()
    }
}

impl<T, const N: usize> Index<usize> for CellArray<T, N> {
    type Output = T;

    /// Panics if `i >= N`, as indexing `[T; N]` does.
    #[inline]
    fn index(&self, i: usize) -> &T {
        match self.get(i) {
            Some(t) => t,
            None => panic!("CellArray index {i} out of range for length {N}"),
        }
    }
}

impl<T, const N: usize> Index<RangeTo<usize>> for CellArray<T, N> {
    type Output = [T];

    /// The first `end` slots (all of them if `end > N`: unlike `[T; N]`,
    /// never panics).
    fn index(&self, r: RangeTo<usize>) -> &[T] {
        self.prefix(r.end)
    }
}

#[cfg(test)]
mod tests {
    use super::CellArray;
    use core::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn behaves_like_an_array() {
        let a: CellArray<AtomicU32, 4> = CellArray::new([const { AtomicU32::new(0) }; 4]);
        a[1].store(5, Ordering::Relaxed);
        a.get(3).unwrap().store(7, Ordering::Relaxed);
        assert!(a.get(4).is_none());
        assert_eq!(a[..2].len(), 2);
        assert_eq!(a[..9].len(), 4);
        let v: alloc::vec::Vec<u32> = a.iter().map(|x| x.load(Ordering::Relaxed)).collect();
        assert_eq!(v, [0, 5, 0, 7]);
    }
}
